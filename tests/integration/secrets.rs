// SPDX-License-Identifier: MPL-2.0
//! The API key stays secret: not in any GStreamer debug output even at GST_DEBUG=*:9, not
//! in messages, not in the URL, not readable back from the property.
//!
//! The debug level must be set before GStreamer initializes, so the test re-runs itself as a
//! child process with GST_DEBUG=*:9 and reads the child's log.

use std::ffi::OsStr;
use std::time::Duration;

use crate::common::*;
use gst::prelude::*;

const PROPERTY_KEY: &str = "fw-property-key-7c1e9a";
const ENV_KEY: &str = "fw-environment-key-52b0d4";

/// Runs transcriptions that authenticate both ways, and one that is refused.
fn child() {
    let audio = synthesize_utterances(&["secret words"]).unwrap();
    let server = TestServer::start(ServerConfig::default().with_api_key(PROPERTY_KEY)).unwrap();
    let run = run_audio(&audio.samples, &Feed::default(), |stt| {
        stt.set_property("base-url", server.base_url());
        stt.set_property("api-key", PROPERTY_KEY);
    });
    assert_eq!(run.finals(), ["secret words"], "{}", run.error_text());

    let server = TestServer::start(ServerConfig::default().with_api_key(ENV_KEY)).unwrap();
    let run = run_audio(&audio.samples, &Feed::default(), |stt| {
        stt.set_property("base-url", server.base_url());
    });
    assert_eq!(run.finals(), ["secret words"], "{}", run.error_text());

    let server = TestServer::start(ServerConfig::default().with_api_key("another-key")).unwrap();
    let run = run_audio(&audio.samples, &Feed::default(), |stt| {
        stt.set_property("base-url", server.base_url());
        stt.set_property("api-key", PROPERTY_KEY);
    });
    assert!(run.error_text().contains("rejected"));
}

#[test]
fn api_key_never_reaches_the_debug_log() {
    let log = std::env::temp_dir().join(format!("fireworksstt-secrets-{}.log", std::process::id()));
    let test = test_name(module_path!(), "api_key_never_reaches_the_debug_log");
    let env: [(&str, &OsStr); 4] = [
        ("FIREWORKS_API_KEY", OsStr::new(ENV_KEY)),
        ("GST_DEBUG", OsStr::new("*:9")),
        ("GST_DEBUG_NO_COLOR", OsStr::new("1")),
        ("GST_DEBUG_FILE", log.as_os_str()),
    ];
    let Some(output) = run_alone(&test, &env, Duration::from_secs(120)) else {
        child();
        return;
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(output.status.success(), "child failed: {}", output.report());
    // The log is real: the element logged its sessions at this level.
    assert!(
        text.contains("fireworksstt"),
        "no element output in {} bytes of log",
        text.len()
    );
    assert!(
        text.contains("connecting to 127.0.0.1"),
        "the connection was logged"
    );
    for key in [PROPERTY_KEY, ENV_KEY] {
        assert!(
            !text.contains(key),
            "the key {key} appears in the GST_DEBUG=*:9 log"
        );
        let stdio = format!("{}{}", output.stdout, output.stderr);
        assert!(!stdio.contains(key), "the key {key} was printed");
    }
}

#[test]
fn the_key_reads_back_masked_and_travels_only_in_the_header() {
    init();
    let server = TestServer::start(ServerConfig::default().with_api_key(PROPERTY_KEY)).unwrap();
    let audio = synthesize_utterances(&["hi"]).unwrap();
    let run = run_audio(&audio.samples, &Feed::default(), |stt| {
        stt.set_property("base-url", server.base_url());
        stt.set_property("api-key", PROPERTY_KEY);
        assert_eq!(
            stt.property::<Option<String>>("api-key").as_deref(),
            Some("*****")
        );
    });
    assert!(run.errors.is_empty(), "{}", run.error_text());
    let record = &server.connections()[0];
    assert_eq!(record.authorization_header.as_deref(), Some(PROPERTY_KEY));
    assert!(!record
        .raw_query
        .clone()
        .unwrap_or_default()
        .contains(PROPERTY_KEY));
    assert!(!record.path.contains(PROPERTY_KEY));
    assert!(!format!("{run:?}").contains(PROPERTY_KEY));
}

// SPDX-License-Identifier: MPL-2.0
//! Connection failures a user causes name the fix: a `base-url` without the API version, and a
//! service that never accepted a connection is not said to be "reconnecting".

mod common;

use std::time::Duration;

use common::*;
use gst::prelude::*;

fn short_audio() -> SynthAudio {
    synthesize_utterances(&["one two"]).unwrap()
}

#[test]
fn a_base_url_without_v1_names_the_path_and_the_fix() {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let without_version = server.base_url().trim_end_matches("/v1").to_string();
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property("base-url", &without_version);
    });
    let text = run.error_text();
    assert!(
        text.contains("no streaming endpoint at /audio/transcriptions/streaming (HTTP 404)")
            && text.contains("check base-url")
            && text.contains("no /v1"),
        "{text}"
    );
    // Not retried: a wrong path does not fix itself.
    assert_eq!(server.connections().len(), 1);
    assert!(run.elapsed < Duration::from_secs(3));
}

#[test]
fn a_service_never_reached_is_not_reconnecting() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        stt.set_property("base-url", format!("ws://127.0.0.1:{port}/v1"));
        stt.set_property("api-key", TEST_KEY);
        stt.set_property("max-retries", 1u32);
    });
    assert!(
        !run.warnings.iter().any(|w| w.0.contains("Reconnecting")),
        "{:?}",
        run.warnings
    );
    let retry = &run.warnings[0].0;
    assert!(
        retry.starts_with("Connecting to Fireworks failed, trying again (retry 1 of 1)"),
        "{retry}"
    );
    let text = run.error_text();
    assert!(
        text.contains("Giving up after 1 retries (max-retries), no connection ever succeeded"),
        "{text}"
    );
}

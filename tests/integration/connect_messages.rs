// SPDX-License-Identifier: MPL-2.0
//! Connection failures a user causes name the fix: a `base-url` without the API version, and a
//! service that never accepted a connection is not said to be "reconnecting".

use std::time::Duration;

use crate::common::*;
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

/// Without `base-url`, the model picks the endpoint: `fireworks-asr-v2` is served by the v2 host.
/// Whatever this machine's network allows (no route, no DNS, or a refused test key), the one
/// attempt made names the host it went to. A `base-url` that is set wins over the model.
#[test]
fn the_v2_model_connects_to_the_v2_host_unless_base_url_is_set() {
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        stt.set_property("api-key", TEST_KEY);
        stt.set_property("model", "fireworks-asr-v2");
        stt.set_property("max-retries", 0u32);
        stt.set_property("connect-timeout", 2000u32);
    });
    assert_eq!(run.errors.len(), 1, "{run:#?}");
    let text = run.error_text();
    assert!(
        text.contains("audio-streaming-v2.api.fireworks.ai"),
        "{text}"
    );

    let server = TestServer::start(ServerConfig::default()).unwrap();
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property("model", "fireworks-asr-v2");
    });
    assert!(run.errors.is_empty(), "{}", run.error_text());
    assert_eq!(run.finals(), ["one two"]);
    let records = server.connections();
    assert!(records[0]
        .query
        .contains(&("model".into(), "fireworks-asr-v2".into())));
}

// SPDX-License-Identifier: MPL-2.0
//! Bad input gets a clear error and never a hang: each case checks the ERROR a user would
//! read, and that the key never shows up in it.

mod common;

use std::time::Duration;

use common::*;
use gst::prelude::*;

fn short_audio() -> SynthAudio {
    synthesize_utterances(&["hello"]).unwrap()
}

fn assert_no_key(run: &Run) {
    let all = format!("{run:?}");
    assert!(!all.contains(TEST_KEY), "the API key leaked: {all}");
}

#[test]
fn missing_api_key_names_the_property_and_the_variable() {
    if std::env::var_os("FIREWORKS_API_KEY").is_some() {
        eprintln!("skipped: FIREWORKS_API_KEY is set in this environment");
        return;
    }
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        stt.set_property("base-url", server.base_url());
    });
    assert_eq!(run.errors.len(), 1, "{run:#?}");
    let text = run.error_text();
    assert!(
        text.contains("api-key") && text.contains("FIREWORKS_API_KEY"),
        "{text}"
    );
    assert!(
        server.connections().is_empty(),
        "no connection without a key"
    );
}

#[test]
fn rejected_key_says_so_with_the_status() {
    for status in [401u16, 403] {
        let server = TestServer::start(ServerConfig::default().with_fault(
            0,
            Fault::RejectUpgrade {
                status,
                body: "invalid api key".into(),
            },
        ))
        .unwrap();
        let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
            point_at(stt, &server)
        });
        let text = run.error_text();
        assert!(text.contains("rejected the API key"), "{text}");
        assert!(text.contains(&status.to_string()), "{text}");
        let details = run.errors[0].2.as_ref().expect("details");
        assert_eq!(
            details.get::<u32>("http-status").unwrap(),
            u32::from(status)
        );
        assert_eq!(details.get::<String>("kind").unwrap(), "auth-rejected");
        // Rejected keys are not retried.
        assert_eq!(server.connections().len(), 1);
        assert_no_key(&run);
    }
}

#[test]
fn a_wrong_key_is_refused_by_the_server() {
    let server = TestServer::start(ServerConfig::default().with_api_key("the-right-key")).unwrap();
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        point_at(stt, &server)
    });
    assert!(
        run.error_text().contains("rejected the API key (HTTP 401)"),
        "{}",
        run.error_text()
    );
}

#[test]
fn refused_connection_names_the_host_and_gives_up_after_the_retries() {
    // Bind then drop a listener: the port is (almost certainly) closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        stt.set_property("base-url", format!("ws://127.0.0.1:{port}/v1"));
        stt.set_property("api-key", TEST_KEY);
        stt.set_property("max-retries", 2u32);
        stt.set_property("retry-interval", 50u32);
    });
    let text = run.error_text();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("Giving up after 2 retries"), "{text}");
    assert_eq!(
        run.warnings
            .iter()
            .filter(|w| w.0.contains("Connecting to Fireworks failed, trying again"))
            .count(),
        2
    );
    assert_no_key(&run);
}

#[test]
fn upgrade_that_never_answers_times_out() {
    let server =
        TestServer::start(ServerConfig::default().with_fault(0, Fault::NoUpgradeResponse)).unwrap();
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property("connect-timeout", 300u32);
        stt.set_property("max-retries", 0u32);
    });
    let text = run.error_text();
    assert!(text.contains("within 300 ms (connect-timeout)"), "{text}");
    assert!(run.elapsed < Duration::from_secs(5));
}

#[test]
fn server_error_message_is_an_error_with_its_text() {
    let server = TestServer::start(ServerConfig::default().with_fault(
        0,
        Fault::ErrorAfterBytes {
            bytes: 3200,
            message: "model overloaded, try later".into(),
            close_code: Some(1011),
        },
    ))
    .unwrap();
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        point_at(stt, &server)
    });
    let text = run.error_text();
    assert!(text.contains("model overloaded, try later"), "{text}");
    let details = run.errors[0].2.as_ref().unwrap();
    assert_eq!(
        details.get::<String>("server-error").unwrap(),
        "model overloaded, try later"
    );
}

#[test]
fn unsupported_response_format_is_refused_before_connecting() {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property("response-format", "json");
    });
    let text = run.error_text();
    assert!(
        text.contains("response-format") && text.contains("verbose_json"),
        "{text}"
    );
    assert!(server.connections().is_empty());
}

#[test]
fn unknown_language_lists_the_supported_codes() {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property("language-code", "tlh");
    });
    let text = run.error_text();
    assert!(
        text.contains("language-code 'tlh'") && text.contains("zh-hant"),
        "{text}"
    );
}

#[test]
fn plain_ws_to_a_remote_host_is_refused() {
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        stt.set_property("base-url", "ws://transcribe.example.com/v1");
        stt.set_property("api-key", TEST_KEY);
    });
    assert!(
        run.error_text().contains("allow-insecure-ws"),
        "{}",
        run.error_text()
    );
}

#[test]
fn malformed_and_binary_server_messages_are_warnings_not_crashes() {
    let audio = synthesize_utterances(&["one two", "three"]).unwrap();
    let server = TestServer::start(
        ServerConfig::default()
            .with_fault(0, Fault::MalformedJsonAfterBytes { bytes: 3200 })
            .with_fault(0, Fault::BinaryFrameAfterBytes { bytes: 6400 }),
    )
    .unwrap();
    let run = run_audio(&audio.samples, &Feed::default(), |stt| {
        point_at(stt, &server)
    });
    assert!(run.errors.is_empty(), "{}", run.error_text());
    assert_eq!(run.finals(), ["one two", "three"]);
    assert!(
        run.warnings.iter().any(|w| w.0.contains("malformed")),
        "{:?}",
        run.warnings
    );
    assert!(
        run.warnings.iter().any(|w| w.0.contains("binary")),
        "{:?}",
        run.warnings
    );
}

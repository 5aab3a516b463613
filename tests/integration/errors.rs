// SPDX-License-Identifier: MPL-2.0
//! Bad input gets a clear error and never a hang: each case checks the ERROR a user would
//! read, and that the key never shows up in it.

use std::time::Duration;

use crate::common::*;
use gst::prelude::*;

fn short_audio() -> SynthAudio {
    synthesize_utterances(&["hello"]).unwrap()
}

fn assert_no_key(run: &Run) {
    let all = format!("{run:?}");
    assert!(!all.contains(TEST_KEY), "the API key leaked: {all}");
}

in_both_dialects! {
    fn missing_api_key_names_the_property_and_the_variable(dialect: Dialect) {
        if std::env::var_os("FIREWORKS_API_KEY").is_some() {
            eprintln!("skipped: FIREWORKS_API_KEY is set in this environment");
            return;
        }
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect)).unwrap();
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
}

in_both_dialects! {
    fn rejected_key_says_so_with_the_status(dialect: Dialect) {
        for status in [401u16, 403] {
            let server = TestServer::start(ServerConfig::default().with_dialect(dialect).with_fault(
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
}

in_both_dialects! {
    fn a_wrong_key_is_refused_by_the_server(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect).with_api_key("the-right-key")).unwrap();
        let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
            point_at(stt, &server)
        });
        assert!(
            run.error_text().contains("rejected the API key (HTTP 401)"),
            "{}",
            run.error_text()
        );
    }
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

in_both_dialects! {
    fn upgrade_that_never_answers_times_out(dialect: Dialect) {
        let server =
            TestServer::start(ServerConfig::default().with_dialect(dialect).with_fault(0, Fault::NoUpgradeResponse)).unwrap();
        let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
            point_at(stt, &server);
            stt.set_property("connect-timeout", 300u32);
            stt.set_property("max-retries", 0u32);
        });
        let text = run.error_text();
        assert!(text.contains("within 300 ms (connect-timeout)"), "{text}");
        assert!(run.elapsed < Duration::from_secs(5));
    }
}

in_both_dialects! {
    fn server_error_message_is_an_error_with_its_text(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect).with_fault(
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
        // The v2 error object's code is in the details; v1 errors have none.
        let code = details.get::<String>("server-error-code").ok();
        match dialect {
            Dialect::V1 => assert_eq!(code, None),
            Dialect::V2 => assert_eq!(code.as_deref(), Some("server_error")),
        }
    }
}

#[test]
fn a_spend_cap_is_named_and_not_retried() {
    let server = TestServer::start(ServerConfig::default().with_fault(
        0,
        Fault::RejectUpgrade {
            status: 402,
            body: r#"{"error":"spend limit reached"}"#.into(),
        },
    ))
    .unwrap();
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        point_at(stt, &server)
    });
    assert_eq!(run.errors.len(), 1, "{run:#?}");
    let text = run.error_text();
    assert!(
        text.contains("budget or spend cap") && text.contains("HTTP 402"),
        "{text}"
    );
    let details = run.errors[0].2.as_ref().expect("details");
    assert_eq!(details.get::<String>("kind").unwrap(), "budget-exceeded");
    assert_eq!(details.get::<u32>("http-status").unwrap(), 402);
    assert_eq!(server.connections().len(), 1, "a spend cap is not retried");
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    assert_no_key(&run);
}

fn rate_limited(connections: std::ops::Range<usize>) -> ServerConfig {
    connections.fold(ServerConfig::default(), |config, index| {
        config.with_fault(
            index,
            Fault::RejectUpgrade {
                status: 429,
                body: "Too Many Requests".into(),
            },
        )
    })
}

#[test]
fn a_rate_limit_is_retried_with_growing_pauses_then_named() {
    let server = TestServer::start(rate_limited(0..3)).unwrap();
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property("max-retries", 2u32);
        stt.set_property("retry-interval", 150u32);
    });
    let records = server.connections();
    assert_eq!(
        records.len(),
        3,
        "the first attempt and max-retries retries"
    );
    // Each pause is at least retry-interval, then twice it (a sleep never ends early).
    let pauses: Vec<Duration> = records
        .windows(2)
        .map(|w| w[1].started.duration_since(w[0].started))
        .collect();
    assert!(
        pauses[0] >= Duration::from_millis(150) && pauses[1] >= Duration::from_millis(300),
        "{pauses:?}"
    );
    assert_eq!(run.warnings.len(), 2, "{:?}", run.warnings);
    for (text, _, _) in &run.warnings {
        assert!(text.contains("rate limit"), "{text}");
    }
    let text = run.error_text();
    assert!(
        text.contains("Giving up after 2 retries")
            && text.contains("rate limit")
            && text.contains("HTTP 429"),
        "{text}"
    );
    let details = run.errors[0].2.as_ref().expect("details");
    assert_eq!(details.get::<String>("kind").unwrap(), "rate-limited");
}

#[test]
fn a_rate_limit_that_passes_loses_nothing() {
    let server = TestServer::start(rate_limited(0..2)).unwrap();
    let run = run_audio(&short_audio().samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property("retry-interval", 100u32);
    });
    assert!(run.errors.is_empty(), "{}", run.error_text());
    assert_eq!(run.finals(), ["hello"]);
    assert_eq!(server.connections().len(), 3);
}

in_both_dialects! {
    fn unsupported_response_format_is_refused_before_connecting(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect)).unwrap();
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
}

in_both_dialects! {
    fn unknown_language_lists_the_supported_codes(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect)).unwrap();
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

in_both_dialects! {
    fn malformed_and_binary_server_messages_are_warnings_not_crashes(dialect: Dialect) {
        let audio = synthesize_utterances(&["one two", "three"]).unwrap();
        let server = TestServer::start(
            ServerConfig::default().with_dialect(dialect)
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
}

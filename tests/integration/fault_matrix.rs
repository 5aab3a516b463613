// SPDX-License-Identifier: MPL-2.0
//! Never lose a word: the same multi-utterance audio under each fault the service or the
//! network can throw. Where recovery is possible the final transcripts and word times must
//! equal the fault-free run (0 words lost, 0 finals repeated); otherwise an ERROR must name
//! the cause within a bound. EOS or ERROR is always reached.
//!
//! `cargo test --test integration fault_matrix:: -- --nocapture` prints the matrix with timings.

use std::sync::OnceLock;
use std::time::Duration;

use crate::common::*;
use gst::prelude::*;

const UTTERANCES: [&str; 5] = [
    "alpha bravo charlie",
    "delta echo",
    "foxtrot golf hotel india",
    "juliet kilo",
    "lima mike november oscar papa",
];

fn audio() -> &'static SynthAudio {
    static AUDIO: OnceLock<SynthAudio> = OnceLock::new();
    AUDIO.get_or_init(|| synthesize_utterances(&UTTERANCES).unwrap())
}

fn configure(stt: &gst::Element, server: &TestServer) {
    point_at(stt, server);
    stt.set_property("stall-timeout", 900u32);
    stt.set_property("connect-timeout", 500u32);
    stt.set_property("retry-interval", 200u32);
}

fn run_with(config: ServerConfig) -> (Run, TestServer) {
    let server = TestServer::start(config).unwrap();
    let run = run_audio(&audio().samples, &Feed::default(), |stt| {
        configure(stt, &server)
    });
    (run, server)
}

fn baseline() -> &'static Vec<(String, u64, u64)> {
    static BASELINE: OnceLock<Vec<(String, u64, u64)>> = OnceLock::new();
    BASELINE.get_or_init(|| {
        let (run, _server) = run_with(ServerConfig::default());
        assert!(run.errors.is_empty(), "{}", run.error_text());
        assert_eq!(run.finals(), UTTERANCES);
        run.texts()
    })
}

fn report(fault: &str, outcome: &str, run: &Run) {
    println!("| {fault} | {outcome} | {} ms |", run.elapsed.as_millis());
}

/// The recovered run says exactly what the fault-free run said, at the same times.
fn assert_recovered(fault: &str, run: &Run, server: &TestServer) {
    assert!(run.errors.is_empty(), "{fault}: {}", run.error_text());
    assert!(run.got_eos, "{fault}: no EOS");
    assert_eq!(run.finals(), UTTERANCES, "{fault}: finals differ");
    let words = run.texts();
    let base = baseline();
    assert_eq!(words.len(), base.len(), "{fault}: {words:?}");
    for (got, want) in words.iter().zip(base) {
        assert_eq!(got.0, want.0, "{fault}");
        assert!(
            got.1.abs_diff(want.1) <= 10 * MS,
            "{fault}: {} at {} was {}",
            got.0,
            got.1,
            want.1
        );
    }
    report(
        fault,
        &format!(
            "recovered, {} connections, 0 lost, 0 repeated",
            server.connections().len()
        ),
        run,
    );
}

in_both_dialects! {
    fn drops_at_ten_points_lose_and_repeat_nothing(dialect: Dialect) {
        baseline();
        let total = audio().samples.len() as u64 * 2;
        for k in 1..=10u64 {
            let bytes = total * k / 11;
            let (run, server) =
                run_with(ServerConfig::default().with_dialect(dialect).with_fault(0, Fault::DropAfterBytes { bytes }));
            assert_recovered(
                &format!("TCP drop after {bytes} bytes ({k}/11)"),
                &run,
                &server,
            );
            assert!(server.connections().len() >= 2);
            assert!(
                run.warnings.iter().any(|w| w.0.contains("Reconnecting")),
                "a reconnect is a WARNING: {:?}",
                run.warnings
            );
        }
    }
}

in_both_dialects! {
    fn close_frames_mid_stream_are_recovered(dialect: Dialect) {
        baseline();
        let bytes = audio().samples.len() as u64;
        for code in [1000u16, 1001, 1011] {
            let (run, server) = run_with(ServerConfig::default().with_dialect(dialect).with_fault(
                0,
                Fault::CloseAfterBytes {
                    bytes,
                    code,
                    reason: "test close".into(),
                },
            ));
            assert_recovered(&format!("close {code} mid-stream"), &run, &server);
            let warning = run
                .warnings
                .iter()
                .find(|w| w.0.contains("Reconnecting"))
                .unwrap();
            let details = warning.2.as_ref().unwrap();
            assert_eq!(details.get::<u32>("close-code").unwrap(), u32::from(code));
            assert_eq!(details.get::<u32>("attempt").unwrap(), 1);
        }
    }
}

in_both_dialects! {
    fn transient_upgrade_rejections_are_retried(dialect: Dialect) {
        baseline();
        for status in [429u16, 500, 503] {
            let (run, server) = run_with(ServerConfig::default().with_dialect(dialect).with_fault(
                0,
                Fault::RejectUpgrade {
                    status,
                    body: "busy".into(),
                },
            ));
            assert_recovered(&format!("HTTP {status} at upgrade"), &run, &server);
        }
    }
}

in_both_dialects! {
    fn rejected_keys_fail_at_once(dialect: Dialect) {
        for status in [401u16, 403] {
            let (run, server) = run_with(ServerConfig::default().with_dialect(dialect).with_fault(
                0,
                Fault::RejectUpgrade {
                    status,
                    body: "no".into(),
                },
            ));
            assert!(
                run.error_text().contains("rejected the API key"),
                "{}",
                run.error_text()
            );
            assert_eq!(server.connections().len(), 1, "no retry storm");
            assert!(run.elapsed < Duration::from_secs(3));
            report(
                &format!("HTTP {status} at upgrade"),
                "ERROR: key rejected, not retried",
                &run,
            );
        }
    }
}

in_both_dialects! {
    fn upgrade_never_answered_is_retried_after_connect_timeout(dialect: Dialect) {
        baseline();
        let (run, server) = run_with(ServerConfig::default().with_dialect(dialect).with_fault(0, Fault::NoUpgradeResponse));
        assert_recovered("upgrade never answered", &run, &server);
    }
}

in_both_dialects! {
    fn stalled_server_is_detected_and_replaced(dialect: Dialect) {
        baseline();
        let bytes = audio().samples.len() as u64;
        let (run, server) =
            run_with(ServerConfig::default().with_dialect(dialect).with_fault(0, Fault::StallAfterBytes { bytes }));
        assert_recovered("server stalls mid-stream", &run, &server);
        assert!(
            run.warnings
                .iter()
                .any(|w| w.0.contains("stopped answering")),
            "{:?}",
            run.warnings
        );
    }
}

in_both_dialects! {
    fn garbage_from_the_server_is_skipped(dialect: Dialect) {
        baseline();
        let bytes = audio().samples.len() as u64;
        let (run, server) =
            run_with(ServerConfig::default().with_dialect(dialect).with_fault(0, Fault::MalformedJsonAfterBytes { bytes }));
        assert_recovered("malformed JSON", &run, &server);
        assert_eq!(server.connections().len(), 1);
        let (run, server) =
            run_with(ServerConfig::default().with_dialect(dialect).with_fault(0, Fault::BinaryFrameAfterBytes { bytes }));
        assert_recovered("binary frame from server", &run, &server);
        assert_eq!(server.connections().len(), 1);
    }
}

in_both_dialects! {
    fn oversized_message_costs_a_reconnect_not_a_word(dialect: Dialect) {
        baseline();
        let bytes = audio().samples.len() as u64;
        let (run, server) = run_with(ServerConfig::default().with_dialect(dialect).with_fault(
            0,
            Fault::OversizedTextAfterBytes {
                bytes,
                size: 6 * 1024 * 1024,
            },
        ));
        assert_recovered("6 MiB text message", &run, &server);
    }
}

in_both_dialects! {
    fn server_error_message_is_an_error(dialect: Dialect) {
        let bytes = audio().samples.len() as u64;
        let (run, _server) = run_with(ServerConfig::default().with_dialect(dialect).with_fault(
            0,
            Fault::ErrorAfterBytes {
                bytes,
                message: "internal failure".into(),
                close_code: Some(1011),
            },
        ));
        assert!(
            run.error_text().contains("internal failure"),
            "{}",
            run.error_text()
        );
        assert!(run.elapsed < Duration::from_secs(3));
        report(
            "{\"error\": …} in-band",
            "ERROR with the server's text",
            &run,
        );
    }
}

in_both_dialects! {
    fn giving_up_is_an_error_naming_the_cause(dialect: Dialect) {
        // Every connection drops: the retries run out and the ERROR says why.
        let mut config = ServerConfig::default().with_dialect(dialect);
        for connection in 0..5 {
            config = config.with_fault(connection, Fault::DropAfterBytes { bytes: 16_000 });
        }
        let server = TestServer::start(config).unwrap();
        let run = run_audio(&audio().samples, &Feed::default(), |stt| {
            configure(stt, &server);
            stt.set_property("max-retries", 2u32);
        });
        let text = run.error_text();
        assert!(text.contains("Giving up after 2 retries"), "{text}");
        assert_eq!(server.connections().len(), 3);
        assert!(run.elapsed < Duration::from_secs(5));
        report(
            "every connection drops (max-retries=2)",
            "ERROR: giving up, with the cause",
            &run,
        );
    }
}

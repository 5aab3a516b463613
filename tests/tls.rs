//! TLS: certificates are always verified, and `tls-ca-file` (PEM) adds a private CA. Each case
//! runs the element against a `wss://localhost` test server whose certificates are made at test
//! time by a self-signed CA.

mod common;
#[path = "common/tls.rs"]
mod tls;

use std::time::Duration;

use common::*;
use fireworks_test_server::{ConnectionEnd, ConnectionRecord};
use gst::prelude::*;
use tls::{localhost_pki, temp_file, TestCa};

/// A TLS failure must not take longer than this (no retries, no waiting on timeouts).
const PROMPT: Duration = Duration::from_secs(5);

fn assert_no_key(run: &Run) {
    let all = format!("{run:?}");
    assert!(!all.contains(TEST_KEY), "the API key leaked: {all}");
}

fn error_kind(run: &Run) -> String {
    let details = run.errors[0].2.as_ref().expect("error details");
    details.get::<String>("kind").unwrap()
}

fn reconnect_warnings(run: &Run) -> usize {
    run.warnings
        .iter()
        .filter(|w| w.0.contains("(retry "))
        .count()
}

/// The one connection the server saw ended in a failed TLS handshake, before any HTTP.
fn assert_single_failed_handshake(server: &TestServer) -> ConnectionRecord {
    assert!(
        server.wait_until_closed(0, PROMPT),
        "{:#?}",
        server.connections()
    );
    let conns = server.connections();
    assert_eq!(
        conns.len(),
        1,
        "a certificate error is not retried: {conns:#?}"
    );
    let c = conns.into_iter().next().unwrap();
    match &c.end {
        Some(ConnectionEnd::HandshakeFailed { reason }) => {
            assert!(reason.starts_with("TLS handshake failed"), "{reason}")
        }
        other => panic!("expected a failed TLS handshake, got {other:?}"),
    }
    assert_eq!(c.upgrade_status, None, "no HTTP request was sent");
    assert_eq!(
        (c.audio_bytes, c.text_frames.len()),
        (0, 0),
        "no data was sent"
    );
    c
}

#[test]
fn a_private_ca_in_tls_ca_file_lets_wss_work() {
    let (ca, identity) = localhost_pki();
    let server = TestServer::start_tls(ServerConfig::default(), identity).unwrap();
    assert!(server.base_url().starts_with("wss://localhost:"));
    let ca_file = temp_file("ca.pem", &ca.pem());
    let spoken = ["hello world", "how are you"];
    let audio = synthesize_utterances(&spoken).unwrap();
    let run = run_audio(&audio.samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property("tls-ca-file", ca_file.to_str().unwrap());
    });
    assert!(run.errors.is_empty(), "{}", run.error_text());
    assert!(run.got_eos);
    assert_eq!(run.finals(), spoken);
    let conns = server.connections();
    assert_eq!(conns.len(), 1, "{conns:#?}");
    assert_eq!(conns[0].upgrade_status, Some(101));
    assert_eq!(conns[0].audio_bytes, audio.samples.len() as u64 * 2);
    let server_finals: Vec<&str> = conns[0].finals.iter().map(|f| f.text.as_str()).collect();
    assert_eq!(server_finals, spoken);
    let _ = std::fs::remove_file(ca_file);
}

#[test]
fn a_ca_bundle_with_several_certificates_is_accepted() {
    let (ca, identity) = localhost_pki();
    let server = TestServer::start_tls(ServerConfig::default(), identity).unwrap();
    let other = TestCa::new("unrelated CA");
    let bundle = temp_file("bundle.pem", &format!("{}{}", other.pem(), ca.pem()));
    let audio = synthesize_utterances(&["ok"]).unwrap();
    let run = run_audio(&audio.samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property("tls-ca-file", bundle.to_str().unwrap());
    });
    assert!(run.errors.is_empty(), "{}", run.error_text());
    assert_eq!(run.finals(), ["ok"]);
    let _ = std::fs::remove_file(bundle);
}

#[test]
fn an_untrusted_certificate_is_a_permanent_tls_error_naming_tls_ca_file() {
    let (_ca, identity) = localhost_pki();
    let server = TestServer::start_tls(ServerConfig::default(), identity).unwrap();
    let audio = synthesize_utterances(&["hello world"]).unwrap();
    let run = run_audio(&audio.samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        // Retries would be quick, so any retry would show.
        stt.set_property("max-retries", 3u32);
        stt.set_property("retry-interval", 50u32);
    });
    assert_eq!(run.errors.len(), 1, "{run:#?}");
    let text = run.error_text();
    assert!(text.contains("TLS"), "{text}");
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("tls-ca-file"), "{text}");
    assert!(
        text.contains(&format!("localhost:{}", server.addr().port())),
        "{text}"
    );
    assert_eq!(error_kind(&run), "tls");
    assert_eq!(reconnect_warnings(&run), 0, "{:#?}", run.warnings);
    assert!(run.finals().is_empty());
    assert!(
        run.elapsed < PROMPT,
        "took {:?} to fail, expected well under {PROMPT:?}",
        run.elapsed
    );
    assert_single_failed_handshake(&server);
    assert_no_key(&run);
}

#[test]
fn a_certificate_for_another_host_is_refused_even_from_a_trusted_ca() {
    let ca = TestCa::new("fireworksstt test CA");
    let server =
        TestServer::start_tls(ServerConfig::default(), ca.issue(&["example.org"])).unwrap();
    let ca_file = temp_file("ca.pem", &ca.pem());
    let audio = synthesize_utterances(&["hello world"]).unwrap();
    let run = run_audio(&audio.samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property("tls-ca-file", ca_file.to_str().unwrap());
        stt.set_property("retry-interval", 50u32);
    });
    assert_eq!(run.errors.len(), 1, "{run:#?}");
    let text = run.error_text();
    assert!(text.contains("TLS"), "{text}");
    assert!(text.contains("not valid for name"), "{text}");
    assert!(
        text.contains("does not match the host of base-url"),
        "{text}"
    );
    assert!(
        !text.contains("tls-ca-file"),
        "tls-ca-file cannot fix a name mismatch: {text}"
    );
    assert_eq!(error_kind(&run), "tls");
    assert_eq!(reconnect_warnings(&run), 0, "{:#?}", run.warnings);
    assert!(run.elapsed < PROMPT, "took {:?}", run.elapsed);
    assert_single_failed_handshake(&server);
    assert_no_key(&run);
    let _ = std::fs::remove_file(ca_file);
}

#[test]
fn an_unusable_tls_ca_file_is_a_clear_settings_error() {
    let (ca, identity) = localhost_pki();
    let server = TestServer::start_tls(ServerConfig::default(), identity.clone()).unwrap();
    let missing = std::env::temp_dir().join(format!("fw-no-such-ca-{}.pem", std::process::id()));
    let cases = [
        (missing, "cannot read"),
        (
            temp_file("not-pem.txt", "this is not a certificate\n"),
            "no CERTIFICATE",
        ),
        // PEM, but only a private key.
        (temp_file("key.pem", &identity.key_pem), "no CERTIFICATE"),
        (
            temp_file(
                "broken.pem",
                "-----BEGIN CERTIFICATE-----\n@@@ not base64 @@@\n-----END CERTIFICATE-----\n",
            ),
            "invalid PEM",
        ),
        // Well-formed PEM whose content is not a certificate.
        (
            temp_file(
                "garbage.pem",
                "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
            ),
            "unusable certificate",
        ),
    ];
    let audio = synthesize_utterances(&["hello"]).unwrap();
    for (path, expect) in &cases {
        let run = run_audio(&audio.samples, &Feed::default(), |stt| {
            point_at(stt, &server);
            stt.set_property("tls-ca-file", path.to_str().unwrap());
        });
        assert_eq!(run.errors.len(), 1, "{}: {run:#?}", path.display());
        let text = run.error_text();
        assert!(text.contains("tls-ca-file"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains(expect), "expected {expect:?} in: {text}");
        assert_eq!(error_kind(&run), "settings");
        assert!(run.elapsed < PROMPT, "took {:?}", run.elapsed);
        assert_no_key(&run);
    }
    assert!(
        server.connections().is_empty(),
        "no connection with an unusable CA file: {:#?}",
        server.connections()
    );
    for (path, _) in cases {
        let _ = std::fs::remove_file(path);
    }
    drop(ca);
}

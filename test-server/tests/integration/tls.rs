// SPDX-License-Identifier: MPL-2.0
//! The server over TLS (`wss://`), driven by a tokio-rustls + tokio-tungstenite client, with
//! certificates made at test time.

#[path = "../../../tests/integration/common/tls.rs"]
mod pki;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fireworks_test_server::{
    synthesize_utterances, ConnectionEnd, Fault, ServerConfig, TestServer, STREAMING_PATH,
};
use futures_util::{SinkExt, StreamExt};
use pki::{localhost_pki, TestCa};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

const T: Duration = Duration::from_secs(5);

type TlsWs = WebSocketStream<TlsStream<TcpStream>>;

/// A rustls client trusting only `ca_pem`.
fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// TLS to `server` as "localhost", trusting `ca_pem`, then the WebSocket upgrade to `url`.
async fn connect_url(server: &TestServer, ca_pem: &str, url: &str) -> Result<TlsWs, String> {
    let tcp = TcpStream::connect(server.addr())
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(
        T,
        tokio_rustls::TlsConnector::from(client_config(ca_pem)).connect(name, tcp),
    )
    .await
    .expect("TLS handshake timed out")
    .map_err(|e| format!("tls: {e}"))?;
    let (ws, _) = tokio::time::timeout(T, tokio_tungstenite::client_async(url, tls))
        .await
        .expect("upgrade timed out")
        .map_err(|e| match e {
            tungstenite::Error::Http(r) => format!("http {}", r.status().as_u16()),
            e => format!("ws: {e}"),
        })?;
    Ok(ws)
}

async fn connect(server: &TestServer, ca_pem: &str) -> Result<TlsWs, String> {
    connect_url(server, ca_pem, &server.streaming_url()).await
}

/// Texts received until the echo of checkpoint `id` (or the end).
async fn texts_until_echo(ws: &mut TlsWs, id: &str) -> Vec<String> {
    let echo = format!(r#"{{"checkpoint_id":"{id}"}}"#);
    let mut texts = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(T, ws.next()).await {
        if let Message::Text(t) = m {
            let t = t.as_str().to_string();
            let done = t == echo;
            texts.push(t);
            if done {
                break;
            }
        }
    }
    texts
}

fn handshake_failure(server: &TestServer, index: usize) -> String {
    assert!(
        server.wait_until_closed(index, T),
        "{:#?}",
        server.connections()
    );
    match server.connection(index).unwrap().end {
        Some(ConnectionEnd::HandshakeFailed { reason }) => reason,
        other => panic!("expected a failed handshake, got {other:?}"),
    }
}

#[tokio::test]
async fn wss_round_trip_with_a_trusted_ca() {
    let (ca, identity) = localhost_pki();
    let server = TestServer::start_tls(ServerConfig::default(), identity).unwrap();
    let port = server.addr().port();
    assert!(server.is_tls());
    assert_eq!(server.base_url(), format!("wss://localhost:{port}/v1"));
    assert_eq!(
        server.streaming_url(),
        format!("wss://localhost:{port}{STREAMING_PATH}")
    );

    let mut ws = connect(&server, &ca.pem()).await.expect("wss connects");
    let audio = synthesize_utterances(&["hello world"]).unwrap();
    for chunk in audio.to_le_bytes().chunks(3200) {
        ws.send(Message::binary(chunk.to_vec())).await.unwrap();
    }
    ws.send(Message::text(r#"{"checkpoint_id":"end"}"#))
        .await
        .unwrap();
    let texts = texts_until_echo(&mut ws, "end").await;
    assert_eq!(
        texts.last().map(String::as_str),
        Some(r#"{"checkpoint_id":"end"}"#)
    );
    assert!(texts.iter().any(|t| t.contains(r#""text":"hello world""#)));

    let c = server.connection(0).unwrap();
    assert_eq!(c.path, STREAMING_PATH);
    assert_eq!(c.upgrade_status, Some(101));
    assert_eq!(c.audio_bytes, audio.to_le_bytes().len() as u64);
    assert_eq!(c.finals.len(), 1);
    assert_eq!(c.finals[0].text, "hello world");

    // Shutting down with the TLS connection open closes it (1001), promptly.
    let started = Instant::now();
    drop(server);
    assert!(started.elapsed() < Duration::from_secs(3));
    match tokio::time::timeout(T, ws.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_refusing_the_certificate_is_recorded_and_the_server_goes_on() {
    let (ca, identity) = localhost_pki();
    let server = TestServer::start(ServerConfig::default().with_tls(identity)).unwrap();
    let stranger = TestCa::new("some other CA");
    let err = connect(&server, &stranger.pem()).await.err().unwrap();
    assert!(err.starts_with("tls:"), "{err}");
    let reason = handshake_failure(&server, 0);
    assert!(reason.starts_with("TLS handshake failed"), "{reason}");
    let c = server.connection(0).unwrap();
    assert_eq!((c.path.as_str(), c.upgrade_status), ("", None));

    // The next, trusting client is served normally.
    let mut ws = connect(&server, &ca.pem()).await.expect("wss connects");
    ws.send(Message::text(r#"{"checkpoint_id":"x"}"#))
        .await
        .unwrap();
    assert_eq!(
        texts_until_echo(&mut ws, "x").await,
        vec![r#"{"checkpoint_id":"x"}"#.to_string()]
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_by_the_client() {
    let ca = TestCa::new("test CA");
    let server =
        TestServer::start_tls(ServerConfig::default(), ca.issue(&["example.org"])).unwrap();
    let err = connect(&server, &ca.pem()).await.err().unwrap();
    assert!(err.contains("not valid for name"), "{err}");
    let reason = handshake_failure(&server, 0);
    assert!(reason.starts_with("TLS handshake failed"), "{reason}");
    assert_eq!(server.connection(0).unwrap().audio_bytes, 0);
}

#[tokio::test]
async fn a_plain_websocket_client_fails_the_tls_handshake() {
    let (_ca, identity) = localhost_pki();
    let server = TestServer::start_tls(ServerConfig::default(), identity).unwrap();
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let url = format!("ws://localhost:{}{STREAMING_PATH}", server.addr().port());
    let result = tokio::time::timeout(T, tokio_tungstenite::client_async(url, tcp))
        .await
        .expect("the server answers (by hanging up), it does not hang");
    assert!(result.is_err());
    let reason = handshake_failure(&server, 0);
    assert!(reason.starts_with("TLS handshake failed"), "{reason}");
}

#[tokio::test]
async fn a_silent_client_times_out_without_holding_up_others() {
    let (ca, identity) = localhost_pki();
    let server = TestServer::start_tls(
        ServerConfig {
            handshake_timeout: Duration::from_millis(400),
            ..ServerConfig::default()
        },
        identity,
    )
    .unwrap();
    let silent = TcpStream::connect(server.addr()).await.unwrap();
    assert!(server.wait_for_connections(1, T));
    // While connection 0 sits in the TLS handshake, connection 1 is served.
    let mut ws = connect(&server, &ca.pem()).await.expect("wss connects");
    ws.send(Message::text(r#"{"checkpoint_id":"y"}"#))
        .await
        .unwrap();
    assert_eq!(texts_until_echo(&mut ws, "y").await.len(), 1);
    assert!(!server.connection(0).unwrap().is_closed());
    assert_eq!(handshake_failure(&server, 0), "TLS handshake timed out");
    drop(silent);
}

#[tokio::test]
async fn faults_apply_over_tls() {
    let (ca, identity) = localhost_pki();
    let server = TestServer::start_tls(
        ServerConfig::default()
            .with_api_key("k")
            .with_fault(
                1,
                Fault::CloseAfterBytes {
                    bytes: 0,
                    code: 1011,
                    reason: "boom".into(),
                },
            )
            .with_fault(2, Fault::DropAfterBytes { bytes: 0 }),
        identity,
    )
    .unwrap();
    // No key: refused with 401, over TLS.
    let err = connect(&server, &ca.pem()).await.err().unwrap();
    assert_eq!(err, "http 401");
    let keyed = format!("{}?Authorization=k", server.streaming_url());

    let mut ws = connect_url(&server, &ca.pem(), &keyed).await.unwrap();
    match tokio::time::timeout(T, ws.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!((u16::from(f.code), f.reason.as_str()), (1011, "boom"))
        }
        other => panic!("expected a 1011 close, got {other:?}"),
    }

    let mut ws = connect_url(&server, &ca.pem(), &keyed).await.unwrap();
    match tokio::time::timeout(T, ws.next()).await.unwrap() {
        Some(Err(_)) | None => {}
        other => panic!("expected the connection to drop, got {other:?}"),
    }
    assert!(server.wait_until_closed(2, T));
    assert_eq!(
        server.connection(2).unwrap().end,
        Some(ConnectionEnd::ServerDropped)
    );
}

#[test]
fn unusable_identities_are_refused_at_start() {
    let (_ca, good) = localhost_pki();
    let cases = [
        (
            "not pem".to_string(),
            good.key_pem.clone(),
            "no CERTIFICATE",
        ),
        (
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".to_string(),
            good.key_pem.clone(),
            "certificate",
        ),
        (good.cert_chain_pem.clone(), "not a key".to_string(), "key"),
    ];
    for (cert, key, expect) in cases {
        let err = TestServer::start_tls(
            ServerConfig::default(),
            fireworks_test_server::TlsIdentity::new(cert, key),
        )
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains(expect), "{err}");
    }
    // The key stays out of debug output.
    assert!(!format!("{good:?}").contains("PRIVATE KEY"));
}

#[test]
fn binary_serves_wss_with_cert_files() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let (ca, identity) = localhost_pki();
    let cert = pki::temp_file("server.pem", &identity.cert_chain_pem);
    let key = pki::temp_file("server.key", &identity.key_pem);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fireworks-test-server"))
        .arg("--exit-on-stdin-eof")
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("fireworks test server listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .to_string();
    assert!(url.starts_with("wss://localhost:") && url.ends_with("/v1"));
    let port: u16 = url["wss://localhost:".len()..url.len() - 3]
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(client_config(&ca.pem()))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut ws, _) =
            tokio_tungstenite::client_async(format!("{url}/audio/transcriptions/streaming"), tls)
                .await
                .unwrap();
        ws.send(Message::text(r#"{"checkpoint_id":"cli"}"#))
            .await
            .unwrap();
        assert_eq!(texts_until_echo(&mut ws, "cli").await.len(), 1);
    });
    drop(child.stdin.take());
    let deadline = Instant::now() + T;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server binary did not exit after stdin closed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(cert);
    let _ = std::fs::remove_file(key);
}

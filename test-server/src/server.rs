// SPDX-License-Identifier: MPL-2.0
//! The WebSocket server: one thread, one current-thread tokio runtime, one task per connection.
//! Optionally TLS (`wss://`, [`ServerConfig::with_tls`]): each connection's TLS handshake runs in
//! its own task, before the WebSocket upgrade.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::config::{Fault, ServerConfig, TlsIdentity};
use crate::engine::{Behaviour, DecodeDone, Transcriber};
use crate::query::{check_auth, parse_options, parse_query, SessionOptions, STREAMING_PATH};
use crate::record::{CheckpointRecord, ConnectionEnd, ConnectionRecord, Recorder};
use crate::scheduler::{Pending, Scheduler};

/// How long `Drop` waits for the server thread before leaving it behind.
const DROP_JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `start` waits for the server thread to be ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// At shutdown, how long each connection waits for the client's answer to its 1001 close frame.
const SHUTDOWN_CLOSE_WAIT: Duration = Duration::from_millis(250);

/// A running test server. Dropping it stops accepting, closes every connection (code 1001) and
/// joins its thread (bounded).
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    tls: bool,
    recorder: Arc<Recorder>,
    shutdown: Option<watch::Sender<bool>>,
    done: Option<mpsc::Receiver<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 with an OS-chosen port.
    pub fn start(config: ServerConfig) -> std::io::Result<TestServer> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config)
    }

    /// Starts a `wss://` server on 127.0.0.1 with an OS-chosen port: `config` with
    /// [`ServerConfig::with_tls`]`(identity)`.
    pub fn start_tls(config: ServerConfig, identity: TlsIdentity) -> std::io::Result<TestServer> {
        Self::start(config.with_tls(identity))
    }

    /// Starts a server on `addr` (port 0 picks a free port). With [`ServerConfig::tls`] set, an
    /// unusable certificate or key is an `InvalidInput` error here.
    pub fn start_on(addr: SocketAddr, config: ServerConfig) -> std::io::Result<TestServer> {
        let acceptor = config.tls.as_ref().map(tls_acceptor).transpose()?;
        let tls = acceptor.is_some();
        let socket = bound_socket(addr, config.receive_buffer_bytes)?;
        let addr = socket.local_addr()?;
        let recorder = Arc::new(Recorder::default());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
        let (done_tx, done_rx) = mpsc::channel();
        let config = Arc::new(config);
        let rec = recorder.clone();
        // The runtime is created, used and dropped on the server thread only (dropping a runtime
        // inside a caller's async context would panic).
        let thread = std::thread::Builder::new()
            .name(format!("fw-test-server-{}", addr.port()))
            .spawn(move || {
                let started = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| {
                        let listener = {
                            let _guard = rt.enter();
                            socket.listen(LISTEN_BACKLOG)
                        };
                        listener.map(|l| (rt, l))
                    });
                match started {
                    Ok((runtime, listener)) => {
                        let _ = ready_tx.send(Ok(()));
                        runtime.block_on(serve(listener, acceptor, config, rec, shutdown_rx));
                        runtime.shutdown_timeout(Duration::from_millis(200));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
                let _ = done_tx.send(());
            })?;
        match ready_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(())) => Ok(TestServer {
                addr,
                tls,
                recorder,
                shutdown: Some(shutdown_tx),
                done: Some(done_rx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(std::io::Error::other(
                "the test server thread did not start in time",
            )),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the server speaks TLS (`wss://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The base URL clients are configured with: `ws://127.0.0.1:PORT/v1`, or with TLS
    /// `wss://localhost:PORT/v1` (a host name, so that certificate name checks apply; when
    /// bound to a non-loopback, specific address, that address).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.origin())
    }

    /// The full streaming URL (base URL plus `/audio/transcriptions/streaming`), no query.
    pub fn streaming_url(&self) -> String {
        format!("{}{}", self.origin(), STREAMING_PATH)
    }

    /// `scheme://host:port`.
    fn origin(&self) -> String {
        if !self.tls {
            return format!("ws://{}", self.addr);
        }
        let ip = self.addr.ip();
        if ip.is_loopback() || ip.is_unspecified() {
            format!("wss://localhost:{}", self.addr.port())
        } else {
            format!("wss://{}", self.addr)
        }
    }

    /// Records of all connections so far, in accept order.
    pub fn connections(&self) -> Vec<ConnectionRecord> {
        self.recorder.snapshot()
    }

    /// The record of one connection.
    pub fn connection(&self, index: usize) -> Option<ConnectionRecord> {
        self.recorder.get(index)
    }

    /// Number of TCP connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.recorder.len()
    }

    /// Waits until `cond` holds on the records, at most `timeout`; returns whether it holds.
    pub fn wait_for(
        &self,
        timeout: Duration,
        cond: impl FnMut(&[ConnectionRecord]) -> bool,
    ) -> bool {
        self.recorder.wait_for(timeout, cond)
    }

    /// Waits until at least `n` connections were accepted.
    pub fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        self.wait_for(timeout, |r| r.len() >= n)
    }

    /// Waits until connection `index` has ended.
    pub fn wait_until_closed(&self, index: usize, timeout: Duration) -> bool {
        self.wait_for(timeout, |r| r.get(index).is_some_and(|c| c.is_closed()))
    }

    /// Waits until connection `index` has received at least `bytes` bytes of audio.
    pub fn wait_for_audio_bytes(&self, index: usize, bytes: u64, timeout: Duration) -> bool {
        self.wait_for(timeout, |r| {
            r.get(index).is_some_and(|c| c.audio_bytes >= bytes)
        })
    }

    /// Waits until connection `index` has finalized at least `n` utterances.
    pub fn wait_for_finals(&self, index: usize, n: usize, timeout: Duration) -> bool {
        self.wait_for(timeout, |r| {
            r.get(index).is_some_and(|c| c.finals.len() >= n)
        })
    }

    /// Stops the server (same as dropping it).
    pub fn shutdown(self) {}
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        let finished = match self.done.take() {
            Some(done) => !matches!(
                done.recv_timeout(DROP_JOIN_TIMEOUT),
                Err(mpsc::RecvTimeoutError::Timeout)
            ),
            None => true,
        };
        if let Some(thread) = self.thread.take() {
            if finished {
                let _ = thread.join();
            }
        }
    }
}

const LISTEN_BACKLOG: u32 = 1024;

/// The listening socket, bound (it listens once the server's runtime runs). The connections it
/// accepts inherit its receive buffer size.
fn bound_socket(addr: SocketAddr, receive_buffer: Option<u32>) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    // As std's TcpListener::bind does: the port of a server just stopped can be bound again.
    socket.set_reuseaddr(true)?;
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.bind(addr)?;
    Ok(socket)
}

async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means shut down.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Builds the TLS acceptor (ring provider, TLS 1.2 and 1.3, no client certificates).
fn tls_acceptor(identity: &TlsIdentity) -> io::Result<TlsAcceptor> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(identity.cert_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(format!("TLS certificate chain: invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            "TLS certificate chain: no CERTIFICATE block found".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| invalid(format!("TLS private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS set-up: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(format!("TLS certificate or key unusable: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// One connection's byte stream: plain TCP, or TLS over TCP.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type Ws = WebSocketStream<Conn>;

async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    config: Arc<ServerConfig>,
    recorder: Arc<Recorder>,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown.clone();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = wait_shutdown(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let index = recorder.add(Some(peer));
                    tasks.spawn(handle_connection(
                        stream,
                        acceptor.clone(),
                        index,
                        config.clone(),
                        recorder.clone(),
                        shutdown.clone(),
                    ));
                }
                // E.g. out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let grace = config.close_timeout.min(SHUTDOWN_CLOSE_WAIT) + Duration::from_millis(500);
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    for index in 0..recorder.len() {
        recorder.finish(index, ConnectionEnd::Shutdown);
    }
}

/// What the callback decided about the upgrade request.
type Decision = Result<SessionOptions, (u16, String)>;

fn error_response(status: u16, body: String) -> ErrorResponse {
    let status = http::StatusCode::from_u16(status)
        .ok()
        .filter(|s| s.as_u16() >= 300)
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if body.starts_with('{') {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let len = body.len();
    let mut resp = http::Response::new(Some(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    resp
}

/// Inspects and records the upgrade request; decides whether to accept it.
fn inspect_request(
    req: &Request,
    config: &ServerConfig,
    reject: Option<(u16, String)>,
    recorder: &Recorder,
    index: usize,
) -> Decision {
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().map(str::to_string);
    let query = parse_query(raw_query.as_deref());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let auth_header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let auth_query = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.clone());

    let decision = if let Some(r) = reject {
        Err(r)
    } else if path != STREAMING_PATH {
        let body = format!("not found: {path}");
        Err((404, config.dialect.error_json(&body, "not_found")))
    } else if !check_auth(
        config.api_key.as_deref(),
        auth_header.as_deref(),
        auth_query.as_deref(),
    ) {
        let body = config
            .dialect
            .error_json("invalid or missing API key", "unauthorized");
        Err((401, body))
    } else {
        parse_options(&query).map_err(|m| (400, config.dialect.error_json(&m, "invalid_request")))
    };

    recorder.update(index, |r| {
        r.path = path;
        r.raw_query = raw_query;
        r.query = query;
        r.headers = headers;
        r.authorization_header = auth_header;
        r.authorization_query = auth_query;
        match &decision {
            Ok(o) => {
                r.upgrade_status = Some(101);
                r.unknown_query_keys = o.unknown_keys.clone();
            }
            Err((status, _)) => r.upgrade_status = Some(*status),
        }
    });
    decision
}

// The handshake callback's error type is tungstenite's `ErrorResponse`, large by design.
#[allow(clippy::result_large_err)]
async fn handle_connection(
    stream: TcpStream,
    acceptor: Option<TlsAcceptor>,
    index: usize,
    config: Arc<ServerConfig>,
    recorder: Arc<Recorder>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let faults = config.faults_for(index);
    if faults.contains(&Fault::NoUpgradeResponse) {
        recorder.update(index, |r| {
            r.faults_fired
                .push(format!("{:?}", Fault::NoUpgradeResponse))
        });
        wait_shutdown(&mut shutdown).await;
        drop(stream);
        recorder.finish(index, ConnectionEnd::Shutdown);
        return;
    }
    // One bound for the TLS handshake and the upgrade request together.
    let deadline = tokio::time::Instant::now() + config.handshake_timeout;
    let stream = match acceptor {
        None => Conn::Plain(stream),
        Some(acceptor) => {
            let accepted = tokio::select! {
                r = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => Some(r),
                _ = wait_shutdown(&mut shutdown) => None,
            };
            match accepted {
                None => {
                    recorder.finish(index, ConnectionEnd::Shutdown);
                    return;
                }
                Some(Err(_elapsed)) => {
                    recorder.finish(
                        index,
                        ConnectionEnd::HandshakeFailed {
                            reason: "TLS handshake timed out".into(),
                        },
                    );
                    return;
                }
                // E.g. the client refused our certificate (it sends an alert and hangs up), or
                // spoke plain HTTP to the TLS port.
                Some(Ok(Err(e))) => {
                    recorder.finish(
                        index,
                        ConnectionEnd::HandshakeFailed {
                            reason: format!("TLS handshake failed: {e}"),
                        },
                    );
                    return;
                }
                Some(Ok(Ok(tls))) => Conn::Tls(Box::new(tls)),
            }
        }
    };
    let reject = faults.iter().find_map(|f| match f {
        Fault::RejectUpgrade { status, body } => Some((*status, body.clone())),
        _ => None,
    });

    let mut decision: Option<Decision> = None;
    let handshake_result = {
        let decision = &mut decision;
        let config_ref = &*config;
        let rec_ref = &*recorder;
        let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            let d = inspect_request(req, config_ref, reject, rec_ref, index);
            let out = match &d {
                Ok(_) => Ok(resp),
                Err((status, body)) => Err(error_response(*status, body.clone())),
            };
            *decision = Some(d);
            out
        };
        let handshake = tokio_tungstenite::accept_hdr_async(stream, callback);
        tokio::select! {
            r = tokio::time::timeout_at(deadline, handshake) => Some(r),
            _ = wait_shutdown(&mut shutdown) => None,
        }
    };
    let mut ws = match handshake_result {
        None => {
            recorder.finish(index, ConnectionEnd::Shutdown);
            return;
        }
        Some(Err(_elapsed)) => {
            recorder.finish(
                index,
                ConnectionEnd::HandshakeFailed {
                    reason: "timed out waiting for the upgrade request".into(),
                },
            );
            return;
        }
        Some(Ok(Err(e))) => {
            let end = match decision {
                Some(Err((status, body))) => ConnectionEnd::Rejected { status, body },
                _ => ConnectionEnd::HandshakeFailed {
                    reason: e.to_string(),
                },
            };
            recorder.finish(index, end);
            return;
        }
        Some(Ok(Ok(ws))) => ws,
    };
    let options = match decision {
        Some(Ok(o)) => o,
        // Cannot happen: the callback ran and accepted. Be safe anyway.
        _ => SessionOptions::default(),
    };
    recorder.update(index, |r| r.upgraded = Some(Instant::now()));

    let mut session = Session {
        index,
        recorder: recorder.clone(),
        config: config.clone(),
        transcriber: Transcriber::new(&options, Behaviour::from(&*config)),
        pending_faults: faults
            .iter()
            .filter(|f| f.after_bytes().is_some())
            .cloned()
            .collect(),
        never_echo: faults.contains(&Fault::NeverEchoCheckpoint),
        out: Vec::new(),
        interim: None,
        speculative: None,
        deferred: Default::default(),
        audio_bytes: 0,
    };
    let outcome = tokio::select! {
        o = session.run(&mut ws) => o,
        _ = wait_shutdown(&mut shutdown) => Outcome::Shutdown,
    };
    let end = match outcome {
        Outcome::Ended(end) => end,
        Outcome::Shutdown => {
            let wait = config.close_timeout.min(SHUTDOWN_CLOSE_WAIT);
            close_ws(&mut ws, 1001, "server shutting down", wait).await;
            ConnectionEnd::Shutdown
        }
        Outcome::Stall => {
            recorder.update(index, |r| r.stalled = true);
            wait_shutdown(&mut shutdown).await;
            ConnectionEnd::Shutdown
        }
        Outcome::Drop => {
            let _ = ws.get_ref().tcp().set_zero_linger();
            drop(ws);
            ConnectionEnd::ServerDropped
        }
    };
    if config.log_connections {
        eprintln!("{}", connection_log_line(index, &options, &session, &end));
    }
    recorder.finish(index, end);
}

/// The one line logged per connection: options, audio received, recogniser, finals, end.
fn connection_log_line(
    index: usize,
    options: &SessionOptions,
    session: &Session,
    end: &ConnectionEnd,
) -> String {
    let t = &session.transcriber;
    let stats = t.stats();
    let decoding = if stats.decodes > 0 {
        format!(
            " ({} decodes, {:.1} s decoding{})",
            stats.decodes,
            stats.decode_seconds,
            if stats.decode_errors > 0 {
                format!(", {} failed", stats.decode_errors)
            } else {
                String::new()
            }
        )
    } else {
        String::new()
    };
    let ended = match end {
        ConnectionEnd::ClientClosed { code, .. } => match code {
            Some(c) => format!("client closed ({c})"),
            None => "client closed".into(),
        },
        ConnectionEnd::ServerClosed { code, reason } => format!("server closed ({code} {reason})"),
        ConnectionEnd::ClientDropped { .. } => "client dropped the connection".into(),
        ConnectionEnd::ServerDropped => "server dropped the connection (fault)".into(),
        ConnectionEnd::Shutdown => "server shut down".into(),
        ConnectionEnd::Rejected { status, .. } => format!("rejected ({status})"),
        ConnectionEnd::HandshakeFailed { reason } => format!("handshake failed ({reason})"),
    };
    let vad = match (t.vad_label(), t.vad_unknown_keys()) {
        (label, []) => label.map(|l| format!("; vad: {l}")).unwrap_or_default(),
        (label, unknown) => format!(
            "; vad: {}, unknown vad_kwargs keys ignored: {}",
            label.unwrap_or("-"),
            unknown.join(", ")
        ),
    };
    format!(
        "fireworks test server: connection {index}: model={} language={} text_timeout_seconds={} \
         word_times={}; {:.2} s of audio; recogniser: {}{decoding}{vad}; {} finals, {} interims; \
         {ended}",
        options.model.as_deref().unwrap_or("-"),
        options.language.as_deref().unwrap_or("-"),
        options.text_timeout_seconds,
        options.word_timestamps,
        session.audio_bytes as f64 / 32000.0,
        t.recognizer_label(),
        t.finals_sent(),
        t.interims_sent(),
    )
}

enum Outcome {
    Ended(ConnectionEnd),
    Shutdown,
    Stall,
    Drop,
}

/// Cuts a close reason to the 123 bytes a close frame allows, at a character boundary.
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

/// Sends a close frame and waits (bounded) for the client's answer.
async fn close_ws(ws: &mut Ws, code: u16, reason: &str, timeout: Duration) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: close_reason(reason).into(),
    };
    let _ = tokio::time::timeout(timeout, async {
        if ws.close(Some(frame)).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

struct Session {
    index: usize,
    recorder: Arc<Recorder>,
    config: Arc<ServerConfig>,
    transcriber: Transcriber,
    pending_faults: Vec<Fault>,
    never_echo: bool,
    out: Vec<String>,
    /// The interim decode queued or in flight (at most one per connection).
    interim: Option<Pending>,
    /// The speculative final decode queued, in flight or done, with the key of the audio it
    /// decodes (see `Transcriber::speculative_job`).
    speculative: Option<((u64, u64, usize), Pending)>,
    /// Frames read while a final decode was awaited, to be handled in order after it (`None`:
    /// the client's side ended).
    deferred: std::collections::VecDeque<Option<WsResult<Message>>>,
    audio_bytes: u64,
}

type WsResult<T> = Result<T, tungstenite::Error>;

/// Most frames read ahead while a final decode is awaited (see `Session::await_decode`).
const MAX_DEFERRED: usize = 4096;

fn dropped(e: tungstenite::Error) -> Outcome {
    Outcome::Ended(ConnectionEnd::ClientDropped {
        error: Some(e.to_string()),
    })
}

impl Session {
    async fn run(&mut self, ws: &mut Ws) -> Outcome {
        if let Some(o) = self.fire_faults(ws, 0).await {
            return o;
        }
        let mut audio_bytes = 0u64;
        loop {
            if let Some(o) = self.run_decodes(ws).await {
                return o;
            }
            let in_flight = self.interim.is_some();
            let interim = self.interim.as_mut();
            let next = if let Some(deferred) = self.deferred.pop_front() {
                Ok(deferred)
            } else {
                tokio::select! {
                m = ws.next() => Ok(m),
                done = async move {
                    match interim {
                        Some(h) => h.await,
                        None => std::future::pending().await,
                    }
                }, if in_flight => Err(done),
                }
            };
            let msg = match next {
                Err(done) => {
                    self.interim = None;
                    if let Ok(done) = done {
                        if let Err(e) = self.apply_decode(ws, done).await {
                            return dropped(e);
                        }
                    }
                    continue;
                }
                Ok(None) => return Outcome::Ended(ConnectionEnd::ClientDropped { error: None }),
                Ok(Some(Err(e))) => return dropped(e),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Binary(data) => {
                    audio_bytes += data.len() as u64;
                    self.audio_bytes = audio_bytes;
                    let mut out = std::mem::take(&mut self.out);
                    self.transcriber.on_audio(&data, &mut out);
                    let record_audio = self.config.record_audio;
                    let finals = self.transcriber.take_finals();
                    self.recorder.update(self.index, |r| {
                        let now = Instant::now();
                        r.audio_bytes += data.len() as u64;
                        r.audio_frames += 1;
                        if record_audio {
                            r.audio.extend_from_slice(&data);
                        }
                        r.first_audio_at.get_or_insert(now);
                        r.last_audio_at = Some(now);
                        r.finals.extend(finals);
                    });
                    let sent = self.send_transcripts(ws, &mut out).await;
                    self.out = out;
                    if let Err(e) = sent {
                        return dropped(e);
                    }
                    if let Some(o) = self.fire_faults(ws, audio_bytes).await {
                        return o;
                    }
                }
                Message::Text(text) => {
                    if let Some(o) = self.on_text(ws, text.as_str()).await {
                        return o;
                    }
                }
                Message::Close(frame) => {
                    let (code, reason) = match frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.as_str().to_string()),
                        None => (None, String::new()),
                    };
                    // Let tungstenite send the close reply, bounded.
                    let _ = tokio::time::timeout(self.config.close_timeout, async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                    return Outcome::Ended(ConnectionEnd::ClientClosed { code, reason });
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Runs the speech decodes that are due: every final decode, in order and awaited (an
    /// interim already decoded is sent first; one still queued or decoding is dropped, as the
    /// final replaces it), then queues the speculative final decode the detector offers and an
    /// interim decode if one is due and none is pending. Decodes run on the process-wide
    /// [`Scheduler`] (finals before interims), off the reactor. A protocol error from the engine
    /// (unsupported language) is sent and the connection closed.
    async fn run_decodes(&mut self, ws: &mut Ws) -> Option<Outcome> {
        if let Some(message) = self.transcriber.take_fatal() {
            let error = self
                .config
                .dialect
                .error_json(&message, "unsupported_language");
            if let Err(e) = self.send_control(ws, error).await {
                return Some(dropped(e));
            }
            close_ws(ws, 1003, "unsupported language", self.config.close_timeout).await;
            return Some(Outcome::Ended(ConnectionEnd::ServerClosed {
                code: 1003,
                reason: "unsupported language".into(),
            }));
        }
        while let Some(job) = self.transcriber.next_final_job() {
            if let Some(mut pending) = self.interim.take() {
                if let Ok(done) = pending.try_recv() {
                    if let Err(e) = self.apply_decode(ws, done).await {
                        return Some(dropped(e));
                    }
                }
            }
            // The speculative decode of this very audio if there is one; a speculation for
            // other audio (the voice came back) is dropped (not decoded if still queued, its
            // result never applied).
            let decode = match self.speculative.take() {
                Some((key, pending)) if key == job.key() => pending,
                _ => Scheduler::shared().submit(job),
            };
            if let Ok(done) = self.await_decode(ws, decode).await {
                if let Err(e) = self.apply_decode(ws, done).await {
                    return Some(dropped(e));
                }
            }
        }
        if let Some(job) = self.transcriber.speculative_job() {
            self.speculative = Some((job.key(), Scheduler::shared().submit(job)));
        }
        if self.interim.is_none() {
            if let Some(job) = self.transcriber.interim_job() {
                self.interim = Some(Scheduler::shared().submit(job));
            }
        }
        None
    }

    /// Waits for a final decode while still reading the connection, as the service does: pings
    /// are answered (tungstenite queues the pong as it reads the ping; the flush sends it), so a
    /// client's liveness check sees a live server however long the decode takes. Everything
    /// else read meanwhile is kept for the main loop, in order, up to [`MAX_DEFERRED`] frames
    /// (minutes of audio in the usual 20–100 ms frames); beyond that reading pauses until the
    /// decode is done, so a slow recogniser holds back the client (TCP flow control) instead of
    /// growing the server's memory without bound.
    async fn await_decode(
        &mut self,
        ws: &mut Ws,
        mut decode: Pending,
    ) -> Result<DecodeDone, tokio::sync::oneshot::error::RecvError> {
        let mut reading = !matches!(self.deferred.back(), Some(None | Some(Err(_))));
        loop {
            tokio::select! {
                done = &mut decode => return done,
                incoming = ws.next(), if reading && self.deferred.len() < MAX_DEFERRED => match incoming {
                    Some(Ok(Message::Ping(_))) => {
                        let _ = ws.flush().await;
                    }
                    Some(Ok(message)) => self.deferred.push_back(Some(Ok(message))),
                    ended => {
                        reading = false;
                        self.deferred.push_back(ended);
                    }
                },
            }
        }
    }

    /// Applies a finished decode and sends what it produced.
    async fn apply_decode(&mut self, ws: &mut Ws, done: DecodeDone) -> WsResult<()> {
        let mut out = std::mem::take(&mut self.out);
        self.transcriber.on_decoded(done, &mut out);
        let finals = self.transcriber.take_finals();
        if !finals.is_empty() {
            self.recorder
                .update(self.index, |r| r.finals.extend(finals));
        }
        let sent = self.send_transcripts(ws, &mut out).await;
        self.out = out;
        sent
    }

    /// Sends transcript messages (recording them first, so a test that received one finds it).
    async fn send_transcripts(&mut self, ws: &mut Ws, out: &mut Vec<String>) -> WsResult<()> {
        if out.is_empty() {
            return Ok(());
        }
        let record = self.config.record_messages;
        let n = out.len() as u64;
        self.recorder.update(self.index, |r| {
            r.sent_text_count += n;
            r.sent_transcript_count += n;
            if record {
                r.sent_messages.extend(out.iter().cloned());
            }
        });
        for m in out.drain(..) {
            ws.feed(Message::text(m)).await?;
        }
        ws.flush().await
    }

    /// Sends one non-transcript text message.
    async fn send_control(&mut self, ws: &mut Ws, text: String) -> WsResult<()> {
        let record = self.config.record_messages;
        self.recorder.update(self.index, |r| {
            r.sent_text_count += 1;
            if record {
                r.sent_messages.push(text.clone());
            }
        });
        ws.send(Message::text(text)).await
    }

    async fn on_text(&mut self, ws: &mut Ws, text: &str) -> Option<Outcome> {
        self.recorder
            .update(self.index, |r| r.text_frames.push(text.to_string()));
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
            return None; // not JSON, or not an object: ignored
        };
        let id_text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        if let Some(id) = map.get("checkpoint_id") {
            let mut out = std::mem::take(&mut self.out);
            self.transcriber.on_checkpoint(&mut out);
            let finals = self.transcriber.take_finals();
            let echo = !self.never_echo;
            self.recorder.update(self.index, |r| {
                r.finals.extend(finals);
                r.checkpoints.push(CheckpointRecord {
                    id: id_text(Some(id)),
                    audio_bytes_before: r.audio_bytes,
                    at: Instant::now(),
                    echoed: echo,
                });
            });
            let sent = self.send_transcripts(ws, &mut out).await;
            self.out = out;
            if let Err(e) = sent {
                return Some(dropped(e));
            }
            // Speech: the utterance the checkpoint closed is decoded and sent before the echo.
            if let Some(o) = self.run_decodes(ws).await {
                return Some(o);
            }
            if echo {
                let reply = json!({ "checkpoint_id": id }).to_string();
                if let Err(e) = self.send_control(ws, reply).await {
                    return Some(dropped(e));
                }
                if self.config.close_after_echo {
                    close_ws(ws, 1000, "", self.config.close_timeout).await;
                    return Some(Outcome::Ended(ConnectionEnd::ServerClosed {
                        code: 1000,
                        reason: String::new(),
                    }));
                }
            }
            return None;
        }
        let event_id = map
            .get("event_id")
            .cloned()
            .unwrap_or_else(|| Value::String(format!("evt_{}", self.transcriber.position())));
        let reply = match map.get("object").and_then(Value::as_str) {
            Some("stt.input.trace") => {
                let trace_id = map.get("trace_id").cloned().unwrap_or(Value::Null);
                let t = id_text(Some(&trace_id));
                self.recorder.update(self.index, |r| r.trace_ids.push(t));
                json!({"event_id": event_id, "object": "stt.output.trace", "trace_id": trace_id})
            }
            Some("stt.state.clear") => {
                self.transcriber.on_clear();
                let reset_id = map.get("reset_id").cloned().unwrap_or(Value::Null);
                let t = id_text(Some(&reset_id));
                self.recorder.update(self.index, |r| r.clear_ids.push(t));
                json!({"event_id": event_id, "object": "stt.state.cleared", "reset_id": reset_id})
            }
            _ => return None,
        };
        if let Err(e) = self.send_control(ws, reply.to_string()).await {
            return Some(dropped(e));
        }
        None
    }

    /// Fires the faults whose byte threshold is reached.
    async fn fire_faults(&mut self, ws: &mut Ws, audio_bytes: u64) -> Option<Outcome> {
        let (due, rest): (Vec<Fault>, Vec<Fault>) = std::mem::take(&mut self.pending_faults)
            .into_iter()
            .partition(|f| f.after_bytes().is_some_and(|b| b <= audio_bytes));
        self.pending_faults = rest;
        for fault in due {
            let label = match &fault {
                Fault::OversizedTextAfterBytes { bytes, size } => {
                    format!("OversizedTextAfterBytes {{ bytes: {bytes}, size: {size} }}")
                }
                f => format!("{f:?}"),
            };
            self.recorder
                .update(self.index, |r| r.faults_fired.push(label));
            let result: WsResult<()> = match fault {
                Fault::DropAfterBytes { .. } => return Some(Outcome::Drop),
                Fault::StallAfterBytes { .. } => return Some(Outcome::Stall),
                Fault::CloseAfterBytes { code, reason, .. } => {
                    close_ws(ws, code, &reason, self.config.close_timeout).await;
                    return Some(Outcome::Ended(ConnectionEnd::ServerClosed {
                        code,
                        reason: close_reason(&reason),
                    }));
                }
                Fault::ErrorAfterBytes {
                    message,
                    close_code,
                    ..
                } => {
                    let error = self.config.dialect.error_json(&message, "server_error");
                    if let Err(e) = self.send_control(ws, error).await {
                        return Some(dropped(e));
                    }
                    if let Some(code) = close_code {
                        close_ws(ws, code, &message, self.config.close_timeout).await;
                        return Some(Outcome::Ended(ConnectionEnd::ServerClosed {
                            code,
                            reason: close_reason(&message),
                        }));
                    }
                    Ok(())
                }
                Fault::MalformedJsonAfterBytes { .. } => {
                    self.send_control(
                        ws,
                        r#"{"task":"transcribe","segments":[{"id":0,"text":"trunc"#.to_string(),
                    )
                    .await
                }
                Fault::BinaryFrameAfterBytes { .. } => {
                    self.recorder
                        .update(self.index, |r| r.sent_binary_count += 1);
                    ws.send(Message::binary(vec![0xde, 0xad, 0xbe, 0xef])).await
                }
                Fault::OversizedTextAfterBytes { size, .. } => {
                    let text = oversized_text(size);
                    let n = text.len();
                    let record = self.config.record_messages;
                    self.recorder.update(self.index, |r| {
                        r.sent_text_count += 1;
                        if record {
                            r.sent_messages
                                .push(format!("<oversized text message of {n} bytes>"));
                        }
                    });
                    ws.send(Message::text(text)).await
                }
                Fault::FloodAfterBytes { messages, size, .. } => {
                    let text = oversized_text(size);
                    self.recorder.update(self.index, |r| {
                        r.sent_text_count += messages as u64;
                    });
                    let mut sent = Ok(());
                    for _ in 0..messages {
                        // Awaited one by one: nothing is read until the last is sent.
                        sent = ws.send(Message::text(text.clone())).await;
                        if sent.is_err() {
                            break;
                        }
                    }
                    sent
                }
                Fault::RejectUpgrade { .. }
                | Fault::NoUpgradeResponse
                | Fault::NeverEchoCheckpoint => Ok(()),
            };
            if let Err(e) = result {
                return Some(dropped(e));
            }
        }
        None
    }
}

/// A valid JSON object of exactly `size` bytes (at least the 15 bytes of `{"padding":""}`+1).
fn oversized_text(size: usize) -> String {
    const OVERHEAD: usize = r#"{"padding":""}"#.len();
    let pad = size.saturating_sub(OVERHEAD);
    let mut s = String::with_capacity(OVERHEAD + pad);
    s.push_str(r#"{"padding":""#);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str(r#""}"#);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_text_is_exact_json() {
        let t = oversized_text(1000);
        assert_eq!(t.len(), 1000);
        assert!(serde_json::from_str::<Value>(&t).is_ok());
        assert_eq!(oversized_text(3).len(), 14);
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        let long = "é".repeat(100);
        let r = close_reason(&long);
        assert!(r.len() <= 123 && r.len().is_multiple_of(2));
        assert_eq!(close_reason("short"), "short");
    }

    #[test]
    fn error_response_sanitizes_status() {
        assert_eq!(error_response(429, "x".into()).status(), 429);
        assert_eq!(error_response(200, "x".into()).status(), 500);
        assert_eq!(error_response(1, "x".into()).status(), 500);
        let r = error_response(401, "{\"error\":\"no\"}".into());
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["content-length"], "14");
    }
}

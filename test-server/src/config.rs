// SPDX-License-Identifier: MPL-2.0
//! Server configuration: protocol switches, scenario switches and injected faults.

use std::path::Path;
use std::time::Duration;

/// The server's TLS identity: a PEM certificate chain (leaf first, then any intermediates) and
/// the matching PEM private key (PKCS#8, PKCS#1 or SEC1). With it set
/// ([`ServerConfig::with_tls`]) the server speaks `wss://` only.
///
/// Clients are told to connect to `wss://localhost:PORT/v1`, so the leaf certificate must name
/// `localhost` among its subject alternative names (and `127.0.0.1` too if clients use the
/// address).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    pub cert_chain_pem: String,
    pub key_pem: String,
}

impl TlsIdentity {
    pub fn new(cert_chain_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        TlsIdentity {
            cert_chain_pem: cert_chain_pem.into(),
            key_pem: key_pem.into(),
        }
    }

    /// Reads the certificate chain and the key from PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> std::io::Result<Self> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
            })
        };
        Ok(TlsIdentity {
            cert_chain_pem: read(cert)?,
            key_pem: read(key)?,
        })
    }
}

impl std::fmt::Debug for TlsIdentity {
    // The key stays out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field(
                "cert_chain_pem",
                &format!("<{} bytes>", self.cert_chain_pem.len()),
            )
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A fault injected into one connection (see [`ServerConfig::with_fault`]).
///
/// "After bytes" faults fire once the connection has received at least `bytes` bytes of audio,
/// after the binary frame that crossed the threshold has been decoded and its transcripts sent.
/// `bytes: 0` fires right after the WebSocket upgrade, before any audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Refuse the upgrade with this HTTP status (e.g. 401, 403, 429, 500, 503) and a short text body.
    RejectUpgrade { status: u16, body: String },
    /// Accept the TCP connection but never answer the upgrade request (held until shutdown).
    NoUpgradeResponse,
    /// Drop the TCP connection abruptly (RST, no close frame).
    DropAfterBytes { bytes: u64 },
    /// Send a close frame with this code and reason (reason cut to 123 bytes).
    CloseAfterBytes {
        bytes: u64,
        code: u16,
        reason: String,
    },
    /// Send `{"error": message}`; then, if `close_code` is set, close with that code (the reason is
    /// the message, cut to 123 bytes). Without a close code the session goes on normally.
    ErrorAfterBytes {
        bytes: u64,
        message: String,
        close_code: Option<u16>,
    },
    /// Send a text frame that is not valid JSON, then go on normally.
    MalformedJsonAfterBytes { bytes: u64 },
    /// Send a binary frame (`de ad be ef`), then go on normally.
    BinaryFrameAfterBytes { bytes: u64 },
    /// Send one text message of exactly `size` bytes (a valid JSON object `{"padding":"xx…"}`),
    /// then go on normally.
    OversizedTextAfterBytes { bytes: u64, size: usize },
    /// Send `messages` text messages of exactly `size` bytes each (valid JSON objects
    /// `{"padding":"xx…"}`, which clients ignore), awaiting each send and reading nothing
    /// meanwhile, then go on normally: as a service that awaits its own sends does when it has
    /// much to say. More than the socket buffers hold deadlocks a client that stops reading
    /// while its own write waits (docs/protocol.md, "Flow control").
    FloodAfterBytes {
        bytes: u64,
        messages: usize,
        size: usize,
    },
    /// Stop reading and writing, keeping the TCP connection open until the server shuts down.
    /// The client's writes eventually block once the socket buffers fill.
    StallAfterBytes { bytes: u64 },
    /// Process checkpoints (including finalizing) but never echo them (so `close_after_echo`
    /// never closes either).
    NeverEchoCheckpoint,
}

impl Fault {
    /// The audio byte threshold of an "after bytes" fault.
    pub fn after_bytes(&self) -> Option<u64> {
        match self {
            Fault::DropAfterBytes { bytes }
            | Fault::CloseAfterBytes { bytes, .. }
            | Fault::ErrorAfterBytes { bytes, .. }
            | Fault::MalformedJsonAfterBytes { bytes }
            | Fault::BinaryFrameAfterBytes { bytes }
            | Fault::OversizedTextAfterBytes { bytes, .. }
            | Fault::FloodAfterBytes { bytes, .. }
            | Fault::StallAfterBytes { bytes } => Some(*bytes),
            Fault::RejectUpgrade { .. } | Fault::NoUpgradeResponse | Fault::NeverEchoCheckpoint => {
                None
            }
        }
    }
}

/// The message shapes the server speaks (docs/protocol.md#dialects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// The documented schema: integer segment ids, `{"error": "text"}`.
    #[default]
    V1,
    /// What clients of the v2 endpoint model: segment ids as strings (`"0"`), errors as objects
    /// `{"error": {"message": "text", "code": "…"}}`, and fields clients must ignore (`seek` and
    /// `language` on segments, `duration` on messages).
    V2,
}

impl Dialect {
    pub const ALL: [Dialect; 2] = [Dialect::V1, Dialect::V2];

    /// `{"error": …}` in this dialect. `code` is a short machine-readable name, sent in v2 only.
    pub fn error_json(self, message: &str, code: &str) -> String {
        match self {
            Dialect::V1 => serde_json::json!({ "error": message }),
            Dialect::V2 => serde_json::json!({ "error": {"message": message, "code": code} }),
        }
        .to_string()
    }
}

/// Configuration of a [`TestServer`](crate::TestServer).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Required API key (raw or `Bearer`, header or `Authorization` query parameter). `None`
    /// accepts any key, or none.
    pub api_key: Option<String>,
    /// Close with code 1000 right after echoing a checkpoint.
    pub close_after_echo: bool,
    /// Finalize the open utterance when a checkpoint arrives (before echoing it).
    pub finalize_on_checkpoint: bool,
    /// A new segment starts every this many words of an utterance (0 is treated as 1).
    pub max_words_per_segment: usize,
    /// Also send an interim when a word has two letters, revised by the next message.
    pub revise_partial_words: bool,
    /// Scenario (TV3): speech after a final continues under the same segment id.
    pub grow_finalized_segment: bool,
    /// Scenario (TV5): when a segment gets its second word, first send a message that puts that
    /// word in a new trailing segment, then one that merges it back (the highest id goes down).
    pub retract_trailing_segment: bool,
    /// Scenario (TV12): send segment ids as strings (`"0"`), as the v2 dialect does.
    pub send_string_ids: bool,
    /// The message shapes spoken on every connection; [`Dialect::V2`] implies string ids.
    pub dialect: Dialect,
    /// Say which language the text is in (`language` on messages and words); off, the
    /// messages carry no language at all, as a service that does not report one.
    pub report_language: bool,
    /// Faults: (connection index, fault). Connection indexes count accepted TCP connections from 0.
    pub faults: Vec<(usize, Fault)>,
    /// Keep the received audio bytes in the records (turn off for long runs).
    pub record_audio: bool,
    /// Keep the text of sent messages in the records (counts are always kept).
    pub record_messages: bool,
    /// Bound on receiving the HTTP upgrade request (with TLS: on the TLS handshake and the
    /// upgrade request together).
    pub handshake_timeout: Duration,
    /// Bound on each close handshake (server- or client-initiated). At shutdown each connection
    /// waits at most 250 ms for the client's answer to its 1001 close frame.
    pub close_timeout: Duration,
    /// Serve `wss://` with this identity (TLS before the WebSocket upgrade); `None` (the
    /// default) serves plain `ws://`.
    pub tls: Option<TlsIdentity>,
    /// Print one line per connection on stderr when it ends: options, seconds of audio
    /// received, recogniser, finals and interims sent, how it ended (default on).
    pub log_connections: bool,
    /// Ask the kernel for a receive buffer (SO_RCVBUF) of about this many bytes on every
    /// connection instead of its self-tuning one: audio the server has not read then stays
    /// with the client, whose writes wait as soon as the server stops reading (see
    /// [`Fault::FloodAfterBytes`]).
    pub receive_buffer_bytes: Option<u32>,
    /// Every speech decode (interim or final) takes this much longer, as on a machine too
    /// slow for the recogniser: the decode worker holds its job this long after decoding.
    /// Zero (the default) adds nothing; tone-coded test audio is never delayed.
    pub decode_delay: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_key: None,
            close_after_echo: false,
            finalize_on_checkpoint: true,
            max_words_per_segment: 6,
            revise_partial_words: true,
            grow_finalized_segment: false,
            retract_trailing_segment: false,
            send_string_ids: false,
            dialect: Dialect::V1,
            report_language: true,
            faults: Vec::new(),
            record_audio: true,
            record_messages: true,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(2),
            tls: None,
            log_connections: true,
            receive_buffer_bytes: None,
            decode_delay: Duration::ZERO,
        }
    }
}

impl ServerConfig {
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }
    /// Injects `fault` into connection `connection` (0 = the first TCP connection accepted).
    pub fn with_fault(mut self, connection: usize, fault: Fault) -> Self {
        self.faults.push((connection, fault));
        self
    }
    pub fn with_receive_buffer(mut self, bytes: u32) -> Self {
        self.receive_buffer_bytes = Some(bytes);
        self
    }

    pub fn with_log_connections(mut self, on: bool) -> Self {
        self.log_connections = on;
        self
    }
    pub fn with_close_after_echo(mut self, on: bool) -> Self {
        self.close_after_echo = on;
        self
    }
    pub fn with_finalize_on_checkpoint(mut self, on: bool) -> Self {
        self.finalize_on_checkpoint = on;
        self
    }
    pub fn with_max_words_per_segment(mut self, n: usize) -> Self {
        self.max_words_per_segment = n;
        self
    }
    pub fn with_revise_partial_words(mut self, on: bool) -> Self {
        self.revise_partial_words = on;
        self
    }
    pub fn with_grow_finalized_segment(mut self, on: bool) -> Self {
        self.grow_finalized_segment = on;
        self
    }
    pub fn with_retract_trailing_segment(mut self, on: bool) -> Self {
        self.retract_trailing_segment = on;
        self
    }
    pub fn with_string_ids(mut self, on: bool) -> Self {
        self.send_string_ids = on;
        self
    }
    pub fn with_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }
    pub fn with_report_language(mut self, on: bool) -> Self {
        self.report_language = on;
        self
    }
    /// Serves `wss://` with `identity` instead of plain `ws://`.
    pub fn with_tls(mut self, identity: TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }
    /// See [`ServerConfig::decode_delay`].
    pub fn with_decode_delay(mut self, delay: Duration) -> Self {
        self.decode_delay = delay;
        self
    }

    pub fn with_recording(mut self, audio: bool, messages: bool) -> Self {
        self.record_audio = audio;
        self.record_messages = messages;
        self
    }

    /// The faults that apply to connection `index`.
    pub fn faults_for(&self, index: usize) -> Vec<Fault> {
        self.faults
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

/// A comparison switch: a behaviour that is on unless the environment variable `name` is `0`
/// (benchmarks turn it off to measure it against the default).
pub(crate) fn switched_on(name: &str) -> bool {
    std::env::var(name).map_or(true, |v| v != "0")
}

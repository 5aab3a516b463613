use std::time::Duration;

/// A word with its times mapped into the element's stream: nanoseconds of audio counted from
/// the first sample the element received (not yet a PTS; the element maps it).
#[derive(Debug, Clone, PartialEq)]
pub struct TimedWord {
    pub text: String,
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub probability: Option<f64>,
    pub is_final: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimedTranscript {
    pub utterance: u64,
    pub text: String,
    pub is_final: bool,
    /// Set on a final that the element made from pending interim text at end of stream.
    pub promoted: bool,
    pub language: Option<String>,
    pub words: Vec<TimedWord>,
    pub start: Option<u64>,
    pub end: Option<u64>,
    /// Wall-clock time from sending the audio of the transcript's first word to receiving
    /// the transcript: how late its earliest word arrives.
    pub delay: Option<Duration>,
}

/// What kind of thing went wrong: decides retry and the GStreamer error domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Upgrade refused with 401/403.
    AuthRejected,
    /// Upgrade refused with another HTTP status.
    HandshakeRejected,
    ConnectTimeout,
    Network,
    Tls,
    /// The service sent `{"error": …}`.
    ServerError,
    /// Close frame or transport error while streaming.
    ConnectionLost,
    /// Nothing received within the stall bound.
    Stalled,
    /// A message that could not be understood.
    Protocol,
    /// The request could not even be built (bad key characters, TLS set-up).
    Config,
    /// Audio could not be kept for replay or queued in time and was dropped.
    AudioDropped,
    /// End of stream did not complete within `drain-timeout`.
    DrainTimeout,
}

/// A warning or error with a text a user can act on, and the details an application can read.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    pub debug: String,
    pub http_status: Option<u16>,
    pub close_code: Option<u16>,
    pub server_error: Option<String>,
    pub attempt: Option<u32>,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>, debug: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            debug: debug.into(),
            http_status: None,
            close_code: None,
            server_error: None,
            attempt: None,
        }
    }

    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = Some(attempt);
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// A WebSocket session is open (`attempt` 0 is the first connection of the stream).
    Connected {
        attempt: u32,
    },
    SpeechStarted {
        utterance: u64,
    },
    Transcript(TimedTranscript),
    SpeechEnded {
        utterance: u64,
    },
    /// Audio sent to the service since the last report, and since the stream began.
    Usage {
        since_last: Duration,
        total: Duration,
    },
    /// Something recoverable happened (a reconnect, a malformed message that was skipped).
    Warning(Failure),
    /// The session cannot continue. No further events follow except possibly usage.
    Error(Failure),
}

/// Where the client delivers its events. Called from the network task the moment a server
/// message is parsed, so implementations must be quick and must not block.
pub trait EventSink: Send + Sync + 'static {
    fn on_event(&self, event: ClientEvent);
}

// SPDX-License-Identifier: MPL-2.0
use std::time::Duration;

/// A word with its times mapped into the element's stream: nanoseconds of audio counted from
/// the first sample the element received (not yet a PTS; the element maps it).
#[derive(Debug, Clone, PartialEq)]
pub struct TimedWord {
    pub text: String,
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub probability: Option<f64>,
    pub hallucination_score: Option<f64>,
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
    /// Upgrade refused with 402: the account's budget or spend cap is reached.
    BudgetExceeded,
    /// Upgrade refused with 429: the account's rate limit (requests or concurrent streams).
    RateLimited,
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
    /// What the service said in an `{"error": …}` message (boxed: rare, and it keeps
    /// `Result<_, Failure>` small).
    pub server_error: Option<Box<ServerErrorReport>>,
    pub attempt: Option<u32>,
    /// On an error: how much of the audio received was never covered by a final transcript
    /// (from the end of the last final word to the end of the audio handed to the client).
    pub untranscribed: Option<Duration>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// An `{"error": …}` message from the service (docs/protocol.md#dialects).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerErrorReport {
    pub message: String,
    /// The `code` of an error object (`{"error": {"message": …, "code": …}}`, the v2 shape).
    pub code: Option<String>,
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
            untranscribed: None,
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
    /// A step in the session's network life, for the debug log only: nothing to act on.
    Step(Step),
}

/// The steps of a session's network life (connect, retry, ping, stall, checkpoint, switch,
/// drain). Cheap to build; the text is only formatted when a log wants it.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `attempt` counts every connection attempt of the stream from 0, failed ones included.
    Connecting {
        attempt: u32,
        host: String,
    },
    /// Connected; `replay` of audio not yet covered by a final goes out again first.
    Connected {
        attempt: u32,
        replay: Duration,
    },
    ConnectFailed {
        attempt: u32,
        reason: String,
    },
    /// The next attempt starts after `delay`.
    RetryIn {
        delay: Duration,
    },
    PingSent,
    /// The end-of-stream checkpoint went out; `quiet` without any frame counts as dead.
    DrainCheckpointSent {
        quiet: Duration,
    },
    /// The service echoed the end-of-stream checkpoint.
    DrainConfirmed,
    /// The service closed normally during the drain; the unconfirmed audio is replayed once.
    DrainClosedUnconfirmed,
    /// New options: a checkpoint finishes the current connection's audio at `at`.
    SwitchCheckpointSent {
        at: Duration,
    },
    SwitchDone,
    /// Nothing from the service (not even a pong) for `after`.
    Silent {
        after: Duration,
    },
    /// Non-live audio held back by the full replay log flows again (no transcript for a
    /// while, or no final for `stall-timeout`) until the next final.
    HoldLifted,
    Closed,
}

impl Step {
    /// Pings are routine and frequent: worth a log line only at the most detailed level.
    pub fn is_routine(&self) -> bool {
        matches!(self, Step::PingSent)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: &Duration| d.as_millis();
        match self {
            Step::Connecting { attempt, host } => {
                write!(f, "connecting to {host} (attempt {attempt})")
            }
            Step::Connected { attempt, replay } => write!(
                f,
                "connected (attempt {attempt}); sending first the {} ms of audio no final covers yet",
                ms(replay)
            ),
            Step::ConnectFailed { attempt, reason } => {
                write!(f, "attempt {attempt} failed: {reason}")
            }
            Step::RetryIn { delay } => write!(f, "next attempt in {} ms", ms(delay)),
            Step::PingSent => write!(f, "ping sent"),
            Step::DrainCheckpointSent { quiet } => write!(
                f,
                "end-of-stream checkpoint sent; silent for {} ms counts as dead",
                ms(quiet)
            ),
            Step::DrainConfirmed => write!(f, "end-of-stream checkpoint echoed: drain complete"),
            Step::DrainClosedUnconfirmed => write!(
                f,
                "closed during the drain without the echo: replaying on a new connection"
            ),
            Step::SwitchCheckpointSent { at } => write!(
                f,
                "options changed: checkpoint sent, audio from {} ms on waits for the next \
                 connection",
                ms(at)
            ),
            Step::SwitchDone => write!(f, "old connection finished: switching options"),
            Step::Silent { after } => {
                write!(f, "nothing received for {} ms: connection dead", ms(after))
            }
            Step::HoldLifted => write!(
                f,
                "replay log full and the service is not finalising: sending on, the oldest \
                 audio is no longer kept for a replay"
            ),
            Step::Closed => write!(f, "connection closed"),
        }
    }
}

/// How end of stream went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// The service echoed the end-of-stream checkpoint or closed the connection.
    Completed,
    /// `drain-timeout` passed on a connection that was answering (a silent one is replaced
    /// and the audio replayed instead); unfinished text, if any, was delivered as final.
    TimedOut,
    /// The session failed: its error, with the audio never transcribed, was reported.
    Failed,
}

/// Where the client delivers its events. Called from the network task the moment a server
/// message is parsed, so implementations must be quick and must not block.
pub trait EventSink: Send + Sync + 'static {
    fn on_event(&self, event: ClientEvent);
}

// SPDX-License-Identifier: MPL-2.0
//! The network client: one Fireworks streaming session per GStreamer stream.
//!
//! Tokio and tokio-tungstenite live here; GStreamer does not. The element talks to this room
//! through [`StreamClient`] (audio in, drain, abort) and receives everything that happens as
//! [`ClientEvent`]s through an [`EventSink`] it provides.

mod audio_log;
mod backoff;
mod config;
mod connect;
mod duplex;
mod events;
mod handle;
mod runtime;
mod secret;
mod supervisor;
mod tls;

pub use backoff::{longest_pauses, longest_retry_pauses};
pub use config::ClientConfig;
pub use events::{
    ClientEvent, DrainOutcome, EventSink, Failure, FailureKind, Step, TimedTranscript, TimedWord,
};
pub use handle::{PushError, Refill, SessionAbort, StreamClient};
pub use runtime::runtime;
pub use secret::ApiKey;
pub use supervisor::MAX_WRITE_STALL_TIMEOUTS;
pub use tls::TlsSettings;

/// The only audio format the service accepts: S16LE, 16 kHz, mono.
pub const SAMPLE_RATE: u64 = 16_000;
pub const BYTES_PER_SAMPLE: u64 = 2;

/// Nanoseconds of audio covered by `samples` samples.
pub fn samples_to_ns(samples: u64) -> u64 {
    samples.saturating_mul(1_000_000_000) / SAMPLE_RATE
}

/// Samples covered by `seconds` of audio (negative or non-finite → 0).
pub fn seconds_to_samples(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * SAMPLE_RATE as f64).round() as u64
    } else {
        0
    }
}

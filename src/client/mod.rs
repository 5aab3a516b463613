// SPDX-License-Identifier: MPL-2.0
//! The network client: one Fireworks streaming session per GStreamer stream.
//!
//! Tokio and tokio-tungstenite live here; GStreamer does not. The element talks to this room
//! through [`StreamClient`] (audio in, drain, abort) and receives everything that happens as
//! [`ClientEvent`]s through an [`EventSink`] it provides.

mod audio_log;
mod audio_units;
mod backoff;
mod config;
mod connect;
mod connection;
mod duplex;
mod events;
mod handle;
mod liveness;
mod runtime;
mod secret;
mod supervisor;
mod tls;

pub use audio_units::{
    bytes_to_ns, duration_to_bytes, duration_to_samples, samples_to_ns, seconds_to_samples,
    BYTES_PER_SAMPLE, SAMPLE_RATE,
};
pub use backoff::{longest_pauses, longest_retry_pauses};
pub use config::{defaults, ClientConfig};
pub use events::{
    ClientEvent, DrainOutcome, EventSink, Failure, FailureKind, Step, TimedTranscript, TimedWord,
};
pub use handle::{PushError, Refill, SessionAbort, StreamClient};
pub use runtime::runtime;
pub use secret::ApiKey;
pub use supervisor::MAX_WRITE_STALL_TIMEOUTS;
pub use tls::TlsSettings;

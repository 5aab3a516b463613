// SPDX-License-Identifier: MPL-2.0
//! The element messages and error details posted on the bus. The field names here are the
//! interface applications read; the README documents them one by one.

use gst::glib;

use crate::client::{Failure, FailureKind, TimedTranscript};

pub const TRANSCRIPT: &str = "fireworksstt/transcript";
pub const SPEECH_STARTED: &str = "fireworksstt/speech-started";
pub const SPEECH_ENDED: &str = "fireworksstt/speech-ended";
pub const USAGE: &str = "fireworksstt/usage";
pub const ERROR_DETAILS: &str = "fireworksstt/error-details";
pub const EXCESSIVE_DELAY: &str = "fireworksstt/excessive-delay";

/// `to_stream_time` maps an audio position (ns of audio received) to stream time.
pub fn transcript(
    t: &TimedTranscript,
    to_stream_time: impl Fn(u64) -> Option<gst::ClockTime>,
    arrival_time: Option<gst::ClockTime>,
) -> gst::Structure {
    let words = gst::List::new(t.words.iter().map(|w| {
        let mut word = gst::Structure::builder("word")
            .field("text", &w.text)
            .field("final", w.is_final);
        if let Some(start) = w.start.and_then(&to_stream_time) {
            word = word.field("start", start);
        }
        if let Some(end) = w.end.and_then(&to_stream_time) {
            word = word.field("end", end);
        }
        if let Some(p) = w.probability {
            word = word.field("probability", p);
        }
        // Moved into the list, not copied.
        word.build()
    }));
    let mut s = gst::Structure::builder(TRANSCRIPT)
        .field("text", &t.text)
        .field("final", t.is_final)
        .field("utterance", t.utterance)
        .field("promoted", t.promoted)
        .field("words", words);
    if let Some(language) = &t.language {
        s = s.field("language", language);
    }
    if let Some(start) = t.start.and_then(&to_stream_time) {
        s = s.field("start", start);
    }
    if let Some(end) = t.end.and_then(&to_stream_time) {
        s = s.field("end", end);
    }
    if let Some(arrival) = arrival_time {
        s = s.field("arrival-time", arrival);
    }
    s.build()
}

/// `end-to-final` (gint64 nanoseconds) on a final transcript: its arrival running time less the
/// running time of its last word's end — how long after the end of speech the final came. It is
/// negative when the words lie ahead of the pipeline clock (input pushed faster than real time).
pub fn set_end_to_final(
    structure: &mut gst::Structure,
    end_running_time: gst::ClockTime,
    arrival: gst::ClockTime,
) {
    let nanos = |t: gst::ClockTime| i64::try_from(t.nseconds()).unwrap_or(i64::MAX);
    structure.set(
        "end-to-final",
        nanos(arrival).saturating_sub(nanos(end_running_time)),
    );
}

pub fn speech_boundary(
    name: &str,
    utterance: u64,
    arrival_time: Option<gst::ClockTime>,
) -> gst::Structure {
    let mut s = gst::Structure::builder(name).field("utterance", utterance);
    if let Some(arrival) = arrival_time {
        s = s.field("arrival-time", arrival);
    }
    s.build()
}

pub fn usage(since_last: std::time::Duration, total: std::time::Duration) -> gst::Structure {
    gst::Structure::builder(USAGE)
        .field(
            "audio-duration",
            gst::ClockTime::from_nseconds(since_last.as_nanos() as u64),
        )
        .field(
            "total-audio-duration",
            gst::ClockTime::from_nseconds(total.as_nanos() as u64),
        )
        .build()
}

fn kind_name(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::AuthRejected => "auth-rejected",
        FailureKind::BudgetExceeded => "budget-exceeded",
        FailureKind::RateLimited => "rate-limited",
        FailureKind::HandshakeRejected => "handshake-rejected",
        FailureKind::ConnectTimeout => "connect-timeout",
        FailureKind::Network => "network",
        FailureKind::Tls => "tls",
        FailureKind::ServerError => "server-error",
        FailureKind::ConnectionLost => "connection-lost",
        FailureKind::Stalled => "stalled",
        FailureKind::Protocol => "protocol",
        FailureKind::Config => "settings",
        FailureKind::AudioDropped => "audio-dropped",
        FailureKind::DrainTimeout => "drain-timeout",
    }
}

pub fn failure_details(failure: &Failure) -> gst::Structure {
    let mut s = gst::Structure::builder(ERROR_DETAILS).field("kind", kind_name(failure.kind));
    if let Some(status) = failure.http_status {
        s = s.field("http-status", u32::from(status));
    }
    if let Some(code) = failure.close_code {
        s = s.field("close-code", u32::from(code));
    }
    if let Some(report) = &failure.server_error {
        s = s.field("server-error", &report.message);
        if let Some(code) = &report.code {
            s = s.field("server-error-code", code);
        }
    }
    if let Some(attempt) = failure.attempt {
        s = s.field("attempt", attempt);
    }
    if let Some(lost) = failure.untranscribed {
        s = s.field(
            "untranscribed-audio",
            gst::ClockTime::from_nseconds(lost.as_nanos() as u64),
        );
    }
    s.build()
}

/// The GStreamer error domain and code that fit a failure.
pub fn failure_error(failure: &Failure) -> glib::Error {
    let message = failure.message.as_str();
    match failure.kind {
        FailureKind::AuthRejected | FailureKind::BudgetExceeded => {
            glib::Error::new(gst::ResourceError::NotAuthorized, message)
        }
        FailureKind::HandshakeRejected
        | FailureKind::RateLimited
        | FailureKind::ConnectTimeout
        | FailureKind::Network
        | FailureKind::Tls
        | FailureKind::ConnectionLost
        | FailureKind::Stalled => glib::Error::new(gst::ResourceError::OpenReadWrite, message),
        FailureKind::DrainTimeout => glib::Error::new(gst::ResourceError::Read, message),
        FailureKind::ServerError => glib::Error::new(gst::LibraryError::Failed, message),
        FailureKind::Protocol => glib::Error::new(gst::StreamError::Decode, message),
        FailureKind::Config => glib::Error::new(gst::LibraryError::Settings, message),
        FailureKind::AudioDropped => glib::Error::new(gst::StreamError::Failed, message),
    }
}

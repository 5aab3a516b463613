// SPDX-License-Identifier: MPL-2.0
//! The element's state: everything one stream is made of, owned in one place (`FireworksStt::state`,
//! one mutex) and changed by the streaming thread, the network task (through
//! `network_events.rs`) and the src pad task. Data only; the threads' code is in `streaming.rs`,
//! `network_events.rs` and `src_task.rs`.

use crate::client::{SessionAbort, StreamClient, TimedTranscript};

use super::output_queue::Output;
use super::timeline::Timeline;

/// Run-time statistics, read through the `max-observed-delay` and `dropped-audio` properties.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Stats {
    pub max_observed_delay: gst::ClockTime,
    pub dropped_audio: gst::ClockTime,
}

/// Everything one stream's state is made of. One mutex guards it (`FireworksStt::state`);
/// the network side hands its events in through `network_events.rs`, the src pad task takes
/// its output from `output`.
#[derive(Default)]
pub(super) struct State {
    /// Bumped whenever a network session starts or the stream is reset: events of an older
    /// network session are recognised and dropped.
    pub serial: u64,
    /// The running network session. The streaming thread takes it out while it waits on it,
    /// so the mutex is never held across that wait; `active` says a session exists meanwhile.
    pub client: Option<StreamClient>,
    pub active: bool,
    /// Stops the running network session from any thread, even while it is taken out.
    pub abort: Option<SessionAbort>,
    /// The input segment, as received.
    pub segment: gst::FormattedSegment<gst::ClockTime>,
    pub timeline: Timeline,
    /// Audio position where the open utterance's text starts, while one is open.
    pub open_utterance_start: Option<gst::ClockTime>,
    /// The open utterance's latest interim: its words may have to go out before the final.
    pub open_interim: Option<TimedTranscript>,
    /// Changes with every new interim, so the output side knows when to look again.
    pub interim_serial: u64,
    /// A fatal error was posted: refuse further data until flushed or restarted.
    pub failed: bool,
    /// Set between FLUSH_START (or the way down to READY) and FLUSH_STOP (or the next start):
    /// a session ended on purpose is not an error, and every wait ends.
    pub flushing: bool,
    /// Upstream is live (from the LATENCY query).
    pub live: bool,
    /// The element is in PLAYING.
    pub playing: bool,
    /// Non-live audio sent since the element last left PLAYING (or started).
    pub sent_while_paused: gst::ClockTime,
    /// Bumped whenever a session property is set; `options_generation` is the value the
    /// running session was configured with.
    pub settings_generation: u64,
    pub options_generation: u64,
    pub stats: Stats,
    /// Audio dropped on its way to the service since the last flush or start (a flush makes
    /// earlier drops moot: that audio is not played any more).
    pub dropped_since_flush: gst::ClockTime,
    /// What waits for the src pad, and where its stream has got to.
    pub output: Output,
}

/// What a reset of the stream keeps of what waits for the src pad (and of the audio it
/// dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reset {
    /// A stop: nothing; the segment is forgotten too.
    Stop,
    /// A flush: the sticky events upstream will not send again (see `Output::after_flush`).
    Flush,
    /// A new segment after a drain: everything, since all of it was produced for the old
    /// segment and must go out before the new one (which is queued behind it).
    NewSegment,
}

impl State {
    /// Forgets the stream's network session and timeline, keeping the counters and flags
    /// that outlive it and, as `reset` says, the segment and the output.
    pub fn clear(&mut self, reset: Reset) {
        let segment = match reset {
            Reset::Stop => gst::FormattedSegment::new(),
            Reset::Flush | Reset::NewSegment => self.segment.clone(),
        };
        let dropped_since_flush = match reset {
            Reset::Stop | Reset::Flush => gst::ClockTime::ZERO,
            Reset::NewSegment => self.dropped_since_flush,
        };
        let output = match reset {
            Reset::Stop => Output::default(),
            Reset::Flush => self.output.after_flush(),
            Reset::NewSegment => self.output.for_new_segment(),
        };
        *self = State {
            serial: self.serial.wrapping_add(1),
            output,
            segment,
            flushing: self.flushing,
            live: self.live,
            playing: self.playing,
            settings_generation: self.settings_generation,
            stats: self.stats,
            dropped_since_flush,
            ..State::default()
        };
    }
}

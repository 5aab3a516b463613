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
    /// WARNINGs posted for dropped audio and for dropped text (see [`MAX_REPEATED_WARNINGS`]).
    pub dropped_audio_warnings: u32,
    pub dropped_text_warnings: u32,
}

/// The life of the stream's Fireworks session (the network client behind it).
#[derive(Default)]
pub(super) enum FireworksSession {
    /// None: the next buffer starts one.
    #[default]
    Idle,
    /// The streaming thread is starting one.
    Starting,
    /// Running. The streaming thread takes the client out while it waits on it (a push, the
    /// drain), so the mutex is never held across that wait; `abort` stops the session from any
    /// thread meanwhile.
    Running {
        client: Option<StreamClient>,
        abort: SessionAbort,
    },
}

impl FireworksSession {
    /// A session is starting or running (so a new segment must drain it first, and a GAP is
    /// sent to it as silence).
    pub fn is_active(&self) -> bool {
        !matches!(self, FireworksSession::Idle)
    }

    /// The client, for the streaming thread to wait on without the lock.
    pub fn take_client(&mut self) -> Option<StreamClient> {
        match self {
            FireworksSession::Running { client, .. } => client.take(),
            _ => None,
        }
    }

    /// The streaming thread is done waiting on `client`.
    pub fn put_client_back(&mut self, client: StreamClient) {
        if let FireworksSession::Running { client: slot, .. } = self {
            *slot = Some(client);
        }
    }

    /// Stops a running session at once, even while its client is taken out.
    pub fn abort(&self) {
        if let FireworksSession::Running { abort, .. } = self {
            abort.abort();
        }
    }
}

/// The utterance the service is still working on (it has sent interims, not the final).
pub(super) struct OpenUtterance {
    /// Audio position where its text starts, when the service gave times.
    pub start: Option<gst::ClockTime>,
    /// Its latest interim: its words may have to go out before the final (`early-words`).
    pub interim: TimedTranscript,
}

impl State {
    /// A new interim: it opens the utterance or replaces the previous interim.
    pub fn on_interim(&mut self, interim: TimedTranscript, start: Option<gst::ClockTime>) {
        self.interim_serial = self.interim_serial.wrapping_add(1);
        match &mut self.open_utterance {
            Some(open) => {
                open.start = open.start.or(start);
                open.interim = interim;
            }
            None => self.open_utterance = Some(OpenUtterance { start, interim }),
        }
    }
}

/// A WARNING that can repeat (dropped audio, dropped text) is posted this many times at most;
/// the last says that further ones are only logged, as the client does for protocol warnings.
/// The running totals stay readable (`dropped-audio`) and in the log.
pub(super) const MAX_REPEATED_WARNINGS: u32 = 5;

/// Counts one more WARNING of a kind: `Some(last)` when it is to be posted (`last` says it is
/// the last one posted), `None` when it is only logged.
pub(super) fn next_warning(posted: &mut u32) -> Option<bool> {
    if *posted >= MAX_REPEATED_WARNINGS {
        return None;
    }
    *posted += 1;
    Some(*posted == MAX_REPEATED_WARNINGS)
}

/// Everything one stream's state is made of. One mutex guards it (`FireworksStt::state`);
/// the network side hands its events in through `network_events.rs`, the src pad task takes
/// its output from `output`.
#[derive(Default)]
pub(super) struct State {
    /// Bumped whenever a network session starts or the stream is reset: events of an older
    /// network session are recognised and dropped.
    pub serial: u64,
    /// Where the stream's Fireworks session is in its life.
    pub fireworks_session: FireworksSession,
    /// The input segment, as received.
    pub segment: gst::FormattedSegment<gst::ClockTime>,
    pub timeline: Timeline,
    /// The utterance the service is still working on, from its first interim to its final.
    pub open_utterance: Option<OpenUtterance>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_warning_is_posted_five_times_the_last_saying_so() {
        let mut posted = 0;
        let outcomes: Vec<Option<bool>> = (0..7).map(|_| next_warning(&mut posted)).collect();
        assert_eq!(
            outcomes,
            [
                Some(false),
                Some(false),
                Some(false),
                Some(false),
                Some(true),
                None,
                None
            ]
        );
    }
}

//! What goes out of the src pad, from the streaming thread: final words (or utterances), early
//! words of a live utterance whose deadline has come, the end-of-utterance event, and GAPs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::bridge::SessionShared;
use super::imp::{FireworksStt, OutputState, CAT};
use super::output::{due_interim_words, items_for_final, OutputItem};
use super::settings::{OutputMode, Settings};

const FINAL_TRANSCRIPT_EVENT: &str = "rstranscribe/final-transcript";
/// The smallest step of the live heartbeat GAP (ns): small enough to stay far inside any
/// latency, large enough not to send an event for every 10 or 20 ms input buffer.
const HEARTBEAT_STEP: u64 = 40_000_000;

/// Early words go out this long before their deadline (half the latency, at most a second),
/// leaving that much for everything downstream.
fn early_margin_ms(latency_ms: u32) -> u64 {
    u64::from((latency_ms / 2).min(1000))
}

/// With live input, anything older than `latency` before the newest audio can no longer get
/// words in time, unless an utterance that began earlier is still open.
fn live_heartbeat(shared: &SessionShared, latency_ms: u32) -> Option<u64> {
    let end = shared.timeline.end_pts()?;
    let mut until = end.checked_sub(u64::from(latency_ms) * 1_000_000)?;
    if let Some(open) = shared
        .open_utterance_start
        .and_then(|a| shared.timeline.pts_for(a))
    {
        until = until.min(open);
    }
    Some(until)
}

/// The few settings the streaming thread reads for every buffer, copied rather than cloning
/// all of them (strings, structures) each time.
#[derive(Clone, Copy)]
struct OutputSettings {
    output_mode: OutputMode,
    early_words: bool,
    latency_ms: u32,
    lateness_ms: u32,
}

impl From<&Settings> for OutputSettings {
    fn from(s: &Settings) -> Self {
        OutputSettings {
            output_mode: s.output_mode,
            early_words: s.early_words,
            latency_ms: s.latency_ms,
            lateness_ms: s.lateness_ms,
        }
    }
}

/// The open utterance's words whose deadline (running time + latency, less the margin) has
/// passed by `now`.
fn due_early_words(
    shared: &SessionShared,
    settings: &OutputSettings,
    output: &mut OutputState,
    now: gst::ClockTime,
) -> Vec<OutputItem> {
    let Some(interim) = shared.open_interim.as_ref() else {
        return Vec::new();
    };
    let pushed_until = output
        .early
        .filter(|(utterance, _)| *utterance == interim.utterance)
        .map(|(_, until)| until);
    let slack = gst::ClockTime::from_mseconds(
        (u64::from(settings.lateness_ms) + u64::from(settings.latency_ms))
            .saturating_sub(early_margin_ms(settings.latency_ms)),
    );
    let is_due = |pts: u64| {
        shared
            .segment
            .to_running_time(gst::ClockTime::from_nseconds(pts))
            .is_some_and(|rt| rt.saturating_add(slack) <= now)
    };
    let times = output
        .interim_times
        .for_interim(shared.interim_serial, interim, &shared.timeline);
    let (items, until) = due_interim_words(interim, times, pushed_until, is_due);
    if let Some(until) = until {
        output.early = Some((interim.utterance, until));
    }
    items
}

impl FireworksStt {
    /// Pushes the finals that arrived since the last call; with live input, the words of the
    /// open utterance whose deadline has come; then lets the position follow the audio where
    /// nothing can be said any more.
    pub(super) fn push_pending(&self) -> Result<(), gst::FlowError> {
        let mut output = self.output.lock().unwrap();
        let settings = OutputSettings::from(&*self.settings.lock().unwrap());
        let live = self.upstream_live.load(Ordering::Relaxed);
        let early = live && settings.early_words && settings.output_mode == OutputMode::Words;
        // Reading the clock is only worth it when early words may be due.
        let now = if early && self.interim_open.load(Ordering::Relaxed) {
            self.obj().current_running_time()
        } else {
            None
        };
        let (items, failed, live_segment) = {
            let state = self.state.lock().unwrap();
            let mut shared = state.shared.lock().unwrap();
            if output.position.is_none() {
                // Output starts where the audio started: the first GAP covers leading silence.
                output.position = shared.timeline.first_pts();
            }
            let mut items = Vec::new();
            let finals = std::mem::take(&mut shared.finals);
            for t in &finals {
                let pushed_until = output
                    .early
                    .filter(|(utterance, _)| *utterance == t.utterance)
                    .map(|(_, until)| until);
                items.extend(items_for_final(
                    t,
                    settings.output_mode,
                    &shared.timeline,
                    pushed_until,
                ));
                output.early = None;
            }
            if let Some(now) = now {
                items.extend(due_early_words(&shared, &settings, &mut output, now));
            }
            if live {
                // Coalesced: one GAP per HEARTBEAT_STEP of silence, not one per input buffer.
                let heartbeat = live_heartbeat(&shared, settings.latency_ms).filter(|until| {
                    output
                        .position
                        .is_none_or(|position| *until >= position.saturating_add(HEARTBEAT_STEP))
                });
                if let Some(until) = heartbeat {
                    items.push(OutputItem::GapUntil(until));
                }
            }
            let has_text = items.iter().any(|i| matches!(i, OutputItem::Text { .. }));
            let live_segment = (live && has_text).then(|| shared.segment.clone());
            (items, shared.failed || state.failed, live_segment)
        };
        for item in items {
            if let (OutputItem::Text { pts, .. }, Some(segment)) = (&item, &live_segment) {
                self.observe_lag(segment, *pts);
            }
            self.push_item(item, &mut output)?;
        }
        if failed {
            return Err(gst::FlowError::Error);
        }
        Ok(())
    }

    fn push_gap(&self, from: u64, until: u64) {
        let event = gst::event::Gap::builder(gst::ClockTime::from_nseconds(from))
            .duration(gst::ClockTime::from_nseconds(until - from))
            .build();
        self.obj().src_pad().push_event(event);
    }

    /// Pushes one item, keeping the position. A late word (before the position) still goes
    /// out with its true times: downstream decides what late means to it.
    pub(super) fn push_item(
        &self,
        item: OutputItem,
        output: &mut OutputState,
    ) -> Result<(), gst::FlowError> {
        let srcpad = self.obj().src_pad().clone();
        match item {
            OutputItem::Text {
                text,
                pts,
                duration,
            } => {
                let position = *output.position.get_or_insert(pts);
                if pts > position {
                    self.push_gap(position, pts);
                }
                let mut buffer = gst::Buffer::from_mut_slice(text.into_bytes());
                {
                    let buffer = buffer.get_mut().expect("new buffer is writable");
                    buffer.set_pts(gst::ClockTime::from_nseconds(pts));
                    buffer.set_duration(gst::ClockTime::from_nseconds(duration));
                }
                output.position = Some(position.max(pts.saturating_add(duration)));
                gst::log!(CAT, imp = self, "pushing {buffer:?}");
                srcpad.push(buffer)?;
            }
            OutputItem::FinalTranscript => {
                let structure = gst::Structure::new_empty(FINAL_TRANSCRIPT_EVENT);
                srcpad.push_event(gst::event::CustomDownstream::new(structure));
            }
            OutputItem::GapUntil(until) => {
                let position = *output.position.get_or_insert(until);
                if until > position {
                    self.push_gap(position, until);
                    output.position = Some(until);
                }
            }
        }
        Ok(())
    }

    /// Live: how far a word lags behind its own running time is what downstream has to
    /// absorb, so that is the delay `max-observed-delay` reports.
    fn observe_lag(&self, segment: &gst::FormattedSegment<gst::ClockTime>, pts: u64) {
        let running = segment.to_running_time(gst::ClockTime::from_nseconds(pts));
        if let (Some(now), Some(running)) = (self.obj().current_running_time(), running) {
            if let Some(lag) = now.checked_sub(running) {
                self.observe_delay(Duration::from_nanos(lag.nseconds()));
            }
        }
    }
}

// SPDX-License-Identifier: MPL-2.0
//! What goes out of the src pad, and the src pad task that pushes it.
//!
//! Everything downstream sees goes through one ordered queue (`Output`): serialized events
//! from upstream (stream-start, caps, segment, tags, EOS), final words or utterances with the
//! end-of-utterance event, and GAPs. The streaming thread and the network task only append to
//! it; the src pad task alone pushes, without holding any lock, so a slow, synchronising or
//! blocked downstream holds up nothing but that task: audio keeps flowing to the service and
//! bus messages keep being posted.
//!
//! The task sleeps until something is queued (every producer notifies `state_cond`), unless a
//! deadline of its own falls due first — only with live input: the deadline of the open
//! utterance's next early word (a new interim that brings an earlier one notifies, see
//! [`early_deadline_moved`]) and the heartbeat GAP up to where nothing more can
//! be said, due one step (see [`heartbeat_step`]) after the output last moved. So output moves
//! with time rather than with the next input buffer, and a stream with nothing due costs no
//! wake-ups.
//!
//! The queue and its bound are in `output_queue.rs`.

use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::imp::FireworksStt;
use super::output::{due_interim_words, waiting_words, OutputItem};
use super::output_queue::{Queued, MAX_WAITING_TEXT};
use super::settings::{OutputMode, Settings};
use super::state::State;
use super::{item_meta, transcriber_events, CAT};

const FINAL_TRANSCRIPT_EVENT: &str = "rstranscribe/final-transcript";
/// The smallest step of the live heartbeat GAP: an eighth of `latency` (so GAPs stay well
/// inside it), between 20 and 100 ms (each wake-up is a context switch; at 1,000 streams they
/// are the task's main cost).
fn heartbeat_step(latency: gst::ClockTime) -> gst::ClockTime {
    (latency / 8).clamp(
        gst::ClockTime::from_mseconds(20),
        gst::ClockTime::from_mseconds(100),
    )
}
/// How often a non-live streaming thread waiting for room in the output queue looks again
/// (it is also woken as soon as a text goes out).
const ROOM_WAIT: Duration = Duration::from_millis(200);

/// Early words go out this long before their deadline (half the latency, at most a second),
/// leaving that much for everything downstream.
fn early_margin(latency: gst::ClockTime) -> gst::ClockTime {
    (latency / 2).min(gst::ClockTime::SECOND)
}

/// The shortest sleep until an early word's deadline: the pipeline clock and the monotonic
/// clock the task sleeps on may drift apart (or the pipeline clock stall), and a word found
/// not quite due is looked at again this much later rather than in a busy loop.
const MIN_EARLY_WAIT: Duration = Duration::from_millis(20);

/// The longest sleep until an early word's deadline, measured on the monotonic clock: a
/// pipeline clock that jumps ahead (a network clock stepping) makes words at most this late.
fn max_early_wait(step: gst::ClockTime) -> Duration {
    Duration::from(step * 10)
}

/// The few settings the output side reads, copied rather than cloning all of them.
#[derive(Clone, Copy)]
pub(super) struct OutputSettings {
    pub output_mode: OutputMode,
    early_words: bool,
    latency: gst::ClockTime,
    lateness: gst::ClockTime,
}

impl OutputSettings {
    /// Early words go out as interims promise them (`early-words`, words output).
    fn early_words(&self) -> bool {
        self.early_words && self.output_mode == OutputMode::Words
    }

    /// How long after its running time an early word must go out: latency + lateness, less
    /// the margin left for downstream.
    fn early_slack(&self) -> gst::ClockTime {
        (self.lateness + self.latency).saturating_sub(early_margin(self.latency))
    }
}

impl From<&Settings> for OutputSettings {
    fn from(s: &Settings) -> Self {
        OutputSettings {
            output_mode: s.output_mode,
            early_words: s.early_words,
            latency: gst::ClockTime::from_mseconds(s.latency_ms.into()),
            lateness: gst::ClockTime::from_mseconds(s.lateness_ms.into()),
        }
    }
}

/// With live input, anything older than `latency` before the newest audio can no longer get
/// words in time, unless an utterance that began earlier is still open.
fn live_heartbeat(state: &State, latency: gst::ClockTime) -> Option<gst::ClockTime> {
    let end = state.timeline.end_pts()?;
    let mut until = end.checked_sub(latency)?;
    if let Some(open) = state
        .open_utterance
        .as_ref()
        .and_then(|open| open.start)
        .and_then(|a| state.timeline.pts_for(a))
    {
        until = until.min(open);
    }
    Some(until)
}

/// The open utterance's words whose deadline (running time + latency + lateness, less the
/// margin) has passed by `now`, queued.
fn queue_due_early_words(state: &mut State, settings: &OutputSettings, now: gst::ClockTime) {
    let Some(interim) = state.open_utterance.as_ref().map(|open| &open.interim) else {
        return;
    };
    let output = &mut state.output;
    let pushed_until = output
        .early
        .filter(|(utterance, _)| *utterance == interim.utterance)
        .map(|(_, until)| until);
    let slack = settings.early_slack();
    let segment = &state.segment;
    let is_due = |pts: gst::ClockTime| {
        segment
            .to_running_time(pts)
            .is_some_and(|rt| rt.saturating_add(slack) <= now)
    };
    let times = output
        .interim_times
        .for_interim(state.interim_serial, interim, &state.timeline);
    let (items, until) = due_interim_words(interim, times, pushed_until, is_due);
    if let Some(until) = until {
        output.early = Some((interim.utterance, until));
    }
    for item in items {
        output.queue_item(item, OutputMode::Words);
    }
}

/// The running time at which the open utterance's next early word falls due: the first word
/// of its latest interim not pushed yet with the earliest running time, at that running time +
/// [`OutputSettings::early_slack`].
fn next_early_deadline(state: &mut State, settings: &OutputSettings) -> Option<gst::ClockTime> {
    let interim = &state.open_utterance.as_ref()?.interim;
    let output = &mut state.output;
    let pushed_until = output
        .early
        .filter(|(utterance, _)| *utterance == interim.utterance)
        .map(|(_, until)| until);
    let times = output
        .interim_times
        .for_interim(state.interim_serial, interim, &state.timeline);
    // `due_interim_words` pushes every waiting word up to the last one due, so the earliest
    // deadline counts, whatever the words' order (a word without a start time gets the end
    // of the audio). A word outside the segment has no running time and never falls due by
    // itself.
    let segment = &state.segment;
    let running_time = waiting_words(times, pushed_until)
        .filter_map(|pts| segment.to_running_time(pts))
        .min()?;
    Some(running_time.saturating_add(settings.early_slack()))
}

/// After a new interim (live): whether the src pad task has to look before the time it
/// sleeps until, because the interim's first word not pushed yet falls due earlier than
/// the deadline the task knows of (or the task knows of none). The caller notifies
/// `state_cond`; other interims cost the task no wake-up.
pub(super) fn early_deadline_moved(state: &mut State, settings: &OutputSettings) -> bool {
    if !state.live || !state.playing || !settings.early_words() {
        return false;
    }
    let Some(deadline) = next_early_deadline(state, settings) else {
        return false;
    };
    state
        .output
        .early_deadline
        .is_none_or(|known| deadline < known)
}

/// Queues a GAP up to [`live_heartbeat`] once that is a step past the output's position.
/// Returns how long until the next one falls due with live audio arriving in real time,
/// or `None` while an open utterance holds it back (its final notifies).
fn queue_heartbeat_gap(
    state: &mut State,
    latency: gst::ClockTime,
    step: gst::ClockTime,
) -> Option<Duration> {
    let Some(until) = live_heartbeat(state, latency) else {
        // No audio yet, or less than `latency` of it: look again a step later.
        return Some(Duration::from(step));
    };
    let position = state.output.position;
    if position.is_none_or(|position| until >= position.saturating_add(step)) {
        state.output.queue_gap_until(until);
    }
    let held_by_utterance = state
        .timeline
        .end_pts()
        .and_then(|end| end.checked_sub(latency))
        .is_some_and(|free| free > until);
    if held_by_utterance {
        return None;
    }
    let next = position
        .map_or(until, |p| p.max(until))
        .saturating_add(step);
    Some(Duration::from(next.saturating_sub(until)))
}

/// One thing to push, worked out under the lock and pushed without it.
enum Push {
    Buffer {
        buffer: gst::Buffer,
        /// Live: the segment, to measure how late the text is.
        lag: Option<gst::FormattedSegment<gst::ClockTime>>,
    },
    Event(gst::Event),
    /// Out of the sink pad (`rstranscribe/new-item`).
    Upstream(gst::Event),
}

fn gap(from: gst::ClockTime, until: gst::ClockTime) -> Push {
    Push::Event(
        gst::event::Gap::builder(from)
            .duration(until.saturating_sub(from))
            .build(),
    )
}

fn text_buffer(text: String, pts: gst::ClockTime, duration: gst::ClockTime) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(text.into_bytes());
    {
        let buffer = buffer.get_mut().expect("new buffer is writable");
        buffer.set_pts(pts);
        buffer.set_duration(duration);
    }
    buffer
}

impl FireworksStt {
    pub(super) fn queue_event(&self, event: gst::Event) {
        let mut state = self.state.lock().unwrap();
        if state.flushing {
            return;
        }
        state.output.queue_event(event);
        drop(state);
        self.state_cond.notify_all();
    }

    /// EOS goes out after everything the drain brought back. Lost when a flush or a stop
    /// cut the drain short (downstream is flushing then, and a new stream follows).
    pub(super) fn queue_end_of_stream(&self, event: gst::Event) {
        let mut state = self.state.lock().unwrap();
        if state.flushing {
            return;
        }
        state.output.eos_queued = true;
        state.output.queue_event(event);
        drop(state);
        self.state_cond.notify_all();
    }

    /// Non-live input waits here while `MAX_WAITING_TEXT` text buffers wait for downstream.
    pub(super) fn wait_for_output_room<'a>(
        &'a self,
        mut state: std::sync::MutexGuard<'a, State>,
    ) -> Result<std::sync::MutexGuard<'a, State>, gst::FlowError> {
        while !state.live
            && !state.flushing
            && state.output.texts >= MAX_WAITING_TEXT
            && state.output.flow.is_ok()
        {
            state = self.state_cond.wait_timeout(state, ROOM_WAIT).unwrap().0;
        }
        if state.flushing {
            return Err(gst::FlowError::Flushing);
        }
        state.output.flow?;
        Ok(state)
    }

    pub(super) fn start_output_task(&self) -> Result<(), glib::BoolError> {
        let element = self.obj().downgrade();
        self.obj().src_pad().start_task(move || {
            let Some(element) = element.upgrade() else {
                return;
            };
            if !element.imp().output_iteration() {
                let _ = element.src_pad().pause_task();
            }
        })
    }

    /// Stops the task, waiting for its current iteration (call once pushes cannot block:
    /// flushing, or the pads deactivated).
    pub(super) fn stop_output_task(&self) {
        let _ = self.obj().src_pad().stop_task();
    }

    /// One turn of the src pad task: pushes what is queued, or waits (bounded) for something.
    /// Returns false when the task should pause (flushing, or downstream refused data).
    fn output_iteration(&self) -> bool {
        let settings = OutputSettings::from(&*self.settings.lock().unwrap());
        let (pushes, is_caps) = {
            let mut state = self.state.lock().unwrap();
            if state.flushing || state.output.flow.is_err() {
                gst::debug!(CAT, imp = self, "output task pausing");
                return false;
            }
            let live = state.live && state.fireworks_session.is_active();
            let due = if live {
                self.queue_due_output(&mut state, &settings)
            } else {
                None
            };
            let Some(queued) = state.output.queue.pop_front() else {
                match due {
                    Some(at) => {
                        let wait = at.saturating_duration_since(Instant::now());
                        drop(self.state_cond.wait_timeout(state, wait).unwrap());
                    }
                    // Nothing falls due by itself: whatever changes that (something queued, a
                    // flush, a flow error, a session starting, a property) notifies.
                    None => drop(self.state_cond.wait(state).unwrap()),
                }
                // The task calls again at once: the next turn reads the settings afresh (a
                // property may have changed) and looks at what woke it.
                return true;
            };
            let is_caps = matches!(&queued, Queued::Event(e) if e.type_() == gst::EventType::Caps);
            let was_full = state.output.texts >= MAX_WAITING_TEXT;
            let pushes = self.to_pushes(&mut state, queued);
            if was_full && state.output.texts < MAX_WAITING_TEXT {
                // Room for a streaming thread waiting in `wait_for_output_room`.
                self.state_cond.notify_all();
            }
            (pushes, is_caps)
        };
        let srcpad = self.obj().src_pad().clone();
        for push in pushes {
            match push {
                Push::Event(event) => {
                    gst::log!(CAT, imp = self, "pushing {event:?}");
                    srcpad.push_event(event);
                }
                Push::Upstream(event) => {
                    gst::log!(CAT, imp = self, "sending upstream {event:?}");
                    self.obj().sink_pad().push_event(event);
                }
                Push::Buffer { buffer, lag } => {
                    // Measured as the text is handed over: a synchronising sink's wait for
                    // the render time is not delay.
                    if let (Some(segment), Some(pts)) = (lag, buffer.pts()) {
                        self.observe_lag(&segment, pts);
                    }
                    gst::log!(CAT, imp = self, "pushing {buffer:?}");
                    if let Err(err) = srcpad.push(buffer) {
                        self.on_flow_error(err);
                        return false;
                    }
                }
            }
        }
        if is_caps {
            // A file or an application takes any caps and reads lines; a text element
            // (subtitle encoders, overlays) wants the text alone.
            let line_ends = srcpad.peer_query_caps(None).is_any();
            gst::debug!(
                CAT,
                imp = self,
                "utterances end with a line end: {line_ends}"
            );
            self.state.lock().unwrap().output.line_ends = line_ends;
        }
        true
    }

    /// Downstream refused text. The streaming thread returns the flow upstream with its next
    /// buffer; when no buffer will come any more (EOS is queued) the error is posted here and
    /// EOS still goes out, as a source would do.
    fn on_flow_error(&self, err: gst::FlowError) {
        let mut state = self.state.lock().unwrap();
        if state.flushing {
            return;
        }
        gst::debug!(CAT, imp = self, "downstream returned {err:?}");
        state.output.flow = Err(err);
        let eos_queued = state.output.eos_queued;
        drop(state);
        self.state_cond.notify_all();
        if eos_queued && !matches!(err, gst::FlowError::Flushing | gst::FlowError::Eos) {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Internal data stream error."),
                ["downstream refused the text: {:?}", err]
            );
            self.obj().src_pad().push_event(gst::event::Eos::new());
        }
    }

    /// Live: queues the early words whose deadline has come and the heartbeat GAP when it is
    /// due. Returns when the task must look again by itself: at the next early word's deadline
    /// (a new interim with an earlier one notifies), and when the heartbeat GAP falls due —
    /// one step past the output's position, reached as live audio keeps arriving — unless an
    /// open utterance holds the GAP back (its final notifies). `None`: nothing falls due by
    /// itself.
    fn queue_due_output(&self, state: &mut State, settings: &OutputSettings) -> Option<Instant> {
        let now = Instant::now();
        let step = heartbeat_step(settings.latency);
        let mut due: Option<Instant> = None;
        state.output.early_deadline = None;
        // Only in PLAYING: a paused pipeline's clock may stand still (set_playing notifies).
        let running_time =
            (settings.early_words() && state.playing && state.open_utterance.is_some())
                .then(|| self.obj().current_running_time())
                .flatten();
        if let Some(running_time) = running_time {
            queue_due_early_words(state, settings, running_time);
            let deadline = next_early_deadline(state, settings);
            state.output.early_deadline = deadline;
            due = deadline.map(|deadline| {
                let wait = Duration::from(deadline.saturating_sub(running_time));
                now + wait.clamp(MIN_EARLY_WAIT, max_early_wait(step))
            });
        }
        let gap_due = queue_heartbeat_gap(state, settings.latency, step).map(|wait| now + wait);
        match (due, gap_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What one queue entry means for the pad, keeping the position: a GAP before text
    /// that starts after it. A late word (before the position) still goes out with its true
    /// times: downstream decides what late means to it.
    fn to_pushes(&self, state: &mut State, queued: Queued) -> Vec<Push> {
        let first_pts = state.timeline.first_pts();
        let output = &mut state.output;
        let (item, line) = match queued {
            Queued::Event(event) => {
                if event.type_() == gst::EventType::Segment {
                    output.position = None;
                    output.early = None;
                }
                if event.type_() == gst::EventType::StreamStart {
                    output.tagged_language = None;
                }
                return vec![Push::Event(event)];
            }
            Queued::Preroll(pts) => {
                let pts = pts.or(first_pts);
                return pts
                    .map(|pts| {
                        Push::Event(
                            gst::event::Gap::builder(pts)
                                .duration(gst::ClockTime::ZERO)
                                .build(),
                        )
                    })
                    .into_iter()
                    .collect();
            }
            Queued::Item(item) => (item, false),
            Queued::Utterance(item) => (item, output.line_ends),
        };
        match item {
            OutputItem::Text {
                mut text,
                pts,
                duration,
                item,
            } => {
                output.texts = output.texts.saturating_sub(1);
                let mut pushes = Vec::with_capacity(4);
                // The language as a tag, before the first text in it (transcriber_events.rs).
                if item.language.is_some() && item.language != output.tagged_language {
                    output.tagged_language = item.language.clone();
                    let language = item.language.as_deref().unwrap_or_default();
                    pushes.push(Push::Event(transcriber_events::language_tag(language)));
                }
                let position = *output.position.get_or_insert(pts);
                if pts > position {
                    pushes.push(gap(position, pts));
                }
                output.position = Some(position.max(pts.saturating_add(duration)));
                if line {
                    text.push('\n');
                }
                let lag = state.live.then(|| state.segment.clone());
                if let Some(running_time) = state.segment.to_running_time(pts) {
                    let new_item = transcriber_events::new_item(&text, running_time, duration);
                    pushes.push(Push::Upstream(new_item));
                }
                let mut buffer = text_buffer(text, pts, duration);
                item_meta::attach(buffer.get_mut().expect("new buffer"), &item);
                pushes.push(Push::Buffer { buffer, lag });
                pushes
            }
            OutputItem::FinalTranscript => {
                let structure = gst::Structure::new_empty(FINAL_TRANSCRIPT_EVENT);
                vec![Push::Event(gst::event::CustomDownstream::new(structure))]
            }
            OutputItem::GapUntil(until) => {
                // Output starts where the audio started: the first GAP covers leading silence.
                let position = *output.position.get_or_insert(first_pts.unwrap_or(until));
                if until > position {
                    output.position = Some(until);
                    vec![gap(position, until)]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Live: how far a word lags behind its own running time is what downstream has to
    /// absorb, so that is the delay `max-observed-delay` reports.
    fn observe_lag(&self, segment: &gst::FormattedSegment<gst::ClockTime>, pts: gst::ClockTime) {
        let running = segment.to_running_time(pts);
        if let (Some(now), Some(running)) = (self.obj().current_running_time(), running) {
            if let Some(lag) = now.checked_sub(running) {
                self.observe_delay(lag);
            }
        }
    }
}

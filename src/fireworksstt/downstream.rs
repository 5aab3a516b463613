// SPDX-License-Identifier: MPL-2.0
//! What goes out of the src pad, and the src pad task that pushes it.
//!
//! Everything downstream sees goes through one ordered queue (`Output`): serialized events
//! from upstream (stream-start, caps, segment, tags, EOS), final words or utterances with the
//! end-of-utterance event, and GAPs. The streaming thread and the network task only append to
//! it; the src pad task alone pushes, without holding any lock, so a slow, synchronising or
//! blocked downstream holds up nothing but that task: audio keeps flowing to the service and
//! bus messages keep being posted. With live input the task also wakes on its own every
//! heartbeat step (see [`heartbeat_step`]) to push the early words whose deadline has come and a GAP up to where
//! nothing more can be said, so both move with time rather than with the next input buffer.
//!
//! The queue is bounded by `MAX_WAITING_TEXT` text buffers. At the bound, live input drops the
//! oldest waiting text buffer (a live source cannot wait) and posts a WARNING with the count;
//! non-live input makes the streaming thread wait for room (a file can wait, nothing is lost).
//! Events and GAPs are never dropped; consecutive GAPs are merged into one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use crate::client::TimedTranscript;

use super::imp::{FireworksStt, CAT};
use super::output::{due_interim_words, items_for_final, InterimWordTimes, OutputItem};
use super::session::Session;
use super::settings::{OutputMode, Settings};
use super::timeline::Timeline;
use super::{item_meta, transcriber_events};

const FINAL_TRANSCRIPT_EVENT: &str = "rstranscribe/final-transcript";
/// How often the task wakes with live input, and the smallest step of the heartbeat GAP: an
/// eighth of `latency` (so early words and GAPs stay well inside it), between 20 and 100 ms
/// (each wake-up is a context switch; at 1,000 streams they are the task's main cost).
fn heartbeat_step(latency: gst::ClockTime) -> gst::ClockTime {
    (latency / 8).clamp(
        gst::ClockTime::from_mseconds(20),
        gst::ClockTime::from_mseconds(100),
    )
}
/// With nothing to do and no live input the task still looks again this often.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// Text buffers that may wait for downstream (see the module documentation).
pub(super) const MAX_WAITING_TEXT: usize = 4096;

/// Early words go out this long before their deadline (half the latency, at most a second),
/// leaving that much for everything downstream.
fn early_margin(latency: gst::ClockTime) -> gst::ClockTime {
    (latency / 2).min(gst::ClockTime::SECOND)
}

/// One entry of the output queue.
#[derive(Debug)]
enum Queued {
    Item(OutputItem),
    /// An utterance's text: ends with a line end when downstream takes raw bytes.
    Utterance(OutputItem),
    /// A serialized event from upstream, forwarded in its place.
    Event(gst::Event),
    /// A GAP of no duration at the first buffer's PTS: lets downstream preroll at once.
    Preroll(Option<gst::ClockTime>),
}

/// The output side of a session: the queue and where the src pad's stream has got to.
pub(super) struct Output {
    queue: VecDeque<Queued>,
    /// Text entries in `queue`.
    texts: usize,
    /// Text buffers dropped at the bound since the stream started.
    dropped_texts: u64,
    /// The end of what went out (PTS).
    position: Option<gst::ClockTime>,
    /// Utterance number, and the PTS up to which its words went out early, from interims.
    early: Option<(u64, gst::ClockTime)>,
    interim_times: InterimWordTimes,
    /// When the live task next looks at the clock.
    next_tick: Option<Instant>,
    /// The last result of a push downstream: an error stops the task and goes upstream.
    pub flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// The preroll GAP has been queued.
    pub prerolled: bool,
    /// EOS has been queued: no more input comes.
    eos_queued: bool,
    /// Downstream takes any caps (a file or an application, not a text element): each
    /// utterance then ends with a line end. Decided when caps go out; kept over flushes.
    line_ends: bool,
    /// The language of the last `LanguageCode` tag pushed (sticky: kept over flushes, gone
    /// with a new stream-start).
    tagged_language: Option<String>,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            queue: VecDeque::new(),
            texts: 0,
            dropped_texts: 0,
            position: None,
            early: None,
            interim_times: InterimWordTimes::default(),
            next_tick: None,
            flow: Ok(gst::FlowSuccess::Ok),
            prerolled: false,
            eos_queued: false,
            line_ends: false,
            tagged_language: None,
        }
    }
}

impl Output {
    /// What survives a flush: sticky events upstream will not send again (stream-start,
    /// caps, tags; a new segment follows every flush), the line-end choice and the counter.
    pub fn after_flush(&mut self) -> Output {
        let kept = self
            .queue
            .drain(..)
            .filter(|q| match q {
                Queued::Event(e) => {
                    e.is_sticky()
                        && !matches!(e.type_(), gst::EventType::Segment | gst::EventType::Eos)
                }
                _ => false,
            })
            .collect();
        Output {
            queue: kept,
            dropped_texts: self.dropped_texts,
            line_ends: self.line_ends,
            tagged_language: self.tagged_language.take(),
            ..Output::default()
        }
    }

    /// What survives the end of a network session at a new segment: everything queued (it
    /// belongs to the old segment and goes out before the new one) and where the src pad's
    /// stream has got to; not what refers to the old session's utterances and interims.
    pub fn for_new_segment(&mut self) -> Output {
        Output {
            queue: std::mem::take(&mut self.queue),
            texts: self.texts,
            dropped_texts: self.dropped_texts,
            position: self.position,
            flow: self.flow,
            prerolled: self.prerolled,
            eos_queued: self.eos_queued,
            line_ends: self.line_ends,
            ..Output::default()
        }
    }

    pub fn queue_event(&mut self, event: gst::Event) {
        self.queue.push_back(Queued::Event(event));
    }

    pub fn queue_preroll(&mut self, pts: Option<gst::ClockTime>) {
        self.prerolled = true;
        self.queue.push_back(Queued::Preroll(pts));
    }

    /// Nothing more will be said before `until`: merged with a GAP at the end of the queue.
    pub fn queue_gap_until(&mut self, until: gst::ClockTime) {
        if let Some(Queued::Item(OutputItem::GapUntil(last))) = self.queue.back_mut() {
            *last = (*last).max(until);
        } else {
            self.queue
                .push_back(Queued::Item(OutputItem::GapUntil(until)));
        }
    }

    fn queue_item(&mut self, item: OutputItem, mode: OutputMode) {
        match item {
            OutputItem::GapUntil(until) => self.queue_gap_until(until),
            OutputItem::Text { .. } => {
                self.texts += 1;
                self.queue.push_back(match mode {
                    OutputMode::Utterances => Queued::Utterance(item),
                    OutputMode::Words => Queued::Item(item),
                });
            }
            OutputItem::FinalTranscript => self.queue.push_back(Queued::Item(item)),
        }
    }

    /// Queues the output of one final transcript, leaving out the words that went out early.
    /// Returns the total of dropped text buffers when live input met the bound.
    pub fn queue_final(
        &mut self,
        t: &TimedTranscript,
        mode: OutputMode,
        timeline: &Timeline,
        live: bool,
    ) -> Option<u64> {
        let pushed_until = self
            .early
            .take()
            .filter(|(utterance, _)| *utterance == t.utterance)
            .map(|(_, until)| until);
        for item in items_for_final(t, mode, timeline, pushed_until) {
            self.queue_item(item, mode);
        }
        self.enforce_bound(live)
    }

    /// Live input cannot wait for downstream: past the bound the oldest text goes.
    fn enforce_bound(&mut self, live: bool) -> Option<u64> {
        if !live || self.texts <= MAX_WAITING_TEXT {
            return None;
        }
        while self.texts > MAX_WAITING_TEXT {
            let Some(index) = self.queue.iter().position(|q| {
                matches!(
                    q,
                    Queued::Item(OutputItem::Text { .. }) | Queued::Utterance(_)
                )
            }) else {
                break;
            };
            self.queue.remove(index);
            self.texts -= 1;
            self.dropped_texts += 1;
        }
        Some(self.dropped_texts)
    }
}

/// The few settings the output side reads, copied rather than cloning all of them.
#[derive(Clone, Copy)]
pub(super) struct OutputSettings {
    pub output_mode: OutputMode,
    early_words: bool,
    latency: gst::ClockTime,
    lateness: gst::ClockTime,
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
fn live_heartbeat(session: &Session, latency: gst::ClockTime) -> Option<gst::ClockTime> {
    let end = session.timeline.end_pts()?;
    let mut until = end.checked_sub(latency)?;
    if let Some(open) = session
        .open_utterance_start
        .and_then(|a| session.timeline.pts_for(a))
    {
        until = until.min(open);
    }
    Some(until)
}

/// The open utterance's words whose deadline (running time + latency + lateness, less the
/// margin) has passed by `now`, queued.
fn queue_due_early_words(session: &mut Session, settings: &OutputSettings, now: gst::ClockTime) {
    let Some(interim) = session.open_interim.as_ref() else {
        return;
    };
    let output = &mut session.output;
    let pushed_until = output
        .early
        .filter(|(utterance, _)| *utterance == interim.utterance)
        .map(|(_, until)| until);
    let slack =
        (settings.lateness + settings.latency).saturating_sub(early_margin(settings.latency));
    let segment = &session.segment;
    let is_due = |pts: gst::ClockTime| {
        segment
            .to_running_time(pts)
            .is_some_and(|rt| rt.saturating_add(slack) <= now)
    };
    let times =
        output
            .interim_times
            .for_interim(session.interim_serial, interim, &session.timeline);
    let (items, until) = due_interim_words(interim, times, pushed_until, is_due);
    if let Some(until) = until {
        output.early = Some((interim.utterance, until));
    }
    for item in items {
        output.queue_item(item, OutputMode::Words);
    }
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
        let mut session = self.session.lock().unwrap();
        if session.flushing {
            return;
        }
        session.output.queue_event(event);
        drop(session);
        self.changed.notify_all();
    }

    /// EOS goes out after everything the drain brought back. Lost when a flush or a stop
    /// cut the drain short (downstream is flushing then, and a new stream follows).
    pub(super) fn queue_end_of_stream(&self, event: gst::Event) {
        let mut session = self.session.lock().unwrap();
        if session.flushing {
            return;
        }
        session.output.eos_queued = true;
        session.output.queue_event(event);
        drop(session);
        self.changed.notify_all();
    }

    /// Non-live input waits here while `MAX_WAITING_TEXT` text buffers wait for downstream.
    pub(super) fn wait_for_output_room<'a>(
        &'a self,
        mut session: std::sync::MutexGuard<'a, Session>,
    ) -> Result<std::sync::MutexGuard<'a, Session>, gst::FlowError> {
        while !session.live
            && !session.flushing
            && session.output.texts >= MAX_WAITING_TEXT
            && session.output.flow.is_ok()
        {
            session = self.changed.wait_timeout(session, IDLE_WAIT).unwrap().0;
        }
        if session.flushing {
            return Err(gst::FlowError::Flushing);
        }
        session.output.flow?;
        Ok(session)
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

    /// One turn of the src pad task: waits (bounded) for something to push, pushes it.
    /// Returns false when the task should pause (flushing, or downstream refused data).
    fn output_iteration(&self) -> bool {
        let settings = OutputSettings::from(&*self.settings.lock().unwrap());
        let (pushes, is_caps) = {
            let mut session = self.session.lock().unwrap();
            let queued = loop {
                if session.flushing || session.output.flow.is_err() {
                    gst::debug!(CAT, imp = self, "output task pausing");
                    return false;
                }
                let live = session.live && session.active;
                if live {
                    self.tick(&mut session, &settings);
                }
                if let Some(queued) = session.output.queue.pop_front() {
                    break queued;
                }
                let wait = if live {
                    session.output.next_tick.map_or(Duration::ZERO, |t| {
                        t.saturating_duration_since(Instant::now())
                    })
                } else {
                    IDLE_WAIT
                };
                session = self.changed.wait_timeout(session, wait).unwrap().0;
            };
            let is_caps = matches!(&queued, Queued::Event(e) if e.type_() == gst::EventType::Caps);
            let was_full = session.output.texts >= MAX_WAITING_TEXT;
            let pushes = self.to_pushes(&mut session, queued);
            if was_full && session.output.texts < MAX_WAITING_TEXT {
                // Room for a streaming thread waiting in `wait_for_output_room`.
                self.changed.notify_all();
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
            self.session.lock().unwrap().output.line_ends = line_ends;
        }
        true
    }

    /// Downstream refused text. The streaming thread returns the flow upstream with its next
    /// buffer; when no buffer will come any more (EOS is queued) the error is posted here and
    /// EOS still goes out, as a source would do.
    fn on_flow_error(&self, err: gst::FlowError) {
        let mut session = self.session.lock().unwrap();
        if session.flushing {
            return;
        }
        gst::debug!(CAT, imp = self, "downstream returned {err:?}");
        session.output.flow = Err(err);
        let eos_queued = session.output.eos_queued;
        drop(session);
        self.changed.notify_all();
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

    /// Live: early words whose deadline has come, and the heartbeat GAP, once per step.
    fn tick(&self, session: &mut Session, settings: &OutputSettings) {
        let now_instant = Instant::now();
        if session
            .output
            .next_tick
            .is_some_and(|next| now_instant < next)
        {
            return;
        }
        let step = heartbeat_step(settings.latency);
        session.output.next_tick = Some(now_instant + Duration::from(step));
        let early = settings.early_words && settings.output_mode == OutputMode::Words;
        if early && session.open_interim.is_some() {
            if let Some(now) = self.obj().current_running_time() {
                queue_due_early_words(session, settings, now);
            }
        }
        let heartbeat = live_heartbeat(session, settings.latency).filter(|until| {
            session
                .output
                .position
                .is_none_or(|position| *until >= position.saturating_add(step))
        });
        if let Some(until) = heartbeat {
            session.output.queue_gap_until(until);
        }
    }

    /// What one queue entry means for the pad, keeping the position: a GAP before text
    /// that starts after it. A late word (before the position) still goes out with its true
    /// times: downstream decides what late means to it.
    fn to_pushes(&self, session: &mut Session, queued: Queued) -> Vec<Push> {
        let first_pts = session.timeline.first_pts();
        let output = &mut session.output;
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
                let lag = session.live.then(|| session.segment.clone());
                if let Some(running_time) = session.segment.to_running_time(pts) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::TimedWord;

    fn final_of(utterance: u64, start_ms: u64) -> TimedTranscript {
        let ms = |m: u64| (m * gst::ClockTime::MSECOND).nseconds();
        TimedTranscript {
            utterance,
            text: format!("w{utterance}"),
            is_final: true,
            promoted: false,
            language: None,
            words: vec![TimedWord {
                text: format!("w{utterance}"),
                start: Some(ms(start_ms)),
                end: Some(ms(start_ms + 100)),
                probability: None,
                hallucination_score: None,
                is_final: true,
            }],
            start: Some(ms(start_ms)),
            end: Some(ms(start_ms + 100)),
            delay: None,
        }
    }

    fn timeline() -> Timeline {
        gst::init().unwrap();
        let mut t = Timeline::default();
        t.on_buffer(
            Some(gst::ClockTime::ZERO),
            1 << 30,
            false,
            gst::ClockTime::ZERO,
        );
        t
    }

    fn texts(output: &Output) -> Vec<String> {
        output
            .queue
            .iter()
            .filter_map(|q| match q {
                Queued::Item(OutputItem::Text { text, .. })
                | Queued::Utterance(OutputItem::Text { text, .. }) => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn live_output_at_the_bound_drops_the_oldest_text_and_counts_it() {
        let timeline = timeline();
        let mut output = Output::default();
        output.queue_event(gst::event::StreamStart::new("s"));
        let n = MAX_WAITING_TEXT as u64;
        for u in 0..n {
            assert_eq!(
                output.queue_final(&final_of(u, u * 200), OutputMode::Words, &timeline, true),
                None
            );
        }
        assert_eq!(
            output.queue_final(&final_of(n, n * 200), OutputMode::Words, &timeline, true),
            Some(1)
        );
        assert_eq!(
            output.queue_final(
                &final_of(n + 1, (n + 1) * 200),
                OutputMode::Words,
                &timeline,
                true
            ),
            Some(2)
        );
        let texts = texts(&output);
        assert_eq!(texts.len(), MAX_WAITING_TEXT);
        assert_eq!(texts.first().map(String::as_str), Some("w2"));
        assert_eq!(texts.last(), Some(&format!("w{}", n + 1)));
        // Events are never dropped: the stream-start and every end-of-utterance event stay.
        assert!(matches!(output.queue.front(), Some(Queued::Event(_))));
        let ends = output
            .queue
            .iter()
            .filter(|q| matches!(q, Queued::Item(OutputItem::FinalTranscript)))
            .count();
        assert_eq!(ends as u64, n + 2);
    }

    #[test]
    fn non_live_output_is_never_dropped_and_gaps_in_a_row_merge() {
        let timeline = timeline();
        let mut output = Output::default();
        for u in 0..(MAX_WAITING_TEXT as u64 + 10) {
            assert_eq!(
                output.queue_final(&final_of(u, u * 200), OutputMode::Words, &timeline, false),
                None
            );
        }
        assert_eq!(texts(&output).len(), MAX_WAITING_TEXT + 10);
        let mut output = Output::default();
        output.queue_gap_until(gst::ClockTime::from_mseconds(40));
        output.queue_gap_until(gst::ClockTime::from_mseconds(80));
        assert_eq!(output.queue.len(), 1);
        assert!(matches!(
            output.queue.front(),
            Some(Queued::Item(OutputItem::GapUntil(t))) if *t == gst::ClockTime::from_mseconds(80)
        ));
    }

    #[test]
    fn a_flush_keeps_the_sticky_events_upstream_will_not_send_again() {
        gst::init().unwrap();
        let mut output = Output::default();
        output.queue_event(gst::event::StreamStart::new("s"));
        output.queue_event(gst::event::Caps::new(&gst::Caps::new_empty_simple(
            "text/x-raw",
        )));
        output.queue_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()));
        output.queue_gap_until(gst::ClockTime::SECOND);
        output.line_ends = true;
        let after = output.after_flush();
        let kinds: Vec<gst::EventType> = after
            .queue
            .iter()
            .filter_map(|q| match q {
                Queued::Event(e) => Some(e.type_()),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, [gst::EventType::StreamStart, gst::EventType::Caps]);
        assert_eq!(after.queue.len(), 2);
        assert!(after.line_ends);
    }
}

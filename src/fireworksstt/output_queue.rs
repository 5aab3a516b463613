// SPDX-License-Identifier: MPL-2.0
//! The output queue: everything downstream sees, in order (see `src_task.rs` for who appends
//! and who pushes). Data and its rules only.
//!
//! The queue is bounded by `MAX_WAITING_TEXT` text buffers. At the bound, live input drops the
//! oldest waiting text buffer (a live source cannot wait) and the caller posts a WARNING with
//! the count; non-live input makes the streaming thread wait for room (a file can wait, nothing
//! is lost). Events and GAPs are never dropped; consecutive GAPs are merged into one.

use std::collections::VecDeque;

use crate::client::TimedTranscript;

use super::output::{items_for_final, InterimWordTimes, OutputItem};
use super::settings::OutputMode;
use super::timeline::Timeline;

/// Text buffers that may wait for downstream (see the module documentation).
pub(super) const MAX_WAITING_TEXT: usize = 4096;

/// One entry of the output queue.
#[derive(Debug)]
pub(super) enum Queued {
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
    pub(super) queue: VecDeque<Queued>,
    /// Text entries in `queue`.
    pub(super) texts: usize,
    /// Text buffers dropped at the bound since the stream started.
    pub(super) dropped_texts: u64,
    /// The end of what went out (PTS).
    pub(super) position: Option<gst::ClockTime>,
    /// Utterance number, and the PTS up to which its words went out early, from interims.
    pub(super) early: Option<(u64, gst::ClockTime)>,
    pub(super) interim_times: InterimWordTimes,
    /// The running time at which the live task next looks for early words: the deadline of
    /// the open utterance's first word not yet pushed (`None`: no such word).
    pub(super) early_deadline: Option<gst::ClockTime>,
    /// The last result of a push downstream: an error stops the task and goes upstream.
    pub flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// The preroll GAP has been queued.
    pub prerolled: bool,
    /// EOS has been queued: no more input comes.
    pub(super) eos_queued: bool,
    /// Downstream takes any caps (a file or an application, not a text element): each
    /// utterance then ends with a line end. Decided when caps go out; kept over flushes.
    pub(super) line_ends: bool,
    /// The language of the last `LanguageCode` tag pushed (sticky: kept over flushes, gone
    /// with a new stream-start).
    pub(super) tagged_language: Option<String>,
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
            early_deadline: None,
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

    pub fn queue_item(&mut self, item: OutputItem, mode: OutputMode) {
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

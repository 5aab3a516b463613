// SPDX-License-Identifier: MPL-2.0
//! Turns transcripts into what goes out of the src pad, in order: text with PTS and
//! duration, the end-of-utterance marker, and how far the position may advance. Text carries
//! no line end: whether one is added is decided at the src pad (see `src_task.rs`).

use gst::ClockTime;

use crate::client::{TimedTranscript, TimedWord};

use super::item_meta::{ItemInfo, WordInfo};
use super::settings::OutputMode;
use super::timeline::{audio_time, Timeline};

#[derive(Debug, Clone, PartialEq)]
pub enum OutputItem {
    Text {
        text: String,
        pts: ClockTime,
        duration: ClockTime,
        /// What the buffer's `FireworksItemMeta` says (item_meta.rs).
        item: Box<ItemInfo>,
    },
    /// `rstranscribe/final-transcript`: the utterance is complete.
    FinalTranscript,
    /// Nothing more will be said before this PTS.
    GapUntil(ClockTime),
}

/// The output for one final transcript, leaving out the words that start before
/// `pushed_until` (they went out early, from interims: matching by time rather than by count
/// keeps working when the final splits or merges words differently). Times the service did not
/// give fall back to the transcript's, then to the previous word's end, then to the end of the
/// audio received.
pub fn items_for_final(
    t: &TimedTranscript,
    mode: OutputMode,
    timeline: &Timeline,
    pushed_until: Option<ClockTime>,
) -> Vec<OutputItem> {
    let fallback = t
        .start
        .and_then(|a| timeline.pts_for(audio_time(a)))
        .or_else(|| timeline.end_pts())
        .unwrap_or(ClockTime::ZERO);
    let end_pts = t.end.and_then(|a| timeline.pts_for(audio_time(a)));
    let mut items = Vec::new();
    match mode {
        OutputMode::Words if !t.words.is_empty() => {
            items.extend(
                word_items(t, timeline, fallback).filter(|item| not_yet_pushed(item, pushed_until)),
            );
        }
        OutputMode::Words => {
            // No word list (the service sent only segment text): one buffer for the text.
            let end = end_pts.unwrap_or(fallback).max(fallback);
            items.push(OutputItem::Text {
                text: t.text.clone(),
                pts: fallback,
                duration: end - fallback,
                item: Box::new(utterance_info(t, Vec::new())),
            });
        }
        OutputMode::Utterances => {
            let pts = t
                .words
                .iter()
                .find_map(|w| w.start)
                .and_then(|a| timeline.pts_for(audio_time(a)))
                .unwrap_or(fallback);
            let end = end_pts.unwrap_or(pts).max(pts);
            let words = word_times(&t.words, timeline, pts)
                .map(|time| {
                    let word = &t.words[time.index];
                    WordInfo {
                        text: word.text.trim().to_string(),
                        pts: time.pts,
                        duration: time.duration,
                        probability: word.probability,
                        hallucination_score: word.hallucination_score,
                    }
                })
                .collect();
            items.push(OutputItem::Text {
                text: t.text.clone(),
                pts,
                duration: end - pts,
                item: Box::new(utterance_info(t, words)),
            });
        }
    }
    items.push(OutputItem::FinalTranscript);
    if let Some(end) = end_pts {
        items.push(OutputItem::GapUntil(end));
    }
    items
}

/// Where each word with text lies on the input timeline, in order: (index in `words`, PTS,
/// duration). A word without times follows the previous one. Allocates nothing.
pub fn word_times<'a>(
    words: &'a [TimedWord],
    timeline: &'a Timeline,
    fallback: ClockTime,
) -> impl Iterator<Item = WordTime> + 'a {
    let mut previous_end = fallback;
    words
        .iter()
        .enumerate()
        .filter(|(_, w)| !w.text.trim().is_empty())
        .map(move |(index, word)| {
            let pts = word
                .start
                .and_then(|a| timeline.pts_for(audio_time(a)))
                .unwrap_or(previous_end);
            let end = word
                .end
                .and_then(|a| timeline.pts_for(audio_time(a)))
                .unwrap_or(pts)
                .max(pts);
            previous_end = end;
            WordTime {
                index,
                pts,
                duration: end - pts,
            }
        })
}

/// A word's place on the input timeline (see [`word_times`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordTime {
    pub index: usize,
    pub pts: ClockTime,
    pub duration: ClockTime,
}

impl WordTime {
    /// The word's text item, with the meta of a word of transcript `t`.
    fn item(&self, t: &TimedTranscript) -> OutputItem {
        let word = &t.words[self.index];
        OutputItem::Text {
            text: word.text.trim().to_string(),
            pts: self.pts,
            duration: self.duration,
            item: Box::new(ItemInfo {
                utterance: t.utterance,
                is_final: t.is_final,
                language: t.language.clone(),
                probability: word.probability,
                hallucination_score: word.hallucination_score,
                words: Vec::new(),
            }),
        }
    }
}

/// The meta of a buffer holding a whole transcript's text.
fn utterance_info(t: &TimedTranscript, words: Vec<WordInfo>) -> ItemInfo {
    ItemInfo {
        utterance: t.utterance,
        is_final: t.is_final,
        language: t.language.clone(),
        probability: None,
        hallucination_score: None,
        words,
    }
}

/// One text item per word, in order (see [`word_times`]).
fn word_items<'a>(
    t: &'a TimedTranscript,
    timeline: &'a Timeline,
    fallback: ClockTime,
) -> impl Iterator<Item = OutputItem> + 'a {
    word_times(&t.words, timeline, fallback).map(move |time| time.item(t))
}

fn not_yet_pushed(item: &OutputItem, pushed_until: Option<ClockTime>) -> bool {
    match (item, pushed_until) {
        (OutputItem::Text { pts, .. }, Some(until)) => *pts >= until,
        _ => true,
    }
}

/// The word times of an open utterance's latest interim, worked out once per interim: the
/// src pad task checks them against the clock at every heartbeat step.
#[derive(Debug, Default)]
pub struct InterimWordTimes {
    /// Which interim these are for (see `State::interim_serial`).
    serial: Option<u64>,
    times: Vec<WordTime>,
}

impl InterimWordTimes {
    /// The times of `interim`, recomputed only when `serial` says it changed.
    pub fn for_interim(
        &mut self,
        serial: u64,
        interim: &TimedTranscript,
        timeline: &Timeline,
    ) -> &[WordTime] {
        if self.serial != Some(serial) {
            let fallback = timeline.end_pts().unwrap_or(ClockTime::ZERO);
            self.times.clear();
            self.times
                .extend(word_times(&interim.words, timeline, fallback));
            self.serial = Some(serial);
        }
        &self.times
    }
}

/// The PTS of an interim's word `times` not pushed yet (starting at or after `pushed_until`),
/// in order: the words that can still fall due.
pub fn waiting_words(
    times: &[WordTime],
    pushed_until: Option<ClockTime>,
) -> impl Iterator<Item = ClockTime> + '_ {
    times
        .iter()
        .map(|time| time.pts)
        .filter(move |pts| pushed_until.is_none_or(|until| *pts >= until))
}

/// Words of an open utterance's latest interim that cannot wait for the final any more:
/// every word not yet pushed (starting at or after `pushed_until`) up to the last one for
/// which `is_due(pts)` holds (earlier words go with it, to keep the order). `times` are the
/// interim's [`word_times`]. Returns the items and the new end of what has been pushed.
pub fn due_interim_words(
    interim: &TimedTranscript,
    times: &[WordTime],
    pushed_until: Option<ClockTime>,
    is_due: impl Fn(ClockTime) -> bool,
) -> (Vec<OutputItem>, Option<ClockTime>) {
    let waiting = || {
        times
            .iter()
            .filter(move |time| pushed_until.is_none_or(|until| time.pts >= until))
    };
    // Called for every input buffer: find what is due first, build text only for that.
    let due = waiting()
        .enumerate()
        .filter(|(_, time)| is_due(time.pts))
        .last()
        .map_or(0, |(position, _)| position + 1);
    let mut until = pushed_until;
    let due_times = waiting().take(due);
    let items: Vec<OutputItem> = due_times.map(|time| time.item(interim)).collect();
    if let Some(OutputItem::Text { pts, duration, .. }) = items.last() {
        // A word that ends where the next starts must not hide it: the next starts at `until`.
        until = Some(
            pts.saturating_add(*duration)
                .max(pts.saturating_add(ClockTime::NSECOND)),
        );
    }
    (items, until)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: ClockTime = ClockTime::MSECOND;

    fn word(text: &str, start: u64, end: u64) -> TimedWord {
        TimedWord {
            text: text.into(),
            start: Some((start * MS).nseconds()),
            end: Some((end * MS).nseconds()),
            probability: None,
            hallucination_score: None,
            is_final: true,
        }
    }

    fn transcript(words: Vec<TimedWord>) -> TimedTranscript {
        TimedTranscript {
            utterance: 0,
            text: words
                .iter()
                .map(|w| w.text.clone())
                .collect::<Vec<_>>()
                .join(" "),
            is_final: true,
            promoted: false,
            language: None,
            start: words.first().and_then(|w| w.start),
            end: words.last().and_then(|w| w.end),
            words,
            delay: None,
        }
    }

    /// The meta of a final word without probability or language.
    fn final_word() -> Box<ItemInfo> {
        Box::new(ItemInfo {
            is_final: true,
            ..ItemInfo::default()
        })
    }

    fn timeline_from(pts_ms: u64) -> Timeline {
        let mut t = Timeline::default();
        t.on_buffer(Some(pts_ms * MS), 16_000 * 10 * 2, false, ClockTime::ZERO);
        t
    }

    #[test]
    fn words_mode_gives_one_buffer_per_word_on_the_input_timeline() {
        let t = transcript(vec![word("hello", 100, 400), word("world", 500, 900)]);
        let items = items_for_final(&t, OutputMode::Words, &timeline_from(2_000), None);
        assert_eq!(
            items,
            vec![
                OutputItem::Text {
                    text: "hello".into(),
                    pts: 2_100 * MS,
                    duration: 300 * MS,
                    item: final_word(),
                },
                OutputItem::Text {
                    text: "world".into(),
                    pts: 2_500 * MS,
                    duration: 400 * MS,
                    item: final_word(),
                },
                OutputItem::FinalTranscript,
                OutputItem::GapUntil(2_900 * MS),
            ]
        );
    }

    #[test]
    fn utterances_mode_gives_one_line() {
        let t = transcript(vec![word("hello", 100, 400), word("world", 500, 900)]);
        let items = items_for_final(&t, OutputMode::Utterances, &timeline_from(0), None);
        assert_eq!(
            items[0],
            OutputItem::Text {
                text: "hello world".into(),
                pts: 100 * MS,
                duration: 800 * MS,
                item: Box::new(ItemInfo {
                    is_final: true,
                    words: vec![
                        WordInfo {
                            text: "hello".into(),
                            pts: 100 * MS,
                            duration: 300 * MS,
                            probability: None,
                            hallucination_score: None,
                        },
                        WordInfo {
                            text: "world".into(),
                            pts: 500 * MS,
                            duration: 400 * MS,
                            probability: None,
                            hallucination_score: None,
                        },
                    ],
                    ..ItemInfo::default()
                }),
            }
        );
    }

    #[test]
    fn missing_word_times_fall_back_without_going_backwards() {
        let mut t = transcript(vec![word("a", 100, 200)]);
        t.words.push(TimedWord {
            text: "b".into(),
            start: None,
            end: None,
            probability: None,
            hallucination_score: None,
            is_final: true,
        });
        let items = items_for_final(&t, OutputMode::Words, &timeline_from(0), None);
        assert_eq!(
            items[1],
            OutputItem::Text {
                text: "b".into(),
                pts: 200 * MS,
                duration: ClockTime::ZERO,
                item: final_word(),
            }
        );
    }

    #[test]
    fn due_interim_words_are_a_prefix_and_the_final_skips_them() {
        let mut t = transcript(vec![
            word("one", 0, 100),
            word("two", 200, 300),
            word("three", 400, 500),
        ]);
        t.is_final = false;
        let timeline = timeline_from(0);
        let mut cache = InterimWordTimes::default();
        let times = cache.for_interim(1, &t, &timeline).to_vec();
        assert_eq!(times.len(), 3);
        let (items, until) = due_interim_words(&t, &times, None, |pts| pts <= 250 * MS);
        assert_eq!(items.len(), 2);
        assert_eq!(until, Some(300 * MS));
        let (items, again) = due_interim_words(&t, &times, until, |pts| pts <= 250 * MS);
        assert!(items.is_empty());
        assert_eq!(again, until);
        // The next word that can fall due is the first one not pushed.
        let waiting = |until| waiting_words(&times, until).collect::<Vec<_>>();
        assert_eq!(waiting(None), vec![ClockTime::ZERO, 200 * MS, 400 * MS]);
        assert_eq!(waiting(until), vec![400 * MS]);
        assert!(waiting(Some(500 * MS)).is_empty());
        // The final merged "two" and "three" into one word: only what starts after the early
        // words goes out.
        let mut fin = transcript(vec![
            word("one", 0, 100),
            word("two", 200, 300),
            word("three", 400, 500),
        ]);
        fin.words[1].text = "too".into();
        let rest = items_for_final(&fin, OutputMode::Words, &timeline, until);
        assert_eq!(
            rest[0],
            OutputItem::Text {
                text: "three".into(),
                pts: 400 * MS,
                duration: 100 * MS,
                item: final_word(),
            }
        );
        assert_eq!(rest[1], OutputItem::FinalTranscript);
    }
}

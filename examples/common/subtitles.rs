// SPDX-License-Identifier: MPL-2.0
//! Subtitle cues laid out from timed words, as subtitle practice has them: at most
//! [`MAX_LINES`] lines of at most [`MAX_LINE_CHARS`] characters, at most [`MAX_CUE`] on screen,
//! split between words at the words' own times, never overlapping, and never spanning two
//! utterances. Writers for SRT and WebVTT.
//!
//! `srtenc`/`webvttenc` cannot do this: they write one cue per text buffer, so an utterance
//! buffer becomes one cue of any length on one line, and word buffers one cue per word.

use std::fmt::Write as _;
use std::time::Duration;

pub const MAX_LINE_CHARS: usize = 42;
pub const MAX_LINES: usize = 2;
pub const MAX_CUE: Duration = Duration::from_secs(7);
/// Shortest cue written: one that would be shorter is lengthened (into the gap before the next
/// cue, if there is one) so that it can be seen at all.
const MIN_CUE: Duration = Duration::from_millis(40);

/// A word with its times in the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedWord {
    pub text: String,
    pub start: Duration,
    pub end: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start: Duration,
    pub end: Duration,
    pub lines: Vec<String>,
}

/// Words of one utterance whose word times are missing get times spread over the utterance's
/// span by their length; `None` when there is nothing to time them by.
pub fn time_words(
    words: &[(String, Option<Duration>, Option<Duration>)],
    span: Option<(Duration, Duration)>,
) -> Option<Vec<TimedWord>> {
    if let Some(timed) = words
        .iter()
        .map(|(text, start, end)| {
            Some(TimedWord {
                text: text.clone(),
                start: (*start)?,
                end: (*end)?,
            })
        })
        .collect::<Option<Vec<_>>>()
    {
        return Some(timed);
    }
    let (from, to) = span?;
    let total: usize = words.iter().map(|(t, _, _)| t.chars().count() + 1).sum();
    let length = to.saturating_sub(from);
    let mut at = 0usize;
    Some(
        words
            .iter()
            .map(|(text, _, _)| {
                let start = from + length.mul_f64(at as f64 / total.max(1) as f64);
                at += text.chars().count() + 1;
                let end = from + length.mul_f64(at as f64 / total.max(1) as f64);
                TimedWord {
                    text: text.clone(),
                    start,
                    end,
                }
            })
            .collect(),
    )
}

/// The lines for `words` when they fit in one cue: one line if it is short enough, otherwise
/// the two most even lines broken between words. `None` when they do not fit.
fn break_lines(words: &[&str]) -> Option<Vec<String>> {
    let one = words.join(" ");
    if one.chars().count() <= MAX_LINE_CHARS {
        return Some(vec![one]);
    }
    (1..words.len())
        .map(|k| (words[..k].join(" "), words[k..].join(" ")))
        .filter(|(a, b)| a.chars().count() <= MAX_LINE_CHARS && b.chars().count() <= MAX_LINE_CHARS)
        // The most even split; of equals, the one with the shorter first line (bottom-heavy).
        .min_by_key(|(a, b)| {
            let (a, b) = (a.chars().count(), b.chars().count());
            (a.abs_diff(b), a)
        })
        .map(|(a, b)| vec![a, b])
}

/// Lays out the cues of a sequence of utterances (each a list of timed words, in order).
pub fn layout(utterances: &[Vec<TimedWord>]) -> Vec<Cue> {
    let mut cues = Vec::new();
    for words in utterances {
        let mut first = 0;
        while first < words.len() {
            // Grow the cue word by word while it fits in the lines and in the time.
            let mut last = first;
            while last + 1 < words.len() {
                let candidate: Vec<&str> = words[first..=last + 1]
                    .iter()
                    .map(|w| w.text.as_str())
                    .collect();
                let span = words[last + 1].end.saturating_sub(words[first].start);
                if break_lines(&candidate).is_none() || span > MAX_CUE {
                    break;
                }
                last += 1;
            }
            let texts: Vec<&str> = words[first..=last]
                .iter()
                .map(|w| w.text.as_str())
                .collect();
            // A single word longer than a line stands alone on its line.
            let lines = break_lines(&texts).unwrap_or_else(|| vec![texts.join(" ")]);
            let start = words[first].start;
            let end = words[last].end.max(start).min(start + MAX_CUE);
            cues.push(Cue { start, end, lines });
            first = last + 1;
        }
    }
    separate(&mut cues);
    cues
}

/// Makes the cues follow one another: each ends no later than the next begins, and lasts at
/// least [`MIN_CUE`] where the next one leaves room.
fn separate(cues: &mut [Cue]) {
    cues.sort_by_key(|c| c.start);
    for i in 0..cues.len() {
        let (head, tail) = cues.split_at_mut(i + 1);
        let cue = &mut head[i];
        cue.end = cue.end.max(cue.start + MIN_CUE);
        if let Some(next) = tail.first_mut() {
            // Words that start (almost) together: the later cue waits a moment.
            next.start = next.start.max(cue.start + MIN_CUE);
            cue.end = cue.end.min(next.start);
        }
    }
}

fn timestamp(t: Duration, separator: char) -> String {
    let ms = t.as_millis();
    format!(
        "{:02}:{:02}:{:02}{separator}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

pub fn srt(cues: &[Cue]) -> String {
    let mut out = String::new();
    for (i, cue) in cues.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = write!(
            out,
            "{}\n{} --> {}\n{}\n",
            i + 1,
            timestamp(cue.start, ','),
            timestamp(cue.end, ','),
            cue.lines.join("\n")
        );
    }
    out
}

pub fn webvtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n");
    for cue in cues {
        let _ = write!(
            out,
            "\n{} --> {}\n{}\n",
            timestamp(cue.start, '.'),
            timestamp(cue.end, '.'),
            cue.lines.join("\n")
        );
    }
    out
}

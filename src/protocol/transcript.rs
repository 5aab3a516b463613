// SPDX-License-Identifier: MPL-2.0
//! The transcript state machine: turns transcription messages into interim and final
//! transcripts and per-utterance speech boundaries.
//!
//! It follows the rules of LiveKit's plugin (docs/protocol.md#base-rules, R1–R14) with our
//! changes (docs/protocol.md#changes-in-fireworksstt, D1–D8): state is reset per connection,
//! texts are trimmed and empty ones skipped, START/END bracket each utterance, pending interim
//! text is promoted at end of stream, and a bad message leaves the state untouched (LiveKit's
//! plugin keeps a partial update, TV14). TVn are the test vectors of
//! docs/protocol.md#test-vectors.
//!
//! The server is not trusted to finalize: the text held for the open utterance is bounded by
//! [`MAX_PENDING_SEGMENTS`] and [`MAX_PENDING_BYTES`], whatever it sends.

use std::collections::BTreeMap;
use std::fmt;

use super::messages::{Segment, SegmentId, TranscriptionMessage, Word};

/// One word of a transcript. Times are seconds relative to the start of the connection.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptWord {
    pub text: String,
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub probability: Option<f64>,
    /// The service's estimate that the word was not really spoken.
    pub hallucination_score: Option<f64>,
    pub is_final: bool,
}

/// The text of the open utterance as of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// 0 for the first utterance of a [`TranscriptState`], +1 after each one ends.
    pub utterance: u64,
    /// Trimmed segment texts, empty ones skipped, joined with single spaces.
    pub text: String,
    /// As the server reported it in the message.
    pub language: Option<String>,
    /// The words backing `text`, in segment-id order.
    pub words: Vec<TranscriptWord>,
    /// Connection-relative seconds: the first word's start, else the earliest segment start.
    pub start: Option<f64>,
    /// Connection-relative seconds: the last word's end, else the latest segment end.
    pub end: Option<f64>,
    /// True only for a final made by [`TranscriptState::end_of_stream`] from interim text.
    pub promoted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TranscriptEvent {
    SpeechStarted { utterance: u64 },
    Interim(Transcript),
    Final(Transcript),
    SpeechEnded { utterance: u64 },
}

/// A transcription message that cannot be applied; the state is left unchanged.
#[derive(Debug, Clone, PartialEq)]
pub enum TranscriptError {
    /// A new segment (id above the last finalized one) without a `text` field.
    MissingSegmentText { id: SegmentId },
}

impl fmt::Display for TranscriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingSegmentText { id } => write!(
                f,
                "Fireworks sent segment {id} without a `text` field; the message was ignored"
            ),
        }
    }
}

impl std::error::Error for TranscriptError {}

/// The "no segment finalized yet" id of the base rules. Ids are [`SegmentId`]s, ordered as
/// numbers, with text ids after every number (docs/protocol.md#tv12).
const NO_FINAL_SEGMENT: SegmentId = SegmentId::Number(-1);

/// Most segments held for the open utterance on one connection.
///
/// Real speech has a handful pending at a time: the server finalizes after
/// `text_timeout_seconds` of silence, every final empties the map, and its window holds about
/// 20 s of audio (docs/protocol.md#how-segments-change). 1024 is far above that; only a server
/// that keeps sending new ids without ever finalizing reaches it. Beyond it the lowest ids (the
/// oldest text) are dropped, so the newest text is always shown.
pub const MAX_PENDING_SEGMENTS: usize = 1024;

/// Most bytes held for the open utterance on one connection, as counted by
/// [`TranscriptState::pending_bytes`]: text bytes plus, per word, its text and the size of a
/// [`TranscriptWord`] (96 bytes on 64-bit targets).
///
/// 1 MiB is about 12,000 words, well over an hour of continuous speech that the server never
/// finalized. Beyond it the lowest ids are dropped; a single segment larger than this on its own
/// is cut to fit (its first words, and its text cut on a character boundary).
pub const MAX_PENDING_BYTES: usize = 1024 * 1024;

/// What is currently shown for one segment id.
#[derive(Debug, Clone)]
struct SegmentEntry {
    text: String,
    words: Vec<TranscriptWord>,
    start: Option<f64>,
    end: Option<f64>,
    /// What this entry counts for in [`TranscriptState::pending_bytes`]; at most
    /// [`MAX_PENDING_BYTES`].
    bytes: usize,
}

impl SegmentEntry {
    /// A segment above the last finalized one: its own text and words, cut to fit the byte
    /// budget if it is larger than all of it.
    fn new(text: &str, words: &[Word], start: Option<f64>, end: Option<f64>) -> Self {
        let text_share = text.len().min(MAX_PENDING_BYTES / 2);
        let words = transcript_words(words, MAX_PENDING_BYTES - text_share);
        let word_total = words_bytes(&words);
        let text = prefix_within(text, MAX_PENDING_BYTES - word_total).to_owned();
        Self {
            bytes: text.len() + word_total,
            text,
            words,
            start,
            end,
        }
    }

    /// New words of the last finalized segment: the text is the words joined, which is never
    /// longer than the words' own byte count, so half the budget for the words is enough.
    fn from_new_words(words: &[Word], end: Option<f64>) -> Self {
        let words = transcript_words(words, MAX_PENDING_BYTES / 2);
        let text = join_words(&words);
        Self {
            bytes: text.len() + words_bytes(&words),
            text,
            words,
            // The segment's start belongs to its already-finalized words.
            start: None,
            end,
        }
    }
}

#[derive(Debug)]
pub struct TranscriptState {
    /// Segment id → current text; `texts` in the base rules.
    segments: BTreeMap<SegmentId, SegmentEntry>,
    last_final_id: SegmentId,
    /// Words of segment `last_final_id` already emitted in a final. The base rules keep a map
    /// from id to count, but only reads the entry of the last final id, which every final sets.
    finalized_word_count: usize,
    speaking: bool,
    utterance: u64,
    /// The last event of the open utterance, if it was an interim: promoted at end of stream.
    pending_interim: Option<Transcript>,
}

impl Default for TranscriptState {
    fn default() -> Self {
        Self {
            segments: BTreeMap::new(),
            last_final_id: NO_FINAL_SEGMENT,
            finalized_word_count: 0,
            speaking: false,
            utterance: 0,
            pending_interim: None,
        }
    }
}

impl TranscriptState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Per-connection reset (D1): segment texts, last-final id and finalized word count.
    ///
    /// Keeps the utterance counter, the speaking flag and the pending interim: a reconnect
    /// continues the same utterance, and the replayed audio will be transcribed again.
    pub fn begin_connection(&mut self) {
        self.segments.clear();
        self.last_final_id = NO_FINAL_SEGMENT;
        self.finalized_word_count = 0;
    }

    /// Applies one transcription message and returns the events it causes, in order.
    ///
    /// Atomic: the message is validated first, and on error nothing changes.
    pub fn handle(
        &mut self,
        msg: &TranscriptionMessage,
    ) -> Result<Vec<TranscriptEvent>, TranscriptError> {
        // R2: a message without segments changes nothing.
        let Some(latest) = highest_segment(&msg.segments) else {
            return Ok(Vec::new());
        };
        self.validate(&msg.segments)?;

        for segment in &msg.segments {
            self.apply(segment);
        }
        // R5: a lower highest id than before means trailing segments were retracted.
        self.segments.retain(|id, _| *id <= latest.id);
        self.enforce_bounds();

        let Some(transcript) = self.current_transcript(msg.language.clone()) else {
            return Ok(Vec::new());
        };
        let mut events = Vec::with_capacity(3);
        if !self.speaking {
            self.speaking = true;
            events.push(TranscriptEvent::SpeechStarted {
                utterance: self.utterance,
            });
        }
        if ends_in_final_word(latest) {
            events.push(TranscriptEvent::Final(transcript));
            self.segments.clear();
            self.last_final_id = latest.id.clone();
            self.finalized_word_count = latest.words.as_ref().map_or(0, Vec::len);
            events.push(self.close_utterance());
        } else {
            self.pending_interim = Some(transcript.clone());
            events.push(TranscriptEvent::Interim(transcript));
        }
        Ok(events)
    }

    /// End of stream completed (echo, close or timeout).
    ///
    /// Interim text the server never finalized is emitted once as a promoted final, then the
    /// utterance ends. Afterwards the state is as after [`Self::begin_connection`], not speaking.
    ///
    /// The promoted final is a copy of the last interim, so its times are relative to the
    /// connection that produced that interim, which may precede a reconnect.
    pub fn end_of_stream(&mut self) -> Vec<TranscriptEvent> {
        let mut events = Vec::with_capacity(2);
        if let Some(pending) = self.pending_interim.take() {
            events.push(TranscriptEvent::Final(Transcript {
                promoted: true,
                ..pending
            }));
            events.push(self.close_utterance());
        } else if self.speaking {
            events.push(self.close_utterance());
        }
        self.begin_connection();
        events
    }

    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Start time (connection-relative seconds) of the open utterance's pending interim text.
    ///
    /// Relative to the connection that produced the interim: after [`Self::begin_connection`]
    /// it still refers to the earlier connection until a new interim arrives.
    pub fn open_utterance_start(&self) -> Option<f64> {
        self.pending_interim.as_ref().and_then(|t| t.start)
    }

    /// The number of the current utterance, or of the next one when none is open.
    pub fn utterance(&self) -> u64 {
        self.utterance
    }

    /// Segments held for the open utterance on this connection: at most
    /// [`MAX_PENDING_SEGMENTS`] between messages.
    pub fn pending_segments(&self) -> usize {
        self.segments.len()
    }

    /// Bytes held for the open utterance on this connection (text bytes, plus per word its text
    /// and the size of a [`TranscriptWord`]): at most [`MAX_PENDING_BYTES`] between messages.
    ///
    /// The copy of the last interim kept for promotion at end of stream is built from these
    /// segments and is not counted again.
    pub fn pending_bytes(&self) -> usize {
        self.segments.values().map(|entry| entry.bytes).sum()
    }

    /// The only way R4 can fail: a new segment without text (TV14).
    fn validate(&self, segments: &[Segment]) -> Result<(), TranscriptError> {
        match segments
            .iter()
            .find(|s| s.id > self.last_final_id && s.text.is_none())
        {
            Some(bad) => Err(TranscriptError::MissingSegmentText { id: bad.id.clone() }),
            None => Ok(()),
        }
    }

    /// R4 for one segment.
    fn apply(&mut self, segment: &Segment) {
        if segment.id < self.last_final_id {
            return;
        }
        if segment.id > self.last_final_id {
            let words = segment.words.as_deref().unwrap_or_default();
            let text = segment.text.as_deref().unwrap_or_default();
            let entry = SegmentEntry::new(text, words, segment.start, segment.end);
            self.segments.insert(segment.id.clone(), entry);
            return;
        }
        // The last finalized segment: only words beyond those already emitted are new, and
        // its `text` (which still holds the finalized words) is not used.
        let words = segment.words.as_deref().unwrap_or_default();
        match words.get(self.finalized_word_count..) {
            Some(new_words) if !new_words.is_empty() => {
                let entry = SegmentEntry::from_new_words(new_words, segment.end);
                self.segments.insert(segment.id.clone(), entry);
            }
            _ => {
                self.segments.remove(&segment.id);
            }
        }
    }

    /// Drops the lowest ids until at most [`MAX_PENDING_SEGMENTS`] segments and
    /// [`MAX_PENDING_BYTES`] remain. Every entry fits the byte budget on its own, so the
    /// highest id, the newest text, is always kept.
    fn enforce_bounds(&mut self) {
        while self.segments.len() > MAX_PENDING_SEGMENTS {
            self.segments.pop_first();
        }
        let mut bytes = self.pending_bytes();
        while bytes > MAX_PENDING_BYTES {
            let Some((_, dropped)) = self.segments.pop_first() else {
                break;
            };
            bytes -= dropped.bytes;
        }
    }

    /// R6 and R7 with our trimming (D5): `None` when there is no text to show.
    fn current_transcript(&self, language: Option<String>) -> Option<Transcript> {
        let shown: Vec<(&str, &SegmentEntry)> = self
            .segments
            .values()
            .map(|entry| (entry.text.trim(), entry))
            .filter(|(text, _)| !text.is_empty())
            .collect();
        if shown.is_empty() {
            return None;
        }
        let text = shown
            .iter()
            .map(|(text, _)| *text)
            .collect::<Vec<_>>()
            .join(" ");
        let words: Vec<TranscriptWord> = shown
            .iter()
            .flat_map(|(_, entry)| entry.words.iter().cloned())
            .collect();
        let segment_start = shown.iter().filter_map(|(_, e)| e.start).reduce(f64::min);
        let segment_end = shown.iter().filter_map(|(_, e)| e.end).reduce(f64::max);
        Some(Transcript {
            utterance: self.utterance,
            text,
            language,
            start: words.iter().find_map(|w| w.start).or(segment_start),
            end: words.iter().rev().find_map(|w| w.end).or(segment_end),
            words,
            promoted: false,
        })
    }

    /// Emits END for the open utterance and moves on to the next utterance number.
    fn close_utterance(&mut self) -> TranscriptEvent {
        let ended = TranscriptEvent::SpeechEnded {
            utterance: self.utterance,
        };
        self.speaking = false;
        self.pending_interim = None;
        self.utterance += 1;
        ended
    }

    #[cfg(test)]
    pub(super) fn last_final_id(&self) -> i64 {
        match &self.last_final_id {
            SegmentId::Number(id) => *id,
            SegmentId::Text(id) => panic!("text id {id:?}"),
        }
    }

    #[cfg(test)]
    pub(super) fn finalized_word_count(&self) -> usize {
        self.finalized_word_count
    }
}

/// R3: the segment with the largest id; the first of equals, as Python's `max` picks.
fn highest_segment(segments: &[Segment]) -> Option<&Segment> {
    segments
        .iter()
        .reduce(|best, s| if s.id > best.id { s } else { best })
}

/// R9: final iff the highest-id segment's last word is final.
fn ends_in_final_word(segment: &Segment) -> bool {
    segment
        .words
        .as_ref()
        .and_then(|words| words.last())
        .is_some_and(|word| word.is_final)
}

/// Words with text, trimmed; words without text back nothing in the transcript. Only the first
/// words whose [`words_bytes`] fit in `budget` are kept.
fn transcript_words(words: &[Word], budget: usize) -> Vec<TranscriptWord> {
    let mut used = 0;
    words
        .iter()
        .filter_map(|word| {
            let text = word.word.as_deref()?.trim();
            (!text.is_empty()).then_some((word, text))
        })
        .map_while(|(word, text)| {
            used += word_bytes(text);
            (used <= budget).then(|| TranscriptWord {
                text: text.to_owned(),
                start: word.start,
                end: word.end,
                probability: word.probability,
                hallucination_score: word.hallucination_score,
                is_final: word.is_final,
            })
        })
        .collect()
}

/// What one word counts for in [`TranscriptState::pending_bytes`].
fn word_bytes(text: &str) -> usize {
    std::mem::size_of::<TranscriptWord>() + text.len()
}

fn words_bytes(words: &[TranscriptWord]) -> usize {
    words.iter().map(|w| word_bytes(&w.text)).sum()
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn prefix_within(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn join_words(words: &[TranscriptWord]) -> String {
    words
        .iter()
        .map(|w| w.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::{describe, message, seg, seg_without_words};
    use super::*;

    fn events(state: &mut TranscriptState, segments: Vec<serde_json::Value>) -> Vec<String> {
        describe(&state.handle(&message(segments)).expect("accepted"))
    }

    fn only_transcript(events: &[TranscriptEvent]) -> &Transcript {
        let mut found = events.iter().filter_map(|e| match e {
            TranscriptEvent::Interim(t) | TranscriptEvent::Final(t) => Some(t),
            _ => None,
        });
        let transcript = found.next().expect("one transcript");
        assert!(found.next().is_none());
        transcript
    }

    #[test]
    fn words_times_and_language_are_carried() {
        let mut state = TranscriptState::new();
        let msg = message(vec![
            json!({"id": 1, "text": " world ", "start": 1.0, "end": 1.6, "words": [
                {"word": " world", "is_final": true, "start": 1.1, "end": 1.5, "probability": 0.8}
            ]}),
            json!({"id": 0, "text": "hello", "start": 0.2, "end": 0.9, "words": [
                {"word": "hello", "is_final": true, "start": 0.25, "end": 0.8, "probability": 0.9}
            ]}),
        ]);
        let events = state.handle(&msg).unwrap();
        let t = only_transcript(&events);
        assert!(matches!(events[1], TranscriptEvent::Final(_)));
        assert_eq!(t.text, "hello world");
        assert_eq!(t.language.as_deref(), Some("en"));
        assert_eq!((t.start, t.end), (Some(0.25), Some(1.5)));
        assert!(!t.promoted);
        assert_eq!(
            t.words,
            vec![
                TranscriptWord {
                    text: "hello".into(),
                    start: Some(0.25),
                    end: Some(0.8),
                    probability: Some(0.9),
                    hallucination_score: None,
                    is_final: true,
                },
                TranscriptWord {
                    text: "world".into(),
                    start: Some(1.1),
                    end: Some(1.5),
                    probability: Some(0.8),
                    hallucination_score: None,
                    is_final: true,
                },
            ]
        );
    }

    #[test]
    fn segment_times_are_used_when_words_have_none() {
        let mut state = TranscriptState::new();
        let msg = message(vec![
            json!({"id": 0, "text": "a", "start": 0.5, "end": 1.0}),
            json!({"id": 1, "text": "b", "start": 1.2, "end": 2.0, "words": [{"word": "b"}]}),
        ]);
        let events = state.handle(&msg).unwrap();
        let t = only_transcript(&events);
        assert_eq!((t.start, t.end), (Some(0.5), Some(2.0)));
        assert_eq!(t.words.len(), 1, "segment 0 has no words");
        assert_eq!(state.open_utterance_start(), Some(0.5));

        let untimed = message(vec![seg(0, "x", "x")]);
        let mut state = TranscriptState::new();
        let t = only_transcript(&state.handle(&untimed).unwrap()).clone();
        assert_eq!((t.start, t.end), (None, None));
        assert_eq!(state.open_utterance_start(), None);
    }

    #[test]
    fn growing_final_segment_shows_only_new_words_and_their_times() {
        let mut state = TranscriptState::new();
        let first = json!({"id": 0, "text": "a b", "start": 0.0, "end": 2.0, "words": [
            {"word": "a", "is_final": true}, {"word": "b", "is_final": true}]});
        state.handle(&message(vec![first])).unwrap();
        let grown = json!({"id": 0, "text": "a b c", "start": 0.0, "end": 3.0, "words": [
            {"word": "a", "is_final": true}, {"word": "b", "is_final": true},
            {"word": " c ", "start": 2.5, "end": 2.9}, {"word": ""}]});
        let events = state.handle(&message(vec![grown])).unwrap();
        let t = only_transcript(&events);
        assert_eq!(t.text, "c");
        assert_eq!(t.words.len(), 1);
        assert_eq!((t.start, t.end), (Some(2.5), Some(2.9)));
        assert_eq!(state.open_utterance_start(), Some(2.5));
    }

    #[test]
    fn utterances_are_numbered_across_connections() {
        let mut state = TranscriptState::new();
        assert_eq!(state.utterance(), 0);
        let all = |state: &mut TranscriptState, segments| {
            state.handle(&message(segments)).expect("accepted")
        };
        let first = all(&mut state, vec![seg(0, "a", "a*")]);
        assert_eq!(
            first.first(),
            Some(&TranscriptEvent::SpeechStarted { utterance: 0 })
        );
        assert_eq!(
            first.last(),
            Some(&TranscriptEvent::SpeechEnded { utterance: 0 })
        );
        assert_eq!(only_transcript(&first).utterance, 0);
        assert_eq!(state.utterance(), 1);

        state.begin_connection();
        assert_eq!(state.utterance(), 1, "not reset per connection");
        let second = all(&mut state, vec![seg(0, "b", "b")]);
        assert_eq!(
            second.first(),
            Some(&TranscriptEvent::SpeechStarted { utterance: 1 })
        );
        assert_eq!(only_transcript(&second).utterance, 1);
        let done = all(&mut state, vec![seg(0, "b c", "b* c*")]);
        assert_eq!(only_transcript(&done).utterance, 1);
        assert_eq!(
            done.last(),
            Some(&TranscriptEvent::SpeechEnded { utterance: 1 })
        );
        assert_eq!(state.utterance(), 2);
    }

    #[test]
    fn reconnect_continues_the_open_utterance() {
        let mut state = TranscriptState::new();
        assert_eq!(
            events(&mut state, vec![seg(4, "hel", "hel")]),
            ["START", "INTERIM hel"]
        );
        state.begin_connection();
        assert!(state.is_speaking());
        // The new connection's ids restart at 0 and are not swallowed (TV11, D1).
        assert_eq!(
            events(&mut state, vec![seg(0, "hello", "hello")]),
            ["INTERIM hello"]
        );
        assert_eq!(
            events(&mut state, vec![seg(0, "hello", "hello*")]),
            ["FINAL hello", "END"]
        );
        assert_eq!(state.utterance(), 1);
    }

    #[test]
    fn reconnect_without_new_text_still_promotes_the_old_interim() {
        let mut state = TranscriptState::new();
        events(&mut state, vec![seg(0, "pending", "pending")]);
        state.begin_connection();
        assert_eq!(
            describe(&state.end_of_stream()),
            ["FINAL(promoted) pending", "END"]
        );
    }

    #[test]
    fn promotion_happens_once() {
        let mut state = TranscriptState::new();
        events(&mut state, vec![seg(0, "almost", "almost")]);
        let promoted = state.end_of_stream();
        assert_eq!(describe(&promoted), ["FINAL(promoted) almost", "END"]);
        let t = only_transcript(&promoted);
        assert!(t.promoted);
        assert_eq!(t.utterance, 0);
        assert_eq!(promoted[1], TranscriptEvent::SpeechEnded { utterance: 0 });
        assert!(!state.is_speaking());
        assert_eq!(state.utterance(), 1);
        assert!(state.end_of_stream().is_empty());
    }

    #[test]
    fn server_finalized_text_is_never_promoted() {
        let mut state = TranscriptState::new();
        events(&mut state, vec![seg(0, "done", "done")]);
        events(&mut state, vec![seg(0, "done", "done*")]);
        assert!(state.end_of_stream().is_empty());

        // A repeated final (TV9) emits nothing and leaves nothing to promote.
        let mut state = TranscriptState::new();
        events(&mut state, vec![seg(0, "x", "x*")]);
        events(&mut state, vec![seg(0, "x", "x*")]);
        assert!(state.end_of_stream().is_empty());
    }

    #[test]
    fn end_of_stream_resets_segment_state() {
        let mut state = TranscriptState::new();
        events(&mut state, vec![seg(0, "a b", "a* b*")]);
        assert_eq!(state.last_final_id(), 0);
        assert!(state.end_of_stream().is_empty());
        assert_eq!(state.last_final_id(), -1);
        assert_eq!(state.finalized_word_count(), 0);
        assert_eq!(
            events(&mut state, vec![seg(0, "a b", "a b")]),
            ["START", "INTERIM a b"]
        );
    }

    #[test]
    fn identical_interims_are_all_emitted() {
        let mut state = TranscriptState::new();
        let same = || vec![seg(0, "same", "same")];
        assert_eq!(events(&mut state, same()), ["START", "INTERIM same"]);
        assert_eq!(events(&mut state, same()), ["INTERIM same"]);
        assert_eq!(events(&mut state, same()), ["INTERIM same"]);
    }

    #[test]
    fn errors_leave_the_state_unchanged() {
        let mut state = TranscriptState::new();
        events(&mut state, vec![seg(0, "a", "a")]);
        let bad = message(vec![
            seg(0, "changed", "changed"),
            json!({"id": 5, "words": [{"word": "x", "is_final": true}]}),
        ]);
        let err = state.handle(&bad).unwrap_err();
        assert_eq!(err, TranscriptError::MissingSegmentText { id: 5.into() });
        assert!(err.to_string().contains("segment 5"));
        // Segment 1 would have been retracted and 0 changed; neither happened.
        assert_eq!(
            events(&mut state, vec![seg(0, "a", "a"), seg(1, "b", "b")]),
            ["INTERIM a b"]
        );
    }

    #[test]
    fn missing_text_is_fine_where_text_is_not_used() {
        let mut state = TranscriptState::new();
        events(&mut state, vec![seg(1, "a", "a*")]);
        let msg = message(vec![
            json!({"id": 0}),
            json!({"id": 1, "words": [{"word": "a", "is_final": true}, {"word": "b"}]}),
        ]);
        assert_eq!(
            describe(&state.handle(&msg).unwrap()),
            ["START", "INTERIM b"]
        );
    }

    #[test]
    fn duplicate_highest_ids_use_the_first_for_finality() {
        let mut state = TranscriptState::new();
        let msg = vec![seg(0, "a", "a"), seg(0, "b", "b*")];
        // Like Python's max(): the first of equal ids decides; the later one's text wins.
        assert_eq!(events(&mut state, msg), ["START", "INTERIM b"]);
    }

    #[test]
    fn extreme_ids_do_not_overflow() {
        let mut state = TranscriptState::new();
        assert_eq!(
            events(&mut state, vec![seg(i64::MAX, "big", "big*")]),
            ["START", "FINAL big", "END"]
        );
        assert_eq!(
            events(&mut state, vec![seg(i64::MIN, "small", "small")]),
            Vec::<String>::new()
        );
        // As in the base rules, ids below -1 are skipped and -1 counts as the last final id.
        let mut state = TranscriptState::new();
        let negative = vec![seg(i64::MIN, "neg", "neg"), seg_without_words(-1, "m")];
        assert!(events(&mut state, negative).is_empty());
        assert_eq!(
            events(&mut state, vec![seg(-1, "w", "w")]),
            ["START", "INTERIM w"]
        );
    }

    #[test]
    fn whitespace_words_and_texts_emit_nothing() {
        let mut state = TranscriptState::new();
        assert!(events(
            &mut state,
            vec![seg(0, "  ", ""), seg_without_words(1, "\n")]
        )
        .is_empty());
        assert!(!state.is_speaking());
        assert!(state.end_of_stream().is_empty());
    }

    /// `count` segments with ids `first..`, each with text `text` and no words.
    fn plain_segments(first: i64, count: usize, text: &str) -> Vec<serde_json::Value> {
        (first..)
            .take(count)
            .map(|id| seg_without_words(id, text))
            .collect()
    }

    fn interim_text(events: &[TranscriptEvent]) -> &str {
        match events.last() {
            Some(TranscriptEvent::Interim(t)) => &t.text,
            other => panic!("expected an interim last: {other:?}"),
        }
    }

    #[test]
    fn new_ids_without_finals_keep_at_most_the_newest_segments() {
        let mut state = TranscriptState::new();
        // A hostile server: every message adds one id, nothing is ever final.
        for id in 0..(MAX_PENDING_SEGMENTS as i64 + 500) {
            let events = state
                .handle(&message(vec![seg(
                    id,
                    &format!("w{id}"),
                    &format!("w{id}"),
                )]))
                .unwrap();
            assert!(state.pending_segments() <= MAX_PENDING_SEGMENTS);
            assert!(interim_text(&events).ends_with(&format!("w{id}")));
        }
        assert_eq!(state.pending_segments(), MAX_PENDING_SEGMENTS);
        let events = state
            .handle(&message(vec![seg(5000, "last", "last")]))
            .unwrap();
        let text = interim_text(&events);
        // The lowest ids went first: ids 0..=1523 were sent before 5000, and the newest 1,023 of
        // them are kept next to it.
        let oldest_kept = 500 + 1;
        assert!(text.starts_with(&format!("w{oldest_kept} ")), "{text:.40}");
        assert!(text.ends_with(" last"));
        assert_eq!(text.split(' ').count(), MAX_PENDING_SEGMENTS);
    }

    #[test]
    fn one_message_with_too_many_segments_is_bounded() {
        let mut state = TranscriptState::new();
        let events = state
            .handle(&message(plain_segments(0, 3 * MAX_PENDING_SEGMENTS, "x")))
            .unwrap();
        assert_eq!(state.pending_segments(), MAX_PENDING_SEGMENTS);
        assert_eq!(
            interim_text(&events).len(),
            2 * MAX_PENDING_SEGMENTS - 1,
            "1024 × \"x\" joined"
        );
    }

    #[test]
    fn long_texts_are_bounded_in_bytes_and_the_newest_is_kept() {
        let mut state = TranscriptState::new();
        let long = "é".repeat(100_000); // 200,000 bytes
        for id in 0..20 {
            let text = format!("{id} {long}");
            let events = state
                .handle(&message(vec![seg_without_words(id, &text)]))
                .unwrap();
            assert!(state.pending_bytes() <= MAX_PENDING_BYTES);
            assert!(interim_text(&events).len() <= MAX_PENDING_BYTES);
            assert!(interim_text(&events).starts_with(&format!("{} ", (id - 4).max(0))));
        }
        // Five of them fit in 1 MiB (5 × 200,003 bytes), a sixth does not.
        assert_eq!(state.pending_segments(), 5);
        assert_eq!(state.pending_bytes(), 5 * (long.len() + 3));
    }

    #[test]
    fn a_segment_larger_than_the_budget_is_cut_on_a_char_boundary() {
        let mut state = TranscriptState::new();
        // 3-byte characters, so the byte limit falls inside a character.
        let huge = "日".repeat(MAX_PENDING_BYTES);
        let events = state
            .handle(&message(vec![
                seg_without_words(0, "small"),
                seg_without_words(1, &huge),
            ]))
            .unwrap();
        let text = interim_text(&events);
        assert_eq!(
            state.pending_segments(),
            1,
            "the small older segment made room"
        );
        assert!(state.pending_bytes() <= MAX_PENDING_BYTES);
        assert!(text.len() <= MAX_PENDING_BYTES && text.len() > MAX_PENDING_BYTES - 3);
        assert!(text.chars().all(|c| c == '日'));
    }

    #[test]
    fn huge_word_lists_are_cut_to_their_first_words() {
        let count = MAX_PENDING_BYTES / 50; // more than fit: each word costs over 80 bytes
        let words: Vec<serde_json::Value> = (0..count)
            .map(|i| json!({"word": format!("w{i}"), "is_final": false}))
            .collect();
        let text = (0..count)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");

        let mut state = TranscriptState::new();
        let msg = message(vec![json!({"id": 0, "text": text, "words": words})]);
        let events = state.handle(&msg).unwrap();
        let t = only_transcript(&events);
        assert!(state.pending_bytes() <= MAX_PENDING_BYTES);
        assert!(t.words.len() < count && !t.words.is_empty());
        assert_eq!(t.words[0].text, "w0");
        assert!(t.text.starts_with("w0 w1 "));

        // The new words of a finalized segment that keeps growing: text and words still agree.
        let mut state = TranscriptState::new();
        state.handle(&message(vec![seg(0, "a", "a*")])).unwrap();
        let mut grown = vec![json!({"word": "a", "is_final": true})];
        grown.extend(words);
        let events = state
            .handle(&message(vec![
                json!({"id": 0, "text": "a", "words": grown}),
            ]))
            .unwrap();
        let t = only_transcript(&events);
        assert!(state.pending_bytes() <= MAX_PENDING_BYTES);
        assert!(t.words.len() < count && t.words[0].text == "w0");
        let joined = t.words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>();
        assert_eq!(t.text, joined.join(" "));
    }

    #[test]
    fn pending_counts_follow_the_segment_map() {
        let mut state = TranscriptState::new();
        assert_eq!((state.pending_segments(), state.pending_bytes()), (0, 0));
        state
            .handle(&message(vec![
                seg(0, "ab", "ab"),
                seg_without_words(1, "cde"),
            ]))
            .unwrap();
        let word = std::mem::size_of::<TranscriptWord>();
        assert_eq!(state.pending_segments(), 2);
        assert_eq!(state.pending_bytes(), 2 + (word + 2) + 3);
        // Retraction (R5) frees segment 1.
        state.handle(&message(vec![seg(0, "ab", "ab")])).unwrap();
        assert_eq!(state.pending_bytes(), 2 + word + 2);
        state.begin_connection();
        assert_eq!((state.pending_segments(), state.pending_bytes()), (0, 0));

        state.handle(&message(vec![seg(0, "a", "a")])).unwrap();
        state.handle(&message(vec![seg(0, "a", "a*")])).unwrap();
        assert_eq!(state.pending_segments(), 0, "a final empties the map");
        state.handle(&message(vec![seg(1, "b", "b")])).unwrap();
        state.end_of_stream();
        assert_eq!((state.pending_segments(), state.pending_bytes()), (0, 0));
    }

    #[test]
    fn prefix_within_respects_char_boundaries() {
        assert_eq!(prefix_within("abc", 5), "abc");
        assert_eq!(prefix_within("abc", 2), "ab");
        assert_eq!(prefix_within("aé", 2), "a");
        assert_eq!(prefix_within("日本", 5), "日");
        assert_eq!(prefix_within("日本", 0), "");
    }
}

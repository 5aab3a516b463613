// SPDX-License-Identifier: MPL-2.0
//! The invariants of the parser and of the transcript state machine that hold whatever the
//! server sends. Shared by `tests/integration/untrusted_input.rs` and `examples/fuzz-protocol.rs`.
//!
//! [`check_parse`] checks one frame's classification against the parser's documented rules.
//! The checker drives a [`TranscriptState`] itself (`handle`, `begin_connection`,
//! `end_of_stream`) so that it sees the state before and after each call. Every check returns
//! `Err(description)` instead of panicking, so property tests can shrink on it.

use gstfireworks::protocol::transcript::{MAX_PENDING_BYTES, MAX_PENDING_SEGMENTS};
use gstfireworks::protocol::{
    parse_server_message, ParseError, SegmentId, ServerMessage, Transcript, TranscriptEvent,
    TranscriptState, TranscriptWord, TranscriptionMessage,
};
use serde_json::Value;

/// Longest text a transcript can carry: every pending byte, plus one space between segments.
pub const MAX_TRANSCRIPT_TEXT: usize = MAX_PENDING_BYTES + MAX_PENDING_SEGMENTS;

/// What the checked calls produced, for reports and coverage checks.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Counts {
    pub accepted: u64,
    pub rejected: u64,
    pub events: u64,
    pub speech_started: u64,
    pub interims: u64,
    pub finals: u64,
    pub promoted: u64,
    pub speech_ended: u64,
    pub max_pending_segments: usize,
    pub max_pending_bytes: usize,
}

/// The part of the state visible through the public API.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Observed {
    utterance: u64,
    speaking: bool,
    pending_segments: usize,
    pending_bytes: usize,
}

impl Observed {
    fn of(state: &TranscriptState) -> Self {
        Self {
            utterance: state.utterance(),
            speaking: state.is_speaking(),
            pending_segments: state.pending_segments(),
            pending_bytes: state.pending_bytes(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Call {
    Handle,
    EndOfStream,
}

/// Checks a [`TranscriptState`]'s events against docs/protocol.md#changes-in-fireworksstt as a
/// stream: speech boundaries
/// bracket each utterance, utterance numbers rise by one, transcripts are never blank.
#[derive(Debug, Default)]
pub struct EventChecker {
    /// The utterance between SpeechStarted and SpeechEnded, if any.
    open: Option<u64>,
    /// The number the next SpeechStarted must carry.
    next_utterance: u64,
    /// The last interim of the open utterance: what end of stream must promote.
    last_interim: Option<Transcript>,
    /// Also require each transcript's text to be its words joined with single spaces. True only
    /// for servers whose segment texts are their words joined, and no segment over the byte bound.
    pub text_is_words_joined: bool,
    pub counts: Counts,
}

impl EventChecker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The open utterance's last interim.
    pub fn last_interim(&self) -> Option<&Transcript> {
        self.last_interim.as_ref()
    }

    /// Applies `message` and checks what it did.
    pub fn handle(
        &mut self,
        state: &mut TranscriptState,
        message: &TranscriptionMessage,
    ) -> Result<(), String> {
        let before = self.observe(state)?;
        match state.handle(message) {
            Err(error) => {
                self.counts.rejected += 1;
                let after = Observed::of(state);
                if after != before {
                    return Err(format!(
                        "rejected message ({error}) changed the state: {before:?} → {after:?}"
                    ));
                }
            }
            Ok(events) => {
                self.counts.accepted += 1;
                self.check_events(Call::Handle, before, &events)?;
                if events.is_empty() {
                    let after = Observed::of(state);
                    if (after.utterance, after.speaking) != (before.utterance, before.speaking) {
                        return Err(format!("no events, yet {before:?} → {after:?}"));
                    }
                }
                let finals = events
                    .iter()
                    .any(|e| matches!(e, TranscriptEvent::Final(_)));
                if finals && state.pending_segments() != 0 {
                    return Err("segments still pending after a final".into());
                }
            }
        }
        self.observe(state).map(drop)
    }

    pub fn begin_connection(&mut self, state: &mut TranscriptState) -> Result<(), String> {
        let before = self.observe(state)?;
        state.begin_connection();
        let after = self.observe(state)?;
        let kept = (after.utterance, after.speaking) == (before.utterance, before.speaking);
        if !kept || after.pending_segments != 0 || after.pending_bytes != 0 {
            return Err(format!("begin_connection: {before:?} → {after:?}"));
        }
        Ok(())
    }

    pub fn end_of_stream(&mut self, state: &mut TranscriptState) -> Result<(), String> {
        let before = self.observe(state)?;
        let events = state.end_of_stream();
        self.check_events(Call::EndOfStream, before, &events)?;
        let after = self.observe(state)?;
        if after.speaking || after.pending_segments != 0 || after.pending_bytes != 0 {
            return Err(format!("end_of_stream left {after:?}"));
        }
        Ok(())
    }

    /// The state agrees with the events seen so far, and is within its bounds.
    fn observe(&mut self, state: &TranscriptState) -> Result<Observed, String> {
        let now = Observed::of(state);
        let expected_utterance = self.open.unwrap_or(self.next_utterance);
        if now.speaking != self.open.is_some() || now.utterance != expected_utterance {
            return Err(format!(
                "state {now:?} disagrees with the events: open {:?}, next {}",
                self.open, self.next_utterance
            ));
        }
        if now.pending_segments > MAX_PENDING_SEGMENTS || now.pending_bytes > MAX_PENDING_BYTES {
            return Err(format!("state over its bounds: {now:?}"));
        }
        let counts = &mut self.counts;
        counts.max_pending_segments = counts.max_pending_segments.max(now.pending_segments);
        counts.max_pending_bytes = counts.max_pending_bytes.max(now.pending_bytes);
        Ok(now)
    }

    fn check_events(
        &mut self,
        call: Call,
        before: Observed,
        events: &[TranscriptEvent],
    ) -> Result<(), String> {
        self.counts.events += events.len() as u64;
        let transcripts = events
            .iter()
            .filter(|e| matches!(e, TranscriptEvent::Interim(_) | TranscriptEvent::Final(_)))
            .count();
        if transcripts > 1 {
            return Err(format!(
                "{transcripts} transcripts from one call: {events:?}"
            ));
        }
        let mut previous: Option<&TranscriptEvent> = None;
        for event in events {
            self.check_event(call, before, previous, event)
                .map_err(|e| format!("{e}\n  in {}", describe(events)))?;
            previous = Some(event);
        }
        if let Some(TranscriptEvent::Final(_)) = previous {
            return Err(format!("a final without SpeechEnded: {}", describe(events)));
        }
        Ok(())
    }

    fn check_event(
        &mut self,
        call: Call,
        before: Observed,
        previous: Option<&TranscriptEvent>,
        event: &TranscriptEvent,
    ) -> Result<(), String> {
        // All events of one call belong to the utterance open (or next) before it.
        let utterance = match event {
            TranscriptEvent::SpeechStarted { utterance }
            | TranscriptEvent::SpeechEnded { utterance } => *utterance,
            TranscriptEvent::Interim(t) | TranscriptEvent::Final(t) => t.utterance,
        };
        if utterance != before.utterance {
            return Err(format!(
                "utterance {utterance} in a call that began at {}",
                before.utterance
            ));
        }
        if let Some(TranscriptEvent::Final(_)) = previous {
            if !matches!(event, TranscriptEvent::SpeechEnded { .. }) {
                return Err("a final not followed by SpeechEnded".into());
            }
        }
        match event {
            TranscriptEvent::SpeechStarted { utterance } => {
                self.counts.speech_started += 1;
                if call != Call::Handle || previous.is_some() {
                    return Err("SpeechStarted not first in a handle() call".into());
                }
                if self.open.is_some() || *utterance != self.next_utterance {
                    return Err(format!(
                        "SpeechStarted {utterance}: open {:?}, next {}",
                        self.open, self.next_utterance
                    ));
                }
                self.open = Some(*utterance);
            }
            TranscriptEvent::Interim(t) => {
                self.counts.interims += 1;
                if call != Call::Handle || t.promoted {
                    return Err("interim outside handle(), or promoted".into());
                }
                self.check_transcript(t)?;
                self.last_interim = Some(t.clone());
            }
            TranscriptEvent::Final(t) => {
                self.counts.finals += 1;
                self.check_transcript(t)?;
                if t.promoted != (call == Call::EndOfStream) {
                    return Err(format!("promoted = {} from {call:?}", t.promoted));
                }
                if t.promoted {
                    self.counts.promoted += 1;
                    // A promoted final is the open utterance's last interim, once.
                    let expected = self.last_interim.take().map(|interim| Transcript {
                        promoted: true,
                        ..interim
                    });
                    if expected.as_ref() != Some(t) {
                        return Err(format!(
                            "promoted final {:?} is not the last interim {:?}",
                            t.text,
                            expected.map(|e| e.text)
                        ));
                    }
                }
            }
            TranscriptEvent::SpeechEnded { utterance } => {
                self.counts.speech_ended += 1;
                let after_final = matches!(previous, Some(TranscriptEvent::Final(_)));
                if call == Call::Handle && !after_final {
                    return Err("SpeechEnded from handle() without a final".into());
                }
                if self.open != Some(*utterance) {
                    return Err(format!("SpeechEnded {utterance}, open {:?}", self.open));
                }
                self.open = None;
                self.next_utterance = utterance + 1;
                self.last_interim = None;
            }
        }
        Ok(())
    }

    fn check_transcript(&self, t: &Transcript) -> Result<(), String> {
        if self.open != Some(t.utterance) {
            return Err(format!(
                "transcript of utterance {} while {:?} is open",
                t.utterance, self.open
            ));
        }
        if t.text.trim().is_empty() || t.text.trim() != t.text {
            return Err(format!("blank or untrimmed text {:?}", excerpt(&t.text)));
        }
        if t.text.len() > MAX_TRANSCRIPT_TEXT {
            return Err(format!("text of {} bytes", t.text.len()));
        }
        // Each pending word counts at least its record size towards the byte bound.
        if t.words.len() * std::mem::size_of::<TranscriptWord>() > MAX_PENDING_BYTES {
            return Err(format!("{} words", t.words.len()));
        }
        for word in &t.words {
            if word.text.trim().is_empty() || word.text.trim() != word.text {
                return Err(format!("blank or untrimmed word {:?}", word.text));
            }
            let numbers = [word.start, word.end, word.probability];
            if numbers.iter().flatten().any(|n| !n.is_finite()) {
                return Err(format!("non-finite number in {word:?}"));
            }
        }
        if [t.start, t.end].iter().flatten().any(|n| !n.is_finite()) {
            return Err(format!("non-finite time {:?}–{:?}", t.start, t.end));
        }
        if self.text_is_words_joined {
            let joined: Vec<&str> = t.words.iter().map(|w| w.text.as_str()).collect();
            if t.text != joined.join(" ") {
                return Err(format!(
                    "text {:?} is not its words joined {:?}",
                    excerpt(&t.text),
                    excerpt(&joined.join(" "))
                ));
            }
        }
        Ok(())
    }
}

/// Events as short strings, for failure messages.
pub fn describe(events: &[TranscriptEvent]) -> String {
    let parts: Vec<String> = events
        .iter()
        .map(|event| match event {
            TranscriptEvent::SpeechStarted { utterance } => format!("START({utterance})"),
            TranscriptEvent::Interim(t) => {
                format!("INTERIM({}) {:?}", t.utterance, excerpt(&t.text))
            }
            TranscriptEvent::Final(t) => format!(
                "FINAL({}{}) {:?}",
                t.utterance,
                if t.promoted { ", promoted" } else { "" },
                excerpt(&t.text)
            ),
            TranscriptEvent::SpeechEnded { utterance } => format!("END({utterance})"),
        })
        .collect();
    parts.join(", ")
}

fn excerpt(text: &str) -> String {
    text.chars().take(60).collect()
}

// ---------------------------------------------------------------------------------------------
// The parser.

/// What `ParseError` excerpts are cut to, in characters (`messages.rs`).
pub const MAX_EXCERPT_CHARS: usize = 200;

/// Parses `text` and checks the result against the documented classification: invalid JSON and
/// non-objects are errors; then `error` (not null), `checkpoint_id`, `object` (trace, state
/// cleared) and `segments` take precedence in that order; errors carry a short excerpt of the
/// frame. Returns the parse result.
pub fn check_parse(text: &str) -> Result<Result<ServerMessage, ParseError>, String> {
    let parsed = parse_server_message(text);
    if let Err(error) = &parsed {
        check_parse_error(text, error)?;
    }
    let object = match serde_json::from_str::<Value>(text) {
        Err(_) => {
            return match parsed {
                Err(ParseError::InvalidJson { .. }) => Ok(parsed),
                other => Err(format!("invalid JSON, yet {other:?}")),
            }
        }
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return match parsed {
                Err(ParseError::NotAnObject { .. }) => Ok(parsed),
                other => Err(format!("not an object, yet {other:?}")),
            }
        }
    };
    let object_kind = object.get("object").and_then(Value::as_str);
    let expected = if object.get("error").is_some_and(|e| !e.is_null()) {
        "error"
    } else if object.contains_key("checkpoint_id") {
        "checkpoint"
    } else if object_kind == Some("stt.output.trace") {
        "trace"
    } else if object_kind == Some("stt.state.cleared") {
        "cleared"
    } else if object.contains_key("segments") {
        "segments"
    } else {
        "other"
    };
    let got = match &parsed {
        Ok(ServerMessage::Error { .. }) => "error",
        Ok(ServerMessage::CheckpointEcho { .. }) => "checkpoint",
        Ok(ServerMessage::TraceEcho { .. }) => "trace",
        Ok(ServerMessage::StateCleared { .. }) => "cleared",
        Ok(ServerMessage::Transcription(_)) | Err(ParseError::MalformedTranscription { .. }) => {
            "segments"
        }
        Ok(ServerMessage::Other) => "other",
        Err(other) => return Err(format!("a JSON object, yet {other:?}")),
    };
    if got != expected {
        return Err(format!("classified as {got}, expected {expected}"));
    }
    if let Ok(ServerMessage::Transcription(message)) = &parsed {
        check_transcription_shape(&object["segments"], message)?;
    }
    Ok(parsed)
}

fn check_parse_error(text: &str, error: &ParseError) -> Result<(), String> {
    let (ParseError::InvalidJson { excerpt, .. }
    | ParseError::NotAnObject { excerpt }
    | ParseError::MalformedTranscription { excerpt, .. }) = error;
    if excerpt.chars().count() > MAX_EXCERPT_CHARS {
        return Err(format!("excerpt of {} chars", excerpt.chars().count()));
    }
    if !text.starts_with(excerpt.strip_suffix('…').unwrap_or(excerpt)) {
        return Err(format!("excerpt {excerpt:?} is not a prefix of the frame"));
    }
    if error.to_string().is_empty() {
        return Err("empty error text".into());
    }
    Ok(())
}

/// Every segment and every word of the JSON is kept (words that are not objects count too: the
/// finalized-word bookkeeping relies on the count), and integer ids are kept exactly.
fn check_transcription_shape(json: &Value, message: &TranscriptionMessage) -> Result<(), String> {
    let items: &[Value] = match json {
        Value::Array(items) => items,
        Value::Null => &[],
        other => return Err(format!("segments {other} accepted")),
    };
    if items.len() != message.segments.len() {
        return Err(format!(
            "{} segments parsed from {}",
            message.segments.len(),
            items.len()
        ));
    }
    for (item, segment) in items.iter().zip(&message.segments) {
        if let Some(id) = item["id"].as_i64() {
            if SegmentId::Number(id) != segment.id {
                return Err(format!("id {id} parsed as {}", segment.id));
            }
        }
        // A string id is kept: as its number when it reads as one, else as its text.
        if let Some(id) = item["id"].as_str() {
            let kept = match &segment.id {
                SegmentId::Number(n) => id.parse::<i64>() == Ok(*n),
                SegmentId::Text(text) => text == id,
            };
            if !kept {
                return Err(format!("id {id:?} parsed as {}", segment.id));
            }
        }
        let words = item.get("words").and_then(Value::as_array).map(Vec::len);
        if words != segment.words.as_ref().map(Vec::len) {
            return Err(format!("{words:?} words parsed as {:?}", segment.words));
        }
    }
    Ok(())
}

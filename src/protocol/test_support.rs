// SPDX-License-Identifier: MPL-2.0
//! Test helpers: messages in the notation of the test vectors (docs/protocol.md#test-vectors), in
//! either dialect of the service (docs/protocol.md#dialects), and events as short strings.

use std::cell::Cell;

use serde_json::{json, Value};

use super::messages::{parse_server_message, ServerMessage, TranscriptionMessage};
use super::transcript::TranscriptEvent;

/// The two message shapes the service is known to send (docs/protocol.md#dialects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// Integer ids, errors as strings: the documented schema.
    V1,
    /// String ids, errors as `{"message", "code"}` objects, extra segment and word fields.
    V2,
}

thread_local! {
    /// The dialect the helpers below write in; each test runs on its own thread.
    static DIALECT: Cell<Dialect> = const { Cell::new(Dialect::V1) };
}

/// Runs `test` with every message written in `dialect`.
pub(super) fn in_dialect(dialect: Dialect, test: impl FnOnce()) {
    DIALECT.with(|d| d.set(dialect));
    test();
}

fn dialect() -> Dialect {
    DIALECT.with(Cell::get)
}

/// A segment id as the current dialect writes it.
pub(super) fn id(id: i64) -> Value {
    match dialect() {
        Dialect::V1 => json!(id),
        Dialect::V2 => json!(id.to_string()),
    }
}

/// An error frame as the current dialect writes it.
pub(super) fn error_frame(message: &str) -> Value {
    match dialect() {
        Dialect::V1 => json!({ "error": message }),
        Dialect::V2 => json!({ "error": {"message": message, "code": "internal_error"} }),
    }
}

/// `seg(id, "text", "w1 w2*")`: words separated by spaces, a trailing `*` means
/// `is_final: true`; `""` is an empty word list.
pub(super) fn seg(id: i64, text: &str, words: &str) -> Value {
    let words: Vec<Value> = words
        .split_whitespace()
        .map(|w| {
            let (word, is_final) = match w.strip_suffix('*') {
                Some(word) => (word, true),
                None => (w, false),
            };
            let mut word = json!({"word": word, "is_final": is_final});
            if dialect() == Dialect::V2 {
                word["language"] = json!("en");
                word["hallucination_score"] = json!(0.0);
            }
            word
        })
        .collect();
    let mut segment = seg_without_words(id, text);
    segment["words"] = Value::Array(words);
    segment
}

/// `seg(id, "text")`: a segment with no `words` key.
pub(super) fn seg_without_words(id: i64, text: &str) -> Value {
    let mut segment = json!({"id": self::id(id), "text": text});
    if dialect() == Dialect::V2 {
        segment["seek"] = json!(0);
        segment["language"] = json!("en");
    }
    segment
}

/// A transcription message with these segments, sent through the real parser.
pub(super) fn message(segments: Vec<Value>) -> TranscriptionMessage {
    let mut frame = json!({
        "task": "transcribe", "language": "en", "text": "ignored by the client",
        "segments": segments,
    });
    if dialect() == Dialect::V2 {
        frame["duration"] = json!(1.0);
    }
    match parse_server_message(&frame.to_string()) {
        Ok(ServerMessage::Transcription(message)) => message,
        other => panic!("not a transcription: {other:?}"),
    }
}

/// `START`, `INTERIM text`, `FINAL text`, `FINAL(promoted) text`, `END`.
pub(super) fn describe(events: &[TranscriptEvent]) -> Vec<String> {
    events
        .iter()
        .map(|event| match event {
            TranscriptEvent::SpeechStarted { .. } => "START".to_owned(),
            TranscriptEvent::Interim(t) => format!("INTERIM {}", t.text),
            TranscriptEvent::Final(t) if t.promoted => format!("FINAL(promoted) {}", t.text),
            TranscriptEvent::Final(t) => format!("FINAL {}", t.text),
            TranscriptEvent::SpeechEnded { .. } => "END".to_owned(),
        })
        .collect()
}

// SPDX-License-Identifier: MPL-2.0
//! Test helpers: messages in the notation of the test vectors (docs/protocol.md#test-vectors), and
//! events as short strings.

use serde_json::{json, Value};

use super::messages::{parse_server_message, ServerMessage, TranscriptionMessage};
use super::transcript::TranscriptEvent;

/// `seg(id, "text", "w1 w2*")`: words separated by spaces, a trailing `*` means
/// `is_final: true`; `""` is an empty word list.
pub(super) fn seg(id: i64, text: &str, words: &str) -> Value {
    let words: Vec<Value> = words
        .split_whitespace()
        .map(|w| match w.strip_suffix('*') {
            Some(word) => json!({"word": word, "is_final": true}),
            None => json!({"word": w, "is_final": false}),
        })
        .collect();
    json!({"id": id, "text": text, "words": words})
}

/// `seg(id, "text")`: a segment with no `words` key.
pub(super) fn seg_without_words(id: i64, text: &str) -> Value {
    json!({"id": id, "text": text})
}

/// A transcription message with these segments, sent through the real parser.
pub(super) fn message(segments: Vec<Value>) -> TranscriptionMessage {
    let frame = json!({
        "task": "transcribe", "language": "en", "text": "ignored by the client",
        "segments": segments,
    });
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

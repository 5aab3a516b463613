//! Server → client JSON messages (`fireworks-protocol.md` §6) and the one client → server JSON
//! message we send, the end-of-stream checkpoint (§5.2).
//!
//! Parsing walks a `serde_json::Value` instead of deriving, because the rules are about which
//! keys are present and how forgiving to be with each field, not about one fixed shape.
//! serde_json's recursion limit stays on, so deeply nested input is an error, not a stack overflow.

use std::fmt;

use serde_json::{Map, Value};

/// The checkpoint id that marks the end of the audio; the server echoes it back.
pub const END_OF_STREAM_CHECKPOINT: &str = "final";

/// Longest excerpt of an offending message kept in a [`ParseError`].
const EXCERPT_CHARS: usize = 200;

/// The largest integer an f64 holds exactly; integral float ids beyond it are not trusted.
const MAX_EXACT_FLOAT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// The checkpoint text frame, as compact JSON: `{"checkpoint_id":"final"}`.
pub fn checkpoint_message(id: &str) -> String {
    serde_json::json!({ "checkpoint_id": id }).to_string()
}

/// One text frame from the server, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    Transcription(TranscriptionMessage),
    CheckpointEcho {
        checkpoint_id: String,
    },
    /// `object == "stt.output.trace"`
    TraceEcho {
        trace_id: String,
    },
    /// `object == "stt.state.cleared"`
    StateCleared {
        reset_id: Option<String>,
    },
    /// A top-level `error` key: a string as-is, any other JSON value rendered compactly.
    Error {
        message: String,
    },
    /// Any other JSON object; the client ignores it.
    Other,
}

/// A `verbose_json` transcription result. Only the fields the client uses are kept.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TranscriptionMessage {
    pub language: Option<String>,
    pub text: Option<String>,
    /// `segments: null` gives an empty list.
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: i64,
    pub text: Option<String>,
    /// `None` when the field is missing or null, which is not the same as an empty list.
    pub words: Option<Vec<Word>>,
    pub start: Option<f64>,
    pub end: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub word: Option<String>,
    /// True only for JSON `true`.
    pub is_final: bool,
    pub probability: Option<f64>,
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub language: Option<String>,
}

/// A server text frame that could not be understood.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseError {
    InvalidJson {
        reason: String,
        excerpt: String,
    },
    NotAnObject {
        excerpt: String,
    },
    /// A transcription whose segments do not have the documented shape; the whole message is
    /// rejected.
    MalformedTranscription {
        reason: String,
        excerpt: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidJson { reason, excerpt } => write!(
                f,
                "Fireworks sent a message that is not valid JSON ({reason}): {excerpt:?}"
            ),
            Self::NotAnObject { excerpt } => {
                write!(f, "Fireworks sent JSON that is not an object: {excerpt:?}")
            }
            Self::MalformedTranscription { reason, excerpt } => write!(
                f,
                "Fireworks sent a malformed transcription ({reason}): {excerpt:?}"
            ),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses and classifies one server text frame.
///
/// Precedence: `error`, then `checkpoint_id`, then `object` (trace / state cleared), then
/// `segments`; any other object is [`ServerMessage::Other`].
pub fn parse_server_message(text: &str) -> Result<ServerMessage, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ParseError::InvalidJson {
        reason: e.to_string(),
        excerpt: excerpt(text),
    })?;
    let Value::Object(object) = value else {
        return Err(ParseError::NotAnObject {
            excerpt: excerpt(text),
        });
    };
    classify(&object).map_err(|reason| ParseError::MalformedTranscription {
        reason,
        excerpt: excerpt(text),
    })
}

fn classify(object: &Map<String, Value>) -> Result<ServerMessage, String> {
    // `"error": null` is how some services say "no error"; only a real value is an error.
    if let Some(error) = object.get("error").filter(|e| !e.is_null()) {
        return Ok(ServerMessage::Error {
            message: value_text(error),
        });
    }
    if let Some(id) = object.get("checkpoint_id") {
        return Ok(ServerMessage::CheckpointEcho {
            checkpoint_id: value_text(id),
        });
    }
    match object.get("object").and_then(Value::as_str) {
        Some("stt.output.trace") => {
            let trace_id = object.get("trace_id").map(value_text).unwrap_or_default();
            return Ok(ServerMessage::TraceEcho { trace_id });
        }
        Some("stt.state.cleared") => {
            let reset_id = object
                .get("reset_id")
                .filter(|v| !v.is_null())
                .map(value_text);
            return Ok(ServerMessage::StateCleared { reset_id });
        }
        _ => {}
    }
    match object.get("segments") {
        Some(segments) => transcription(object, segments).map(ServerMessage::Transcription),
        None => Ok(ServerMessage::Other),
    }
}

fn transcription(
    object: &Map<String, Value>,
    segments: &Value,
) -> Result<TranscriptionMessage, String> {
    let segments = match segments {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| segment(index, item))
            .collect::<Result<_, _>>()?,
        other => return Err(format!("`segments` is {}", kind(other))),
    };
    Ok(TranscriptionMessage {
        language: string_field(object.get("language")),
        text: string_field(object.get("text")),
        segments,
    })
}

fn segment(index: usize, value: &Value) -> Result<Segment, String> {
    let Value::Object(fields) = value else {
        return Err(format!("segment #{index} is {}", kind(value)));
    };
    let id = match fields.get("id") {
        None => return Err(format!("segment #{index} has no `id`")),
        Some(id) => integer_id(id)
            .ok_or_else(|| format!("segment #{index} has a non-integer id {}", kind(id)))?,
    };
    let words = match fields.get("words") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(items.iter().map(word).collect()),
        Some(other) => return Err(format!("segment {id} has `words` that is {}", kind(other))),
    };
    Ok(Segment {
        id,
        text: string_field(fields.get("text")),
        words,
        start: number_field(fields.get("start")),
        end: number_field(fields.get("end")),
    })
}

/// A word that is not an object becomes an empty, non-final word: it still counts towards the
/// segment's word count, which the finalized-word bookkeeping relies on.
fn word(value: &Value) -> Word {
    Word {
        word: string_field(value.get("word")),
        is_final: value.get("is_final") == Some(&Value::Bool(true)),
        probability: number_field(value.get("probability")),
        start: number_field(value.get("start")),
        end: number_field(value.get("end")),
        language: string_field(value.get("language")),
    }
}

/// Ids are JSON integers; an integral float such as `2.0` is accepted too (Python compares it
/// equal to `2`), but strings and fractions are not (TV12).
fn integer_id(value: &Value) -> Option<i64> {
    if let Some(id) = value.as_i64() {
        return Some(id);
    }
    let float = value.as_f64()?;
    let integral = float.fract() == 0.0 && float.abs() <= MAX_EXACT_FLOAT_INTEGER;
    // The range check above makes the cast exact.
    integral.then_some(float as i64)
}

fn string_field(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_owned)
}

fn number_field(value: Option<&Value>) -> Option<f64> {
    value.and_then(Value::as_f64).filter(|n| n.is_finite())
}

/// A string as-is; any other value as compact JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Describes a JSON value for an error message without echoing all of it.
fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "a boolean".to_owned(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {:?}", excerpt(s)),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// At most [`EXCERPT_CHARS`] characters of `text`, cut on a character boundary.
fn excerpt(text: &str) -> String {
    if text.chars().nth(EXCERPT_CHARS).is_none() {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(EXCERPT_CHARS - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> ServerMessage {
        parse_server_message(&value.to_string()).expect("should parse")
    }

    fn transcription_of(value: Value) -> TranscriptionMessage {
        match parse(value) {
            ServerMessage::Transcription(message) => message,
            other => panic!("not a transcription: {other:?}"),
        }
    }

    fn malformed(value: Value) -> String {
        match parse_server_message(&value.to_string()) {
            Err(ParseError::MalformedTranscription { reason, .. }) => reason,
            other => panic!("should be malformed: {other:?}"),
        }
    }

    #[test]
    fn checkpoint_message_is_compact_json() {
        assert_eq!(
            checkpoint_message(END_OF_STREAM_CHECKPOINT),
            r#"{"checkpoint_id":"final"}"#
        );
        assert_eq!(checkpoint_message("a\"b"), r#"{"checkpoint_id":"a\"b"}"#);
    }

    #[test]
    fn full_transcription() {
        let message = transcription_of(json!({
            "task": "transcribe", "language": "en", "text": "hi there",
            "words": null, "extra": {"nested": [1, 2]},
            "segments": [{
                "id": 3, "text": "hi there", "start": 1.5, "end": 2,
                "words": [
                    {"word": "hi", "language": "en", "probability": 0.9,
                     "hallucination_score": 0.0, "is_final": true, "start": 1.5, "end": 1.75},
                    {"word": "there", "is_final": false}
                ]
            }]
        }));
        assert_eq!(message.language.as_deref(), Some("en"));
        assert_eq!(message.text.as_deref(), Some("hi there"));
        assert_eq!(
            message.segments,
            vec![Segment {
                id: 3,
                text: Some("hi there".into()),
                start: Some(1.5),
                end: Some(2.0),
                words: Some(vec![
                    Word {
                        word: Some("hi".into()),
                        is_final: true,
                        probability: Some(0.9),
                        start: Some(1.5),
                        end: Some(1.75),
                        language: Some("en".into()),
                    },
                    Word {
                        word: Some("there".into()),
                        is_final: false,
                        probability: None,
                        start: None,
                        end: None,
                        language: None,
                    },
                ]),
            }]
        );
    }

    #[test]
    fn control_messages() {
        assert_eq!(
            parse(json!({"checkpoint_id": "final"})),
            ServerMessage::CheckpointEcho {
                checkpoint_id: "final".into()
            }
        );
        assert_eq!(
            parse(json!({"checkpoint_id": 7})),
            ServerMessage::CheckpointEcho {
                checkpoint_id: "7".into()
            }
        );
        assert_eq!(
            parse(json!({"event_id": "e", "object": "stt.output.trace", "trace_id": "final"})),
            ServerMessage::TraceEcho {
                trace_id: "final".into()
            }
        );
        assert_eq!(
            parse(json!({"object": "stt.state.cleared", "reset_id": "r1"})),
            ServerMessage::StateCleared {
                reset_id: Some("r1".into())
            }
        );
        assert_eq!(
            parse(json!({"object": "stt.state.cleared"})),
            ServerMessage::StateCleared { reset_id: None }
        );
    }

    #[test]
    fn errors_are_reported_with_the_server_text() {
        assert_eq!(
            parse(json!({"error": "boom"})),
            ServerMessage::Error {
                message: "boom".into()
            }
        );
        assert_eq!(
            parse(json!({"error": {"code": 401, "message": "bad key"}})),
            ServerMessage::Error {
                message: r#"{"code":401,"message":"bad key"}"#.into()
            }
        );
        // `error` wins over everything else.
        assert_eq!(
            parse(json!({"error": "x", "checkpoint_id": "final", "segments": []})),
            ServerMessage::Error {
                message: "x".into()
            }
        );
        // A null error is no error.
        assert_eq!(
            parse(json!({"error": null, "segments": []})),
            ServerMessage::Transcription(TranscriptionMessage::default())
        );
    }

    #[test]
    fn precedence_checkpoint_over_object_over_segments() {
        assert!(matches!(
            parse(json!({"checkpoint_id": "final", "object": "stt.output.trace", "segments": []})),
            ServerMessage::CheckpointEcho { .. }
        ));
        assert!(matches!(
            parse(json!({"object": "stt.output.trace", "segments": [{"id": "bad"}]})),
            ServerMessage::TraceEcho { .. }
        ));
        assert!(matches!(
            parse(json!({"object": "something.else", "segments": []})),
            ServerMessage::Transcription(_)
        ));
    }

    #[test]
    fn tv7_inputs() {
        assert!(matches!(
            parse(json!({"checkpoint_id": "final"})),
            ServerMessage::CheckpointEcho { .. }
        ));
        assert!(matches!(
            parse(json!({"object": "stt.output.trace", "trace_id": "final", "event_id": "x"})),
            ServerMessage::TraceEcho { .. }
        ));
        assert!(matches!(
            parse(json!({"object": "stt.state.cleared", "event_id": "x", "reset_id": "r"})),
            ServerMessage::StateCleared { .. }
        ));
        assert!(matches!(
            parse(json!({"error": "boom"})),
            ServerMessage::Error { .. }
        ));
        assert_eq!(
            parse(json!({"segments": []})),
            ServerMessage::Transcription(TranscriptionMessage::default())
        );
        assert_eq!(
            parse(json!({"segments": null})),
            ServerMessage::Transcription(TranscriptionMessage::default())
        );
    }

    #[test]
    fn other_objects_are_ignored() {
        for value in [
            json!({}),
            json!({"task": "transcribe", "text": "hi"}),
            json!({"object": 5}),
        ] {
            assert_eq!(parse(value), ServerMessage::Other);
        }
    }

    #[test]
    fn tv12_string_and_fractional_ids_are_rejected() {
        assert!(malformed(json!({"segments": [{"id": "0", "text": "x"}]})).contains("\"0\""));
        malformed(json!({"segments": [{"id": 1.5, "text": "x"}]}));
        malformed(json!({"segments": [{"id": null, "text": "x"}]}));
        malformed(json!({"segments": [{"id": true, "text": "x"}]}));
        malformed(json!({"segments": [{"text": "x"}]}));
        // One bad segment rejects the whole message.
        malformed(json!({"segments": [{"id": 0, "text": "ok"}, {"id": "1", "text": "x"}]}));
    }

    #[test]
    fn integral_ids() {
        let message = transcription_of(json!({"segments": [
            {"id": 2.0}, {"id": -1}, {"id": i64::MAX}, {"id": 9007199254740992.0}
        ]}));
        let ids: Vec<i64> = message.segments.iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![2, -1, i64::MAX, 9_007_199_254_740_992]);
        malformed(json!({"segments": [{"id": u64::MAX}]}));
        malformed(json!({"segments": [{"id": 1e20}]}));
    }

    #[test]
    fn malformed_shapes() {
        malformed(json!({"segments": "nope"}));
        malformed(json!({"segments": {"id": 0}}));
        malformed(json!({"segments": 3}));
        malformed(json!({"segments": [1]}));
        malformed(json!({"segments": [null]}));
        malformed(json!({"segments": [{"id": 0, "words": "a b"}]}));
        malformed(json!({"segments": [{"id": 0, "words": {"word": "a"}}]}));
    }

    #[test]
    fn lenient_fields() {
        let message = transcription_of(json!({
            "language": 5, "text": ["x"],
            "segments": [{
                "id": 0, "text": 7, "start": "1.0", "end": null, "words": [
                    {"is_final": "true", "probability": "high", "start": [1], "word": 3},
                    {"word": "x", "is_final": 1},
                    "bare string",
                    42
                ]
            }, {"id": 1, "words": null}]
        }));
        assert_eq!(message.language, None);
        assert_eq!(message.text, None);
        let first = &message.segments[0];
        assert_eq!(
            (first.text.clone(), first.start, first.end),
            (None, None, None)
        );
        let words = first.words.as_ref().expect("words");
        assert_eq!(words.len(), 4, "non-object words still count");
        assert!(words.iter().all(|w| !w.is_final));
        assert_eq!(words[0].word, None);
        assert_eq!(words[0].probability, None);
        assert_eq!(words[0].start, None);
        assert_eq!(words[1].word.as_deref(), Some("x"));
        assert_eq!(words[2].word, None);
        assert_eq!(message.segments[1].words, None);
    }

    #[test]
    fn not_json_or_not_an_object() {
        for text in [
            "",
            "   ",
            "{",
            "hello",
            "{\"a\":}",
            "\u{0}",
            "{\"a\":1} trailing",
        ] {
            assert!(
                matches!(
                    parse_server_message(text),
                    Err(ParseError::InvalidJson { .. })
                ),
                "{text:?}"
            );
        }
        for text in [
            "[]",
            "[{\"segments\":[]}]",
            "\"error\"",
            "3",
            "null",
            "true",
        ] {
            assert!(
                matches!(
                    parse_server_message(text),
                    Err(ParseError::NotAnObject { .. })
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            parse_server_message(&deep),
            Err(ParseError::InvalidJson { .. })
        ));
        let deep_object = format!(
            "{{\"segments\":{}{}}}",
            "{\"a\":".repeat(50_000),
            "}".repeat(50_000)
        );
        assert!(parse_server_message(&deep_object).is_err());
    }

    #[test]
    fn huge_numbers() {
        // Out-of-range floats are a JSON error in serde_json; nothing panics.
        let result = parse_server_message(r#"{"segments":[{"id":0,"start":1e400}]}"#);
        assert!(result.is_err(), "{result:?}");
        let message = transcription_of(json!({"segments": [
            {"id": 0, "start": 1.7976931348623157e308, "words": [{"word": "a", "end": -1e300}]}
        ]}));
        assert_eq!(message.segments[0].start, Some(f64::MAX));
        let long_digits = format!(r#"{{"segments":[{{"id":1{}}}]}}"#, "0".repeat(5000));
        assert!(parse_server_message(&long_digits).is_err());
    }

    #[test]
    fn excerpts_are_short_and_cut_on_char_boundaries() {
        let text = format!("not json {}", "é日".repeat(500));
        let err = parse_server_message(&text).unwrap_err();
        let ParseError::InvalidJson { excerpt, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(excerpt.chars().count(), EXCERPT_CHARS);
        assert!(excerpt.ends_with('…'));
        assert!(text.starts_with(excerpt.trim_end_matches('…')));
        assert!(err.to_string().contains("not valid JSON"));

        let short = parse_server_message("[1]").unwrap_err();
        assert_eq!(
            short,
            ParseError::NotAnObject {
                excerpt: "[1]".into()
            }
        );
        assert_eq!(excerpt_of_len(EXCERPT_CHARS), EXCERPT_CHARS);
        assert_eq!(excerpt_of_len(EXCERPT_CHARS + 1), EXCERPT_CHARS);
    }

    fn excerpt_of_len(chars: usize) -> usize {
        excerpt(&"ß".repeat(chars)).chars().count()
    }

    #[test]
    fn malformed_error_text_mentions_the_problem() {
        let err = parse_server_message(r#"{"segments":[{"id":"0","text":"x"}]}"#).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("malformed transcription"), "{text}");
        assert!(text.contains("non-integer id"), "{text}");
    }
}

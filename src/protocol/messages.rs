// SPDX-License-Identifier: MPL-2.0
//! Server → client JSON messages (docs/protocol.md#server-messages) and the one client → server
//! JSON message we send, the end-of-stream checkpoint
//! (docs/protocol.md#json-messages-from-the-client).
//!
//! Parsing deserializes each frame straight into the typed messages, in one pass, without first
//! building a `serde_json::Value` tree: a transcription frame (about 1.4 KB) costs a few
//! allocations per word instead of one per JSON node and map entry, at less than half the time.
//!
//! The rules are about which keys are present and how forgiving to be with each field, not about
//! one fixed shape, so the fields are read by small hand-written serde visitors (see "The
//! forgiving deserializers" below) rather than by `#[derive(Deserialize)]`, and keep the
//! semantics of reading the frame as a `Value` first:
//!
//! * every field accepts any JSON value: a wrong-typed optional field becomes `None` (or `false`
//!   for `is_final`), and a shape problem in `segments` is kept as a reason, not raised, so the
//!   rest of the frame is still read. Only once the whole object is read is the precedence
//!   `error` > `checkpoint_id` > `object` > `segments` applied, so a later `error` key still wins
//!   over malformed segments, and a syntax error anywhere makes the frame invalid JSON;
//! * a repeated key is read each time and the last one wins, as in a JSON map;
//! * unknown keys are skipped with `deserialize_any` rather than `IgnoredAny`, so they are checked
//!   exactly as a `Value` parse checks them: serde_json's recursion limit applies at any depth
//!   (deeply nested input is an error, not a stack overflow) and out-of-range numbers are errors;
//! * the rare values that are rendered as text (`error`, `checkpoint_id`, `trace_id`,
//!   `reset_id`) are still read as a `Value`, so non-strings keep their compact JSON rendering.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

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
    /// A top-level `error` key (docs/protocol.md#control-and-error-messages): a string as-is;
    /// an object with a string `message` (the v2 shape `{"message": …, "code": …}`) gives that
    /// message and its `code`; any other value is rendered as compact JSON.
    Error {
        message: String,
        /// The object's `code`, a string as-is or another value as compact JSON.
        code: Option<String>,
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

/// A segment id (docs/protocol.md#tv12). The service's schema has integers; v2 clients model
/// them as strings. An integer, an integral float, or a string that reads as a decimal integer
/// (optional sign, ASCII digits) is a [`SegmentId::Number`], so `"7"` and `7` are the same id
/// and numeric strings order numerically. Any other string is a [`SegmentId::Text`]: text ids
/// order after every number and among themselves byte by byte.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SegmentId {
    Number(i64),
    Text(String),
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(id) => write!(f, "{id}"),
            Self::Text(id) => write!(f, "{id:?}"),
        }
    }
}

impl From<i64> for SegmentId {
    fn from(id: i64) -> Self {
        Self::Number(id)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: SegmentId,
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
    /// The service's estimate that the word was not spoken (v1 and v2 send it; 0 is sure).
    pub hallucination_score: Option<f64>,
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
    let invalid = |e: serde_json::Error| ParseError::InvalidJson {
        reason: e.to_string(),
        excerpt: excerpt(text),
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let frame = Lenient(FrameField)
        .deserialize(&mut deserializer)
        .map_err(invalid)?;
    deserializer.end().map_err(invalid)?;
    let Some(frame) = frame else {
        return Err(ParseError::NotAnObject {
            excerpt: excerpt(text),
        });
    };
    frame
        .classify()
        .map_err(|reason| ParseError::MalformedTranscription {
            reason,
            excerpt: excerpt(text),
        })
}

/// The keys of a top-level object that matter, last occurrence winning as in a JSON map. Shape
/// problems are kept as values (`Err(reason)`) rather than returned as deserializer errors, so
/// that the rest of the frame is still read: a later `error` key takes precedence over them, and
/// a syntax error anywhere still makes the frame invalid JSON.
#[derive(Default)]
struct Frame {
    error: Option<Value>,
    checkpoint_id: Option<Value>,
    object: Option<ObjectKind>,
    trace_id: Option<Value>,
    reset_id: Option<Value>,
    segments: Option<Result<Vec<Segment>, String>>,
    language: Option<String>,
    text: Option<String>,
}

impl Frame {
    fn classify(self) -> Result<ServerMessage, String> {
        // `"error": null` is how some services say "no error"; only a real value is an error.
        if let Some(error) = self.error.filter(|e| !e.is_null()) {
            return Ok(error_message(error));
        }
        if let Some(id) = self.checkpoint_id {
            return Ok(ServerMessage::CheckpointEcho {
                checkpoint_id: value_text(id),
            });
        }
        match self.object {
            Some(ObjectKind::Trace) => {
                let trace_id = self.trace_id.map(value_text).unwrap_or_default();
                return Ok(ServerMessage::TraceEcho { trace_id });
            }
            Some(ObjectKind::StateCleared) => {
                let reset_id = self.reset_id.filter(|v| !v.is_null()).map(value_text);
                return Ok(ServerMessage::StateCleared { reset_id });
            }
            Some(ObjectKind::Other) | None => {}
        }
        match self.segments {
            Some(segments) => Ok(ServerMessage::Transcription(TranscriptionMessage {
                language: self.language,
                text: self.text,
                segments: segments?,
            })),
            None => Ok(ServerMessage::Other),
        }
    }
}

/// The value of a top-level `object` key.
#[derive(Clone, Copy)]
enum ObjectKind {
    Trace,
    StateCleared,
    /// Any other string, or not a string.
    Other,
}

/// The `error` value: a string, a `{"message": "…", "code": …}` object, or anything else
/// rendered whole.
fn error_message(error: Value) -> ServerMessage {
    match error {
        Value::Object(mut fields) if fields.get("message").is_some_and(Value::is_string) => {
            let message = fields.remove("message").map(value_text).unwrap_or_default();
            let code = fields
                .remove("code")
                .filter(|code| !code.is_null())
                .map(value_text);
            ServerMessage::Error { message, code }
        }
        other => ServerMessage::Error {
            message: value_text(other),
            code: None,
        },
    }
}

/// A string as-is; any other value as compact JSON.
fn value_text(value: Value) -> String {
    match value {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The forgiving deserializers.
//
// Every field is read with `deserialize_any` through [`Lenient`], whose visitor accepts every
// JSON value and hands it to a [`Field`]: the field keeps what it expects and turns anything else
// into `None`, a default or a described shape error. No visitor here ever fails, so the only
// deserializer errors are JSON syntax errors, exactly those a `Value` parse would report.
// Values nobody needs are read with [`Skip`], also through `deserialize_any` (not
// `IgnoredAny`, whose `deserialize_ignored_any` neither limits nesting nor range-checks
// numbers): nesting depth and numbers are checked as a `Value` parse checks them.

/// A JSON value that is not of the kind a field expects, for the field to describe.
enum Kind<'a> {
    Null,
    Bool,
    Number(Number),
    String(&'a str),
    Array,
    Object,
}

impl Kind<'_> {
    /// Describes the value for an error message without echoing all of it.
    fn describe(&self) -> String {
        match self {
            Self::Null => "null".to_owned(),
            Self::Bool => "a boolean".to_owned(),
            Self::Number(n) => format!("the number {n}"),
            Self::String(s) => format!("the string {:?}", excerpt(s)),
            Self::Array => "an array".to_owned(),
            Self::Object => "an object".to_owned(),
        }
    }
}

/// What one field makes of each kind of JSON value. By default everything is [`Field::other`];
/// arrays and objects are read through (and checked) first.
trait Field<'de>: Sized {
    type Out;

    fn other(self, kind: Kind<'_>) -> Self::Out;

    fn null(self) -> Self::Out {
        self.other(Kind::Null)
    }

    fn boolean(self, _value: bool) -> Self::Out {
        self.other(Kind::Bool)
    }

    fn number(self, value: Number) -> Self::Out {
        self.other(Kind::Number(value))
    }

    fn string(self, value: &str) -> Self::Out {
        self.other(Kind::String(value))
    }

    fn array<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Out, A::Error> {
        while items.next_element_seed(Lenient(Skip))?.is_some() {}
        Ok(self.other(Kind::Array))
    }

    fn object<A: MapAccess<'de>>(self, mut entries: A) -> Result<Self::Out, A::Error> {
        while entries.next_key_seed(Lenient(Skip))?.is_some() {
            entries.next_value_seed(Lenient(Skip))?;
        }
        Ok(self.other(Kind::Object))
    }
}

/// Reads one JSON value of any kind with `deserialize_any` and gives it to the field.
struct Lenient<F>(F);

impl<'de, F: Field<'de>> DeserializeSeed<'de> for Lenient<F> {
    type Value = F::Out;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<F::Out, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, F: Field<'de>> Visitor<'de> for Lenient<F> {
    type Value = F::Out;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<F::Out, E> {
        Ok(self.0.null())
    }

    fn visit_none<E>(self) -> Result<F::Out, E> {
        Ok(self.0.null())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<F::Out, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bool<E>(self, value: bool) -> Result<F::Out, E> {
        Ok(self.0.boolean(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<F::Out, E> {
        Ok(self.0.number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<F::Out, E> {
        Ok(self.0.number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<F::Out, E> {
        // serde_json never produces a non-finite float; a `Value` would hold it as null.
        Ok(match Number::from_f64(value) {
            Some(number) => self.0.number(number),
            None => self.0.null(),
        })
    }

    fn visit_str<E>(self, value: &str) -> Result<F::Out, E> {
        Ok(self.0.string(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, items: A) -> Result<F::Out, A::Error> {
        self.0.array(items)
    }

    fn visit_map<A: MapAccess<'de>>(self, entries: A) -> Result<F::Out, A::Error> {
        self.0.object(entries)
    }
}

/// A value nobody needs: read and checked, then dropped.
struct Skip;

impl Field<'_> for Skip {
    type Out = ();

    fn other(self, _kind: Kind<'_>) {}
}

/// The keys of one kind of object that matter; every other key is `Other`.
trait KeyName: Sized {
    fn from_name(name: &str) -> Self;
}

/// An object key, classified without allocating (escaped keys are unescaped first).
struct Key<K>(PhantomData<K>);

impl<K> Key<K> {
    fn new() -> Self {
        Self(PhantomData)
    }
}

impl<'de, K: KeyName> DeserializeSeed<'de> for Key<K> {
    type Value = K;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<K, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<K: KeyName> Visitor<'_> for Key<K> {
    type Value = K;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, value: &str) -> Result<K, E> {
        Ok(K::from_name(value))
    }
}

/// A string field; any other value is `None`.
struct StringField;

impl Field<'_> for StringField {
    type Out = Option<String>;

    fn other(self, _kind: Kind<'_>) -> Option<String> {
        None
    }

    fn string(self, value: &str) -> Option<String> {
        Some(value.to_owned())
    }
}

/// A number field; any other value is `None`.
struct NumberField;

impl Field<'_> for NumberField {
    type Out = Option<f64>;

    fn other(self, _kind: Kind<'_>) -> Option<f64> {
        None
    }

    fn number(self, value: Number) -> Option<f64> {
        value.as_f64().filter(|n| n.is_finite())
    }
}

/// `is_final`: true only for JSON `true`.
struct TrueField;

impl Field<'_> for TrueField {
    type Out = bool;

    fn other(self, _kind: Kind<'_>) -> bool {
        false
    }

    fn boolean(self, value: bool) -> bool {
        value
    }
}

/// The whole frame: `None` when it is not an object.
struct FrameField;

enum FrameKey {
    Error,
    CheckpointId,
    Object,
    TraceId,
    ResetId,
    Segments,
    Language,
    Text,
    Other,
}

impl KeyName for FrameKey {
    fn from_name(name: &str) -> Self {
        match name {
            "error" => FrameKey::Error,
            "checkpoint_id" => FrameKey::CheckpointId,
            "object" => FrameKey::Object,
            "trace_id" => FrameKey::TraceId,
            "reset_id" => FrameKey::ResetId,
            "segments" => FrameKey::Segments,
            "language" => FrameKey::Language,
            "text" => FrameKey::Text,
            _ => FrameKey::Other,
        }
    }
}

impl<'de> Field<'de> for FrameField {
    type Out = Option<Frame>;

    fn other(self, _kind: Kind<'_>) -> Option<Frame> {
        None
    }

    fn object<A: MapAccess<'de>>(self, mut entries: A) -> Result<Option<Frame>, A::Error> {
        let mut frame = Frame::default();
        while let Some(name) = entries.next_key_seed(Key::new())? {
            match name {
                FrameKey::Error => frame.error = Some(entries.next_value()?),
                FrameKey::CheckpointId => frame.checkpoint_id = Some(entries.next_value()?),
                FrameKey::Object => {
                    frame.object = Some(entries.next_value_seed(Lenient(ObjectField))?)
                }
                FrameKey::TraceId => frame.trace_id = Some(entries.next_value()?),
                FrameKey::ResetId => frame.reset_id = Some(entries.next_value()?),
                FrameKey::Segments => {
                    frame.segments = Some(entries.next_value_seed(Lenient(SegmentsField))?)
                }
                FrameKey::Language => {
                    frame.language = entries.next_value_seed(Lenient(StringField))?
                }
                FrameKey::Text => frame.text = entries.next_value_seed(Lenient(StringField))?,
                FrameKey::Other => entries.next_value_seed(Lenient(Skip))?,
            }
        }
        Ok(Some(frame))
    }
}

/// The top-level `object` key.
struct ObjectField;

impl Field<'_> for ObjectField {
    type Out = ObjectKind;

    fn other(self, _kind: Kind<'_>) -> ObjectKind {
        ObjectKind::Other
    }

    fn string(self, value: &str) -> ObjectKind {
        match value {
            "stt.output.trace" => ObjectKind::Trace,
            "stt.state.cleared" => ObjectKind::StateCleared,
            _ => ObjectKind::Other,
        }
    }
}

/// `segments`: null is an empty list; anything but a list, or any malformed segment, rejects
/// the whole message (the first problem in message order is reported).
struct SegmentsField;

impl<'de> Field<'de> for SegmentsField {
    type Out = Result<Vec<Segment>, String>;

    fn other(self, kind: Kind<'_>) -> Self::Out {
        Err(format!("`segments` is {}", kind.describe()))
    }

    fn null(self) -> Self::Out {
        Ok(Vec::new())
    }

    fn array<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Out, A::Error> {
        let mut segments = Vec::new();
        while let Some(segment) = items.next_element_seed(Lenient(SegmentField {
            index: segments.len(),
        }))? {
            match segment {
                Ok(segment) => segments.push(segment),
                Err(reason) => {
                    // The rest is still read, so that a syntax error further on wins.
                    while items.next_element_seed(Lenient(Skip))?.is_some() {}
                    return Ok(Err(reason));
                }
            }
        }
        Ok(Ok(segments))
    }
}

/// One element of `segments`, at `index`.
struct SegmentField {
    index: usize,
}

enum SegmentKey {
    Id,
    Text,
    Words,
    Start,
    End,
    Other,
}

impl KeyName for SegmentKey {
    fn from_name(name: &str) -> Self {
        match name {
            "id" => SegmentKey::Id,
            "text" => SegmentKey::Text,
            "words" => SegmentKey::Words,
            "start" => SegmentKey::Start,
            "end" => SegmentKey::End,
            _ => SegmentKey::Other,
        }
    }
}

impl<'de> Field<'de> for SegmentField {
    type Out = Result<Segment, String>;

    fn other(self, kind: Kind<'_>) -> Self::Out {
        Err(format!("segment #{} is {}", self.index, kind.describe()))
    }

    fn object<A: MapAccess<'de>>(self, mut entries: A) -> Result<Self::Out, A::Error> {
        let (mut id, mut text, mut words, mut start, mut end) = (None, None, Ok(None), None, None);
        while let Some(name) = entries.next_key_seed(Key::new())? {
            match name {
                SegmentKey::Id => id = Some(entries.next_value_seed(Lenient(IdField))?),
                SegmentKey::Text => text = entries.next_value_seed(Lenient(StringField))?,
                SegmentKey::Words => words = entries.next_value_seed(Lenient(WordsField))?,
                SegmentKey::Start => start = entries.next_value_seed(Lenient(NumberField))?,
                SegmentKey::End => end = entries.next_value_seed(Lenient(NumberField))?,
                SegmentKey::Other => entries.next_value_seed(Lenient(Skip))?,
            }
        }
        let index = self.index;
        let id = match id {
            None => return Ok(Err(format!("segment #{index} has no `id`"))),
            Some(Err(kind)) => {
                return Ok(Err(format!(
                    "segment #{index} has an id that is neither an integer nor a string: {kind}"
                )))
            }
            Some(Ok(id)) => id,
        };
        let words = match words {
            Ok(words) => words,
            Err(kind) => return Ok(Err(format!("segment {id} has `words` that is {kind}"))),
        };
        Ok(Ok(Segment {
            id,
            text,
            words,
            start,
            end,
        }))
    }
}

/// A segment id ([`SegmentId`], docs/protocol.md#tv12). JSON integers, integral floats such as
/// `2.0` (Python compares it equal to `2`) and strings are ids; fractions, numbers beyond `i64`
/// (as numbers or as numeric strings), null, booleans, arrays and objects are not. `Err`
/// describes the value.
struct IdField;

impl Field<'_> for IdField {
    type Out = Result<SegmentId, String>;

    fn other(self, kind: Kind<'_>) -> Self::Out {
        Err(kind.describe())
    }

    fn number(self, value: Number) -> Self::Out {
        if let Some(id) = value.as_i64() {
            return Ok(SegmentId::Number(id));
        }
        match value.as_f64() {
            // The range check makes the cast exact.
            Some(float) if float.fract() == 0.0 && float.abs() <= MAX_EXACT_FLOAT_INTEGER => {
                Ok(SegmentId::Number(float as i64))
            }
            _ => Err(Kind::Number(value).describe()),
        }
    }

    fn string(self, value: &str) -> Self::Out {
        let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(SegmentId::Text(value.to_owned()));
        }
        value
            .parse()
            .map(SegmentId::Number)
            .map_err(|_| Kind::String(value).describe())
    }
}

/// A segment's `words`: missing or null is `None`; anything but a list is a shape error (`Err`
/// describes the value).
struct WordsField;

impl<'de> Field<'de> for WordsField {
    type Out = Result<Option<Vec<Word>>, String>;

    fn other(self, kind: Kind<'_>) -> Self::Out {
        Err(kind.describe())
    }

    fn null(self) -> Self::Out {
        Ok(None)
    }

    fn array<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Out, A::Error> {
        let mut words = Vec::new();
        while let Some(word) = items.next_element_seed(Lenient(WordField))? {
            words.push(word);
        }
        Ok(Ok(Some(words)))
    }
}

/// One element of `words`. A word that is not an object becomes an empty, non-final word: it
/// still counts towards the segment's word count, which the finalized-word bookkeeping relies on.
struct WordField;

enum WordKey {
    Word,
    IsFinal,
    Probability,
    HallucinationScore,
    Start,
    End,
    Language,
    Other,
}

impl KeyName for WordKey {
    fn from_name(name: &str) -> Self {
        match name {
            "word" => WordKey::Word,
            "is_final" => WordKey::IsFinal,
            "probability" => WordKey::Probability,
            "hallucination_score" => WordKey::HallucinationScore,
            "start" => WordKey::Start,
            "end" => WordKey::End,
            "language" => WordKey::Language,
            _ => WordKey::Other,
        }
    }
}

impl<'de> Field<'de> for WordField {
    type Out = Word;

    fn other(self, _kind: Kind<'_>) -> Word {
        Word {
            word: None,
            is_final: false,
            probability: None,
            hallucination_score: None,
            start: None,
            end: None,
            language: None,
        }
    }

    fn object<A: MapAccess<'de>>(self, mut entries: A) -> Result<Word, A::Error> {
        let mut word = self.other(Kind::Object);
        while let Some(name) = entries.next_key_seed(Key::new())? {
            match name {
                WordKey::Word => word.word = entries.next_value_seed(Lenient(StringField))?,
                WordKey::IsFinal => word.is_final = entries.next_value_seed(Lenient(TrueField))?,
                WordKey::Probability => {
                    word.probability = entries.next_value_seed(Lenient(NumberField))?
                }
                WordKey::HallucinationScore => {
                    word.hallucination_score = entries.next_value_seed(Lenient(NumberField))?
                }
                WordKey::Start => word.start = entries.next_value_seed(Lenient(NumberField))?,
                WordKey::End => word.end = entries.next_value_seed(Lenient(NumberField))?,
                WordKey::Language => {
                    word.language = entries.next_value_seed(Lenient(StringField))?
                }
                WordKey::Other => entries.next_value_seed(Lenient(Skip))?,
            }
        }
        Ok(word)
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
                id: SegmentId::Number(3),
                text: Some("hi there".into()),
                start: Some(1.5),
                end: Some(2.0),
                words: Some(vec![
                    Word {
                        word: Some("hi".into()),
                        is_final: true,
                        probability: Some(0.9),
                        hallucination_score: Some(0.0),
                        start: Some(1.5),
                        end: Some(1.75),
                        language: Some("en".into()),
                    },
                    Word {
                        word: Some("there".into()),
                        is_final: false,
                        probability: None,
                        hallucination_score: None,
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

    fn error(message: &str, code: Option<&str>) -> ServerMessage {
        ServerMessage::Error {
            message: message.into(),
            code: code.map(Into::into),
        }
    }

    #[test]
    fn errors_are_reported_with_the_server_text() {
        assert_eq!(parse(json!({"error": "boom"})), error("boom", None));
        // The v2 shape: the message, and the code as text whatever its JSON type.
        assert_eq!(
            parse(json!({"error": {"code": 401, "message": "bad key"}})),
            error("bad key", Some("401"))
        );
        assert_eq!(
            parse(json!({"error": {"message": "over budget", "code": "spend_limit", "x": 1}})),
            error("over budget", Some("spend_limit"))
        );
        assert_eq!(
            parse(json!({"error": {"message": "m", "code": null}})),
            error("m", None)
        );
        // An object without a string message is shown whole, as before.
        assert_eq!(
            parse(json!({"error": {"code": 7, "detail": "x"}})),
            error(r#"{"code":7,"detail":"x"}"#, None)
        );
        assert_eq!(
            parse(json!({"error": {"message": 5}})),
            error(r#"{"message":5}"#, None)
        );
        // `error` wins over everything else.
        assert_eq!(
            parse(json!({"error": "x", "checkpoint_id": "final", "segments": []})),
            error("x", None)
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
    fn tv12_string_ids_are_ids_and_only_values_of_neither_kind_are_rejected() {
        let ids = |value: Value| -> Vec<SegmentId> {
            transcription_of(value)
                .segments
                .into_iter()
                .map(|s| s.id)
                .collect()
        };
        use SegmentId::{Number, Text};
        assert_eq!(
            ids(json!({"segments": [
                {"id": "0"}, {"id": "12"}, {"id": "-3"}, {"id": "+4"}, {"id": "007"}, {"id": 5}
            ]})),
            [
                Number(0),
                Number(12),
                Number(-3),
                Number(4),
                Number(7),
                Number(5)
            ]
        );
        assert_eq!(
            ids(json!({"segments": [{"id": "seg-a"}, {"id": ""}, {"id": " 1"}, {"id": "1.5"}]})),
            [
                Text("seg-a".into()),
                Text("".into()),
                Text(" 1".into()),
                Text("1.5".into())
            ]
        );
        // Numeric strings order numerically, text ids after every number.
        assert!(Number(9) < Number(10) && Number(i64::MAX) < Text("0a".into()));
        assert!(Text("a".into()) < Text("b".into()));
        assert!(
            malformed(json!({"segments": [{"id": "99999999999999999999", "text": "x"}]}))
                .contains("neither an integer nor a string")
        );
        malformed(json!({"segments": [{"id": 1.5, "text": "x"}]}));
        malformed(json!({"segments": [{"id": null, "text": "x"}]}));
        malformed(json!({"segments": [{"id": true, "text": "x"}]}));
        malformed(json!({"segments": [{"id": ["0"], "text": "x"}]}));
        malformed(json!({"segments": [{"id": {"n": 0}, "text": "x"}]}));
        malformed(json!({"segments": [{"text": "x"}]}));
        // One bad segment rejects the whole message.
        malformed(json!({"segments": [{"id": 0, "text": "ok"}, {"id": 0.5, "text": "x"}]}));
    }

    #[test]
    fn v2_segment_and_word_fields_are_read_or_ignored() {
        let message = transcription_of(json!({
            "task": "transcribe", "language": "de", "duration": 1.5, "segments": [{
                "id": "3", "seek": 0, "language": "de", "text": "hallo", "avg_logprob": -0.2,
                "words": [{"word": "hallo", "is_final": true, "probability": 0.75,
                           "hallucination_score": 0.25, "language": "de", "speaker": null}]
            }]
        }));
        let segment = &message.segments[0];
        assert_eq!(segment.id, SegmentId::Number(3));
        let word = &segment.words.as_ref().expect("words")[0];
        assert_eq!(
            (
                word.probability,
                word.hallucination_score,
                word.language.as_deref()
            ),
            (Some(0.75), Some(0.25), Some("de"))
        );
    }

    #[test]
    fn integral_ids() {
        let message = transcription_of(json!({"segments": [
            {"id": 2.0}, {"id": -1}, {"id": i64::MAX}, {"id": 9007199254740992.0}
        ]}));
        let ids: Vec<SegmentId> = message.segments.iter().map(|s| s.id.clone()).collect();
        let want: Vec<SegmentId> = [2, -1, i64::MAX, 9_007_199_254_740_992]
            .into_iter()
            .map(SegmentId::Number)
            .collect();
        assert_eq!(ids, want);
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
    fn duplicate_keys_last_one_wins() {
        // As in a JSON object read into a map: the last occurrence of a key counts.
        assert_eq!(
            parse_server_message(r#"{"error":"x","error":null,"segments":[]}"#),
            Ok(ServerMessage::Transcription(TranscriptionMessage::default()))
        );
        let message = parse_server_message(
            r#"{"segments":"bad","text":"a","text":5,"segments":[{"id":"x","id":4,
                "words":"no","words":[{"word":"a","word":2,"is_final":true,"is_final":1},
                                      {"is_final":0,"is_final":true,"end":1,"end":2.5}]}]}"#,
        );
        let Ok(ServerMessage::Transcription(message)) = message else {
            panic!("{message:?}");
        };
        assert_eq!(message.text, None);
        assert_eq!(message.segments[0].id, SegmentId::Number(4));
        let words = message.segments[0].words.as_ref().expect("words");
        assert_eq!((words[0].word.as_deref(), words[0].is_final), (None, false));
        assert_eq!((words[1].is_final, words[1].end), (true, Some(2.5)));
        assert_eq!(
            parse_server_message(r#"{"segments":[{"id":0}],"segments":[{"id":null}]}"#)
                .map_err(|e| e.to_string().contains("neither an integer nor a string")),
            Err(true)
        );
    }

    #[test]
    fn shape_problems_do_not_hide_later_keys_or_syntax_errors() {
        // A later `error` key still wins over malformed segments.
        assert_eq!(
            parse_server_message(r#"{"segments":[{"id":false}],"error":"boom"}"#),
            Ok(error("boom", None))
        );
        assert!(matches!(
            parse_server_message(r#"{"segments":7,"checkpoint_id":"final"}"#),
            Ok(ServerMessage::CheckpointEcho { .. })
        ));
        // The first bad segment in message order is the one reported.
        let reason = malformed(json!({"segments": [{"id": 0, "words": 1}, {"id": 0.5}]}));
        assert!(reason.contains("segment 0 has `words`"), "{reason}");
        // A syntax error after a shape problem still makes the frame invalid JSON.
        for text in [
            r#"{"segments":[{"id":null},{"id":1,]}"#,
            r#"{"segments":[{"id":null}],"x":}"#,
            r#"{"segments":5,"x":[1,}"#,
            r#"{"error":"boom","x":tru}"#,
        ] {
            assert!(
                matches!(
                    parse_server_message(text),
                    Err(ParseError::InvalidJson { .. })
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn values_nobody_reads_are_checked_too() {
        // Nesting depth and number range are checked in skipped values as in a full parse.
        let invalid = |text: &str| {
            assert!(
                matches!(
                    parse_server_message(text),
                    Err(ParseError::InvalidJson { .. })
                ),
                "{text:?}"
            );
        };
        let nested = |depth: usize| {
            format!(
                r#"{{"segments":[],"x":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        invalid(&nested(200));
        assert!(parse_server_message(&nested(100)).is_ok());
        invalid(r#"{"segments":[],"x":1e400}"#);
        invalid(r#"{"segments":[{"id":0,"hallucination_score":1e400}]}"#);
        invalid(r#"{"segments":[],"x":{"y":"\ud800"}}"#);
        invalid(r#"[1e400]"#);
        invalid(&format!("{}{}", "[".repeat(200), "]".repeat(200)));
    }

    #[test]
    fn escaped_keys_are_recognized() {
        let message = parse_server_message(
            r#"{"segm\u0065nts":[{"\u0069d":1,"words":[{"is_fin\u0061l":true}]}]}"#,
        );
        let Ok(ServerMessage::Transcription(message)) = message else {
            panic!("{message:?}");
        };
        assert_eq!(message.segments[0].id, SegmentId::Number(1));
        assert!(message.segments[0].words.as_ref().expect("words")[0].is_final);
    }

    #[test]
    fn malformed_error_text_mentions_the_problem() {
        let err = parse_server_message(r#"{"segments":[{"id":true,"text":"x"}]}"#).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("malformed transcription"), "{text}");
        assert!(text.contains("neither an integer nor a string"), "{text}");
    }
}

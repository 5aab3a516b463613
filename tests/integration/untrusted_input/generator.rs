// SPDX-License-Identifier: MPL-2.0
//! Server frames for the untrusted-input tests, from a small deterministic PRNG: a simulated
//! well-behaved server, random JSON shaped like transcription messages, mutations of valid
//! messages, text that is not JSON, and a server that never finalizes. Shared by
//! `tests/integration/untrusted_input.rs` and `examples/fuzz-protocol.rs`. TVn are the test vectors
//! of docs/protocol.md#test-vectors, R5 a rule of docs/protocol.md#base-rules.

use fireworks_test_server::audio::SplitMix64;
use serde_json::{json, Map, Value};

/// Number literals a `serde_json::Value` cannot hold. [`render`] replaces a string
/// `"@@rawN@@"` (see [`raw`]) by the Nth, so they can sit anywhere in a generated value.
pub const RAW_TOKENS: &[&str] = &[
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "-0.0",
    "123456789012345678901234567890",
    "18446744073709551616",
    "9007199254740993",
    "2.0e0",
    "1E2",
];

pub const VOCABULARY: &[&str] = &[
    "hello",
    "world",
    "what's",
    "the",
    "weather",
    "today",
    "a",
    "one",
    "two",
    "three",
    "naïve",
    "日本語",
    "émoji😀",
    "x",
    "e\u{301}",
];

/// Keys the parser looks at, used for random objects so that they sometimes matter.
pub const KEYS: &[&str] = &[
    "id",
    "text",
    "words",
    "word",
    "is_final",
    "segments",
    "error",
    "checkpoint_id",
    "object",
    "start",
    "end",
    "probability",
    "language",
];

/// Unicode whitespace of several kinds (`str::trim` removes all of these).
pub const WHITESPACE: &[char] = &[
    ' ', '\t', '\n', '\r', '\u{a0}', '\u{85}', '\u{2003}', '\u{2028}', '\u{3000}',
];

/// Text inserted at random places by [`TextMutation::Insert`].
pub const INSERTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ":",
    "null",
    "\"id\":",
    "\\",
    "1e999",
    "NaN",
    "-",
    " ",
    "\u{0}",
    "\"\\ud800\"",
    "é",
];

/// JSON-ish tokens for token soup.
pub const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"segments\"",
    "\"id\"",
    "\"text\"",
    "\"words\"",
    "\"word\"",
    "\"is_final\"",
    "\"error\"",
    "\"checkpoint_id\"",
    "\"object\"",
    "\"stt.output.trace\"",
    "true",
    "false",
    "null",
    "0",
    "-1",
    "1.5",
    "1e400",
    "\"hi\"",
    " ",
    "\"",
    "\\",
    "\"\\u0000\"",
];

/// Frames that classify as something other than a transcription, or as an empty one (TV7).
pub const CONTROL_FRAMES: &[&str] = &[
    r#"{"checkpoint_id":"final"}"#,
    r#"{"object":"stt.output.trace","trace_id":"final","event_id":"e"}"#,
    r#"{"object":"stt.state.cleared","reset_id":"r"}"#,
    r#"{"error":"boom"}"#,
    r#"{"segments":[]}"#,
    r#"{"segments":null}"#,
];

/// The placeholder for `RAW_TOKENS[index]`.
pub fn raw(index: usize) -> Value {
    Value::String(format!("@@raw{index}@@"))
}

/// The JSON text of `value`, with the [`raw`] placeholders substituted.
pub fn render(value: &Value) -> String {
    let mut text = value.to_string();
    if text.contains("@@raw") {
        for (index, token) in RAW_TOKENS.iter().enumerate() {
            text = text.replace(&format!("\"@@raw{index}@@\""), token);
        }
    }
    text
}

/// `depth` arrays (or objects) inside each other.
pub fn nested(depth: usize, objects: bool) -> Value {
    let mut value = Value::Null;
    for _ in 0..depth {
        value = if objects {
            Value::Object(Map::from_iter([("a".to_owned(), value)]))
        } else {
            Value::Array(vec![value])
        };
    }
    value
}

/// A few PRNG conveniences.
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.range(0, n as u64 - 1) as usize
    }

    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// Index into `weights`, chosen in proportion to them.
    pub fn weighted(&mut self, weights: &[usize]) -> usize {
        let mut roll = self.below(weights.iter().sum());
        for (index, weight) in weights.iter().enumerate() {
            if roll < *weight {
                return index;
            }
            roll -= weight;
        }
        unreachable!("roll < sum of weights")
    }
}

/// A character from one of several pools: ASCII, whitespace, controls, accents, CJK, emoji.
pub fn random_char(rng: &mut Rng) -> char {
    match rng.below(8) {
        0..=2 => char::from(rng.range(0x20, 0x7e) as u8),
        3 => rng.pick(WHITESPACE),
        4 => char::from(rng.range(0, 0x1f) as u8),
        5 => char::from_u32(rng.range(0xa1, 0x17f) as u32).unwrap_or('?'),
        6 => char::from_u32(rng.range(0x4e00, 0x4fff) as u32).unwrap_or('?'),
        _ => rng.pick(&[
            '😀',
            '\u{301}',
            '\u{feff}',
            '\u{200b}',
            '\u{10ffff}',
            '\u{fffd}',
        ]),
    }
}

pub fn random_text(rng: &mut Rng, max_chars: usize) -> String {
    let len = rng.range(0, max_chars);
    (0..len).map(|_| random_char(rng)).collect()
}

/// Whitespace of 0–3 characters.
pub fn random_whitespace(rng: &mut Rng) -> String {
    let len = rng.below(4);
    (0..len).map(|_| rng.pick(WHITESPACE)).collect()
}

/// Any JSON value, `depth` levels at most, plus deep nesting on either side of the parser's
/// recursion limit.
pub fn random_json(rng: &mut Rng, depth: u32) -> Value {
    let kinds = if depth == 0 { 6 } else { 9 };
    match rng.below(kinds) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => json!(rng.u64() as i64 >> rng.below(64)),
        3 => json!(f64::from_bits(rng.u64())), // NaN and infinities become null
        4 => Value::String(random_text(rng, 12)),
        5 => raw(rng.below(RAW_TOKENS.len())),
        6 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        7 => {
            let fields = (0..rng.below(4))
                .map(|_| (rng.pick(KEYS).to_owned(), random_json(rng, depth - 1)))
                .collect();
            Value::Object(fields)
        }
        _ => nested(rng.range(1, 300), rng.one_in(2)),
    }
}

/// A change to a JSON value. Paths pick an element or field at each level, modulo its length.
#[derive(Debug, Clone)]
pub enum ValueMutation {
    /// Removes the key or element at the path.
    Delete(Vec<usize>),
    Replace(Vec<usize>, Value),
    /// Number ↔ string, bool → number, array ↔ object, null → object.
    ChangeType(Vec<usize>),
    /// Toggles `segments[s].words[w].is_final`.
    FlipFinal(usize, usize),
    /// Appends a copy of a segment (duplicate ids).
    DuplicateSegment(usize),
}

/// A change to the text of a frame. Positions are taken modulo the length and moved back to a
/// character boundary.
#[derive(Debug, Clone)]
pub enum TextMutation {
    Truncate(usize),
    DeleteRange(usize, usize),
    Insert(usize, &'static str),
}

/// The value `path` leads to.
fn descend<'a>(mut value: &'a mut Value, path: &[usize]) -> &'a mut Value {
    for &index in path {
        let len = match &*value {
            Value::Array(items) => items.len(),
            Value::Object(fields) => fields.len(),
            _ => 0,
        };
        if len == 0 {
            break;
        }
        value = match value {
            Value::Array(items) => &mut items[index % len],
            Value::Object(fields) => fields.values_mut().nth(index % len).expect("index < len"),
            _ => unreachable!("len > 0"),
        };
    }
    value
}

fn segments_mut(value: &mut Value) -> Option<&mut Vec<Value>> {
    value
        .get_mut("segments")
        .and_then(Value::as_array_mut)
        .filter(|segments| !segments.is_empty())
}

pub fn apply_value_mutation(value: &mut Value, mutation: &ValueMutation) {
    match mutation {
        ValueMutation::Delete(path) => {
            let Some((last, parent)) = path.split_last() else {
                return;
            };
            match descend(value, parent) {
                Value::Array(items) if !items.is_empty() => {
                    let n = items.len();
                    items.remove(last % n);
                }
                Value::Object(fields) if !fields.is_empty() => {
                    let key = fields.keys().nth(last % fields.len()).cloned();
                    fields.remove(&key.expect("not empty"));
                }
                _ => {}
            }
        }
        ValueMutation::Replace(path, new) => *descend(value, path) = new.clone(),
        ValueMutation::ChangeType(path) => {
            let target = descend(value, path);
            *target = match std::mem::take(target) {
                Value::Number(n) => Value::String(n.to_string()),
                Value::String(s) => s.parse::<f64>().map_or(json!([s]), |f| json!(f)),
                Value::Bool(b) => json!(i64::from(b)),
                Value::Null => json!({}),
                Value::Array(items) => Value::Object(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (i.to_string(), v))
                        .collect(),
                ),
                Value::Object(fields) => Value::Array(fields.into_iter().map(|(_, v)| v).collect()),
            };
        }
        ValueMutation::FlipFinal(s, w) => {
            let Some(segments) = segments_mut(value) else {
                return;
            };
            let n = segments.len();
            let words = segments[s % n]
                .get_mut("words")
                .and_then(Value::as_array_mut);
            let Some(words) = words.filter(|words| !words.is_empty()) else {
                return;
            };
            let n = words.len();
            if let Some(word) = words[w % n].as_object_mut() {
                let is_final = word.get("is_final") == Some(&json!(true));
                word.insert("is_final".into(), json!(!is_final));
            }
        }
        ValueMutation::DuplicateSegment(s) => {
            if let Some(segments) = segments_mut(value) {
                let copy = segments[s % segments.len()].clone();
                segments.push(copy);
            }
        }
    }
}

fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

pub fn apply_text_mutation(text: &mut String, mutation: &TextMutation) {
    match *mutation {
        TextMutation::Truncate(at) => text.truncate(floor_boundary(text, at)),
        TextMutation::DeleteRange(at, n) => {
            let start = floor_boundary(text, at);
            let end = floor_boundary(text, (start + n).min(text.len())).max(start);
            text.replace_range(start..end, "");
        }
        TextMutation::Insert(at, insert) => text.insert_str(floor_boundary(text, at), insert),
    }
}

/// One step of a session.
#[derive(Debug, Clone)]
pub enum Step {
    Frame(String),
    BeginConnection,
    EndOfStream,
}

/// What a [`Generator`] is producing for a while.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// A simulated well-behaved server (see [`Server`]).
    Realistic,
    /// JSON shaped like transcription messages, every field open to abuse.
    Chaos,
    /// The simulated server's messages, mutated as values and as text.
    Mutant,
    /// Random bytes, text and token soup.
    Junk,
    /// Ever-new ids, never final, sometimes long texts.
    Hostile,
    /// Any of the above, chosen per frame.
    Mixed,
}

const MODES: &[Mode] = &[
    Mode::Realistic,
    Mode::Chaos,
    Mode::Mutant,
    Mode::Junk,
    Mode::Hostile,
    Mode::Mixed,
];

/// One segment of the simulated server's window: its words and whether each is final.
#[derive(Debug, Clone)]
struct SimSegment {
    id: i64,
    words: Vec<(String, bool)>,
}

/// A server that behaves like docs/protocol.md#how-segments-change describes: ids rise,
/// segments are revised in place, the newest is finalized after silence and may keep growing,
/// trailing segments are sometimes retracted, the window slides. Segment texts are their words
/// joined.
#[derive(Debug, Default)]
pub struct Server {
    window: Vec<SimSegment>,
    next_id: i64,
    /// Never leave out a segment's `words` key, so that texts always match words.
    pub words_always: bool,
}

impl Server {
    /// A new connection: ids restart at 0.
    pub fn reconnect(&mut self) {
        self.window.clear();
        self.next_id = 0;
    }

    /// Advances the simulation by one message and returns it.
    pub fn next_message(&mut self, rng: &mut Rng) -> Value {
        let word = |rng: &mut Rng| rng.pick(VOCABULARY).to_owned();
        match rng.weighted(&[40, 15, 15, 5, 5, 5, 5, 5, 5]) {
            // Another non-final word on the newest segment (which may be a finalized one that
            // keeps growing, TV3).
            // A new segment once the newest holds a sentence's worth.
            0 => match self.window.last_mut() {
                Some(newest) if newest.words.len() < 12 => newest.words.push((word(rng), false)),
                _ => self.open_segment(rng, 1),
            },
            // Silence: the newest segment's words become final (sometimes only the last, TV13).
            1 => {
                if let Some(newest) = self.window.last_mut() {
                    let only_last = rng.one_in(5);
                    let count = newest.words.len();
                    for (i, (_, is_final)) in newest.words.iter_mut().enumerate() {
                        *is_final = !only_last || i + 1 == count;
                    }
                }
            }
            2 => self.open_segment(rng, 1),
            // Retraction (R5).
            3 => {
                self.window.pop();
            }
            // A revision of a word.
            4 if !self.window.is_empty() => {
                let s = rng.below(self.window.len());
                let words = &mut self.window[s].words;
                if !words.is_empty() {
                    let w = rng.below(words.len());
                    words[w].0 = word(rng);
                }
            }
            // The window slides.
            5 if self.window.len() > 1 => {
                self.window.remove(0);
            }
            // Fewer words than before on the newest segment (TV15).
            6 => {
                if let Some(newest) = self.window.last_mut() {
                    newest.words.pop();
                }
            }
            // An id jump.
            7 => {
                let jump = rng.range(2, 50) as i64;
                self.open_segment(rng, jump);
            }
            // The same message again.
            _ => {}
        }
        if self.window.len() > 6 {
            self.window.remove(0);
        }
        self.message(rng)
    }

    fn open_segment(&mut self, rng: &mut Rng, step: i64) {
        let id = self.window.last().map_or(self.next_id, |s| s.id + step);
        self.next_id = id + 1;
        let first = rng.pick(VOCABULARY).to_owned();
        self.window.push(SimSegment {
            id,
            words: vec![(first, false)],
        });
    }

    /// The window as a message: usually all of it, sometimes only the newest segments, in order
    /// or rotated (TV6). Words may carry whitespace, some words are blank, and rarely a segment
    /// has no `words` key (TV4).
    fn message(&self, rng: &mut Rng) -> Value {
        let skip = if rng.one_in(10) {
            rng.below(self.window.len() + 1)
        } else {
            0
        };
        let mut segments: Vec<Value> = self.window[skip..]
            .iter()
            .map(|segment| {
                let mut shown = Vec::new();
                let words: Vec<Value> = segment
                    .words
                    .iter()
                    .enumerate()
                    .map(|(i, (text, is_final))| {
                        let text = match rng.below(20) {
                            0 => random_whitespace(rng),
                            1 => random_whitespace(rng) + text + &random_whitespace(rng),
                            _ => text.clone(),
                        };
                        if !text.trim().is_empty() {
                            shown.push(text.trim().to_owned());
                        }
                        let t = i as f64 * 0.4;
                        json!({"word": text, "probability": 0.9, "is_final": is_final,
                               "start": t, "end": t + 0.3})
                    })
                    .collect();
                let text = random_whitespace(rng) + &shown.join(" ") + &random_whitespace(rng);
                let mut segment = json!({"id": segment.id, "text": text});
                if self.words_always || !rng.one_in(30) {
                    segment["words"] = Value::Array(words);
                }
                segment
            })
            .collect();
        if rng.one_in(10) && !segments.is_empty() {
            let n = rng.below(segments.len());
            segments.rotate_left(n);
        }
        let mut message = json!({"task": "transcribe", "language": "en", "text": "ignored"});
        // Not inside `json!`, which would copy the value through `Serialize`.
        message["segments"] = Value::Array(segments);
        message
    }
}

/// Produces [`Step`]s: runs of one [`Mode`] (20–400 frames), with reconnects, ends of stream and
/// control frames sprinkled in.
pub struct Generator {
    rng: Rng,
    server: Server,
    mode: Mode,
    mode_left: usize,
    /// The hostile server's next new id.
    hostile_next_id: i64,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            server: Server::default(),
            mode: Mode::Realistic,
            mode_left: 0,
            hostile_next_id: 0,
        }
    }

    /// The mode of the frames being produced.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn next_step(&mut self) -> Step {
        if self.mode_left == 0 {
            self.mode = MODES[self.rng.weighted(&[40, 18, 15, 5, 5, 15])];
            self.mode_left = self.rng.range(20, 400);
        }
        self.mode_left -= 1;
        match self.rng.below(400) {
            0 => {
                self.server.reconnect();
                self.hostile_next_id = 0;
                return Step::BeginConnection;
            }
            1 => {
                self.server.reconnect();
                self.hostile_next_id = 0;
                return Step::EndOfStream;
            }
            2..=5 => return Step::Frame(self.rng.pick(CONTROL_FRAMES).to_owned()),
            _ => {}
        }
        let mode = match self.mode {
            Mode::Mixed => MODES[self.rng.below(MODES.len() - 1)],
            mode => mode,
        };
        Step::Frame(match mode {
            Mode::Realistic => render(&self.server.next_message(&mut self.rng)),
            Mode::Chaos => render(&chaos_message(&mut self.rng)),
            Mode::Mutant => {
                let message = self.server.next_message(&mut self.rng);
                mutate(&mut self.rng, message)
            }
            Mode::Junk => junk_text(&mut self.rng),
            Mode::Hostile | Mode::Mixed => self.hostile_message(),
        })
    }

    /// New ids above all before, a few old ones again, never a final word, sometimes a text of
    /// up to 600,000 bytes, rarely one larger than the whole pending-bytes bound (up to 2 MB).
    fn hostile_message(&mut self) -> String {
        let rng = &mut self.rng;
        let first = self.hostile_next_id - rng.below(4) as i64;
        let end = self.hostile_next_id + rng.range(1, 24) as i64;
        self.hostile_next_id = end;
        let long = match rng.below(2000) {
            0 => Some(rng.range(1_100_000, 2_000_000)), // more than the whole byte bound
            1..=20 => Some(rng.range(1000, 600_000)),
            _ => None,
        };
        let with_words = rng.one_in(2);
        let segments: Vec<Value> = (first.max(0)..end)
            .map(|id| {
                let text = match long {
                    Some(len) if id == end - 1 => format!("n{id} {}", "é".repeat(len / 2)),
                    _ => format!("s{id}"),
                };
                let mut segment = json!({"id": id, "text": text});
                if with_words {
                    segment["words"] = json!([{"word": format!("s{id}"), "is_final": false},
                                              {"word": "x", "is_final": false}]);
                }
                segment
            })
            .collect();
        let mut message = json!({"language": "en"});
        message["segments"] = Value::Array(segments);
        render(&message)
    }
}

fn maybe(rng: &mut Rng, make: impl FnOnce(&mut Rng) -> Value) -> Option<Value> {
    match rng.below(10) {
        0 => None,
        1 => Some(random_json(rng, 2)),
        _ => Some(make(rng)),
    }
}

fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    let map: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_owned(), value?)))
        .collect();
    Value::Object(map)
}

fn chaos_id(rng: &mut Rng) -> Value {
    match rng.weighted(&[10, 1, 1, 1, 1, 1, 1, 1]) {
        0 => json!(rng.range(0, 14) as i64 - 2),
        1 => json!(rng.u64() as i64),
        2 => json!(rng.pick(&[i64::MIN, i64::MAX, i64::MAX - 1, -1])),
        3 => json!(rng.u64()),
        4 => json!(rng.range(0, 14) as f64 - 3.0),
        5 => json!(rng.pick(&[
            1e20,
            9_007_199_254_740_992.0,
            9_007_199_254_740_994.0,
            -0.0,
            0.5
        ])),
        6 => raw(rng.below(RAW_TOKENS.len())),
        _ => json!(rng.below(1000).to_string()),
    }
}

fn chaos_text(rng: &mut Rng) -> String {
    match rng.weighted(&[24, 8, 8, 1]) {
        0 => (0..rng.below(6))
            .map(|_| rng.pick(VOCABULARY))
            .collect::<Vec<_>>()
            .join(" "),
        1 => random_whitespace(rng),
        2 => random_text(rng, 40),
        _ => random_char(rng).to_string().repeat(rng.range(1, 20_000)),
    }
}

fn chaos_number(rng: &mut Rng) -> Value {
    match rng.weighted(&[6, 1, 1, 1, 1]) {
        0 => json!(rng.below(30_000) as f64 / 1000.0),
        1 => json!(f64::from_bits(rng.u64())),
        2 => json!(rng.pick(&[-0.0, f64::MAX, f64::MIN, f64::MIN_POSITIVE, -1e300])),
        3 => raw(rng.below(RAW_TOKENS.len())),
        _ => json!(rng.pick(&["NaN", "inf", "1.5"])),
    }
}

fn chaos_word(rng: &mut Rng) -> Value {
    if rng.one_in(9) {
        return random_json(rng, 2);
    }
    object(vec![
        ("word", maybe(rng, |r| json!(chaos_text(r)))),
        (
            "is_final",
            maybe(rng, |r| match r.weighted(&[4, 4, 1]) {
                0 => json!(true),
                1 => json!(false),
                _ => json!(r.pick(&["true", "1", "yes"])),
            }),
        ),
        ("probability", maybe(rng, chaos_number)),
        ("start", maybe(rng, chaos_number)),
        ("end", maybe(rng, chaos_number)),
        ("language", maybe(rng, |_| json!("en"))),
    ])
}

fn chaos_segment(rng: &mut Rng) -> Value {
    if rng.one_in(13) {
        return random_json(rng, 2);
    }
    object(vec![
        ("id", maybe(rng, chaos_id)),
        ("text", maybe(rng, |r| json!(chaos_text(r)))),
        (
            "words",
            maybe(rng, |r| {
                Value::Array((0..r.below(8)).map(|_| chaos_word(r)).collect())
            }),
        ),
        ("start", maybe(rng, chaos_number)),
        ("end", maybe(rng, chaos_number)),
    ])
}

/// JSON shaped like a transcription message, with every field open to abuse.
pub fn chaos_message(rng: &mut Rng) -> Value {
    let mut value = object(vec![
        (
            "segments",
            maybe(rng, |r| {
                Value::Array((0..r.below(6)).map(|_| chaos_segment(r)).collect())
            }),
        ),
        ("task", maybe(rng, |_| json!("transcribe"))),
        ("language", maybe(rng, |_| json!("en"))),
        ("text", maybe(rng, |r| json!(chaos_text(r)))),
    ]);
    match rng.below(15) {
        0 => value["error"] = random_json(rng, 1),
        1 => value["checkpoint_id"] = random_json(rng, 1),
        2 => value["object"] = json!(rng.pick(&["stt.output.trace", "stt.state.cleared", "x"])),
        _ => {}
    }
    value
}

fn random_path(rng: &mut Rng) -> Vec<usize> {
    (0..rng.range(1, 5)).map(|_| rng.below(64)).collect()
}

/// `value` after 0–3 value mutations, as text after 0–2 text mutations.
pub fn mutate(rng: &mut Rng, mut value: Value) -> String {
    for _ in 0..rng.below(4) {
        let mutation = match rng.below(5) {
            0 => ValueMutation::Delete(random_path(rng)),
            1 => ValueMutation::Replace(random_path(rng), random_json(rng, 2)),
            2 => ValueMutation::ChangeType(random_path(rng)),
            3 => ValueMutation::FlipFinal(rng.below(64), rng.below(64)),
            _ => ValueMutation::DuplicateSegment(rng.below(64)),
        };
        apply_value_mutation(&mut value, &mutation);
    }
    let mut text = render(&value);
    for _ in 0..rng.below(3) {
        let at = rng.u64() as usize;
        let mutation = match rng.below(3) {
            0 => TextMutation::Truncate(at),
            1 => TextMutation::DeleteRange(at, rng.range(1, 8)),
            _ => TextMutation::Insert(at, rng.pick(INSERTS)),
        };
        apply_text_mutation(&mut text, &mutation);
    }
    text
}

/// Mostly not JSON: random text, random bytes read as lossy UTF-8, or JSON-like token soup.
pub fn junk_text(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => random_text(rng, 300),
        1 => {
            let bytes: Vec<u8> = (0..rng.below(512)).map(|_| rng.u64() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => {
            let prefix = rng.pick(&["", "{\"segments\":[", "{\"segments\":[{\"id\":0,"]);
            let tokens: String = (0..rng.below(48)).map(|_| rng.pick(TOKENS)).collect();
            prefix.to_owned() + &tokens
        }
    }
}

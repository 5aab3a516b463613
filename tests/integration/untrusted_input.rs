// SPDX-License-Identifier: MPL-2.0
//! Untrusted server input: property tests over everything that parses server data and over the
//! transcript rules (docs/protocol.md#transcript-rules; TVn are its test vectors).
//!
//! Whatever the server sends, nothing panics, the parser's classification follows its documented
//! precedence ([`checker::check_parse`]), the transcript events form well-formed utterances
//! ([`checker::EventChecker`]), and the transcript state stays within [`MAX_PENDING_SEGMENTS`]
//! and [`MAX_PENDING_BYTES`].
//!
//! Inputs: (a) arbitrary text, bytes and JSON-token soup; (b) structured JSON shaped like
//! transcription messages with random ids, texts, words and types; (c) mutations of valid
//! messages, on the JSON value and on its text; (d) long random sequences of all of these, with
//! reconnects and ends of stream, into one state, both from proptest strategies and from the
//! fuzz program's generator; (e) a server that never finalizes.
//!
//! Default case counts keep the file well under 20 s in a debug build on 2 cores; set
//! `PROPTEST_CASES` to run every property with that many cases instead.

#[path = "untrusted_input/checker.rs"]
mod checker;
#[path = "untrusted_input/generator.rs"]
mod generator;

use checker::{check_parse, Counts, EventChecker};
use generator::{
    random_json, render, Generator, Rng, Server, Step, TextMutation, ValueMutation, CONTROL_FRAMES,
    INSERTS, KEYS, RAW_TOKENS, TOKENS, VOCABULARY,
};
use gstfireworks::protocol::transcript::{MAX_PENDING_BYTES, MAX_PENDING_SEGMENTS};
use gstfireworks::protocol::{
    parse_server_message, SegmentId, ServerMessage, TranscriptEvent, TranscriptState,
    TranscriptionMessage,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Map, Value};

/// `cases` unless `PROPTEST_CASES` is set (an explicit count would override the variable).
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

fn fail(error: String) -> TestCaseError {
    TestCaseError::fail(error)
}

/// The transcription in `text`, if it is one, after checking the parse.
fn transcription(text: &str) -> Result<Option<TranscriptionMessage>, String> {
    Ok(match check_parse(text)? {
        Ok(ServerMessage::Transcription(message)) => Some(message),
        _ => None,
    })
}

/// One frame into a fresh state, twice, then end of stream.
fn check_frame(text: &str) -> Result<(), TestCaseError> {
    if let Some(message) = transcription(text).map_err(fail)? {
        let mut state = TranscriptState::new();
        let mut checker = EventChecker::new();
        checker
            .handle(&mut state, &message)
            .and_then(|()| checker.handle(&mut state, &message))
            .and_then(|()| checker.end_of_stream(&mut state))
            .map_err(fail)?;
    }
    Ok(())
}

/// Runs `steps` through one state, checking every call, then ends the stream.
fn run_session(
    steps: impl IntoIterator<Item = Step>,
    checker: &mut EventChecker,
) -> Result<(), TestCaseError> {
    let mut state = TranscriptState::new();
    for (index, step) in steps.into_iter().enumerate() {
        let result = match &step {
            Step::Frame(text) => match transcription(text) {
                Ok(Some(message)) => checker.handle(&mut state, &message),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            Step::BeginConnection => checker.begin_connection(&mut state),
            Step::EndOfStream => checker.end_of_stream(&mut state),
        };
        result.map_err(|e| fail(format!("step {index} ({step:.300?}): {e}")))?;
    }
    checker.end_of_stream(&mut state).map_err(fail)
}

// ---------------------------------------------------------------------------------------------
// Strategies.

/// Any JSON, up to three levels, plus deep nesting on either side of the parser's recursion
/// limit. Built from a seed: proptest's recursive strategies are slow in a debug build.
fn any_json() -> impl Strategy<Value = Value> {
    any::<u64>().prop_map(|seed| random_json(&mut Rng::new(seed), 3))
}

fn raw_token() -> impl Strategy<Value = Value> {
    (0..RAW_TOKENS.len()).prop_map(generator::raw)
}

fn whitespace() -> impl Strategy<Value = String> {
    "[ \t\n\r\u{a0}\u{85}\u{2003}\u{2028}\u{3000}]{0,4}"
}

/// An object from `(key, value)` pairs; `None` leaves the key out.
fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    let map: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_owned(), value?)))
        .collect();
    Value::Object(map)
}

/// A key's value, or `None` for a missing key, mostly of the expected kind.
fn maybe(expected: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        8 => expected.prop_map(Some),
        1 => any_json().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn segment_id() -> impl Strategy<Value = Value> {
    prop_oneof![
        10 => (-2i64..12).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => select(vec![i64::MIN, i64::MAX, i64::MAX - 1, -1]).prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => (-3i32..12).prop_map(|i| json!(f64::from(i))),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => select(vec![1e20, 9_007_199_254_740_992.0, 9_007_199_254_740_994.0, -0.0, 0.5])
            .prop_map(|f| json!(f)),
        1 => raw_token(),
        1 => "-?[0-9]{1,3}".prop_map(Value::from),
    ]
}

/// Texts: words, whitespace only, any Unicode, or one character repeated up to 20,000 times.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => vec(select(VOCABULARY), 0..6).prop_map(|words| words.join(" ")),
        2 => whitespace(),
        2 => any::<String>(),
        1 => (any::<char>(), 1usize..20_000).prop_map(|(c, n)| c.to_string().repeat(n)),
        1 => (whitespace(), "[a-z]{1,8}", whitespace()).prop_map(|(a, b, c)| a + &b + &c),
    ]
}

/// Numbers, including the extremes and the literals JSON values cannot hold (NaN, 1e400).
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (0.0f64..30.0).prop_map(|f| json!(f)),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => select(vec![-0.0, f64::MAX, f64::MIN, f64::MIN_POSITIVE, -1e300])
            .prop_map(|f| json!(f)),
        1 => raw_token(),
        1 => select(vec!["NaN", "inf", "1.5"]).prop_map(Value::from),
    ]
}

fn is_final() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(json!(true)),
        4 => Just(json!(false)),
        1 => select(vec![json!("true"), json!(1), json!(null), json!([true])]),
    ]
}

fn word() -> impl Strategy<Value = Value> {
    let fields = (
        maybe(text().prop_map(Value::from)),
        maybe(is_final()),
        maybe(number()),
        maybe(number()),
        maybe(number()),
    );
    prop_oneof![
        8 => fields.prop_map(|(word, is_final, probability, start, end)| object(vec![
            ("word", word),
            ("is_final", is_final),
            ("probability", probability),
            ("start", start),
            ("end", end),
            ("language", Some(json!("en"))),
            ("hallucination_score", Some(json!(0.0))),
        ])),
        1 => any_json(),
    ]
}

fn segment() -> impl Strategy<Value = Value> {
    let fields = (
        maybe(segment_id()),
        maybe(text().prop_map(Value::from)),
        maybe(vec(word(), 0..8).prop_map(Value::Array)),
        maybe(number()),
        maybe(number()),
    );
    prop_oneof![
        12 => fields.prop_map(|(id, text, words, start, end)| object(vec![
            ("id", id),
            ("text", text),
            ("words", words),
            ("start", start),
            ("end", end),
        ])),
        1 => any_json(),
    ]
}

/// (b) Shaped like a transcription message, with every field open to abuse.
fn structured_message() -> impl Strategy<Value = Value> {
    let extra = prop_oneof![
        12 => Just(None),
        1 => any_json().prop_map(|v| Some(("error", v))),
        1 => any_json().prop_map(|v| Some(("checkpoint_id", v))),
        1 => select(vec!["stt.output.trace", "stt.state.cleared", "other"])
            .prop_map(|v| Some(("object", json!(v)))),
    ];
    (
        maybe(vec(segment(), 0..6).prop_map(Value::Array)),
        maybe(text().prop_map(Value::from)),
        extra,
    )
        .prop_map(|(segments, text, extra)| {
            let mut value = object(vec![
                ("segments", segments),
                ("task", Some(json!("transcribe"))),
                ("language", Some(json!("en"))),
                ("text", text),
            ]);
            if let Some((key, extra)) = extra {
                value[key] = extra;
            }
            value
        })
}

/// A segment from a server that behaves: the text is its words (trimmed, blank ones skipped)
/// joined with single spaces, perhaps padded with whitespace. Returns `(text, words)`.
fn real_segment() -> impl Strategy<Value = (String, Vec<Value>)> {
    let word = prop_oneof![
        8 => select(VOCABULARY).prop_map(str::to_owned),
        1 => (whitespace(), select(VOCABULARY), whitespace()).prop_map(|(a, b, c)| a + b + &c),
        1 => whitespace(),
    ];
    (
        vec(word, 0..6),
        0u8..4,
        any::<u64>(),
        whitespace(),
        whitespace(),
    )
        .prop_map(|(words, finality, bits, before, after)| {
            let count = words.len();
            let mut shown = Vec::new();
            let words: Vec<Value> = words
                .into_iter()
                .enumerate()
                .map(|(i, w)| {
                    let is_final = match finality {
                        0 => false,
                        1 => true,
                        2 => i + 1 == count, // only the last (TV13)
                        _ => bits >> (i % 64) & 1 == 1,
                    };
                    if !w.trim().is_empty() {
                        shown.push(w.trim().to_owned());
                    }
                    let t = i as f64 * 0.4;
                    json!({"word": w, "language": "en", "probability": 0.9,
                           "hallucination_score": 0.0, "is_final": is_final,
                           "start": t, "end": t + 0.3})
                })
                .collect();
            (before + &shown.join(" ") + &after, words)
        })
}

/// A valid message: consecutive ids from a small base, maybe rotated (out of order, TV6), and
/// unless `words_always`, one time in eight without `words` keys (TV4).
fn realistic_message(words_always: bool) -> impl Strategy<Value = Value> {
    let drop_words = if words_always { 0u8..1 } else { 0u8..8 };
    (-1i64..6, vec(real_segment(), 0..5), 0usize..5, drop_words).prop_map(
        |(base, bodies, rotate, drop_words)| {
            let mut segments: Vec<Value> = bodies
                .into_iter()
                .enumerate()
                .map(|(i, (text, words))| {
                    let mut segment = json!({"id": base + i as i64, "text": text,
                                             "start": i as f64, "end": i as f64 + 0.9});
                    if drop_words != 7 {
                        segment["words"] = Value::Array(words);
                    }
                    segment
                })
                .collect();
            if !segments.is_empty() {
                let n = segments.len();
                segments.rotate_left(rotate % n);
            }
            let mut message = json!({"task": "transcribe", "language": "en", "text": "ignored"});
            message["segments"] = Value::Array(segments);
            message
        },
    )
}

fn path() -> impl Strategy<Value = Vec<usize>> {
    vec(any::<usize>(), 1..6)
}

fn value_mutation() -> impl Strategy<Value = ValueMutation> {
    prop_oneof![
        path().prop_map(ValueMutation::Delete),
        (path(), any_json()).prop_map(|(p, v)| ValueMutation::Replace(p, v)),
        path().prop_map(ValueMutation::ChangeType),
        (any::<usize>(), any::<usize>()).prop_map(|(s, w)| ValueMutation::FlipFinal(s, w)),
        any::<usize>().prop_map(ValueMutation::DuplicateSegment),
    ]
}

fn text_mutation() -> impl Strategy<Value = TextMutation> {
    prop_oneof![
        any::<usize>().prop_map(TextMutation::Truncate),
        (any::<usize>(), 1usize..8).prop_map(|(at, n)| TextMutation::DeleteRange(at, n)),
        (any::<usize>(), select(INSERTS)).prop_map(|(at, s)| TextMutation::Insert(at, s)),
    ]
}

/// (c) A valid message, mutated as a value and then as text.
fn mutated_message() -> impl Strategy<Value = String> {
    (
        realistic_message(false),
        vec(value_mutation(), 0..4),
        vec(text_mutation(), 0..3),
    )
        .prop_map(|(mut value, value_mutations, text_mutations)| {
            for mutation in &value_mutations {
                generator::apply_value_mutation(&mut value, mutation);
            }
            let mut text = render(&value);
            for mutation in &text_mutations {
                generator::apply_text_mutation(&mut text, mutation);
            }
            text
        })
}

/// (a) Text that is mostly not JSON, or JSON-like token soup.
fn junk_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        vec(any::<u8>(), 0..512).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        "[\\[\\]{}\":,0-9a-z .eE+\\-\\\\]{0,200}",
        (
            select(vec!["", "{\"segments\":[", "{\"segments\":[{\"id\":0,"]),
            vec(select(TOKENS), 0..48),
        )
            .prop_map(|(prefix, tokens)| prefix.to_owned() + &tokens.concat()),
        (select(KEYS), any_json())
            .prop_map(|(key, value)| render(&Value::Object(Map::from_iter([(key.into(), value)])))),
    ]
}

/// (d) One step of a session with a server that is sometimes right, sometimes hostile.
fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => realistic_message(false).prop_map(|v| Step::Frame(render(&v))),
        3 => structured_message().prop_map(|v| Step::Frame(render(&v))),
        3 => mutated_message().prop_map(Step::Frame),
        1 => junk_text().prop_map(Step::Frame),
        1 => select(CONTROL_FRAMES).prop_map(|f| Step::Frame(f.to_owned())),
        1 => Just(Step::BeginConnection),
        1 => Just(Step::EndOfStream),
    ]
}

/// A session with a server whose segment texts are their words joined.
fn consistent_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => realistic_message(true).prop_map(|v| Step::Frame(render(&v))),
        1 => Just(Step::BeginConnection),
        1 => Just(Step::EndOfStream),
    ]
}

/// `count` steps of a simulated well-behaved server ([`Server`]) whose texts are always its words
/// joined, with reconnects and ends of stream.
fn consistent_server_steps(seed: u64, count: usize) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut server = Server::default();
    server.words_always = true;
    (0..count)
        .map(|_| match rng.below(60) {
            0 => {
                server.reconnect();
                Step::BeginConnection
            }
            1 => {
                server.reconnect();
                Step::EndOfStream
            }
            _ => Step::Frame(render(&server.next_message(&mut rng))),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// (e) A server that never finalizes: ever-new ids, sometimes long texts.

#[derive(Debug, Clone)]
struct Burst {
    /// New ids in this message, above every id sent so far.
    new_ids: usize,
    /// Also re-send this many of the previous ids.
    resend: usize,
    /// Length of the newest segment's text: short, or up to 200,000 bytes.
    long_text: Option<usize>,
    /// Give each segment two non-final words.
    with_words: bool,
}

fn burst() -> impl Strategy<Value = Burst> {
    (
        1usize..24,
        0usize..4,
        prop_oneof![8 => Just(None), 1 => (1000usize..200_000).prop_map(Some)],
        any::<bool>(),
    )
        .prop_map(|(new_ids, resend, long_text, with_words)| Burst {
            new_ids,
            resend,
            long_text,
            with_words,
        })
}

/// The message for `burst`, given the next unused id, and its newest segment's text.
fn burst_message(burst: &Burst, next_id: i64) -> (TranscriptionMessage, String) {
    let ids = (next_id - burst.resend as i64).max(0)..next_id + burst.new_ids as i64;
    let newest = ids.end - 1;
    let segments: Vec<Value> = ids
        .map(|id| {
            let text = match burst.long_text {
                Some(len) if id == newest => format!("n{id} {}", "é".repeat(len / 2)),
                _ => format!("s{id}"),
            };
            let mut segment = json!({"id": id, "text": text});
            if burst.with_words {
                segment["words"] = json!([{"word": format!("s{id}"), "is_final": false},
                                          {"word": "x", "is_final": false}]);
            }
            segment
        })
        .collect();
    let newest_text = segments.last().expect("new_ids ≥ 1")["text"]
        .as_str()
        .expect("text")
        .to_owned();
    let mut message = json!({"language": "en"});
    message["segments"] = Value::Array(segments);
    let frame = render(&message);
    match parse_server_message(&frame) {
        Ok(ServerMessage::Transcription(message)) => (message, newest_text),
        other => panic!("not a transcription: {other:?}"),
    }
}

fn run_hostile(bursts: &[Burst], checker: &mut EventChecker) -> Result<(), TestCaseError> {
    let mut state = TranscriptState::new();
    let mut next_id = 0;
    for burst in bursts {
        let (message, newest) = burst_message(burst, next_id);
        next_id += burst.new_ids as i64;
        let interims = checker.counts.interims;
        checker.handle(&mut state, &message).map_err(fail)?;
        prop_assert_eq!(checker.counts.interims, interims + 1, "one interim each");
        // The newest text always survives the bound, at the end of the transcript.
        let shown = checker.last_interim().map_or("", |t| t.text.as_str());
        prop_assert!(shown.ends_with(&newest), "newest text not shown last");
    }
    // The last interim, however large, is promoted once.
    checker.end_of_stream(&mut state).map_err(fail)
}

/// TV9 generalized: a message that produced a final, sent again at once, produces no event (when
/// its segment ids are distinct; with duplicates the first of the highest ids decides finality,
/// and a later duplicate with more words shows them).
fn check_repeated_finals(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut state = TranscriptState::new();
    for step in steps {
        let Step::Frame(text) = step else { continue };
        let Ok(ServerMessage::Transcription(message)) = parse_server_message(text) else {
            continue;
        };
        let Ok(events) = state.handle(&message) else {
            continue;
        };
        let mut ids: Vec<SegmentId> = message.segments.iter().map(|s| s.id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let distinct = ids.len() == message.segments.len();
        if distinct
            && events
                .iter()
                .any(|e| matches!(e, TranscriptEvent::Final(_)))
        {
            let again = state.handle(&message).map_err(|e| fail(e.to_string()))?;
            prop_assert!(again.is_empty(), "a repeated final produced {:?}", again);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The properties.

proptest! {
    #![proptest_config(config(1000))]

    /// (a) Any text at all: no panic, documented classification, short excerpts.
    #[test]
    fn arbitrary_text_is_handled(text in junk_text()) {
        check_frame(&text)?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// (b) Structured messages with random ids, texts, words and types.
    #[test]
    fn structured_messages_are_handled(value in structured_message()) {
        check_frame(&render(&value))?;
    }

    /// (c) Valid messages mutated as values and as text.
    #[test]
    fn mutated_messages_are_handled(text in mutated_message()) {
        check_frame(&text)?;
    }
}

proptest! {
    #![proptest_config(config(12))]

    /// (d) Hundreds of messages of every kind, reconnects and ends of stream, into one state:
    /// well-formed events and bounded state throughout.
    #[test]
    fn random_sessions_are_well_formed(steps in vec(any_step(), 100..300)) {
        run_session(steps, &mut EventChecker::new())?;
    }

    /// A server whose texts are its words joined: every transcript's text is its words joined,
    /// and a message that produced a final produces nothing when sent again.
    #[test]
    fn consistent_sessions_show_their_words(steps in vec(consistent_step(), 100..300)) {
        let mut checker = EventChecker::new();
        checker.text_is_words_joined = true;
        run_session(steps.clone(), &mut checker)?;
        check_repeated_finals(&steps)?;
    }
}

proptest! {
    #![proptest_config(config(12))]

    /// (d) The fuzz program's generator: runs of a simulated server, chaos, mutants, junk and a
    /// hostile server, 300 steps per seed.
    #[test]
    fn generated_sessions_are_well_formed(seed in any::<u64>()) {
        let mut generator = Generator::new(seed);
        run_session((0..300).map(|_| generator.next_step()), &mut EventChecker::new())?;
    }

    /// The simulated server alone, whose texts are its words joined.
    #[test]
    fn simulated_server_sessions_show_their_words(seed in any::<u64>()) {
        let steps = consistent_server_steps(seed, 250);
        let mut checker = EventChecker::new();
        checker.text_is_words_joined = true;
        run_session(steps.clone(), &mut checker)?;
        check_repeated_finals(&steps)?;
    }
}

proptest! {
    #![proptest_config(config(4))]

    /// (e) A server that never finalizes: the state stays bounded and shows the newest text.
    #[test]
    fn a_server_that_never_finalizes_is_bounded(bursts in vec(burst(), 100..200)) {
        run_hostile(&bursts, &mut EventChecker::new())?;
    }
}

/// The generators reach every kind of event, rejected messages, and the bounds; otherwise the
/// properties above could pass vacuously.
#[test]
fn generators_reach_every_rule() {
    let mut total = Counts::default();
    let mut add = |c: Counts| {
        total.accepted += c.accepted;
        total.rejected += c.rejected;
        total.events += c.events;
        total.speech_started += c.speech_started;
        total.interims += c.interims;
        total.finals += c.finals;
        total.promoted += c.promoted;
        total.speech_ended += c.speech_ended;
        total.max_pending_segments = total.max_pending_segments.max(c.max_pending_segments);
        total.max_pending_bytes = total.max_pending_bytes.max(c.max_pending_bytes);
    };
    let mut runner = TestRunner::deterministic();
    let sessions = vec(any_step(), 200..201);
    for _ in 0..2 {
        let steps = sessions.new_tree(&mut runner).expect("generates").current();
        let mut checker = EventChecker::new();
        run_session(steps, &mut checker).expect("well-formed");
        add(checker.counts);
    }
    let mut modes = Vec::new();
    for seed in 0..2 {
        let mut generator = Generator::new(seed);
        let mut checker = EventChecker::new();
        let steps = (0..1500).map(|_| {
            let step = generator.next_step();
            if !modes.contains(&generator.mode()) {
                modes.push(generator.mode());
            }
            step
        });
        run_session(steps, &mut checker).expect("well-formed");
        add(checker.counts);
    }
    let bursts = vec(burst(), 150..151)
        .new_tree(&mut runner)
        .expect("generates")
        .current();
    let mut checker = EventChecker::new();
    run_hostile(&bursts, &mut checker).expect("bounded");
    add(checker.counts);
    let Counts {
        accepted,
        rejected,
        events,
        speech_started,
        interims,
        finals,
        promoted,
        speech_ended,
        max_pending_segments,
        max_pending_bytes,
    } = total;
    assert!(
        accepted > 1000 && rejected > 5 && events > 1000,
        "{total:?}"
    );
    assert!(interims > 500 && finals > 100 && promoted > 2, "{total:?}");
    assert_eq!(speech_started, speech_ended, "every session ends closed");
    assert!(modes.len() >= 5, "generator modes: {modes:?}");
    assert!(
        max_pending_segments == MAX_PENDING_SEGMENTS || max_pending_bytes > MAX_PENDING_BYTES / 2,
        "the hostile server did not reach a bound: {total:?}"
    );
}

/// The largest frames the client accepts (4 MiB), parsed and applied.
#[test]
fn frames_at_the_size_limit() {
    // Built without `json!` around big values, which would copy them through `Serialize`.
    let message = |segments: Vec<Value>| {
        render(&Value::Object(Map::from_iter([(
            "segments".to_owned(),
            Value::Array(segments),
        )])))
    };
    let words: Vec<Value> = (0..20_000)
        .map(|i| json!({"word": format!("w{i}"), "is_final": i == 19_999}))
        .collect();
    let mut many_words = json!({"id": 0, "text": "w"});
    many_words["words"] = Value::Array(words);
    let frames = [
        message(vec![json!({"id": 0, "text": "é".repeat(2_000_000)})]),
        message(
            (0..60_000)
                .map(|id| json!({"id": id, "text": "t"}))
                .collect(),
        ),
        message(vec![many_words]),
        format!(r#"{{"error":{{"detail":"{}"}}}}"#, "x".repeat(4_000_000)),
    ];
    for frame in &frames {
        assert!(frame.len() <= 4 * 1024 * 1024, "{}", frame.len());
        let mut state = TranscriptState::new();
        let mut checker = EventChecker::new();
        if let Some(message) = transcription(frame).expect("classified") {
            checker.handle(&mut state, &message).expect("well-formed");
            checker.end_of_stream(&mut state).expect("well-formed");
        }
        assert!(checker.counts.max_pending_bytes <= MAX_PENDING_BYTES);
    }
}

// SPDX-License-Identifier: MPL-2.0
//! Test vectors TV1–TV15 of docs/protocol.md#test-vectors, with the events OUR element emits:
//! END after every FINAL, START before the first event after END, the TV10/TV11 tables, TV4's
//! promotion at end of stream and TV14's atomic rejection.

use serde_json::{json, Value};

use super::messages::{parse_server_message, ServerMessage};
use super::test_support::{
    describe, error_frame, id, in_dialect, message, seg, seg_without_words, Dialect,
};
use super::transcript::{TranscriptError, TranscriptEvent, TranscriptState};

/// Applies one message and checks its events. All events caused by one message belong to the
/// utterance that was open (or next) before it.
fn step(state: &mut TranscriptState, segments: Vec<Value>, expected: &[&str]) {
    let utterance = state.utterance();
    let events = state.handle(&message(segments)).expect("accepted");
    assert_eq!(describe(&events), expected);
    for event in &events {
        assert_eq!(utterance_of(event), utterance, "{event:?}");
    }
}

fn utterance_of(event: &TranscriptEvent) -> u64 {
    match event {
        TranscriptEvent::SpeechStarted { utterance }
        | TranscriptEvent::SpeechEnded { utterance } => *utterance,
        TranscriptEvent::Interim(t) | TranscriptEvent::Final(t) => t.utterance,
    }
}

const NOTHING: &[&str] = &[];

/// Runs each test vector twice, with the messages written in each dialect
/// (docs/protocol.md#dialects): the rules must not depend on the shape.
macro_rules! in_both_dialects {
    ($(#[test] fn $name:ident() $body:block)*) => {
        $(
            mod $name {
                use super::*;

                fn run() $body

                #[test]
                fn v1() {
                    in_dialect(Dialect::V1, run)
                }

                #[test]
                fn v2() {
                    in_dialect(Dialect::V2, run)
                }
            }
        )*
    };
}

in_both_dialects! {
#[test]
fn tv1_single_segment_interim_then_final() {
    let mut s = TranscriptState::new();
    step(
        &mut s,
        vec![seg(0, "hello", "hello")],
        &["START", "INTERIM hello"],
    );
    step(
        &mut s,
        vec![seg(0, "hello world", "hello world")],
        &["INTERIM hello world"],
    );
    step(
        &mut s,
        vec![seg(0, "hello world", "hello* world*")],
        &["FINAL hello world", "END"],
    );
    assert_eq!((s.last_final_id(), s.finalized_word_count()), (0, 2));
}

#[test]
fn tv2_finalized_segment_resent_next_to_a_new_one() {
    let mut s = TranscriptState::new();
    let done = || seg(0, "hello world", "hello* world*");
    step(&mut s, vec![done()], &["START", "FINAL hello world", "END"]);
    step(
        &mut s,
        vec![done(), seg(1, "how", "how")],
        &["START", "INTERIM how"],
    );
    step(
        &mut s,
        vec![done(), seg(1, "how are you", "how are you")],
        &["INTERIM how are you"],
    );
    step(
        &mut s,
        vec![done(), seg(1, "how are you", "how* are* you*")],
        &["FINAL how are you", "END"],
    );
}

#[test]
fn tv3_finalized_segment_keeps_growing() {
    let mut s = TranscriptState::new();
    step(
        &mut s,
        vec![seg(0, "hello world", "hello* world*")],
        &["START", "FINAL hello world", "END"],
    );
    step(
        &mut s,
        vec![seg(0, "hello world again", "hello* world* again")],
        &["START", "INTERIM again"],
    );
    let grown = || vec![seg(0, "hello world again", "hello* world* again*")];
    step(&mut s, grown(), &["FINAL again", "END"]);
    step(&mut s, grown(), NOTHING);
    assert_eq!((s.last_final_id(), s.finalized_word_count()), (0, 3));
}

#[test]
fn tv4_no_words_never_final_but_promoted_at_end_of_stream() {
    let mut s = TranscriptState::new();
    step(
        &mut s,
        vec![seg_without_words(0, "hello")],
        &["START", "INTERIM hello"],
    );
    step(
        &mut s,
        vec![seg_without_words(0, "hello world")],
        &["INTERIM hello world"],
    );
    step(
        &mut s,
        vec![
            seg_without_words(0, "hello world"),
            seg_without_words(1, "bye"),
        ],
        &["INTERIM hello world bye"],
    );
    let end = s.end_of_stream();
    assert_eq!(describe(&end), ["FINAL(promoted) hello world bye", "END"]);
    assert!(end.iter().all(|e| utterance_of(e) == 0));
    assert!(s.end_of_stream().is_empty(), "promoted only once");
}

#[test]
fn tv5_trailing_segment_retracted() {
    let mut s = TranscriptState::new();
    step(
        &mut s,
        vec![
            seg(0, "one", "one"),
            seg(1, "two", "two"),
            seg(2, "three", "three"),
        ],
        &["START", "INTERIM one two three"],
    );
    step(
        &mut s,
        vec![seg(0, "one", "one"), seg(1, "two three", "two three")],
        &["INTERIM one two three"],
    );
}

#[test]
fn tv6_out_of_order_and_partial_updates() {
    let mut s = TranscriptState::new();
    step(
        &mut s,
        vec![
            seg_without_words(2, "c"),
            seg_without_words(0, "a"),
            seg_without_words(1, "b"),
        ],
        &["START", "INTERIM a b c"],
    );
    step(
        &mut s,
        vec![seg_without_words(2, "c2")],
        &["INTERIM a b c2"],
    );
    step(&mut s, vec![seg_without_words(1, "b2")], &["INTERIM a b2"]);
}

#[test]
fn tv7_messages_that_produce_no_transcript() {
    let mut s = TranscriptState::new();
    let frames = [
        json!({"checkpoint_id": "final"}),
        json!({"object": "stt.output.trace", "trace_id": "final", "event_id": "e1"}),
        json!({"object": "stt.state.cleared", "reset_id": "r1", "event_id": "e2"}),
        error_frame("boom"),
        json!({"segments": []}),
        json!({"segments": null}),
    ];
    for frame in frames {
        match parse_server_message(&frame.to_string()).expect("parses") {
            ServerMessage::Transcription(m) => assert!(s.handle(&m).unwrap().is_empty()),
            ServerMessage::Error { message, .. } => assert_eq!(message, "boom"),
            ServerMessage::CheckpointEcho { checkpoint_id } => assert_eq!(checkpoint_id, "final"),
            ServerMessage::TraceEcho { trace_id } => assert_eq!(trace_id, "final"),
            ServerMessage::StateCleared { reset_id } => assert_eq!(reset_id.as_deref(), Some("r1")),
            ServerMessage::Other => panic!("{frame} should be classified"),
        }
    }
    assert!(!s.is_speaking());
}

#[test]
fn tv8_finality_only_from_the_highest_id_segment() {
    let mut s = TranscriptState::new();
    step(
        &mut s,
        vec![seg(0, "first", "first*"), seg(1, "second", "second")],
        &["START", "INTERIM first second"],
    );
    step(
        &mut s,
        vec![
            seg(0, "first", "first"),
            seg(1, "second part", "second* part*"),
        ],
        &["FINAL first second part", "END"],
    );
    assert_eq!(s.last_final_id(), 1);
    step(
        &mut s,
        vec![
            seg(0, "first", "first"),
            seg(1, "second part", "second* part*"),
            seg(2, "third", "third"),
        ],
        &["START", "INTERIM third"],
    );
}

#[test]
fn tv9_duplicate_final_suppressed() {
    let mut s = TranscriptState::new();
    let hi = || vec![seg(0, "hi there", "hi* there*")];
    step(&mut s, hi(), &["START", "FINAL hi there", "END"]);
    step(&mut s, hi(), NOTHING);
}

#[test]
fn tv10_empty_texts_emit_nothing() {
    let mut s = TranscriptState::new();
    step(&mut s, vec![seg(0, "", "")], NOTHING);
    step(&mut s, vec![seg(0, "", ""), seg(1, "", "")], NOTHING);
    assert!(!s.is_speaking());
}

#[test]
fn tv11_reconnect_resets_segment_state() {
    let mut s = TranscriptState::new();
    // Connection A.
    s.begin_connection();
    step(
        &mut s,
        vec![seg(0, "a", "a*")],
        &["START", "FINAL a", "END"],
    );
    assert_eq!(s.last_final_id(), 0);
    step(
        &mut s,
        vec![seg(1, "b", "b*")],
        &["START", "FINAL b", "END"],
    );
    assert_eq!(s.last_final_id(), 1);
    step(
        &mut s,
        vec![seg(2, "c c", "c* c*")],
        &["START", "FINAL c c", "END"],
    );
    assert_eq!((s.last_final_id(), s.finalized_word_count()), (2, 2));
    assert!(!s.is_speaking(), "end of A: no utterance is open");

    // Connection B.
    s.begin_connection();
    assert_eq!((s.last_final_id(), s.finalized_word_count()), (-1, 0));
    step(
        &mut s,
        vec![seg(0, "new start", "new start")],
        &["START", "INTERIM new start"],
    );
    let zero = || seg(0, "new start", "new* start*");
    step(&mut s, vec![zero()], &["FINAL new start", "END"]);
    assert_eq!((s.last_final_id(), s.finalized_word_count()), (0, 2));
    step(
        &mut s,
        vec![zero(), seg(1, "x", "x")],
        &["START", "INTERIM x"],
    );
    step(
        &mut s,
        vec![zero(), seg(1, "x", "x*"), seg(2, "y y z", "y y z")],
        &["INTERIM x y y z"],
    );
    assert_eq!(s.utterance(), 4);
}

#[test]
fn tv13_only_the_last_words_flag_matters() {
    let mut s = TranscriptState::new();
    step(
        &mut s,
        vec![seg(0, "a b c", "a b c*")],
        &["START", "FINAL a b c", "END"],
    );
    step(
        &mut s,
        vec![seg(0, "a b c", "a* b* c"), seg(1, "d", "d*")],
        &["START", "FINAL d", "END"],
    );
}

#[test]
fn tv14_bad_segment_rejects_the_whole_message() {
    let mut s = TranscriptState::new();
    step(&mut s, vec![seg(0, "ok", "ok")], &["START", "INTERIM ok"]);

    // Unlike LiveKit's plugin, segment 0 is NOT updated to "ok fine" before the failure.
    let before = format!("{s:?}");
    let bad = message(vec![
        seg(0, "ok fine", "ok fine"),
        json!({"id": id(1), "words": [{"word": "oops", "is_final": false}]}),
    ]);
    assert_eq!(
        s.handle(&bad),
        Err(TranscriptError::MissingSegmentText { id: 1.into() })
    );
    assert_eq!(format!("{s:?}"), before, "state unchanged");

    step(
        &mut s,
        vec![seg(0, "ok fine", "ok fine")],
        &["INTERIM ok fine"],
    );
}

#[test]
fn tv15_revisions_of_a_finalized_segment_ignored() {
    let mut s = TranscriptState::new();
    step(
        &mut s,
        vec![seg(0, "one two three", "one* two* three*")],
        &["START", "FINAL one two three", "END"],
    );
    step(&mut s, vec![seg(0, "one two", "one two")], NOTHING);
    step(
        &mut s,
        vec![seg(0, "won too tree four", "won too tree four")],
        &["START", "INTERIM four"],
    );
}
}

/// TV12: string ids are ids. A numeric string is the same id as the integer and orders
/// numerically; other strings order after every number, by their bytes; only an id that is
/// neither an integer nor a string rejects the message.
#[test]
fn tv12_string_ids_are_ids() {
    let mut s = TranscriptState::new();
    let frame = |text: &str| match parse_server_message(text) {
        Ok(ServerMessage::Transcription(m)) => m,
        other => panic!("{other:?}"),
    };
    let events = s
        .handle(&frame(
            r#"{"segments":[{"id":0,"text":"hello","words":[{"word":"hello","is_final":true}]}]}"#,
        ))
        .unwrap();
    assert_eq!(describe(&events), ["START", "FINAL hello", "END"]);
    // "0" is segment 0 again: its word is already delivered.
    let events = s
        .handle(&frame(r#"{"segments":[{"id":"0","text":"hello","words":[{"word":"hello","is_final":true}]},{"id":"9","text":"nine"},{"id":"10","text":"ten"}]}"#))
        .unwrap();
    assert_eq!(describe(&events), ["START", "INTERIM nine ten"]);
    assert!(parse_server_message(r#"{"segments":[{"id":null,"text":"x"}]}"#).is_err());
    let events = s
        .handle(&frame(r#"{"segments":[{"id":"10","text":"ten"},{"id":"b","text":"bee"},{"id":"a","text":"ay"}]}"#))
        .unwrap();
    assert_eq!(describe(&events), ["INTERIM nine ten ay bee"]);
}

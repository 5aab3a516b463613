// SPDX-License-Identifier: MPL-2.0
//! Operators change settings while captions run: options set in PLAYING move the stream to a
//! new connection with the new query, between two utterances, losing and repeating nothing.

use crate::common::*;
use gst::prelude::*;

#[test]
fn language_change_in_playing_starts_a_new_session_without_losing_audio() {
    init();
    let utterances = ["good morning", "first topic", "zweites thema", "ende"];
    let audio = synthesize_utterances(&utterances).unwrap();
    let server = TestServer::start(ServerConfig::default()).unwrap();

    let mut h = gst_check::Harness::new("fireworksstt");
    let stt = h.element().unwrap();
    let bus = gst::Bus::new();
    stt.set_bus(Some(&bus));
    point_at(&stt, &server);
    // Key terms alone, then together with a prompt (docs/protocol.md#key-terms).
    stt.set_property("keyterms", gst::Array::new(["GStreamer", "Fireworks AI"]));
    h.set_src_caps(audio_caps());
    h.play();

    // Switch half-way through the silence after the second utterance.
    let after_second = audio
        .words
        .iter()
        .rfind(|w| w.utterance == 1)
        .unwrap()
        .end_sample;
    let switch_at = (after_second + 16_000) as usize;
    let mut pts = 0;
    let mut pushed = 0;
    for chunk in audio.samples.chunks(800) {
        if pushed >= switch_at && pushed < switch_at + 800 {
            stt.set_property("language-code", "de-DE");
            stt.set_property("prompt", "Tagesordnung");
            stt.set_property("keyterms", gst::Array::new(["Hauptbahnhof"]));
        }
        h.push(audio_buffer(chunk, pts)).unwrap();
        pts += chunk.len() as u64 * 62_500;
        pushed += chunk.len();
    }
    assert!(h.push_event(gst::event::Eos::new()));

    let words = pull_until_eos(&mut h);
    let expected: Vec<&str> = utterances.iter().flat_map(|u| u.split(' ')).collect();
    assert_eq!(
        words.iter().map(|w| w.0.as_str()).collect::<Vec<_>>(),
        expected
    );
    for (got, want) in words.iter().zip(&audio.words) {
        let want_pts = want.start_sample * 62_500;
        assert!(
            got.1.abs_diff(want_pts) <= 10 * MS,
            "{} at {} want {want_pts}",
            got.0,
            got.1
        );
    }

    let records = server.connections();
    assert_eq!(records.len(), 2, "one connection per set of options");
    assert!(records[0].query.iter().all(|(k, _)| k != "language"));
    assert!(records[0].query.contains(&(
        "prompt".into(),
        "Key terms: GStreamer, Fireworks AI.".into()
    )));
    assert!(records[1].query.contains(&("language".into(), "de".into())));
    assert!(records[1].query.contains(&(
        "prompt".into(),
        "Tagesordnung Key terms: Hauptbahnhof.".into()
    )));
    // Every byte went to exactly one connection: nothing lost, nothing sent twice.
    let sent: u64 = records.iter().map(|r| r.audio_bytes).sum();
    assert_eq!(sent, audio.samples.len() as u64 * 2);
    assert_eq!(
        records[0].checkpoints.len(),
        1,
        "the first session is finished with a checkpoint"
    );

    let mut finals = Vec::new();
    while let Some(msg) = bus.pop() {
        if let Some(s) = msg.structure() {
            if s.name() == "fireworksstt/transcript" && s.get::<bool>("final").unwrap() {
                finals.push((
                    s.get::<String>("text").unwrap(),
                    s.get::<String>("language").unwrap(),
                ));
            }
        }
    }
    assert_eq!(
        finals,
        [
            ("good morning".to_string(), "en".to_string()),
            ("first topic".into(), "en".into()),
            ("zweites thema".into(), "de".into()),
            ("ende".into(), "de".into()),
        ]
    );
}

#[test]
fn an_unusable_new_value_warns_and_keeps_the_session() {
    init();
    let audio = synthesize_utterances(&["one", "two"]).unwrap();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let mut h = gst_check::Harness::new("fireworksstt");
    let stt = h.element().unwrap();
    let bus = gst::Bus::new();
    stt.set_bus(Some(&bus));
    point_at(&stt, &server);
    h.set_src_caps(audio_caps());
    h.play();
    let mut pts = 0;
    for (i, chunk) in audio.samples.chunks(1600).enumerate() {
        if i == 5 {
            stt.set_property("language-code", "klingon");
        }
        h.push(audio_buffer(chunk, pts)).unwrap();
        pts += chunk.len() as u64 * 62_500;
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let words: Vec<String> = pull_until_eos(&mut h).into_iter().map(|w| w.0).collect();
    assert_eq!(words, ["one", "two"]);
    assert_eq!(server.connections().len(), 1);
    let warning = std::iter::from_fn(|| bus.pop())
        .find_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .expect("a warning about the unusable value");
    assert!(
        warning.contains("klingon") && warning.contains("previous"),
        "{warning}"
    );
}

// SPDX-License-Identifier: MPL-2.0
//! The transcriber conventions that carry data, end to end through the element against the
//! local server: the `FireworksItemMeta` on every text buffer, one upstream
//! `rstranscribe/new-item` per text buffer and in order, the `LanguageCode` tag before the text
//! (and again when the language changes), and `end-to-final` on every final transcript message.

use std::sync::{Arc, Mutex};

use crate::common::*;
use gst::prelude::*;

/// What passed the element's pads, in order.
#[derive(Debug, Clone)]
enum Seen {
    Text {
        text: String,
        pts: u64,
        duration: u64,
        meta: Option<gst::Structure>,
    },
    /// A `LanguageCode` tag downstream.
    Tag(String),
    /// An `rstranscribe/new-item` event upstream.
    NewItem(gst::Structure),
}

/// Records text buffers with their meta and language tags leaving `stt`, and new-item events
/// leaving its sink pad, in one sequence.
fn probe(stt: &gst::Element) -> Arc<Mutex<Vec<Seen>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let downstream = seen.clone();
    stt.static_pad("src").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let item = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => Some(Seen::Text {
                    text: String::from_utf8(b.map_readable().unwrap().to_vec()).unwrap(),
                    pts: b.pts().unwrap().nseconds(),
                    duration: b.duration().unwrap().nseconds(),
                    meta: gst::meta::CustomMeta::from_buffer(b, "FireworksItemMeta")
                        .ok()
                        .map(|m| m.structure().to_owned()),
                }),
                Some(gst::PadProbeData::Event(e)) => match e.view() {
                    gst::EventView::Tag(tag) => tag
                        .tag()
                        .get::<gst::tags::LanguageCode>()
                        .map(|code| Seen::Tag(code.get().to_string())),
                    _ => None,
                },
                _ => None,
            };
            if let Some(item) = item {
                downstream.lock().unwrap().push(item);
            }
            gst::PadProbeReturn::Ok
        },
    );
    let upstream = seen.clone();
    stt.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data {
                if let Some(s) = e
                    .structure()
                    .filter(|s| s.name() == "rstranscribe/new-item")
                {
                    upstream.lock().unwrap().push(Seen::NewItem(s.to_owned()));
                }
            }
            gst::PadProbeReturn::Ok
        });
    seen
}

fn texts(seen: &[Seen]) -> Vec<(String, u64, u64, gst::Structure)> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Text {
                text,
                pts,
                duration,
                meta,
            } => Some((
                text.clone(),
                *pts,
                *duration,
                meta.clone()
                    .expect("every text buffer carries FireworksItemMeta"),
            )),
            _ => None,
        })
        .collect()
}

/// Each text buffer comes right after its own `rstranscribe/new-item`, with the same content,
/// its running time (the segment starts at 0, so that is its PTS) and duration.
fn assert_one_new_item_per_text_in_order(seen: &[Seen]) {
    let mut pending: Option<&gst::Structure> = None;
    let mut count = 0;
    for item in seen {
        match item {
            Seen::NewItem(s) => {
                assert!(pending.is_none(), "two new-items in a row: {seen:#?}");
                pending = Some(s);
            }
            Seen::Text {
                text,
                pts,
                duration,
                ..
            } => {
                let s = pending.take().expect("a new-item before each text buffer");
                assert_eq!(s.get::<String>("content").unwrap(), text.trim_end());
                assert_eq!(
                    s.get::<gst::ClockTime>("running-time").unwrap().nseconds(),
                    *pts
                );
                assert_eq!(
                    s.get::<gst::ClockTime>("duration").unwrap().nseconds(),
                    *duration
                );
                assert_eq!(s.get::<Option<String>>("speaker").unwrap(), None);
                count += 1;
            }
            Seen::Tag(_) => {}
        }
    }
    assert!(pending.is_none() && count > 0, "{seen:#?}");
}

in_both_dialects! {
    fn every_word_carries_its_meta_and_its_new_item(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect)).unwrap();
        let audio = synthesize_utterances(&["hello world", "how are you"]).unwrap();
        let mut seen = None;
        let run = run_audio(&audio.samples, &Feed::default(), |stt| {
            point_at(stt, &server);
            seen = Some(probe(stt));
        });
        assert!(run.errors.is_empty(), "{}", run.error_text());
        let seen = seen.unwrap().lock().unwrap().clone();
        let words = texts(&seen);
        assert_eq!(words.len(), audio.words.len(), "{seen:#?}");
        for ((text, _, _, meta), spoken) in words.iter().zip(&audio.words) {
            assert_eq!(text, &spoken.text);
            assert_eq!(meta.name(), "FireworksItemMeta");
            assert_eq!(meta.get::<u64>("utterance").unwrap(), spoken.utterance as u64);
            assert!(meta.get::<bool>("final").unwrap(), "from a final: {meta}");
            assert_eq!(meta.get::<String>("language").unwrap(), "en");
            // The test server's values for every word.
            assert_eq!(meta.get::<f64>("probability").unwrap(), 0.9);
            assert_eq!(meta.get::<f64>("hallucination-score").unwrap(), 0.0);
        }
        assert_one_new_item_per_text_in_order(&seen);

        // The language, once, before the first word.
        assert!(matches!(seen.first(), Some(Seen::NewItem(_)) | Some(Seen::Tag(_))));
        let tags: Vec<(usize, &str)> = seen
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Seen::Tag(code) => Some((i, code.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(tags, [(0, "en")], "{seen:#?}");
    }
}

#[test]
fn an_utterance_buffer_carries_the_words_behind_it() {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let audio = synthesize_utterances(&["hello world", "how are you"]).unwrap();
    let mut seen = None;
    let run = run_audio(&audio.samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property_from_str("output-mode", "utterances");
        seen = Some(probe(stt));
    });
    assert!(run.errors.is_empty(), "{}", run.error_text());
    let seen = seen.unwrap().lock().unwrap().clone();
    let utterances = texts(&seen);
    assert_eq!(utterances.len(), 2, "{seen:#?}");
    for (index, (text, pts, duration, meta)) in utterances.iter().enumerate() {
        assert_eq!(text.trim_end(), audio.utterances[index]);
        assert_eq!(meta.get::<u64>("utterance").unwrap(), index as u64);
        assert!(meta.get::<bool>("final").unwrap());
        assert!(
            !meta.has_field("probability"),
            "no single probability: {meta}"
        );
        let words = meta.get::<gst::List>("words").unwrap();
        let words: Vec<gst::Structure> = words.iter().map(|w| w.get().unwrap()).collect();
        let spoken: Vec<_> = audio.utterance_words(index).collect();
        assert_eq!(words.len(), spoken.len(), "{meta}");
        for (word, spoken) in words.iter().zip(&spoken) {
            assert_eq!(word.get::<String>("text").unwrap(), spoken.text);
            assert_eq!(word.get::<f64>("probability").unwrap(), 0.9);
            let word_pts = word.get::<gst::ClockTime>("pts").unwrap().nseconds();
            assert!(
                word_pts >= *pts && word_pts <= pts + duration,
                "{word} within the utterance's buffer"
            );
        }
    }
    assert_one_new_item_per_text_in_order(&seen);
}

/// Live audio pushed as it is "captured" (paced by the pipeline clock), as a microphone would.
fn run_paced(samples: &[i16], server: &TestServer) -> Run {
    init();
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&audio_caps())
        .format(gst::Format::Time)
        .is_live(true)
        .max_bytes(0)
        .build();
    let stt = gst::ElementFactory::make("fireworksstt").build().unwrap();
    point_at(&stt, server);
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", true)
        .build()
        .unwrap();
    pipeline.add_many([src.upcast_ref(), &stt, &sink]).unwrap();
    gst::Element::link_many([src.upcast_ref(), &stt, &sink]).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let clock = pipeline.clock().unwrap();
    let base_time = pipeline.base_time().unwrap();
    let now = || (clock.time() - base_time).nseconds();
    let mut pts = 0;
    for chunk in samples.chunks(1600) {
        let duration = chunk.len() as u64 * 62_500;
        let due = pts + duration;
        if due > now() {
            std::thread::sleep(std::time::Duration::from_nanos(due - now()));
        }
        src.push_buffer(audio_buffer(chunk, pts)).unwrap();
        pts += duration;
    }
    let _ = src.end_of_stream();
    let run = collect_bus(&pipeline, std::time::Duration::from_secs(30));
    pipeline.set_state(gst::State::Null).unwrap();
    run
}

#[test]
fn every_final_says_how_long_after_its_last_word_it_came() {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let audio = synthesize_utterances(&["hello world", "how are you"]).unwrap();
    let run = run_paced(&audio.samples, &server);
    assert!(run.errors.is_empty(), "{}", run.error_text());
    let transcripts = run.messages_named("fireworksstt/transcript");
    let finals: Vec<_> = transcripts
        .iter()
        .filter(|s| s.get::<bool>("final").unwrap())
        .collect();
    assert_eq!(finals.len(), 2);
    for s in finals {
        let end_to_final = s.get::<i64>("end-to-final").expect("end-to-final");
        // The segment starts at 0 with base 0: stream time is running time.
        let end = s.get::<gst::ClockTime>("end").unwrap().nseconds() as i64;
        let arrival = s.get::<gst::ClockTime>("arrival-time").unwrap().nseconds() as i64;
        assert_eq!(end_to_final, arrival - end, "{s}");
        // The server finalizes after 1 s of silence (text_timeout_seconds), counted in audio,
        // or at the end-of-stream checkpoint: never before the last word was captured.
        assert!(end_to_final > 0, "{s}");
    }
    let interim = transcripts
        .iter()
        .find(|s| !s.get::<bool>("final").unwrap())
        .expect("an interim");
    assert!(!interim.has_field("end-to-final"), "finals only: {interim}");
}

#[test]
fn a_new_language_is_tagged_before_its_first_word() {
    init();
    let utterances = ["good morning", "guten tag"];
    let audio = synthesize_utterances(&utterances).unwrap();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let mut h = gst_check::Harness::new("fireworksstt");
    let stt = h.element().unwrap();
    point_at(&stt, &server);
    stt.set_property("language-code", "en-US");
    let seen = probe(&stt);
    h.set_src_caps(audio_caps());
    h.play();
    let after_first = audio
        .words
        .iter()
        .rfind(|w| w.utterance == 0)
        .unwrap()
        .end_sample;
    let switch_at = (after_first + 8_000) as usize;
    let mut pts = 0;
    let mut pushed = 0;
    for chunk in audio.samples.chunks(800) {
        if pushed >= switch_at && pushed < switch_at + 800 {
            stt.set_property("language-code", "de");
        }
        h.push(audio_buffer(chunk, pts)).unwrap();
        pts += chunk.len() as u64 * 62_500;
        pushed += chunk.len();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let words = pull_until_eos(&mut h);
    assert_eq!(words.len(), 4);
    let seen = seen.lock().unwrap().clone();
    let order: Vec<String> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Tag(code) => Some(format!("tag {code}")),
            Seen::Text { text, meta, .. } => Some(format!(
                "{text} ({})",
                meta.as_ref().unwrap().get::<String>("language").unwrap()
            )),
            Seen::NewItem(_) => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            "tag en",
            "good (en)",
            "morning (en)",
            "tag de",
            "guten (de)",
            "tag (de)"
        ]
    );
}

/// A service that reports no language: the tag and the meta carry `language-code` (mapped to
/// the service's code), while the bus messages, which say what the service reported, have none.
#[test]
fn without_a_reported_language_the_configured_one_is_tagged() {
    let server = TestServer::start(ServerConfig::default().with_report_language(false)).unwrap();
    let audio = synthesize_utterances(&["guten tag"]).unwrap();
    let mut seen = None;
    let run = run_audio(&audio.samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property("language-code", "de-DE");
        seen = Some(probe(stt));
    });
    assert!(run.errors.is_empty(), "{}", run.error_text());
    let seen = seen.unwrap().lock().unwrap().clone();
    assert!(
        matches!(seen.first(), Some(Seen::Tag(code)) if code == "de"),
        "{seen:#?}"
    );
    for (_, _, _, meta) in texts(&seen) {
        assert_eq!(meta.get::<String>("language").unwrap(), "de");
    }
    let finals = run.messages_named("fireworksstt/transcript");
    assert!(
        finals.iter().all(|s| !s.has_field("language")),
        "{finals:?}"
    );
}

// SPDX-License-Identifier: MPL-2.0
//! End to end: appsrc → fireworksstt → fakesink against the local Fireworks-compatible
//! server, checking what a user would check: the text, its timing, the bus messages.

use crate::common::*;
use gst::prelude::*;

const UTTERANCES: [&str; 3] = [
    "hello world",
    "how are you today",
    "the quick brown fox jumps over the lazy dog",
];

fn three_utterances() -> SynthAudio {
    synthesize_utterances(&UTTERANCES).unwrap()
}

fn transcribe(audio: &SynthAudio, feed: &Feed, server: &TestServer) -> Run {
    run_audio(&audio.samples, feed, |stt| point_at(stt, server))
}

in_both_dialects! {
    fn every_utterance_is_final_exactly_once_and_in_order(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect)).unwrap();
        let audio = three_utterances();
        let run = transcribe(&audio, &Feed::default(), &server);
        assert!(run.errors.is_empty(), "{}", run.error_text());
        assert!(run.got_eos);
        assert_eq!(run.finals(), UTTERANCES);
        assert_eq!(server.connections().len(), 1);
    }
}

in_both_dialects! {
    fn interims_come_before_their_final_and_never_after(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect)).unwrap();
        let run = transcribe(&three_utterances(), &Feed::default(), &server);
        let transcripts = run.messages_named("fireworksstt/transcript");
        for utterance in 0..UTTERANCES.len() as u64 {
            let of_this: Vec<bool> = transcripts
                .iter()
                .filter(|s| s.get::<u64>("utterance").unwrap() == utterance)
                .map(|s| s.get::<bool>("final").unwrap())
                .collect();
            assert!(of_this.len() >= 2, "utterance {utterance}: {of_this:?}");
            assert_eq!(
                of_this.last(),
                Some(&true),
                "utterance {utterance} ends final"
            );
            assert!(
                of_this[..of_this.len() - 1].iter().all(|f| !f),
                "utterance {utterance}: exactly one final, after the interims: {of_this:?}"
            );
        }
    }
}

in_both_dialects! {
    fn word_buffers_carry_the_audio_times(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect)).unwrap();
        let audio = three_utterances();
        // A non-zero first PTS: words must land on the input timeline, not at zero.
        let feed = Feed {
            start_pts: 3_000 * MS,
            buffer_samples: 1234,
            ..Feed::default()
        };
        let run = transcribe(&audio, &feed, &server);
        let texts = run.texts();
        assert_eq!(texts.len(), audio.words.len(), "{texts:?}");
        for (got, want) in texts.iter().zip(&audio.words) {
            let want_pts = feed.start_pts + want.start_sample * 1_000_000_000 / 16_000;
            let want_end = feed.start_pts + want.end_sample * 1_000_000_000 / 16_000;
            assert_eq!(got.0, want.text);
            assert!(
                got.1.abs_diff(want_pts) <= 10 * MS,
                "{} at {} want {}",
                got.0,
                got.1,
                want_pts
            );
            assert!(
                (got.1 + got.2).abs_diff(want_end) <= 10 * MS,
                "{} ends at {} want {}",
                got.0,
                got.1 + got.2,
                want_end
            );
        }
    }
}

in_both_dialects! {
    fn final_transcript_event_follows_each_utterance_and_gaps_fill_silence(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect)).unwrap();
        let audio = three_utterances();
        let run = transcribe(&audio, &Feed::default(), &server);
        let mut words_in_utterance = 0;
        let mut utterances = Vec::new();
        let mut position = 0;
        for item in &run.out {
            match item {
                Out::Text { pts, duration, .. } => {
                    assert!(*pts >= position, "output went backwards: {:#?}", run.out);
                    position = pts + duration;
                    words_in_utterance += 1;
                }
                Out::Gap { pts, duration } => {
                    assert!(*pts >= position, "gap went backwards: {:#?}", run.out);
                    position = pts + duration;
                }
                Out::Custom(name) => {
                    assert_eq!(name, "rstranscribe/final-transcript");
                    utterances.push(words_in_utterance);
                    words_in_utterance = 0;
                }
                _ => {}
            }
        }
        let expected: Vec<usize> = UTTERANCES.iter().map(|u| u.split(' ').count()).collect();
        assert_eq!(utterances, expected);
        assert_eq!(run.out.last(), Some(&Out::Eos));
        // The last gap reaches the end of the audio.
        let end = audio.samples.len() as u64 * 1_000_000_000 / 16_000;
        assert!(
            position.abs_diff(end) <= 10 * MS,
            "position {position} end {end}"
        );
    }
}

in_both_dialects! {
    fn usage_total_equals_the_audio_sent(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect)).unwrap();
        let audio = three_utterances();
        let run = transcribe(&audio, &Feed::default(), &server);
        let usage = run.messages_named("fireworksstt/usage");
        let last = usage.last().expect("at least one usage message");
        let total = last.get::<gst::ClockTime>("total-audio-duration").unwrap();
        let sum: u64 = usage
            .iter()
            .map(|s| {
                s.get::<gst::ClockTime>("audio-duration")
                    .unwrap()
                    .nseconds()
            })
            .sum();
        let sent = audio.samples.len() as u64 * 1_000_000_000 / 16_000;
        assert_eq!(total.nseconds(), sent);
        assert_eq!(sum, sent);
        assert_eq!(
            server.connections()[0].audio_bytes,
            audio.samples.len() as u64 * 2
        );
    }
}

in_both_dialects! {
    fn speech_boundaries_are_per_utterance(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect)).unwrap();
        let run = transcribe(&three_utterances(), &Feed::default(), &server);
        let boundaries: Vec<(String, u64)> = run
            .messages
            .iter()
            .filter(|s| s.name().starts_with("fireworksstt/speech-"))
            .map(|s| (s.name().to_string(), s.get::<u64>("utterance").unwrap()))
            .collect();
        let mut expected = Vec::new();
        for u in 0..UTTERANCES.len() as u64 {
            expected.push(("fireworksstt/speech-started".to_string(), u));
            expected.push(("fireworksstt/speech-ended".to_string(), u));
        }
        assert_eq!(boundaries, expected);
    }
}

in_both_dialects! {
    fn transcript_messages_carry_words_and_stream_times(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect)).unwrap();
        let audio = three_utterances();
        let run = transcribe(&audio, &Feed::default(), &server);
        let finals: Vec<_> = run
            .messages_named("fireworksstt/transcript")
            .into_iter()
            .filter(|s| s.get::<bool>("final").unwrap())
            .collect();
        let first = finals[0];
        assert_eq!(first.get::<String>("language").unwrap(), "en");
        let words = first.get::<gst::List>("words").unwrap();
        assert_eq!(words.len(), 2);
        let hello = words.first().unwrap().get::<gst::Structure>().unwrap();
        assert_eq!(hello.get::<String>("text").unwrap(), "hello");
        assert!(hello.get::<bool>("final").unwrap());
        let start = hello.get::<gst::ClockTime>("start").unwrap().nseconds();
        let want = audio.words[0].start_sample * 1_000_000_000 / 16_000;
        assert!(start.abs_diff(want) <= 10 * MS);
        assert!(hello.get::<f64>("probability").is_ok());
        let utterance_start = first.get::<gst::ClockTime>("start").unwrap().nseconds();
        let utterance_end = first.get::<gst::ClockTime>("end").unwrap().nseconds();
        assert_eq!(utterance_start, start);
        let want_end = audio.words[1].end_sample * 1_000_000_000 / 16_000;
        assert!(utterance_end.abs_diff(want_end) <= 10 * MS);
    }
}

in_both_dialects! {
    fn utterances_mode_gives_one_line_per_utterance(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect)).unwrap();
        let audio = three_utterances();
        let run = run_audio(&audio.samples, &Feed::default(), |stt| {
            point_at(stt, &server);
            stt.set_property_from_str("output-mode", "utterances");
        });
        let lines: Vec<String> = run.texts().into_iter().map(|t| t.0).collect();
        let expected: Vec<String> = UTTERANCES.iter().map(|u| format!("{u}\n")).collect();
        assert_eq!(lines, expected);
        let first = &run.texts()[0];
        let want = audio.words[0].start_sample * 1_000_000_000 / 16_000;
        assert!(first.1.abs_diff(want) <= 10 * MS);
    }
}

in_both_dialects! {
    fn interim_results_can_be_turned_off(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect)).unwrap();
        let run = run_audio(&three_utterances().samples, &Feed::default(), |stt| {
            point_at(stt, &server);
            stt.set_property("interim-results", false);
        });
        let transcripts = run.messages_named("fireworksstt/transcript");
        assert_eq!(transcripts.len(), UTTERANCES.len());
        assert!(transcripts.iter().all(|s| s.get::<bool>("final").unwrap()));
    }
}

in_both_dialects! {
    fn eos_drains_when_the_server_stays_open_after_the_echo(dialect: Dialect) {
        // Audio ends right after the last word: only the end-of-stream checkpoint can finish it.
        let audio = synthesize(
            &Script::new()
                .utterance("good night")
                .trailing_silence(std::time::Duration::from_millis(200)),
        )
        .unwrap();
        for close_after_echo in [false, true] {
            let server =
                TestServer::start(ServerConfig::default().with_dialect(dialect).with_close_after_echo(close_after_echo))
                    .unwrap();
            let run = transcribe(&audio, &Feed::default(), &server);
            assert!(run.got_eos, "close_after_echo={close_after_echo}");
            assert_eq!(
                run.finals(),
                ["good night"],
                "close_after_echo={close_after_echo}"
            );
            assert!(
                run.elapsed < std::time::Duration::from_secs(4),
                "drain took {:?}",
                run.elapsed
            );
            let record = &server.connections()[0];
            assert_eq!(record.checkpoints.len(), 1);
            assert_eq!(record.checkpoints[0].id, "final");
        }
    }
}

in_both_dialects! {
    fn pending_interim_is_promoted_when_the_server_does_not_finalize(dialect: Dialect) {
        let audio = synthesize(
            &Script::new()
                .utterance("still talking")
                .trailing_silence(std::time::Duration::from_millis(200)),
        )
        .unwrap();
        let server =
            TestServer::start(ServerConfig::default().with_dialect(dialect).with_finalize_on_checkpoint(false)).unwrap();
        let run = transcribe(&audio, &Feed::default(), &server);
        assert_eq!(run.finals(), ["still talking"]);
        let promoted: Vec<bool> = run
            .messages_named("fireworksstt/transcript")
            .into_iter()
            .filter(|s| s.get::<bool>("final").unwrap())
            .map(|s| s.get::<bool>("promoted").unwrap())
            .collect();
        assert_eq!(promoted, [true]);
        assert_eq!(run.texts().len(), 2);
    }
}

in_both_dialects! {
    fn eos_is_bounded_by_drain_timeout_when_the_echo_never_comes(dialect: Dialect) {
        let audio = synthesize(
            &Script::new()
                .utterance("no answer")
                .trailing_silence(std::time::Duration::from_millis(200)),
        )
        .unwrap();
        let server =
            TestServer::start(ServerConfig::default().with_dialect(dialect).with_fault(0, Fault::NeverEchoCheckpoint))
                .unwrap();
        let run = run_audio(&audio.samples, &Feed::default(), |stt| {
            point_at(stt, &server);
            stt.set_property("drain-timeout", 500u32);
        });
        assert!(run.got_eos);
        assert!(
            run.elapsed < std::time::Duration::from_secs(5),
            "{:?}",
            run.elapsed
        );
        assert_eq!(run.finals(), ["no answer"]);
        assert!(
            run.warnings.iter().any(|w| w.0.contains("drain-timeout")),
            "{:?}",
            run.warnings
        );
    }
}

in_both_dialects! {
    fn options_go_into_the_query_and_the_key_into_the_header_only(dialect: Dialect) {
        let server = TestServer::start(ServerConfig::default().with_dialect(dialect).with_api_key(TEST_KEY)).unwrap();
        let audio = synthesize_utterances(&["hi"]).unwrap();
        let run = run_audio(&audio.samples, &Feed::default(), |stt| {
            point_at(stt, &server);
            stt.set_property("model", "fireworks-asr-v2");
            stt.set_property("language-code", "en-US");
            stt.set_property("prompt", "Names: Ada, Grace");
            stt.set_property("temperature", 0.25f64);
            stt.set_property("skip-vad", true);
            stt.set_property(
                "vad-kwargs",
                gst::Structure::builder("vad")
                    .field("threshold", 0.15f64)
                    .build(),
            );
            stt.set_property("text-timeout-seconds", 1.5f64);
        });
        assert!(run.errors.is_empty(), "{}", run.error_text());
        let record = &server.connections()[0];
        let query: Vec<(&str, &str)> = record
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            query,
            [
                ("model", "fireworks-asr-v2"),
                ("language", "en"),
                ("prompt", "Names: Ada, Grace"),
                ("temperature", "0.25"),
                ("skip_vad", "True"),
                ("vad_kwargs", "{\"threshold\":0.15}"),
                ("text_timeout_seconds", "1.5"),
                ("response_format", "verbose_json"),
                ("timestamp_granularities", "word"),
                ("timestamp_granularities", "segment"),
            ]
        );
        assert_eq!(record.authorization_header.as_deref(), Some(TEST_KEY));
        assert!(!record
            .raw_query
            .clone()
            .unwrap_or_default()
            .contains(TEST_KEY));
        assert!(record.authorization_query.is_none());
    }
}

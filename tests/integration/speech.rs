// SPDX-License-Identifier: MPL-2.0
//! Real speech, end to end: appsrc → audioresample → fireworksstt → fakesink against the bundled
//! server's Whisper tiny.en recogniser (the model must be installed: `./scripts/setup.sh`).
//!
//! Speech: the LibriVox utterances of Debian's `pocketsphinx-testdata` (real human voice, with
//! their transcripts) and sentences that espeak-ng speaks at test time in five voices (with its
//! own word times as the reference). Whisper mishears now and then, so texts are compared as
//! word error rates (normalised: case, punctuation, "Mr." = "mister") under stated bounds.
//!
//! Bounds, with the figures measured on this machine in parentheses (see BENCHMARKS.md):
//! LibriVox WER ≤ 12 % (4.2 %), espeak-ng WER ≤ 20 % (10.4 %), median word-start error against
//! espeak-ng ≤ 150 ms (100 ms); in steady room noise, see `NOISY_LIBRIVOX` and `NOISY_ESPEAK`. Decoding is deterministic for a given build, so these do not
//! vary from run to run; the bounds leave room for other CPUs' floating-point paths.

use std::time::{Duration, Instant};

use crate::common::*;
use fireworks_test_server::evaluate::{
    espeak, librivox_clips, normalize, read_wav, word_error_rate, Clip,
};
use fireworks_test_server::noise::{self, Noise};
use gst::prelude::*;

const LIBRIVOX_WER_BOUND: f64 = 0.12;
const ESPEAK_WER_BOUND: f64 = 0.20;
const WORD_START_MEDIAN_BOUND: f64 = 0.150;
/// Silence between utterances: more than the default 1 s text timeout.
const GAP_SECONDS: f64 = 1.5;

/// A stream of utterances at `rate`, each followed by [`GAP_SECONDS`] of silence (also before
/// the first), and where each utterance starts, in seconds.
struct Stream {
    rate: u32,
    samples: Vec<i16>,
    starts: Vec<f64>,
    references: Vec<String>,
    /// Reference word starts (stream seconds), per utterance, when known.
    word_starts: Vec<Vec<(String, f64)>>,
}

impl Stream {
    fn new(rate: u32) -> Self {
        Stream {
            rate,
            samples: vec![0; (GAP_SECONDS * rate as f64) as usize],
            starts: Vec::new(),
            references: Vec::new(),
            word_starts: Vec::new(),
        }
    }

    fn push(&mut self, samples: &[i16], reference: &str, words: &[(String, f64)]) {
        let start = self.samples.len() as f64 / self.rate as f64;
        self.starts.push(start);
        self.samples.extend_from_slice(samples);
        self.samples.extend(std::iter::repeat_n(
            0,
            (GAP_SECONDS * self.rate as f64) as usize,
        ));
        self.references.push(reference.to_string());
        self.word_starts
            .push(words.iter().map(|(w, t)| (w.clone(), start + t)).collect());
    }

    fn seconds(&self) -> f64 {
        self.samples.len() as f64 / self.rate as f64
    }

    /// The same stream with steady `noise` throughout (pauses too) at `snr_db` below the speech.
    fn with_noise(&self, noise: Noise, snr_db: f64) -> Stream {
        let power = noise::speech_power(&self.samples, self.rate);
        Stream {
            rate: self.rate,
            samples: noise::mix(&self.samples, self.rate, power, noise, snr_db, 1),
            starts: self.starts.clone(),
            references: self.references.clone(),
            word_starts: self.word_starts.clone(),
        }
    }
}

fn librivox_stream(clips: &[Clip]) -> Stream {
    let mut s = Stream::new(16000);
    for clip in clips {
        let (rate, channels, samples) = read_wav(&clip.path).unwrap();
        assert_eq!((rate, channels), (16000, 1), "{}", clip.name);
        s.push(&samples, &clip.reference, &[]);
    }
    s
}

const SENTENCES: &[&str] = &[
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call me back when you have finished reading the report.",
    "We should leave early tomorrow morning to avoid the heavy traffic.",
    "She opened the window and listened to the birds singing outside.",
    "The meeting has been moved to Thursday afternoon at the usual place.",
    "He bought fresh bread, some cheese and a bottle of milk.",
    "Turn left at the next corner and walk straight for two blocks.",
    "The children played in the garden until the sun went down.",
    "Our train was late, so we missed the beginning of the concert.",
    "Remember to switch off the lights before you go to bed.",
];
const VOICES: &[&str] = &["en-us", "en", "en+f3", "en-us+m3", "en+f2"];

fn espeak_stream() -> Stream {
    espeak_sentences(SENTENCES.len())
}

/// The first `n` of [`SENTENCES`], in the five voices.
fn espeak_sentences(n: usize) -> Stream {
    let mut s = Stream::new(22050);
    for (i, text) in SENTENCES.iter().enumerate().take(n) {
        let voice = VOICES[i % VOICES.len()];
        let spoken = espeak(text, voice, 160 + 5 * (i as i32 % 4)).unwrap();
        assert_eq!(spoken.sample_rate, 22050);
        assert!(!spoken.words.is_empty(), "espeak-ng gave no word events");
        s.push(&spoken.samples, text, &spoken.words);
    }
    s
}

/// One transcript message from the bus.
#[derive(Debug, Clone)]
struct Msg {
    text: String,
    is_final: bool,
    utterance: u64,
    /// (word, start s, end s)
    words: Vec<(String, f64, f64)>,
}

fn transcripts(run: &Run) -> Vec<Msg> {
    run.messages_named("fireworksstt/transcript")
        .into_iter()
        .map(|s| {
            let words = s
                .get::<gst::List>("words")
                .unwrap()
                .iter()
                .map(|v| {
                    let w = v.get::<gst::Structure>().unwrap();
                    let t = |f: &str| {
                        w.get::<gst::ClockTime>(f)
                            .map(|t| t.nseconds() as f64 / 1e9)
                            .unwrap_or(f64::NAN)
                    };
                    (w.get::<String>("text").unwrap(), t("start"), t("end"))
                })
                .collect();
            Msg {
                text: s.get::<String>("text").unwrap(),
                is_final: s.get::<bool>("final").unwrap(),
                utterance: s.get::<u64>("utterance").unwrap(),
                words,
            }
        })
        .collect()
}

/// Runs `appsrc ! audioresample ! fireworksstt ! fakesink` (appsrc at the stream's rate);
/// `paced` hands each 100 ms buffer over when its last sample would have been recorded (a live
/// source), else as fast as the pipeline takes them.
fn run_speech(stream: &Stream, paced: bool, server: &TestServer) -> Run {
    init();
    let pipeline = gst::Pipeline::new();
    let caps = gst::Caps::builder("audio/x-raw")
        .field("format", "S16LE")
        .field("rate", stream.rate as i32)
        .field("channels", 1i32)
        .field("layout", "interleaved")
        .build();
    let src = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .is_live(paced)
        .max_bytes(0)
        .build();
    let resample = gst::ElementFactory::make("audioresample").build().unwrap();
    let stt = gst::ElementFactory::make("fireworksstt").build().unwrap();
    point_at(&stt, server);
    // Pushed as fast as possible, audio reaches the server much faster than Whisper decodes it
    // (about 0.2 s per second of speech here, more on a busy machine). drain-timeout counts
    // again from each final, so the default suffices on an idle machine; with every test
    // decoding at once on 2 cores one final can take longer, and these tests are about what
    // is recognised, not about that bound.
    stt.set_property("drain-timeout", 120_000u32);
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
        .unwrap();
    pipeline
        .add_many([src.upcast_ref(), &resample, &stt, &sink])
        .unwrap();
    gst::Element::link_many([src.upcast_ref(), &resample, &stt, &sink]).unwrap();
    let out = record_output(&stt.static_pad("src").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    let started = Instant::now();
    let chunk_samples = stream.rate as usize / 10;
    let ns = |n: usize| n as u64 * 1_000_000_000 / stream.rate as u64;
    let mut sent = 0usize;
    for chunk in stream.samples.chunks(chunk_samples) {
        if paced {
            let due = started + Duration::from_nanos(ns(sent + chunk.len()));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(ns(sent)));
            b.set_duration(gst::ClockTime::from_nseconds(ns(chunk.len())));
        }
        sent += chunk.len();
        if src.push_buffer(buffer).is_err() {
            break;
        }
    }
    let _ = src.end_of_stream();
    let mut run = collect_bus(&pipeline, Duration::from_secs(180));
    pipeline.set_state(gst::State::Null).unwrap();
    run.elapsed = started.elapsed();
    run.out = std::mem::take(&mut *out.lock().unwrap());
    assert!(run.errors.is_empty(), "{}", run.error_text());
    assert!(run.got_eos);
    run
}

/// Final texts, one per utterance, after checking that every utterance was finalized exactly
/// once, in order, that no interim of an utterance comes after its final, that (when
/// `interims`: live input) every utterance had an interim before its final, and that word times
/// lie inside the audio and never go backwards. (Pushed as fast as possible, an utterance can be
/// complete before its first interim decode is: then its final is all there is.)
fn check_structure(run: &Run, stream: &Stream, interims: bool) -> Vec<Msg> {
    let msgs = transcripts(run);
    let finals: Vec<Msg> = msgs.iter().filter(|m| m.is_final).cloned().collect();
    let utterances: Vec<u64> = finals.iter().map(|m| m.utterance).collect();
    assert!(
        utterances.windows(2).all(|w| w[0] < w[1]),
        "each utterance final once, in order: {utterances:?}"
    );
    for f in &finals {
        let first_final = msgs
            .iter()
            .position(|m| m.utterance == f.utterance && m.is_final)
            .unwrap();
        assert!(
            !msgs[first_final + 1..]
                .iter()
                .any(|m| m.utterance == f.utterance && !m.is_final),
            "an interim after the final of utterance {}",
            f.utterance
        );
        if interims {
            assert!(
                msgs[..first_final]
                    .iter()
                    .any(|m| m.utterance == f.utterance && !m.is_final),
                "no interim before the final of utterance {}: {:?}",
                f.utterance,
                f.text
            );
        }
    }
    let mut last = 0.0f64;
    for f in &finals {
        for (w, start, end) in &f.words {
            assert!(start.is_finite() && end.is_finite(), "{w}: no times");
            assert!(
                *start >= last - 1e-6 && end >= start && *end <= stream.seconds() + 1e-6,
                "word {w:?} [{start}, {end}] after {last} in {} s",
                stream.seconds()
            );
            last = *start;
        }
    }
    finals
}

/// Total WER of the finals against the references, utterance by utterance.
fn wer(finals: &[Msg], stream: &Stream) -> f64 {
    assert_eq!(
        finals.len(),
        stream.references.len(),
        "one final per utterance: {:?}",
        finals.iter().map(|f| &f.text).collect::<Vec<_>>()
    );
    let (mut errors, mut words) = (0.0, 0.0);
    for (f, r) in finals.iter().zip(&stream.references) {
        let n = normalize(r).len() as f64;
        let e = word_error_rate(r, &f.text);
        eprintln!("  {e:.3}  {r:?} → {:?}", f.text);
        errors += e * n;
        words += n;
    }
    errors / words
}

fn server() -> TestServer {
    TestServer::start(ServerConfig::default()).unwrap()
}

#[test]
fn librivox_recordings_are_transcribed() {
    let stream = librivox_stream(&librivox_clips().unwrap());
    let server = server();
    let run = run_speech(&stream, false, &server);
    let finals = check_structure(&run, &stream, false);
    let wer = wer(&finals, &stream);
    eprintln!("LibriVox WER {:.1} %", wer * 100.0);
    assert!(wer <= LIBRIVOX_WER_BOUND, "WER {wer:.3}");
    // Each final's words lie within its utterance's audio (±0.3 s for the recogniser's slack).
    for (f, start) in finals.iter().zip(&stream.starts) {
        assert!(f.words[0].1 >= start - 0.3, "{f:?} starts before {start}");
    }
}

#[test]
fn espeak_voices_are_transcribed_with_word_times() {
    let stream = espeak_stream();
    let server = server();
    let run = run_speech(&stream, false, &server);
    let finals = check_structure(&run, &stream, false);
    let wer = wer(&finals, &stream);
    eprintln!("espeak-ng WER {:.1} %", wer * 100.0);
    assert!(wer <= ESPEAK_WER_BOUND, "WER {wer:.3}");
    // Word starts against espeak-ng's own: words matched by their normalised text, in order.
    let mut errors = Vec::new();
    for (f, reference) in finals.iter().zip(&stream.word_starts) {
        let refs: Vec<(String, f64)> = reference
            .iter()
            .filter_map(|(w, t)| normalize(w).first().map(|n| (n.clone(), *t)))
            .collect();
        let mut next = 0;
        for (w, start, _) in &f.words {
            let Some(n) = normalize(w).first().cloned() else {
                continue;
            };
            if let Some(k) = refs[next..].iter().position(|(r, _)| *r == n) {
                if std::env::var_os("SPEECH_DEBUG").is_some() {
                    eprintln!("{n:>12} hyp {start:.3} ref {:.3}", refs[next + k].1);
                }
                errors.push(start - refs[next + k].1);
                next += k + 1;
            }
        }
    }
    assert!(errors.len() >= 50, "only {} words matched", errors.len());
    let mut abs: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    abs.sort_by(f64::total_cmp);
    let median = abs[abs.len() / 2];
    let mean = errors.iter().sum::<f64>() / errors.len() as f64;
    eprintln!(
        "word start error: median |e| {:.0} ms, p90 {:.0} ms, mean {:+.0} ms over {} words",
        median * 1000.0,
        abs[abs.len() * 9 / 10] * 1000.0,
        mean * 1000.0,
        errors.len()
    );
    assert!(median <= WORD_START_MEDIAN_BOUND, "median {median:.3} s");
}

#[test]
fn live_and_fast_input_give_the_same_finals() {
    let clips = librivox_clips().unwrap();
    let stream = librivox_stream(&clips[1..3]);
    let server = server();
    let fast = run_speech(&stream, false, &server);
    let live = run_speech(&stream, true, &server);
    let text = |r: &Run, live: bool| {
        check_structure(r, &stream, live)
            .iter()
            .map(|m| m.text.clone())
            .collect::<Vec<_>>()
    };
    let (fast_finals, live_finals) = (text(&fast, false), text(&live, true));
    assert_eq!(fast_finals.len(), 2);
    assert_eq!(fast_finals, live_finals);
    // Live: at least one interim per second of speech (2 clips, ≈ 8.3 s of speech).
    let interims = transcripts(&live).iter().filter(|m| !m.is_final).count();
    assert!(interims >= 6, "{interims} interims in live input");
}

#[test]
fn a_connection_dropped_mid_utterance_gives_the_same_transcript() {
    let clips = librivox_clips().unwrap();
    let stream = librivox_stream(&clips[..2]);
    let baseline = {
        let server = server();
        let run = run_speech(&stream, false, &server);
        check_structure(&run, &stream, false)
    };
    // 4 s into the stream is the middle of the first (7.1 s) utterance.
    let server = TestServer::start(
        ServerConfig::default().with_fault(0, Fault::DropAfterBytes { bytes: 4 * 32000 }),
    )
    .unwrap();
    let run = run_speech(&stream, false, &server);
    assert!(server.connections().len() >= 2, "the drop reconnected");
    let dropped = check_structure(&run, &stream, false);
    let texts = |m: &[Msg]| m.iter().map(|m| normalize(&m.text)).collect::<Vec<_>>();
    assert_eq!(texts(&dropped), texts(&baseline));
}

/// WER bounds of speech in steady noise, per SNR, with the figures measured on this machine
/// in parentheses (BENCHMARKS.md, "Speech in noise"). Whisper tiny.en degrades fastest in white
/// noise, and most on espeak-ng's synthetic voices: white noise at 5 dB SNR costs them more than
/// half their words (the test still asserts every sentence is found and gets text).
const NOISY_LIBRIVOX: &[(Noise, f64, f64)] = &[
    (Noise::Pink, 15.0, 0.15),  // (8.5 %)
    (Noise::White, 10.0, 0.30), // (19.7 %)
    (Noise::Brown, 5.0, 0.20),  // (8.5 %)
    (Noise::Hum, 5.0, 0.20),    // (9.9 %)
];
const NOISY_ESPEAK: &[(Noise, f64, f64)] = &[
    (Noise::Pink, 10.0, 0.35), // (20.7 %)
    (Noise::White, 5.0, 0.75), // (53.4 %)
];

/// Sentences separated by 1.5 s pauses in steady room noise (the pauses are noise too, not
/// silence): each sentence ends at its pause and is finalized once, with text, and the word
/// error rate stays under the bound for its SNR.
fn noisy_speech_is_segmented_and_transcribed(clean: &Stream, conditions: &[(Noise, f64, f64)]) {
    let server = server();
    let mut failures = Vec::new();
    for &(kind, snr, bound) in conditions {
        let stream = clean.with_noise(kind, snr);
        let run = run_speech(&stream, false, &server);
        let finals = check_structure(&run, &stream, false);
        let texts: Vec<&str> = finals.iter().map(|f| f.text.as_str()).collect();
        eprintln!("{} noise at {snr} dB SNR:", kind.name());
        if finals.len() != stream.references.len() || texts.iter().any(|t| normalize(t).is_empty())
        {
            failures.push(format!(
                "{} {snr} dB: {} finals for {} sentences: {texts:?}",
                kind.name(),
                finals.len(),
                stream.references.len()
            ));
            continue;
        }
        let wer = wer(&finals, &stream);
        eprintln!(
            "{} noise at {snr} dB SNR: WER {:.1} %",
            kind.name(),
            wer * 100.0
        );
        if wer > bound {
            failures.push(format!("{} {snr} dB: WER {wer:.3} > {bound}", kind.name()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn librivox_in_room_noise_ends_at_each_pause() {
    let clean = librivox_stream(&librivox_clips().unwrap());
    noisy_speech_is_segmented_and_transcribed(&clean, NOISY_LIBRIVOX);
}

#[test]
fn espeak_voices_in_room_noise_end_at_each_pause() {
    noisy_speech_is_segmented_and_transcribed(&espeak_sentences(5), NOISY_ESPEAK);
}

/// Non-speech that changes character inside one stretch (a tone running into noise, beeps,
/// sweeps, chords, a door slam between silences) gives no text.
#[test]
fn non_speech_that_changes_character_gives_no_text() {
    let mut stream = Stream::new(16000);
    for (name, samples) in noise::non_speech() {
        stream.push(&samples, name, &[]);
    }
    let server = server();
    let run = run_speech(&stream, false, &server);
    let texts: Vec<String> = transcripts(&run)
        .into_iter()
        .map(|m| m.text)
        .filter(|t| !t.trim().is_empty())
        .collect();
    assert!(texts.is_empty(), "text from non-speech: {texts:?}");
    assert!(run.texts().is_empty());
}

#[test]
fn silence_tone_and_noise_give_no_text() {
    let mut stream = Stream::new(16000);
    let n = 3 * 16000;
    let tone: Vec<i16> = (0..n)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 16000.0).sin()) as i16)
        .collect();
    // White noise from a fixed linear congruential sequence (reproducible).
    let mut x = 12345u32;
    let noise: Vec<i16> = (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((x >> 16) as i16) / 8
        })
        .collect();
    stream.push(&vec![0; n], "", &[]);
    stream.push(&tone, "", &[]);
    stream.push(&noise, "", &[]);
    let server = server();
    let run = run_speech(&stream, false, &server);
    let texts: Vec<String> = transcripts(&run)
        .into_iter()
        .map(|m| m.text)
        .filter(|t| !t.trim().is_empty())
        .collect();
    assert!(texts.is_empty(), "text from non-speech: {texts:?}");
    assert!(run.texts().is_empty());
}

#[test]
fn a_language_the_model_cannot_do_is_an_error_naming_what_is_supported() {
    let stream = librivox_stream(&librivox_clips().unwrap()[1..2]);
    let server = server();
    init();
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&audio_caps())
        .format(gst::Format::Time)
        .build();
    let stt = gst::ElementFactory::make("fireworksstt").build().unwrap();
    point_at(&stt, &server);
    stt.set_property("language-code", "de");
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    pipeline.add_many([src.upcast_ref(), &stt, &sink]).unwrap();
    gst::Element::link_many([src.upcast_ref(), &stt, &sink]).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for (i, chunk) in stream.samples.chunks(1600).enumerate() {
        if src
            .push_buffer(audio_buffer(chunk, i as u64 * 100_000_000))
            .is_err()
        {
            break;
        }
    }
    let _ = src.end_of_stream();
    let run = collect_bus(&pipeline, Duration::from_secs(30));
    pipeline.set_state(gst::State::Null).unwrap();
    let all = format!("{:?}", run.errors);
    assert!(!run.errors.is_empty(), "no error: {run:?}");
    assert!(
        all.contains("supported languages: en"),
        "the error names what is supported: {all}"
    );
}

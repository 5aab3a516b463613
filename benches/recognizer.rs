// SPDX-License-Identifier: MPL-2.0
//! The bundled server's speech recogniser (Whisper tiny.en int8 through ct2rs), on one core:
//!
//! 1. model load time;
//! 2. real-time factor (decode time / audio time) of final decodes (full 30 s window) and of
//!    interim decodes (short window), and the word error rate, on the LibriVox clips of
//!    Debian's `pocketsphinx-testdata`;
//! 3. one live stream (the clips with 1.5 s pauses, paced in real time, 100 ms frames) through the
//!    server over a raw WebSocket: interims per second of speech, first-interim latency after
//!    speech starts, final latency after speech ends (it includes `text_timeout_seconds`, 1 s),
//!    and whether the stream kept real time;
//! 4. memory: resident set with the model loaded, and per connection while 4 connections stream
//!    at once;
//! 5. `--section noise`: word error rate and finals per sentence for speech in steady room noise
//!    (pink, white, brown, mains hum at 15, 10 and 5 dB SNR; LibriVox clips and five espeak-ng
//!    sentences with 1.5 s pauses), pushed as fast as the server takes it;
//! 6. `--section live`: the same sentences, clean and in pink noise at 10 dB, paced in real
//!    time: end of speech → final p50/p95/p99 (and its excess over `text_timeout_seconds`),
//!    first text after speech starts, the longest wait between interims during speech, and
//!    the share of interim words a later message changed;
//! 7. `--section streams`: 1, 2, 4 and 6 such live streams at once (clean): the same latency
//!    figures over all streams, and CPU per live stream (share of one core).
//!
//! ```text
//! cargo bench --bench recognizer --profile dev -- [--cores 1] [--threads 1] [--section S] \
//!     [--streams 1,2,4,6] [--reps 1]
//! ```
//!
//! Sections: `decode` (1–4), `rtf` (2 only), `noise`, `live`, `streams`, `all` (default:
//! `decode`). The live sections run unpinned unless `--cores` is given; `--reps` repeats the
//! `live` and `streams` runs.
//!
//! `--profile dev` reuses the test build (the workspace optimises ct2rs and the server in dev
//! builds); `cargo bench --bench recognizer` builds everything optimised first. The process is
//! pinned to its first `--cores` CPUs (sched_setaffinity) and CTranslate2 runs `--threads`
//! threads.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fireworks_test_server::evaluate::{
    espeak, librivox_clips, normalize, read_wav, word_error_rate,
};
use fireworks_test_server::noise::{self, Noise};
use fireworks_test_server::recognizer::{default_model_dir, Pass, Recognizer, THREADS_ENV};
use fireworks_test_server::{ServerConfig, TestServer, STREAMING_PATH};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const GAP_SECONDS: f64 = 1.5;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pin_to_cores(cores: usize) {
    // SAFETY: a zeroed cpu_set_t filled with CPU_SET, passed with its size, for this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in 0..cores {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("sched_setaffinity failed; not pinned");
        }
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Stream {
    samples: Vec<i16>,
    /// (start, end) of each utterance, seconds.
    spans: Vec<(f64, f64)>,
}

fn stream(clips: &[Vec<i16>]) -> Stream {
    let gap = vec![0i16; (GAP_SECONDS * 16000.0) as usize];
    let mut samples = gap.clone();
    let mut spans = Vec::new();
    for c in clips {
        let start = samples.len() as f64 / 16000.0;
        samples.extend_from_slice(c);
        spans.push((start, samples.len() as f64 / 16000.0));
        samples.extend_from_slice(&gap);
    }
    Stream { samples, spans }
}

/// Streams `samples` to the server (paced: each 100 ms frame when its last sample would have
/// been captured), then a checkpoint, and returns every message with its arrival time since
/// the first frame, plus the time the checkpoint echo came.
async fn stream_to(server: &TestServer, samples: &[i16], paced: bool) -> (Vec<(f64, Value)>, f64) {
    let url = format!(
        "ws://{}{STREAMING_PATH}?timestamp_granularities=word",
        server.addr()
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let (mut tx, mut rx) = ws.split();
    let t0 = Instant::now();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = rx.next().await {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                let echo = v.get("checkpoint_id").is_some();
                sink.lock().unwrap().push((t0.elapsed().as_secs_f64(), v));
                if echo {
                    return t0.elapsed().as_secs_f64();
                }
            }
        }
        f64::NAN
    });
    for (k, chunk) in samples.chunks(1600).enumerate() {
        if paced {
            let due = t0 + Duration::from_millis(100 * (k as u64 + 1));
            tokio::time::sleep_until(due.into()).await;
        }
        let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
        tx.send(Message::binary(bytes)).await.expect("send");
    }
    tx.send(Message::text(r#"{"checkpoint_id":"end"}"#))
        .await
        .expect("send");
    let echo = tokio::time::timeout(Duration::from_secs(300), reader)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or(f64::NAN);
    let _ = tx.close().await;
    let msgs = got.lock().unwrap().clone();
    (msgs, echo)
}

/// Words of a message: (segment id, start, is_final).
fn words(v: &Value) -> Vec<(u64, f64, bool)> {
    let mut out = Vec::new();
    for s in v["segments"].as_array().into_iter().flatten() {
        let id = s["id"].as_u64().unwrap_or(0);
        for w in s["words"].as_array().into_iter().flatten() {
            out.push((
                id,
                w["start"].as_f64().unwrap_or(f64::NAN),
                w["is_final"].as_bool().unwrap_or(false),
            ));
        }
    }
    out
}

fn utterance_of(spans: &[(f64, f64)], t: f64) -> Option<usize> {
    spans.iter().position(|(s, e)| t >= s - 0.5 && t <= e + 0.5)
}

/// `--streams 1,2,4,6`: the numbers of concurrent live streams of `--section streams`.
fn stream_counts() -> Vec<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--streams")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4, 6])
}

fn section() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--section")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "decode".into())
}

fn main() {
    let section = section();
    if section == "decode" || section == "all" || section == "rtf" {
        decode_section();
    }
    if section != "decode" && section != "rtf" {
        if std::env::args().any(|a| a == "--cores") {
            pin_to_cores(arg("--cores", 2));
        }
        if std::env::args().any(|a| a == "--threads") {
            // SAFETY (edition 2021: safe): set before the server's recogniser is loaded.
            std::env::set_var(THREADS_ENV, arg("--threads", 2).to_string());
        }
    }
    if section == "noise" || section == "all" {
        noise_section();
    }
    if section == "live" || section == "all" {
        live_section();
    }
    if section == "streams" || section == "all" {
        streams_section();
    }
}

fn decode_section() {
    let cores = arg("--cores", 1);
    let threads = arg("--threads", 1);
    pin_to_cores(cores);
    // SAFETY (edition 2021: safe): set before any thread reads the environment.
    std::env::set_var(THREADS_ENV, threads.to_string());
    println!("recogniser benchmark: {cores} core(s), {threads} CTranslate2 thread(s)");

    let dir = default_model_dir().expect("model directory");
    let rss0 = rss_kib();
    let t = Instant::now();
    let rec = Recognizer::load(&dir).unwrap_or_else(|e| panic!("{e}: run ./scripts/setup.sh"));
    println!(
        "model load: {:.2} s; resident set +{} MiB",
        t.elapsed().as_secs_f64(),
        (rss_kib().saturating_sub(rss0)) / 1024
    );

    let clips = librivox_clips().expect("pocketsphinx-testdata");
    let audio: Vec<Vec<i16>> = clips
        .iter()
        .map(|c| read_wav(&c.path).expect("wav").2)
        .collect();
    let seconds: f64 = audio.iter().map(|a| a.len() as f64 / 16000.0).sum();
    for pass in [Pass::Full30, Pass::Full, Pass::Quick] {
        let (mut decode, mut errors, mut words_total) = (0.0, 0.0, 0.0);
        for (clip, a) in clips.iter().zip(&audio) {
            let f: Vec<f32> = a.iter().map(|&s| s as f32 / 32768.0).collect();
            let r = rec.recognize(&f, pass).expect("decode");
            decode += r.decode_time.as_secs_f64();
            let hyp: Vec<&str> = r.words.iter().map(|w| w.text.as_str()).collect();
            let n = clip.reference.split_whitespace().count() as f64;
            errors += word_error_rate(&clip.reference, &hyp.join(" ")) * n;
            words_total += n;
        }
        println!(
            "{pass:?} decodes of {} clips ({seconds:.1} s): RTF {:.3} ({:.2} s per clip), WER {:.1} %",
            clips.len(),
            decode / seconds,
            decode / clips.len() as f64,
            100.0 * errors / words_total
        );
    }
    drop(rec);
    if section() == "rtf" {
        return;
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = TestServer::start(ServerConfig {
        log_connections: false,
        record_audio: false,
        ..Default::default()
    })
    .expect("server");
    let s = stream(&audio);
    let total = s.samples.len() as f64 / 16000.0;
    // Warm the shared recogniser (loaded on first use) outside the measurement.
    rt.block_on(stream_to(&server, &audio[1][..16000], false));

    let (msgs, echo) = rt.block_on(stream_to(&server, &s.samples, true));
    let mut first_interim = vec![f64::NAN; s.spans.len()];
    let mut interims = vec![0usize; s.spans.len()];
    let mut final_at = vec![f64::NAN; s.spans.len()];
    let mut final_ids = std::collections::HashSet::new();
    for (t, v) in &msgs {
        let ws = words(v);
        if let Some((_, start, _)) = ws.iter().find(|w| !w.2) {
            if let Some(u) = utterance_of(&s.spans, *start) {
                interims[u] += 1;
                if first_interim[u].is_nan() {
                    if std::env::var_os("BENCH_DEBUG").is_some() {
                        eprintln!("first interim of {u} at {t:.2}: {v}");
                    }
                    first_interim[u] = t - s.spans[u].0;
                }
            }
        }
        for (id, start, fin) in ws {
            if fin && final_ids.insert(id) {
                if let Some(u) = utterance_of(&s.spans, start) {
                    if final_at[u].is_nan() {
                        final_at[u] = t - s.spans[u].1;
                    }
                }
            }
        }
    }
    let speech: f64 = s.spans.iter().map(|(a, b)| b - a).sum();
    let n_interims: usize = interims.iter().sum();
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "live stream ({total:.1} s, {speech:.1} s of speech in {} utterances, paced):",
        s.spans.len()
    );
    println!(
        "  interims: {n_interims} ({:.2} per second of speech; per utterance {:?})",
        n_interims as f64 / speech,
        interims
    );
    println!(
        "  first interim after speech starts, s: {}",
        fmt(&first_interim)
    );
    println!(
        "  final after speech ends (includes the 1 s text timeout), s: {}",
        fmt(&final_at)
    );
    println!(
        "  checkpoint echo {:.2} s after the last frame was sent (kept real time: {})",
        echo - total,
        if echo - total < 2.0 { "yes" } else { "no" }
    );

    // Memory per connection: 4 connections streaming the first two clips at once, paced.
    let two = stream(&audio[..2]);
    let before = rss_kib();
    let peak = Arc::new(Mutex::new(before));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let r = rss_kib();
                let mut p = peak.lock().unwrap();
                *p = (*p).max(r);
                drop(p);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    rt.block_on(async {
        let runs: Vec<_> = (0..4)
            .map(|_| stream_to(&server, &two.samples, true))
            .collect();
        futures_util::future::join_all(runs).await
    });
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    let peak = *peak.lock().unwrap();
    println!(
        "memory: resident {} MiB with the model loaded; +{} KiB per connection (peak of 4 live \
         connections)",
        before / 1024,
        peak.saturating_sub(before) / 4
    );
}

/// The test sentences: the LibriVox clips and five espeak-ng sentences (resampled to 16 kHz),
/// with their references, and where each one's speech starts and ends (20 ms frames within
/// 35 dB of the loudest), in seconds of the stream.
struct Sentences {
    samples: Vec<i16>,
    references: Vec<String>,
    speech: Vec<(f64, f64)>,
}

const ESPEAK_SENTENCES: &[(&str, &str)] = &[
    (
        "The quick brown fox jumps over the lazy dog near the river bank.",
        "en-us",
    ),
    (
        "Please call me back when you have finished reading the report.",
        "en",
    ),
    (
        "We should leave early tomorrow morning to avoid the heavy traffic.",
        "en+f3",
    ),
    (
        "She opened the window and listened to the birds singing outside.",
        "en-us+m3",
    ),
    (
        "The meeting has been moved to Thursday afternoon at the usual place.",
        "en+f2",
    ),
];

/// Active span of `x` (16 kHz) in seconds.
fn active_span(x: &[i16]) -> (f64, f64) {
    let p: Vec<f64> = x
        .chunks_exact(320)
        .map(|f| f.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / 320.0)
        .collect();
    let max = p.iter().copied().fold(0.0, f64::max);
    let on: Vec<usize> = (0..p.len())
        .filter(|&i| p[i] > max * 10f64.powf(-3.5))
        .collect();
    let (a, b) = (
        on.first().copied().unwrap_or(0),
        on.last().copied().unwrap_or(0),
    );
    (a as f64 * 0.02, (b + 1) as f64 * 0.02)
}

fn sentences() -> Sentences {
    let mut utterances: Vec<(Vec<i16>, String)> = librivox_clips()
        .expect("pocketsphinx-testdata")
        .iter()
        .map(|c| (read_wav(&c.path).expect("wav").2, c.reference.clone()))
        .collect();
    for (i, (text, voice)) in ESPEAK_SENTENCES.iter().enumerate() {
        let spoken = espeak(text, voice, 160 + 5 * i as i32).expect("espeak-ng");
        // Linear resampling to 16 kHz (espeak-ng has little energy above 8 kHz).
        let ratio = spoken.sample_rate as f64 / 16000.0;
        let n = (spoken.samples.len() as f64 / ratio) as usize;
        let x: Vec<i16> = (0..n)
            .map(|k| {
                let t = k as f64 * ratio;
                let i = t as usize;
                let f = t - i as f64;
                let a = spoken.samples[i] as f64;
                let b = *spoken.samples.get(i + 1).unwrap_or(&0) as f64;
                (0.7 * (a + f * (b - a))) as i16
            })
            .collect();
        utterances.push((x, text.to_string()));
    }
    let gap = vec![0i16; (GAP_SECONDS * 16000.0) as usize];
    let mut samples = gap.clone();
    let (mut references, mut speech) = (Vec::new(), Vec::new());
    for (x, r) in utterances {
        let at = samples.len() as f64 / 16000.0;
        let (a, b) = active_span(&x);
        speech.push((at + a, at + b));
        references.push(r);
        samples.extend_from_slice(&x);
        samples.extend_from_slice(&gap);
    }
    Sentences {
        samples,
        references,
        speech,
    }
}

impl Sentences {
    fn with_noise(&self, kind: Noise, snr: f64) -> Vec<i16> {
        let p = noise::speech_power(&self.samples, 16000);
        noise::mix(&self.samples, 16000, p, kind, snr, 1)
    }
}

/// Finals of a finished stream, one per message that finalized words, in order: (arrival s,
/// first new segment id, text of the newly final segments, first word's start s).
fn finals(msgs: &[(f64, Value)]) -> Vec<(f64, u64, String, f64)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (t, v) in msgs {
        let mut this: Option<(f64, u64, String, f64)> = None;
        for seg in v["segments"].as_array().into_iter().flatten() {
            let id = seg["id"].as_u64().unwrap_or(0);
            let ws = seg["words"].as_array().cloned().unwrap_or_default();
            if !ws.is_empty() && ws.iter().all(|w| w["is_final"] == true) && seen.insert(id) {
                let text = seg["text"].as_str().unwrap_or("").to_string();
                match &mut this {
                    Some(f) => {
                        f.2.push(' ');
                        f.2.push_str(&text);
                    }
                    None => {
                        let start = ws[0]["start"].as_f64().unwrap_or(f64::NAN);
                        this = Some((*t, id, text, start));
                    }
                }
            }
        }
        out.extend(this);
    }
    out
}

fn noise_section() {
    let rt = runtime();
    let server = quiet_server();
    let s = sentences();
    rt.block_on(stream_to(&server, &s.samples[..32000], false));
    println!(
        "speech in steady noise: {} sentences ({} LibriVox, {} espeak-ng), 1.5 s pauses, pushed \
         fast",
        s.references.len(),
        s.references.len() - ESPEAK_SENTENCES.len(),
        ESPEAK_SENTENCES.len()
    );
    println!("| condition | finals / sentences | sentences with no text | WER |");
    println!("|---|---|---|---|");
    let mut conditions = vec![("clean".to_string(), None)];
    for snr in [15.0, 10.0, 5.0] {
        for kind in Noise::ALL {
            conditions.push((format!("{} {snr} dB", kind.name()), Some((kind, snr))));
        }
    }
    let reference = s.references.join(" ");
    for (name, cond) in conditions {
        let samples = match cond {
            None => s.samples.clone(),
            Some((k, snr)) => s.with_noise(k, snr),
        };
        let (msgs, _) = rt.block_on(stream_to(&server, &samples, false));
        let f = finals(&msgs);
        let text: Vec<&str> = f.iter().map(|x| x.2.as_str()).collect();
        // Sentences none of whose words came back.
        let mut empty = 0;
        for (a, b) in &s.speech {
            if !f.iter().any(|x| x.3 >= a - 0.5 && x.3 <= b + 0.5) {
                empty += 1;
            }
        }
        println!(
            "| {name} | {} / {} | {empty} | {:.1} % |",
            f.len(),
            s.references.len(),
            100.0 * word_error_rate(&reference, &text.join(" "))
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn quiet_server() -> TestServer {
    TestServer::start(ServerConfig {
        log_connections: false,
        record_audio: false,
        ..Default::default()
    })
    .expect("server")
}

/// Latency figures of live streams of the sentences.
#[derive(Default)]
struct Latency {
    /// End of speech → final arrival, s (one per sentence finalized).
    final_after_end: Vec<f64>,
    /// Speech start → first message with a word of the sentence, s.
    first_text: Vec<f64>,
    /// Longest time between messages with words of the sentence while it is spoken, s.
    interim_gap: Vec<f64>,
    /// Time between consecutive interims of a sentence while it is spoken (after its first
    /// text), s: the interim cadence.
    interim_interval: Vec<f64>,
    /// Interim words shown, and those a later message of the sentence changed.
    interim_words: usize,
    revised_words: usize,
    finals: usize,
    sentences: usize,
}

impl Latency {
    fn add(&mut self, s: &Sentences, msgs: &[(f64, Value)]) {
        self.sentences += s.speech.len();
        let f = finals(msgs);
        for (a, b) in &s.speech {
            let of = |start: f64| start >= a - 0.5 && start <= b + 0.5;
            if let Some(x) = f.iter().find(|x| of(x.3)) {
                self.final_after_end.push(x.0 - b);
                self.finals += 1;
            }
            // Messages carrying words of this sentence: (time, normalised words).
            let mut shown: Vec<(f64, Vec<String>, bool)> = Vec::new();
            for (t, v) in msgs {
                let mut words = Vec::new();
                let mut all_final = true;
                for seg in v["segments"].as_array().into_iter().flatten() {
                    for w in seg["words"].as_array().into_iter().flatten() {
                        if of(w["start"].as_f64().unwrap_or(f64::NAN)) {
                            words.extend(normalize(w["word"].as_str().unwrap_or("")));
                            all_final &= w["is_final"] == true;
                        }
                    }
                }
                if !words.is_empty() {
                    shown.push((*t, words, all_final));
                }
            }
            // What follows the final is the working window resending it (in segments).
            if let Some(k) = shown.iter().position(|m| m.2) {
                shown.truncate(k + 1);
            }
            if std::env::var_os("BENCH_DEBUG").is_some() {
                for (t, words, fin) in &shown {
                    eprintln!(
                        "{:7.2} {} {}",
                        t - a,
                        if *fin { "F" } else { "i" },
                        words.join(" ")
                    );
                }
            }
            if let Some(first) = shown.first() {
                self.first_text.push(first.0 - a);
            }
            let mut last = *a;
            let mut gap = 0.0f64;
            for (t, _, _) in shown.iter().filter(|m| m.0 <= *b) {
                gap = gap.max(t - last);
                last = *t;
            }
            gap = gap.max(b.min(shown.first().map(|m| m.0).unwrap_or(*b)) - a);
            self.interim_gap.push(gap);
            let during: Vec<f64> = shown
                .iter()
                .filter(|m| !m.2 && m.0 <= *b)
                .map(|m| m.0)
                .collect();
            self.interim_interval
                .extend(during.windows(2).map(|w| w[1] - w[0]));
            // Each interim word, by position, against every later message of the sentence.
            for (k, (_, words, is_final)) in shown.iter().enumerate() {
                if *is_final {
                    continue;
                }
                for (i, w) in words.iter().enumerate() {
                    self.interim_words += 1;
                    if shown[k + 1..]
                        .iter()
                        .any(|(_, later, _)| later.get(i).is_some_and(|l| l != w))
                    {
                        self.revised_words += 1;
                    }
                }
            }
        }
    }

    fn print(&self, label: &str) {
        let pct = |v: &[f64], q: f64| {
            let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            if v.is_empty() {
                return f64::NAN;
            }
            v[((v.len() - 1) as f64 * q).round() as usize]
        };
        let f = &self.final_after_end;
        println!(
            "| {label} | {}/{} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {:.0} % |",
            self.finals,
            self.sentences,
            pct(f, 0.5),
            pct(f, 0.95),
            pct(f, 0.99),
            pct(&self.first_text, 0.5),
            pct(&self.first_text, 0.95),
            pct(&self.interim_gap, 0.5),
            pct(&self.interim_gap, 0.95),
            pct(&self.interim_interval, 0.5),
            pct(&self.interim_interval, 0.95),
            100.0 * self.revised_words as f64 / self.interim_words.max(1) as f64
        );
    }
}

const LATENCY_HEADER: &str = "| stream | finals | end of speech → final p50 / p95 / p99 (s, \
     includes the 1 s text timeout) | first text p50 / p95 (s) | longest wait for an interim \
     p50 / p95 (s) | between interims p50 / p95 (s) | interim words revised |\n|---|---|---|---|---|---|---|";

fn live_section() {
    let rt = runtime();
    let server = quiet_server();
    let s = sentences();
    rt.block_on(stream_to(&server, &s.samples[..32000], false));
    println!("live (paced) streams of {} sentences:", s.references.len());
    println!("{LATENCY_HEADER}");
    for _ in 0..arg("--reps", 1) {
        for (label, samples) in [
            ("clean", s.samples.clone()),
            ("pink noise 10 dB", s.with_noise(Noise::Pink, 10.0)),
        ] {
            let (msgs, _) = rt.block_on(stream_to(&server, &samples, true));
            let mut l = Latency::default();
            l.add(&s, &msgs);
            l.print(label);
        }
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct for this process.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        t(u.ru_utime) + t(u.ru_stime)
    }
}

fn streams_section() {
    let rt = runtime();
    let server = quiet_server();
    let s = sentences();
    rt.block_on(stream_to(&server, &s.samples[..32000], false));
    let seconds = s.samples.len() as f64 / 16000.0;
    println!(
        "concurrent live streams of {} sentences ({seconds:.0} s each), clean:",
        s.references.len()
    );
    println!("{LATENCY_HEADER}");
    let counts: Vec<usize> = stream_counts()
        .into_iter()
        .flat_map(|n| std::iter::repeat_n(n, arg("--reps", 1)))
        .collect();
    for n in counts {
        let cpu0 = cpu_seconds();
        let runs = rt.block_on(async {
            let runs: Vec<_> = (0..n)
                .map(|_| stream_to(&server, &s.samples, true))
                .collect();
            futures_util::future::join_all(runs).await
        });
        let cpu = cpu_seconds() - cpu0;
        let mut l = Latency::default();
        for (msgs, _) in &runs {
            l.add(&s, msgs);
        }
        l.print(&format!(
            "{n} stream(s), CPU {:.0} % of a core per stream",
            100.0 * cpu / (n as f64 * seconds)
        ));
    }
}

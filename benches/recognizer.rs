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
//!    at once.
//!
//!     cargo bench --bench recognizer --profile dev -- [--cores 1] [--threads 1]
//!
//! `--profile dev` reuses the test build (the workspace optimises ct2rs and the server in dev
//! builds); `cargo bench --bench recognizer` builds everything optimised first. The process is
//! pinned to its first `--cores` CPUs (sched_setaffinity) and CTranslate2 runs `--threads`
//! threads.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fireworks_test_server::evaluate::{librivox_clips, read_wav, word_error_rate};
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

fn main() {
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
    for pass in [Pass::Full, Pass::Quick] {
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

// SPDX-License-Identifier: MPL-2.0
//! Latency close to the wire, with a live (real-time paced) source:
//!
//! 1. audio buffer into fireworksstt → its last byte received by the server,
//! 2. server message written to the socket → the element's bus message posted,
//! 3. server final message written → its first text buffer pushed on `src`.
//!
//!     cargo bench --bench latency -- [--seconds 60] [--configs 10:50,20:50,100:50]
//!
//! (`--configs` lists `input-buffer-ms:chunk-duration-ms` pairs.)
//!
//! The server is a probe (this binary with `--role probe`, in a process of its own) built on
//! tokio-tungstenite: it records the CLOCK_MONOTONIC instant each binary frame arrives, and on
//! its own timer (every 97 ms, not tied to frame arrival) sends Fireworks transcription
//! messages whose words are `w<seq>`, recording the instants just before and just after the
//! write. In the element's process a pad probe on fireworksstt's sink pad stamps each buffer
//! as it enters the element, a bus sync handler stamps each transcript message as it is
//! posted, and a pad probe on the src pad stamps each text buffer. CLOCK_MONOTONIC is one
//! clock for every process of the machine, so the stamps of the two processes compare
//! directly. Message latencies are counted from the instant the server's write returned
//! (the bytes are then in the element's socket).
//!
//! The source is `appsrc is-live=true`, fed by a thread that pushes buffer k when its last
//! sample would have been captured (t0 + (k+1)·duration); `fakesink sync=false`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use gst::prelude::*;
use serde_json::{json, Value};

fn main() {
    let args = Args::from_env();
    maybe_serve(&args);
    match args.get("--role").as_deref() {
        Some("probe") => role_probe(&args),
        _ => driver(&args),
    }
}

// ------------------------------------------------------------------------------------------
// The probe server.

fn transcript_message(segment: u64, words: &[(u64, f64)], is_final: bool) -> String {
    let ws: Vec<Value> = words
        .iter()
        .map(|(seq, end)| {
            json!({"word": format!("w{seq}"), "is_final": is_final, "probability": 0.9,
                   "hallucination_score": 0.0, "language": "en",
                   "start": (end - 0.05).max(0.0), "end": end})
        })
        .collect();
    let text = words
        .iter()
        .map(|(seq, _)| format!("w{seq}"))
        .collect::<Vec<_>>()
        .join(" ");
    json!({"task": "transcribe", "language": "en", "text": text,
           "segments": [{"id": segment, "text": text, "words": ws,
                         "start": words.first().map(|w| (w.1 - 0.05).max(0.0)),
                         "end": words.last().map(|w| w.1)}]})
    .to_string()
}

fn role_probe(args: &Args) {
    let dir = PathBuf::from(args.get("--log-dir").expect("--log-dir"));
    let period = Duration::from_millis(args.get_or("--message-every-ms", 97));
    let words_per_utterance: usize = args.get_or("--words-per-utterance", 5);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "probe listening on ws://127.0.0.1:{}/v1",
            listener.local_addr().unwrap().port()
        );
        let mut conn = 0u32;
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let path = dir.join(format!("conn-{conn}.json"));
            conn += 1;
            tokio::spawn(probe_connection(tcp, path, period, words_per_utterance));
        }
    });
}

async fn probe_connection(
    tcp: tokio::net::TcpStream,
    log_path: PathBuf,
    period: Duration,
    words_per_utterance: usize,
) {
    use tokio_tungstenite::tungstenite::Message;
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let mut frames: Vec<(u64, u64)> = Vec::with_capacity(1 << 16);
    let mut messages: Vec<(u64, bool, u64, u64)> = Vec::new();
    let mut bytes = 0u64;
    let mut seq = 0u64;
    let mut segment = 0u64;
    let mut words: Vec<(u64, f64)> = Vec::new();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = rx.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    let t = now_ns();
                    bytes += b.len() as u64;
                    frames.push((bytes, t));
                }
                Some(Ok(Message::Text(t))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                        if let Some(id) = v.get("checkpoint_id") {
                            let echo = json!({"checkpoint_id": id}).to_string();
                            if tx.send(Message::text(echo)).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
            _ = tick.tick() => {
                if bytes < 3200 {
                    continue;
                }
                seq += 1;
                words.push((seq, bytes as f64 / 32_000.0));
                let is_final = words.len() >= words_per_utterance;
                let text = transcript_message(segment, &words, is_final);
                let pre = now_ns();
                if tx.send(Message::text(text)).await.is_err() {
                    break;
                }
                let post = now_ns();
                messages.push((seq, is_final, pre, post));
                if is_final {
                    words.clear();
                    segment += 1;
                }
            }
        }
    }
    let log = json!({"frames": frames, "messages": messages});
    let tmp = log_path.with_extension("tmp");
    std::fs::write(&tmp, log.to_string()).unwrap();
    std::fs::rename(&tmp, &log_path).unwrap();
}

// ------------------------------------------------------------------------------------------
// The element side.

#[derive(Default)]
struct Stamps {
    /// (end sample of the buffer, instant it entered the element)
    entries: Vec<(u64, u64)>,
    /// (seq of the last word in the message's text, final, instant posted)
    bus: Vec<(u64, bool, u64)>,
    /// (seq of the word, instant pushed on src)
    src: Vec<(u64, u64)>,
    errors: Vec<String>,
    /// Finals promoted from interim text at EOS.
    promoted: usize,
}

fn word_seq(word: &str) -> Option<u64> {
    word.trim().strip_prefix('w')?.parse().ok()
}

struct RunResult {
    buffer_ms: u64,
    chunk_ms: u64,
    buffer_to_wire: Vec<f64>,
    frame_to_wire: Vec<f64>,
    msg_to_bus_post: Vec<f64>,
    msg_to_bus_pre: Vec<f64>,
    final_to_src: Vec<f64>,
    /// Input buffers that entered the element after the final was posted, up to and
    /// including the one whose processing pushed its text (1 = "at the next buffer").
    final_buffers_waited: Vec<f64>,
    promoted: usize,
    /// Messages posted more than once: (seq, [(final, seconds after the first buffer)]).
    repeated: Vec<(u64, Vec<(bool, f64)>)>,
    /// The slowest messages: (ms, seq, final, seconds after the first buffer).
    slowest: Vec<(f64, u64, bool, f64)>,
    lost_frames: usize,
    others_cores: f64,
    errors: Vec<String>,
    source_lateness: Vec<f64>,
}

fn run_config(
    probe_url: &str,
    log_path: &std::path::Path,
    audio: &gst::Buffer,
    buffer_ms: u64,
    chunk_ms: u64,
    seconds: u64,
) -> RunResult {
    let pipeline = gst::Pipeline::new();
    let buffer_ns = buffer_ms * 1_000_000;
    let src = gst_app::AppSrc::builder()
        .caps(&audio_caps())
        .format(gst::Format::Time)
        .is_live(true)
        .min_latency(buffer_ns as i64)
        .max_bytes(0)
        .build();
    let stt = gst::ElementFactory::make("fireworksstt")
        .property("base-url", probe_url)
        .property("api-key", "bench-key")
        .property("chunk-duration", chunk_ms as u32)
        .build()
        .unwrap();
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .property("silent", true)
        .build()
        .unwrap();
    pipeline.add_many([src.upcast_ref(), &stt, &sink]).unwrap();
    gst::Element::link_many([src.upcast_ref(), &stt, &sink]).unwrap();

    let stamps = Arc::new(Mutex::new(Stamps::default()));
    stamps.lock().unwrap().entries.reserve(200_000);
    let s = stamps.clone();
    stt.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let t = now_ns();
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                let end = b.offset() + b.size() as u64 / 2;
                s.lock().unwrap().entries.push((end, t));
            }
            gst::PadProbeReturn::Ok
        });
    let s = stamps.clone();
    stt.static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let t = now_ns();
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                if let Ok(map) = b.map_readable() {
                    if let Some(seq) = std::str::from_utf8(&map).ok().and_then(word_seq) {
                        s.lock().unwrap().src.push((seq, t));
                    }
                }
            }
            gst::PadProbeReturn::Ok
        });
    let s = stamps.clone();
    let bus = pipeline.bus().unwrap();
    bus.set_sync_handler(move |_, msg| {
        let t = now_ns();
        match msg.view() {
            gst::MessageView::Element(e) => {
                if let Some(st) = e.structure() {
                    if st.name() == "fireworksstt/transcript" {
                        let text = st.get::<String>("text").unwrap_or_default();
                        let fin = st.get::<bool>("final").unwrap_or(false);
                        // A final the element made itself at EOS from pending interim text
                        // (`promoted`) answers no server message: it is counted apart.
                        if st.get::<bool>("promoted").unwrap_or(false) {
                            s.lock().unwrap().promoted += 1;
                        } else if let Some(seq) = text.split(' ').next_back().and_then(word_seq) {
                            s.lock().unwrap().bus.push((seq, fin, t));
                        }
                    }
                }
                gst::BusSyncReply::Drop
            }
            gst::MessageView::Error(e) => {
                s.lock().unwrap().errors.push(e.error().to_string());
                gst::BusSyncReply::Pass
            }
            _ => gst::BusSyncReply::Pass,
        }
    });

    pipeline.set_state(gst::State::Playing).unwrap();
    let bytes = (buffer_ms as usize) * BYTES_PER_MS;
    let n = (seconds * 1000 / buffer_ms) as usize;
    let total = audio.size();
    let feeder_src = src.clone();
    let audio = audio.clone();
    let feeder = std::thread::Builder::new()
        .name("bench-live-src".into())
        .spawn(move || {
            let mut lateness = Vec::with_capacity(n);
            let t0 = now_ns();
            for k in 0..n {
                let deadline = t0 + (k as u64 + 1) * buffer_ns;
                sleep_until_ns(deadline);
                lateness.push((now_ns() - deadline) as f64 / 1e6);
                let offset = (k * bytes) % (total - bytes);
                let offset = offset - offset % 2;
                let mut b = sub_buffer(&audio, offset, bytes, k as u64 * buffer_ns);
                // Offsets count the samples sent so far (the sink probe keys on them).
                b.get_mut().unwrap().set_offset((k * bytes / 2) as u64);
                if feeder_src.push_buffer(b).is_err() {
                    break;
                }
            }
            let _ = feeder_src.end_of_stream();
            lateness
        })
        .unwrap();
    let source_lateness = feeder.join().unwrap();
    let _ = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).unwrap();

    // The probe writes its log when the connection ends.
    for _ in 0..500 {
        if log_path.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let log: Value =
        serde_json::from_str(&std::fs::read_to_string(log_path).expect("probe log")).unwrap();
    let frames: Vec<(u64, u64)> = log["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f[0].as_u64().unwrap(), f[1].as_u64().unwrap()))
        .collect();
    let messages: Vec<(u64, bool, u64, u64)> = log["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m[0].as_u64().unwrap(),
                m[1].as_bool().unwrap(),
                m[2].as_u64().unwrap(),
                m[3].as_u64().unwrap(),
            )
        })
        .collect();
    let stamps = stamps.lock().unwrap();

    // 1. Buffer in → its last byte on the wire; and the frame-completing buffers alone.
    let mut buffer_to_wire = Vec::new();
    let mut frame_to_wire = Vec::new();
    let mut lost_frames = 0;
    let mut fi = 0;
    let mut prev_end_bytes = 0u64;
    for &(end_sample, entered) in &stamps.entries {
        let end_bytes = end_sample * 2;
        while fi < frames.len() && frames[fi].0 < end_bytes {
            fi += 1;
        }
        // The last frame holds the tail left at EOS: it goes out at drain, not by streaming.
        if fi + 1 >= frames.len() {
            lost_frames += 1;
            continue;
        }
        let (frame_end, arrived) = frames[fi];
        buffer_to_wire.push((arrived as f64 - entered as f64) / 1e6);
        if frame_end <= end_bytes && frame_end > prev_end_bytes {
            frame_to_wire.push((arrived as f64 - entered as f64) / 1e6);
        }
        prev_end_bytes = end_bytes;
    }

    // 2. Message written → bus message posted.
    let sent: HashMap<u64, (bool, u64, u64)> = messages
        .iter()
        .map(|&(seq, fin, pre, post)| (seq, (fin, pre, post)))
        .collect();
    let mut msg_to_bus_post = Vec::new();
    let mut msg_to_bus_pre = Vec::new();
    let mut slowest = Vec::new();
    let first_entry = stamps.entries.first().map_or(0, |e| e.1);
    for &(seq, fin, t) in &stamps.bus {
        if let Some(&(_, pre, post)) = sent.get(&seq) {
            msg_to_bus_post.push((t as f64 - post as f64) / 1e6);
            msg_to_bus_pre.push((t as f64 - pre as f64) / 1e6);
            slowest.push((
                (t - pre) as f64 / 1e6,
                seq,
                fin,
                (pre as f64 - first_entry as f64) / 1e9,
            ));
        }
    }
    // A message whose words appear in more than one bus message (a repeated final, say).
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for &(seq, _, _) in &stamps.bus {
        *seen.entry(seq).or_default() += 1;
    }
    let repeated: Vec<(u64, Vec<(bool, f64)>)> = seen
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(&seq, _)| {
            let posts = stamps
                .bus
                .iter()
                .filter(|b| b.0 == seq)
                .map(|b| (b.1, (b.2 as f64 - first_entry as f64) / 1e9))
                .collect();
            (seq, posts)
        })
        .collect();
    slowest.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
    slowest.truncate(3);

    // 3. Final written → first of its words pushed on src.
    let final_posted: HashMap<u64, u64> = stamps
        .bus
        .iter()
        .filter(|b| b.1)
        .map(|&(seq, _, t)| (seq, t))
        .collect();
    let mut final_buffers_waited = Vec::new();
    let mut first_push: HashMap<u64, u64> = HashMap::new();
    for &(seq, t) in &stamps.src {
        first_push.entry(seq).or_insert(t);
    }
    let mut final_to_src = Vec::new();
    let mut previous_final = 0u64;
    let mut finals: Vec<&(u64, bool, u64, u64)> = messages.iter().filter(|m| m.1).collect();
    finals.sort();
    for &&(seq, _, pre, _post) in &finals {
        let pushed = (previous_final + 1..=seq)
            .filter_map(|s| first_push.get(&s))
            .min();
        if let Some(&t) = pushed {
            final_to_src.push((t as f64 - pre as f64) / 1e6);
            if let Some(&posted) = final_posted.get(&seq) {
                let waited = stamps
                    .entries
                    .iter()
                    .filter(|&&(_, e)| e > posted && e <= t)
                    .count();
                final_buffers_waited.push(waited as f64);
            }
        }
        previous_final = seq;
    }

    RunResult {
        buffer_ms,
        chunk_ms,
        buffer_to_wire,
        frame_to_wire,
        msg_to_bus_post,
        msg_to_bus_pre,
        final_to_src,
        final_buffers_waited,
        promoted: stamps.promoted,
        repeated,
        slowest,
        lost_frames,
        others_cores: 0.0,
        errors: stamps.errors.clone(),
        source_lateness,
    }
}

fn driver(args: &Args) {
    let seconds: u64 = args.get_or("--seconds", 60);
    let configs: Vec<(u64, u64)> = args
        .get("--configs")
        .unwrap_or_else(|| "10:50,20:50,100:50".into())
        .split(',')
        .filter_map(|c| {
            let (b, ch) = c.split_once(':')?;
            Some((b.trim().parse().ok()?, ch.trim().parse().ok()?))
        })
        .collect();
    init_gst();
    println!("load average at start: {}", loadavg());
    let dir = std::env::temp_dir().join(format!("fireworksstt-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Start the probe server process.
    let exe = std::env::current_exe().unwrap();
    let mut probe = std::process::Command::new(exe)
        .args(["--role", "probe", "--log-dir", &path_str(&dir)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("probe starts");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(probe.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let probe_url = line.trim().rsplit(' ').next().unwrap().to_string();
    println!("probe server: {probe_url} (pid {})", probe.id());

    let audio = fireworks_test_server::synthesize_speech_like(Duration::from_secs(120), 7);
    let audio = gst::Buffer::from_mut_slice(audio.to_le_bytes());

    let mut results = Vec::new();
    for (i, &(buffer_ms, chunk_ms)) in configs.iter().enumerate() {
        println!(
            "running {seconds} s live: input buffers {buffer_ms} ms, chunk-duration {chunk_ms} ms ..."
        );
        let busy0 = system_busy_s();
        let own0 = cpu_self().total() + process_cpu_ns(&probe.id().to_string()) as f64 / 1e9;
        let w0 = now_ns();
        let mut r = run_config(
            &probe_url,
            &dir.join(format!("conn-{i}.json")),
            &audio,
            buffer_ms,
            chunk_ms,
            seconds,
        );
        let own1 = cpu_self().total() + process_cpu_ns(&probe.id().to_string()) as f64 / 1e9;
        r.others_cores =
            ((system_busy_s() - busy0) - (own1 - own0)).max(0.0) / ((now_ns() - w0) as f64 / 1e9);
        results.push(r);
    }
    let _ = probe.kill();
    let _ = probe.wait();
    let _ = std::fs::remove_dir_all(&dir);

    println!();
    for r in &results {
        let chunk = r.chunk_ms as f64;
        let buf = r.buffer_ms as f64;
        println!(
            "input buffers {} ms, chunk-duration {} ms (other processes used {:.2} cores meanwhile; {} errors{}):",
            r.buffer_ms,
            r.chunk_ms,
            r.others_cores,
            r.errors.len(),
            if r.errors.is_empty() {
                String::new()
            } else {
                format!(": {:?}", r.errors)
            }
        );
        println!(
            "  source pacing lateness (bench thread wake-up)     {}",
            summary_ms(&r.source_lateness)
        );
        println!(
            "  buffer in → last byte at server                   {}   target p99 <= {:.0} ms: {}",
            summary_ms(&r.buffer_to_wire),
            chunk + 2.0,
            verdict(p(&r.buffer_to_wire, 99.0) <= chunk + 2.0)
        );
        println!(
            "  frame-completing buffer in → frame at server      {}",
            summary_ms(&r.frame_to_wire)
        );
        println!(
            "  server message write → bus message posted         {}   target p99 <= 1 ms: {}",
            summary_ms(&r.msg_to_bus_pre),
            verdict(p(&r.msg_to_bus_pre, 99.0) <= 1.0)
        );
        println!(
            "    (counted from after the server's write returned) {}",
            summary_ms(&r.msg_to_bus_post)
        );
        let slow: Vec<String> = r
            .slowest
            .iter()
            .map(|(ms, seq, fin, at)| {
                format!(
                    "{ms:.2} ms ({} #{seq}, {at:.2} s after the first buffer)",
                    if *fin { "final" } else { "interim" }
                )
            })
            .collect();
        println!(
            "    slowest: {}; finals promoted from interims at EOS (not counted): {}",
            slow.join("; "),
            r.promoted
        );
        for (seq, posts) in &r.repeated {
            println!("    words of message #{seq} were posted {} times (final?, s after the first buffer): {posts:?}", posts.len());
        }
        let waited_max = r.final_buffers_waited.iter().cloned().fold(0.0, f64::max);
        println!(
            "  server final write → first text buffer on src     {}   (one buffer period = {:.0} ms)",
            summary_ms(&r.final_to_src),
            buf,
        );
        println!(
            "    input buffers entered between the final's bus post and its text push: max {:.0} ({} finals)   target: at the next buffer (<= 1): {}",
            waited_max,
            r.final_buffers_waited.len(),
            verdict(waited_max <= 1.0 && !r.final_buffers_waited.is_empty())
        );
        if r.lost_frames > 1 {
            println!(
                "  ({} buffers had no frame on the wire before EOS)",
                r.lost_frames
            );
        }
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

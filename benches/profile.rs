// SPDX-License-Identifier: MPL-2.0
//! Where the element's CPU goes, in numbers a fix can be checked against:
//!
//! 1. The server-message path, message by message, on messages recorded from the test server
//!    for speech-like audio: JSON → `serde_json::Value`, `parse_server_message`, and the
//!    transcript state machine, each in ns per message; and, for comparison, a borrowed typed
//!    parse of the same messages (a sketch of the suggested fix, not the element's code).
//! 2. Allocations (Rust global allocator; GLib's own g_malloc calls are not seen here) per input
//!    buffer on the streaming thread and per frame / per server message on the runtime
//!    threads, with the element in a pipeline against the test server (non-live).
//!
//!     cargo bench --bench profile -- [--minutes 10] [--buffer-ms 10]
//!
//! Roles (internal): `--role serve`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use common::*;
use futures_util::{SinkExt, StreamExt};
use gst::prelude::*;

// ------------------------------------------------------------------------------------------
// Counting allocator: allocations and bytes per thread slot (slots are handed out on a
// thread's first allocation; slot → tid is kept so names can be looked up in /proc).

const SLOTS: usize = 256;
struct Counting;
static ALLOCS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static BYTES: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static TIDS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
/// Counting is switched off while the message path is timed (it costs a few ns per call).
static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
/// Bytes currently allocated through the Rust allocator (all threads).
static LIVE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
thread_local! {
    static SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

fn slot() -> usize {
    if !COUNTING.load(Ordering::Relaxed) {
        return SLOTS - 1;
    }
    SLOT.try_with(|s| {
        let mut v = s.get();
        if v == usize::MAX {
            v = NEXT_SLOT.fetch_add(1, Ordering::Relaxed).min(SLOTS - 1);
            // SAFETY: gettid has no preconditions.
            TIDS[v].store(unsafe { libc::gettid() } as u64, Ordering::Relaxed);
            s.set(v);
        }
        v
    })
    .unwrap_or(SLOTS - 1)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let s = slot();
        ALLOCS[s].fetch_add(1, Ordering::Relaxed);
        BYTES[s].fetch_add(layout.size() as u64, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let s = slot();
        ALLOCS[s].fetch_add(1, Ordering::Relaxed);
        BYTES[s].fetch_add(layout.size() as u64, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let s = slot();
        ALLOCS[s].fetch_add(1, Ordering::Relaxed);
        BYTES[s].fetch_add(new_size as u64, Ordering::Relaxed);
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (allocations, bytes) by thread class.
fn allocs_by_class() -> std::collections::BTreeMap<String, (u64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    let n = NEXT_SLOT.load(Ordering::Relaxed).min(SLOTS);
    for i in 0..n {
        let tid = TIDS[i].load(Ordering::Relaxed);
        let name = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "exited".into());
        let e = out.entry(classify_thread(&name)).or_insert((0, 0));
        e.0 += ALLOCS[i].load(Ordering::Relaxed);
        e.1 += BYTES[i].load(Ordering::Relaxed);
    }
    out
}

fn main() {
    let args = Args::from_env();
    maybe_serve(&args);
    let minutes: u64 = args.get_or("--minutes", 10);
    let buffer_ms: usize = args.get_or("--buffer-ms", 10);
    println!("load average at start: {}", loadavg());
    let (audio_path, _) = speech_audio_file(60, 1);
    let all = std::fs::read(&audio_path).expect("audio");
    let audio = all[..(minutes as usize * 60 * 32_000).min(all.len())].to_vec();
    drop(all);
    let server = ServerProcess::start(&["--close-after-echo"]);

    message_path(&server, &audio);
    allocations(&server, &audio, buffer_ms);
    replay_memory();
}

// ------------------------------------------------------------------------------------------
// 3. Memory held by the replay log per second of audio kept.
//
// A model of `client::handle::StreamClient::push_audio` (frames cut from one BytesMut with
// `split_to(..).freeze()`, which shares the BytesMut's allocation) feeding a log that keeps
// the newest `kept` frames, against the same log fed with exact-size copies of each frame.

fn replay_memory() {
    use bytes::{Buf, Bytes, BytesMut};
    use std::collections::VecDeque;
    let chunk = 1600usize;
    let kept_frames = 80usize; // 4 s of 50 ms frames
    let kept_bytes = (kept_frames * chunk) as f64;
    println!();
    println!(
        "3. Replay log: heap held per byte of audio kept ({} s of 50 ms frames kept)",
        kept_frames / 20
    );
    for buffer_ms in [10usize, 20, 100] {
        let input = vec![0u8; buffer_ms * BYTES_PER_MS];
        for exact in [false, true] {
            let before = LIVE.load(Ordering::Relaxed);
            let mut pending = BytesMut::with_capacity(chunk * 2);
            let mut log: VecDeque<Bytes> = VecDeque::new();
            for _ in 0..(20_000 / buffer_ms) {
                pending.extend_from_slice(&input);
                while pending.len() >= chunk {
                    let frame = if exact {
                        let f = Bytes::copy_from_slice(&pending[..chunk]);
                        pending.advance(chunk);
                        f
                    } else {
                        pending.split_to(chunk).freeze()
                    };
                    log.push_back(frame);
                    if log.len() > kept_frames {
                        log.pop_front();
                    }
                }
            }
            let held = (LIVE.load(Ordering::Relaxed) - before) as f64;
            println!(
                "   {buffer_ms:>3} ms input buffers, {:<44} {:>5.2} bytes of heap per byte of audio kept",
                if exact {
                    "exact copy of each frame (suggested):"
                } else {
                    "split_to().freeze() from the pending BytesMut:"
                },
                held / kept_bytes
            );
            drop(log);
            drop(pending);
        }
    }
}

// ------------------------------------------------------------------------------------------
// 1. The server-message path.

fn record_messages(url: &str, audio: &[u8]) -> Vec<String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let data = bytes::Bytes::copy_from_slice(audio);
    rt.block_on(async move {
        let mut request = streaming_url(url).into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", "bench-key".parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let (mut tx, mut rx) = ws.split();
        let reader = async {
            let mut out = Vec::new();
            while let Some(Ok(m)) = rx.next().await {
                match m {
                    Message::Text(t) => {
                        let done = t.as_str().contains("\"checkpoint_id\"");
                        out.push(t.as_str().to_string());
                        if done {
                            break;
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            out
        };
        let writer = async {
            for off in (0..data.len()).step_by(1600) {
                let end = (off + 1600).min(data.len());
                tx.send(Message::Binary(data.slice(off..end)))
                    .await
                    .unwrap();
            }
            tx.send(Message::text(r#"{"checkpoint_id":"final"}"#))
                .await
                .unwrap();
        };
        let (out, ()) = tokio::join!(reader, writer);
        out
    })
}

/// The suggested direction: borrow strings from the message and skip unused fields.
#[allow(dead_code)]
#[derive(serde::Deserialize)]
struct TypedMessage<'a> {
    #[serde(borrow)]
    language: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    segments: Option<Vec<TypedSegment<'a>>>,
    #[serde(borrow)]
    checkpoint_id: Option<Cow<'a, str>>,
    error: Option<serde::de::IgnoredAny>,
}

#[allow(dead_code)]
#[derive(serde::Deserialize)]
struct TypedSegment<'a> {
    id: i64,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    words: Option<Vec<TypedWord<'a>>>,
    start: Option<f64>,
    end: Option<f64>,
}

#[allow(dead_code)]
#[derive(serde::Deserialize)]
struct TypedWord<'a> {
    #[serde(borrow)]
    word: Option<Cow<'a, str>>,
    is_final: Option<bool>,
    probability: Option<f64>,
    start: Option<f64>,
    end: Option<f64>,
    #[serde(borrow)]
    language: Option<Cow<'a, str>>,
}

/// Times `f` over all messages (counting off), after one counted pass; returns ns per message
/// and allocations per message.
fn time_per_message<F: FnMut(&str)>(messages: &[String], rounds: usize, mut f: F) -> (f64, f64) {
    let before: u64 = ALLOCS.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    for m in messages {
        f(m);
    }
    let allocs: u64 = ALLOCS
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum::<u64>()
        - before;
    COUNTING.store(false, Ordering::Relaxed);
    let t = Instant::now();
    for _ in 0..rounds {
        for m in messages {
            f(m);
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / (rounds * messages.len()) as f64;
    COUNTING.store(true, Ordering::Relaxed);
    (ns, allocs as f64 / messages.len() as f64)
}

fn message_path(server: &ServerProcess, audio: &[u8]) {
    use gstfireworks::protocol::{parse_server_message, ServerMessage, TranscriptState};
    let minutes = audio.len() as f64 / 32_000.0 / 60.0;
    let messages = record_messages(&server.base_url, audio);
    let bytes: usize = messages.iter().map(String::len).sum();
    let words: usize = messages.iter().map(|m| m.matches("\"word\"").count()).sum();
    println!();
    println!(
        "1. Server messages for {minutes:.0} min of speech-like audio: {} messages ({:.0} per audio-hour), {:.0} bytes and {:.1} words each on average",
        messages.len(),
        messages.len() as f64 / minutes * 60.0,
        bytes as f64 / messages.len() as f64,
        words as f64 / messages.len() as f64
    );
    let rounds = 20;
    let per_hour = messages.len() as f64 / minutes * 60.0;
    let report = |what: &str, (ns, allocs): (f64, f64)| {
        println!(
            "   {what:<56} {:>7.2} µs/message = {:>6.3} s CPU per audio-hour; {:>5.0} allocations/message",
            ns / 1000.0,
            ns * per_hour / 1e9,
            allocs
        );
    };
    report(
        "serde_json::from_str::<Value> alone",
        time_per_message(&messages, rounds, |m| {
            std::hint::black_box(serde_json::from_str::<serde_json::Value>(m).ok());
        }),
    );
    report(
        "protocol::parse_server_message (typed, one pass)",
        time_per_message(&messages, rounds, |m| {
            std::hint::black_box(parse_server_message(m).ok());
        }),
    );
    let parsed: Vec<_> = messages
        .iter()
        .filter_map(|m| match parse_server_message(m) {
            Ok(ServerMessage::Transcription(t)) => Some(t),
            _ => None,
        })
        .collect();
    let run_state = |parsed: &[gstfireworks::protocol::TranscriptionMessage]| {
        let mut state = TranscriptState::new();
        state.begin_connection();
        let mut events = 0usize;
        for p in parsed {
            if let Ok(e) = state.handle(p) {
                events += e.len();
            }
        }
        events
    };
    let before: u64 = ALLOCS.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    let events = run_state(&parsed);
    let allocs: u64 = ALLOCS
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum::<u64>()
        - before;
    COUNTING.store(false, Ordering::Relaxed);
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(run_state(&parsed));
    }
    let ns = t.elapsed().as_nanos() as f64 / (rounds * parsed.len()) as f64;
    COUNTING.store(true, Ordering::Relaxed);
    report(
        &format!("TranscriptState::handle ({events} events)"),
        (ns, allocs as f64 / parsed.len() as f64),
    );
    report(
        "for comparison: borrowed typed serde parse (suggested)",
        time_per_message(&messages, rounds, |m| {
            std::hint::black_box(serde_json::from_str::<TypedMessage>(m).ok());
        }),
    );
}

// ------------------------------------------------------------------------------------------
// 2. Allocations in the running element.

fn allocations(server: &ServerProcess, audio: &[u8], buffer_ms: usize) {
    init_gst();
    let pipeline = gst::Pipeline::new();
    let stt = gst::ElementFactory::make("fireworksstt")
        .property("base-url", &server.base_url)
        .property("api-key", "bench-key")
        .build()
        .unwrap();
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .property("silent", true)
        .build()
        .unwrap();
    pipeline.add_many([&stt, &sink]).unwrap();
    stt.link(&sink).unwrap();
    let messages = std::sync::Arc::new(AtomicU64::new(0));
    let m = messages.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if let gst::MessageView::Element(_) = msg.view() {
            m.fetch_add(1, Ordering::Relaxed);
        }
        gst::BusSyncReply::Drop
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let pad = feeding_pad("bench-src", &stt.static_pad("sink").unwrap(), false, 0);
    start_stream(&pad, "bench-profile");
    let whole = gst::Buffer::from_slice(audio.to_vec());
    let bytes = buffer_ms * BYTES_PER_MS;

    // Let the connection come up on the first buffer, then count from the second.
    pad.push(sub_buffer(&whole, 0, bytes, 0)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = allocs_by_class();
    let threads_before = ThreadGroups::snapshot(classify_thread);
    let mut buffers = 0u64;
    let mut offset = bytes;
    while offset + bytes <= whole.size() {
        let pts = (offset as u64 / 2) * 1_000_000_000 / SAMPLE_RATE;
        pad.push(sub_buffer(&whole, offset, bytes, pts)).unwrap();
        offset += bytes;
        buffers += 1;
    }
    pad.push_event(gst::event::Eos::new());
    let after = allocs_by_class();
    let threads = ThreadGroups::snapshot(classify_thread).since(&threads_before);
    pipeline.set_state(gst::State::Null).unwrap();
    let frames = (offset - bytes) as f64 / 1600.0;
    let msgs = messages.load(Ordering::Relaxed) as f64;

    // The same pushes into fakesink alone: what the scaffold allocates.
    let scaffold = gst::Pipeline::new();
    let sink2 = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .property("silent", true)
        .build()
        .unwrap();
    scaffold.add(&sink2).unwrap();
    scaffold.set_state(gst::State::Playing).unwrap();
    let pad2 = feeding_pad("bench-src2", &sink2.static_pad("sink").unwrap(), false, 0);
    start_stream(&pad2, "bench-profile-scaffold");
    let s_before = allocs_by_class();
    let mut offset2 = bytes;
    while offset2 + bytes <= whole.size() {
        pad2.push(sub_buffer(&whole, offset2, bytes, 0)).unwrap();
        offset2 += bytes;
    }
    let s_after = allocs_by_class();
    scaffold.set_state(gst::State::Null).unwrap();

    println!();
    println!(
        "2. Rust allocations in the element, non-live, {buffer_ms} ms input buffers: {buffers} buffers, {frames:.0} frames of 1600 bytes, {msgs:.0} element messages posted"
    );
    for (class, (a, b)) in &after {
        let (a0, b0) = before.get(class).cloned().unwrap_or((0, 0));
        let (sa0, _) = s_before.get(class).cloned().unwrap_or((0, 0));
        let (sa1, _) = s_after.get(class).cloned().unwrap_or((0, 0));
        let da = (a - a0) as f64;
        let db = (b - b0) as f64;
        if da < 1.0 {
            continue;
        }
        if class.starts_with("tokio") {
            println!(
                "   {class:<40} {da:>9.0} allocations, {:.1} per element message posted (all of them divided by {msgs:.0}; the {frames:.0} frames themselves allocate next to nothing), {:.0} KiB",
                da / msgs.max(1.0),
                db / 1024.0
            );
        } else {
            println!(
                "   {class:<40} {da:>9.0} allocations ({:.2} per input buffer; the scaffold alone: {:.2}), {:.0} KiB",
                da / buffers as f64,
                (sa1 - sa0) as f64 / buffers as f64,
                db / 1024.0
            );
        }
    }
    for t in threads.0.values() {
        println!(
            "   {:<40} {:>6.3} s CPU, {:.3} voluntary + {:.3} involuntary context switches per frame",
            t.name,
            t.cpu_ns as f64 / 1e9,
            t.voluntary_switches as f64 / frames,
            t.involuntary_switches as f64 / frames
        );
    }
}

// SPDX-License-Identifier: MPL-2.0
//! CPU per audio-hour, and RSS over the hour: one hour of speech-like test audio, non-live,
//! through `fireworksstt` to the test server, compared in the same run with a bare
//! tokio-tungstenite client that sends the same 50 ms frames (the practical floor) and with the
//! reference Python client (`livekit-plugins-fireworksai`), against the same server process.
//!
//!     cargo bench --bench cpu -- [--minutes 60] [--buffers-ms 10,100] [--repeat 3]
//!                                [--python PYTHON] [--no-python]
//!
//! PYTHON is the interpreter of the venv benches/setup-reference-client.sh made: by default
//! `$FIREWORKS_BENCH_PYTHON`, else `~/.cache/fireworksstt/bench-venv/bin/python` (as that script
//! and benches/run-all.sh default to); without it the Python client is skipped.
//!
//! Every client runs in a child process of its own; the server runs in another. A client's CPU
//! is taken twice: by the child itself around the streaming part only (getrusage, after the
//! audio is loaded and, for Python, after the imports), and for the whole child process by
//! wait4. The server's CPU during each run is reported apart.
//!
//! Roles (internal): `--role serve|element|bare`.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use common::*;
use futures_util::{SinkExt, StreamExt};
use gst::prelude::*;
use serde_json::{json, Value};

fn main() {
    let args = Args::from_env();
    maybe_serve(&args);
    match args.get("--role").as_deref() {
        Some("element") => role_element(&args),
        Some("bare") => role_bare(&args),
        _ => driver(&args),
    }
}

// ------------------------------------------------------------------------------------------
// The element (or, with --scaffold, the same pipeline without it).

#[derive(Default)]
struct BusTally {
    finals: Vec<String>,
    interims: u64,
    other_element_messages: u64,
    errors: Vec<String>,
    warnings: Vec<String>,
}

fn role_element(args: &Args) {
    let audio_path = args.get("--audio").expect("--audio");
    let base_url = args.get("--url").unwrap_or_default();
    let buffer_ms: usize = args.get_or("--buffer-ms", 10);
    let scaffold = args.flag("--scaffold");
    init_gst();

    let data = std::fs::read(&audio_path).expect("audio file");
    let total = data.len();
    let whole = gst::Buffer::from_mut_slice(data);

    let pipeline = gst::Pipeline::new();
    let (target, stt) = add_branch(&pipeline, &base_url, scaffold);
    let tally = Arc::new(Mutex::new(BusTally::default()));
    let t = tally.clone();
    // An application that reads the bus: here, on the posting thread, without a main loop.
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        let mut t = t.lock().unwrap();
        match msg.view() {
            gst::MessageView::Element(e) => match e.structure() {
                Some(s) if s.name() == "fireworksstt/transcript" => {
                    if s.get::<bool>("final").unwrap_or(false) {
                        t.finals.push(s.get::<String>("text").unwrap_or_default());
                    } else {
                        t.interims += 1;
                    }
                }
                _ => t.other_element_messages += 1,
            },
            gst::MessageView::Error(e) => t.errors.push(e.error().to_string()),
            gst::MessageView::Warning(w) => t.warnings.push(w.error().to_string()),
            _ => {}
        }
        gst::BusSyncReply::Drop
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let pad = feeding_pad("bench-src", &target, false, 0);
    start_stream(&pad, "bench-cpu");

    let bytes = buffer_ms * BYTES_PER_MS;
    let five_min = 5 * 60 * 1000 / buffer_ms;
    let rss_start = rss_bytes();
    let mut rss_samples: Vec<(f64, u64)> = Vec::new();
    let threads_start = ThreadGroups::snapshot(classify_thread);
    let cpu_start = cpu_self();
    let wall_start = now_ns();
    let mut pushed = 0usize;
    let mut offset = 0;
    while offset + bytes <= total {
        let pts = (offset as u64 / 2) * 1_000_000_000 / SAMPLE_RATE;
        if pad.push(sub_buffer(&whole, offset, bytes, pts)).is_err() {
            break;
        }
        offset += bytes;
        pushed += 1;
        if pushed.is_multiple_of(five_min) {
            rss_samples.push((offset as f64 / 32_000.0 / 60.0, rss_bytes()));
        }
    }
    let eos_ok = pad.push_event(gst::event::Eos::new());
    let wall = (now_ns() - wall_start) as f64 / 1e9;
    let cpu = cpu_self().since(&cpu_start);
    let threads = ThreadGroups::snapshot(classify_thread).since(&threads_start);
    let rss_end = rss_bytes();
    let dropped: u32 = stt
        .as_ref()
        .map(|e| e.property::<u32>("dropped-audio"))
        .unwrap_or(0);
    pipeline.set_state(gst::State::Null).unwrap();

    let t = tally.lock().unwrap();
    let result = json!({
        "cpu_user": cpu.user, "cpu_sys": cpu.sys, "wall": wall,
        "audio_seconds": offset as f64 / 32_000.0, "buffers": pushed, "eos_ok": eos_ok,
        "finals": t.finals.len(), "hash": format!("{:016x}", fnv1a(&t.finals)),
        "interims": t.interims, "other_messages": t.other_element_messages,
        "errors": t.errors, "warnings": t.warnings.len(), "dropped_audio_ms": dropped,
        "rss_start": rss_start, "rss_end": rss_end,
        "rss_samples": rss_samples,
        "threads": threads.0.values().map(|s| json!({
            "class": s.name, "count": s.tid, "cpu_ns": s.cpu_ns,
            "voluntary": s.voluntary_switches, "involuntary": s.involuntary_switches,
        })).collect::<Vec<_>>(),
    });
    println!("RESULT {result}");
}

// ------------------------------------------------------------------------------------------
// The bare sender: the same frames over tokio-tungstenite, nothing else.

fn role_bare(args: &Args) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let audio_path = args.get("--audio").expect("--audio");
    let url = streaming_url(&args.get("--url").expect("--url"));
    // With --parse, every server message is also parsed into a serde_json::Value: the least
    // a client that reads transcripts must do.
    let parse = args.flag("--parse");
    let data = bytes::Bytes::from(std::fs::read(&audio_path).expect("audio file"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cpu_start = cpu_self();
    let wall_start = now_ns();
    let (messages, frames) = rt.block_on(async {
        let mut request = url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", "bench-key".parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let (mut tx, mut rx) = ws.split();
        let reader = async {
            let mut n = 0u64;
            while let Some(Ok(m)) = rx.next().await {
                match m {
                    Message::Text(t) => {
                        n += 1;
                        if parse {
                            std::hint::black_box(
                                serde_json::from_str::<serde_json::Value>(t.as_str()).ok(),
                            );
                        }
                        if t.as_str().contains("\"checkpoint_id\"") {
                            break;
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            n
        };
        let writer = async {
            let mut frames = 0u64;
            for off in (0..data.len()).step_by(1600) {
                let end = (off + 1600).min(data.len());
                tx.send(Message::Binary(data.slice(off..end)))
                    .await
                    .unwrap();
                frames += 1;
            }
            tx.send(Message::text(r#"{"checkpoint_id":"final"}"#))
                .await
                .unwrap();
            (tx, frames)
        };
        let (n, (mut tx, frames)) = tokio::join!(reader, writer);
        let _ = tx.close().await;
        (n, frames)
    });
    let wall = (now_ns() - wall_start) as f64 / 1e9;
    let cpu = cpu_self().since(&cpu_start);
    let result = json!({
        "cpu_user": cpu.user, "cpu_sys": cpu.sys, "wall": wall,
        "audio_seconds": data.len() as f64 / 32_000.0, "frames": frames, "messages": messages,
    });
    println!("RESULT {result}");
}

// ------------------------------------------------------------------------------------------
// The driver.

struct Outcome {
    name: String,
    result: Value,
    process_cpu: Cpu,
    max_rss_kib: u64,
    server_cpu_s: f64,
    /// CPU seconds other processes of the machine used during the run (noise).
    others_cpu_s: f64,
}

fn run(name: &str, cmd: &mut Command, server: &ServerProcess) -> Option<Outcome> {
    let before = server.cpu_ns();
    let busy_before = system_busy_s();
    let (code, process_cpu, max_rss_kib, out) = match run_child(cmd) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: could not run: {e}");
            return None;
        }
    };
    let server_cpu_s = (server.cpu_ns() - before) as f64 / 1e9;
    let others_cpu_s =
        (system_busy_s() - busy_before - server_cpu_s - process_cpu.total()).max(0.0);
    let result = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|l| serde_json::from_str::<Value>(l).ok());
    match result {
        Some(result) if code == 0 => Some(Outcome {
            name: name.to_string(),
            result,
            process_cpu,
            max_rss_kib,
            server_cpu_s,
            others_cpu_s,
        }),
        _ => {
            eprintln!("{name}: failed (exit {code}); output:\n{out}");
            None
        }
    }
}

fn driver(args: &Args) {
    let minutes: u64 = args.get_or("--minutes", 60);
    let repeat: usize = args.get_or("--repeat", 3);
    let buffers: Vec<usize> = args
        .get("--buffers-ms")
        .unwrap_or_else(|| "10,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let python = reference_python(args);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/reference_client.py");

    println!("load average at start: {}", loadavg());
    let t0 = now_ns();
    let (audio, utterances) = speech_audio_file(minutes, 1);
    let expected_hash = format!("{:016x}", fnv1a(&utterances));
    println!(
        "audio: {minutes} min of speech-like test audio (seed 1, {} utterances), {} \
         (prepared in {:.2} s)",
        utterances.len(),
        audio.display(),
        (now_ns() - t0) as f64 / 1e9
    );
    let server = ServerProcess::start(&["--close-after-echo"]);
    println!("server: {} (pid {})", server.base_url, server.pid());
    let exe = std::env::current_exe().unwrap();
    let audio_s = path_str(&audio);

    let mut outcomes: Vec<Outcome> = Vec::new();
    for rep in 0..repeat {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--role",
            "bare",
            "--audio",
            &audio_s,
            "--url",
            &server.base_url,
        ]);
        outcomes.extend(run(
            &format!("bare tokio-tungstenite #{rep}"),
            &mut cmd,
            &server,
        ));
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--role",
            "bare",
            "--parse",
            "--audio",
            &audio_s,
            "--url",
            &server.base_url,
        ]);
        outcomes.extend(run(
            &format!("bare + serde_json::Value parse #{rep}"),
            &mut cmd,
            &server,
        ));
        for &ms in &buffers {
            let mut cmd = Command::new(&exe);
            cmd.args([
                "--role",
                "element",
                "--audio",
                &audio_s,
                "--url",
                &server.base_url,
            ])
            .args(["--buffer-ms", &ms.to_string()]);
            outcomes.extend(run(
                &format!("fireworksstt, {ms} ms buffers #{rep}"),
                &mut cmd,
                &server,
            ));
            let mut cmd = Command::new(&exe);
            cmd.args(["--role", "element", "--scaffold", "--audio", &audio_s])
                .args(["--buffer-ms", &ms.to_string()]);
            outcomes.extend(run(
                &format!("scaffold (pad into fakesink), {ms} ms buffers #{rep}"),
                &mut cmd,
                &server,
            ));
        }
    }
    if let Some(python) = &python {
        for &ms in &buffers {
            let mut cmd = Command::new(python);
            cmd.arg(script)
                .args(["--audio", &audio_s, "--url", &server.base_url])
                .args(["--frame-ms", &ms.to_string()]);
            outcomes.extend(run(
                &format!("reference Python client, {ms} ms frames #0"),
                &mut cmd,
                &server,
            ));
        }
    }

    let hours = minutes as f64 / 60.0;
    println!();
    println!("Per run (CPU in seconds per audio-hour; 'stream' = measured by the client around the streaming part, 'process' = whole child process by wait4):");
    println!(
        "{:<48} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7}  check",
        "run", "wall s", "x realtm", "stream", "user", "sys", "process", "server", "maxRSS",
    );
    println!("(others = CPU seconds used by other processes of the machine during the run: noise)");
    for o in &outcomes {
        let r = &o.result;
        let f = |k: &str| r.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let wall = f("wall");
        let audio_seconds = f("audio_seconds");
        let check = if let Some(n) = r.get("finals").and_then(Value::as_u64) {
            let hash = r.get("hash").and_then(Value::as_str).unwrap_or("");
            if o.name.starts_with("scaffold") {
                "-".to_string()
            } else if n as usize == utterances.len() && hash == expected_hash {
                format!("{n} finals = expected")
            } else {
                format!("{n} finals, hash {hash} != {expected_hash}")
            }
        } else {
            format!(
                "{} messages",
                r.get("messages").and_then(Value::as_u64).unwrap_or(0)
            )
        };
        println!(
            "{:<48} {:>8.2} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {:>9.3} {:>8.3} {:>6}M  {}  (others {:.2} s)",
            o.name,
            wall,
            audio_seconds / wall,
            (f("cpu_user") + f("cpu_sys")) / hours,
            f("cpu_user") / hours,
            f("cpu_sys") / hours,
            o.process_cpu.total() / hours,
            o.server_cpu_s / hours,
            o.max_rss_kib / 1024,
            check,
            o.others_cpu_s
        );
        if let Some(errors) = r.get("errors").and_then(Value::as_array) {
            if !errors.is_empty() {
                println!("    errors: {errors:?}");
            }
        }
    }

    // Medians over the repeats.
    let median = |prefix: &str, key: &dyn Fn(&Outcome) -> f64| -> f64 {
        let v: Vec<f64> = outcomes
            .iter()
            .filter(|o| o.name.starts_with(prefix))
            .map(key)
            .collect();
        p(&v, 50.0)
    };
    let stream_cpu = |o: &Outcome| {
        (o.result["cpu_user"].as_f64().unwrap_or(f64::NAN)
            + o.result["cpu_sys"].as_f64().unwrap_or(f64::NAN))
            / hours
    };
    let process_cpu = |o: &Outcome| o.process_cpu.total() / hours;
    let xrt = |o: &Outcome| {
        o.result["audio_seconds"].as_f64().unwrap_or(f64::NAN)
            / o.result["wall"].as_f64().unwrap_or(f64::NAN)
    };
    let bare = median("bare tokio", &stream_cpu);
    let bare_process = median("bare tokio", &process_cpu);
    let bare_parse = median("bare + serde", &stream_cpu);
    println!();
    println!("Summary (medians; CPU s per audio-hour):");
    println!("  bare tokio-tungstenite sender: {bare:.3} s (whole process {bare_process:.3} s)");
    println!(
        "  bare sender that also parses every message into a serde_json::Value: {bare_parse:.3} s"
    );
    for &ms in &buffers {
        let vs_parse = |x: f64| x / bare_parse;
        let el = median(&format!("fireworksstt, {ms} ms"), &stream_cpu);
        let el_process = median(&format!("fireworksstt, {ms} ms"), &process_cpu);
        let sc = median(
            &format!("scaffold (pad into fakesink), {ms} ms"),
            &stream_cpu,
        );
        let speed = median(&format!("fireworksstt, {ms} ms"), &xrt);
        let py = median(&format!("reference Python client, {ms} ms"), &stream_cpu);
        let py_process = median(&format!("reference Python client, {ms} ms"), &process_cpu);
        println!("  {ms} ms input buffers:");
        println!(
            "    fireworksstt pipeline {el:.3} s (scaffold alone {sc:.3} s, element alone {:.3} s); whole process {el_process:.3} s; {speed:.0}x real time",
            el - sc
        );
        println!(
            "    vs bare sender: {:.2}x (element alone {:.2}x)   [target <= 1.5x]",
            el / bare,
            (el - sc) / bare
        );
        println!(
            "    vs bare sender + JSON parse: {:.2}x (element alone {:.2}x)",
            vs_parse(el),
            vs_parse(el - sc)
        );
        if py.is_finite() {
            println!(
                "    reference Python client {py:.3} s (whole process {py_process:.3} s): it uses {:.1}x the CPU of the fireworksstt pipeline ({:.1}x whole process)   [target >= 20x]",
                py / el,
                py_process / el_process
            );
        }
        println!("    real time factor {speed:.0}x   [target >= 3600x]");
    }

    // Memory over the hour, from the element runs.
    println!();
    println!("RSS over the audio (element process, raw VmRSS, MiB), first repeat:");
    for o in outcomes
        .iter()
        .filter(|o| o.name.starts_with("fireworksstt") && o.name.ends_with("#0"))
    {
        let samples = o.result["rss_samples"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mb = |v: &Value| v.as_f64().unwrap_or(0.0) / 1048576.0;
        let line: Vec<String> = samples
            .iter()
            .map(|s| format!("{:.0}min {:.1}", s[0].as_f64().unwrap_or(0.0), mb(&s[1])))
            .collect();
        let first = samples.first().map(|s| mb(&s[1])).unwrap_or(f64::NAN);
        let max = samples.iter().map(|s| mb(&s[1])).fold(f64::NAN, f64::max);
        println!(
            "  {}: start {:.1}, {}; end {:.1}; growth after the first 5 min {:.2} MiB [target <= 2 MB]",
            o.name,
            mb(&o.result["rss_start"]),
            line.join(", "),
            mb(&o.result["rss_end"]),
            max.max(mb(&o.result["rss_end"])) - first,
        );
    }

    println!();
    println!("Thread breakdown of the element runs (first repeat; on-CPU s per audio-hour, context switches per input buffer):");
    for o in outcomes.iter().filter(|o| {
        (o.name.starts_with("fireworksstt") || o.name.starts_with("scaffold"))
            && o.name.ends_with("#0")
    }) {
        let buffers = o.result["buffers"].as_f64().unwrap_or(1.0);
        println!("  {}:", o.name);
        for t in o.result["threads"].as_array().cloned().unwrap_or_default() {
            let cpu = t["cpu_ns"].as_f64().unwrap_or(0.0) / 1e9 / hours;
            if cpu < 0.0005 && t["voluntary"].as_f64().unwrap_or(0.0) < 1.0 {
                continue;
            }
            println!(
                "    {:<40} threads {:>2}  cpu {:>7.3} s  voluntary switches/buffer {:>6.3}  involuntary/buffer {:>6.3}",
                t["class"].as_str().unwrap_or(""),
                t["count"],
                cpu,
                t["voluntary"].as_f64().unwrap_or(0.0) / buffers,
                t["involuntary"].as_f64().unwrap_or(0.0) / buffers,
            );
        }
        if o.name.starts_with("fireworksstt") {
            println!(
                "    bus: {} finals, {} interims, {} other element messages, {} warnings, dropped-audio {} ms",
                o.result["finals"], o.result["interims"], o.result["other_messages"], o.result["warnings"], o.result["dropped_audio_ms"]
            );
        }
    }
}

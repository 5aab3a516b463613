// SPDX-License-Identifier: MPL-2.0
//! Concurrent live streams in one process: CPU, lateness and memory at 10, 100, 500 and 1,000
//! streams of real-time paced speech-like audio, each through its own fireworksstt to the test
//! server (one server process, release build, in a process of its own).
//!
//!     cargo bench --bench scale -- [--streams 10,100,500,1000] [--warmup 10] [--seconds 30]
//!                                  [--buffer-ms 20]
//!
//! Source: one bench thread ("bench-clock") that, every buffer period, pushes the next buffer
//! into each element's sink pad through a pad of its own (the way gst-check's harness does;
//! the pads answer the LATENCY query as live). Buffers share the memory of one hour of audio
//! loaded once (each stream starts at a different place in it), so making them costs little.
//! Its cost is measured alone by the same run with `fakesink` in place of `fireworksstt`
//! ("scaffold"), and the element's cost is the difference of the two processes' CPU.
//! Applications read the bus: a sync handler counts and drops every message.
//!
//! Lateness: how far behind its deadline each round of pushes (one buffer to every stream)
//! finished, and each element's `max-observed-delay` (audio sent → its words back, which
//! includes the server's own delay). Memory: RSS with all streams running, minus RSS before
//! the pipeline was built, per stream.
//!
//! Roles (internal): `--role serve|client`.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use gst::prelude::*;
use serde_json::{json, Value};

fn main() {
    let args = Args::from_env();
    maybe_serve(&args);
    match args.get("--role").as_deref() {
        Some("client") => role_client(&args),
        _ => driver(&args),
    }
}

#[derive(Default)]
struct Counts {
    finals: AtomicU64,
    interims: AtomicU64,
    other: AtomicU64,
    warnings: AtomicU64,
    errors: AtomicU64,
}

fn role_client(args: &Args) {
    let n: usize = args.get_or("--streams", 10);
    let warmup: u64 = args.get_or("--warmup", 10);
    let seconds: u64 = args.get_or("--seconds", 30);
    let buffer_ms: u64 = args.get_or("--buffer-ms", 20);
    let scaffold = args.flag("--scaffold");
    let base_url = args.get("--url").unwrap_or_default();
    let server_pid = args.get("--server-pid");
    let audio_path = args.get("--audio").expect("--audio");
    let nofile = raise_nofile_limit();
    init_gst();

    let data = std::fs::read(&audio_path).expect("audio file");
    let total = data.len();
    let whole = gst::Buffer::from_mut_slice(data);
    malloc_trim();
    let rss_base = rss_bytes();

    let pipeline = gst::Pipeline::new();
    let counts = Arc::new(Counts::default());
    let first_error = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    // Final lag: a final is due when its last word's end + text_timeout_seconds (1 s) of audio
    // has reached the server; arrival-time minus that is how late the whole loop runs
    // (chunking, queueing, wire, server, parsing).
    let lags = Arc::new(std::sync::Mutex::new(Vec::<f64>::with_capacity(1 << 16)));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = counts.clone();
    let fe = first_error.clone();
    let lg = lags.clone();
    let ms = measuring.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        match msg.view() {
            gst::MessageView::Element(e) => match e.structure() {
                Some(s) if s.name() == "fireworksstt/transcript" => {
                    if s.get::<bool>("final").unwrap_or(false) {
                        c.finals.fetch_add(1, Ordering::Relaxed);
                        if ms.load(Ordering::Relaxed) {
                            if let (Ok(end), Ok(arrival)) = (
                                s.get::<gst::ClockTime>("end"),
                                s.get::<gst::ClockTime>("arrival-time"),
                            ) {
                                let lag = arrival.nseconds() as f64 - end.nseconds() as f64 - 1e9;
                                lg.lock().unwrap().push(lag / 1e6);
                            }
                        }
                    } else {
                        c.interims.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    c.other.fetch_add(1, Ordering::Relaxed);
                }
            },
            gst::MessageView::Warning(w) if c.warnings.fetch_add(1, Ordering::Relaxed) < 3 => {
                fe.lock().unwrap().push(format!("warning: {}", w.error()));
            }
            gst::MessageView::Error(e) if c.errors.fetch_add(1, Ordering::Relaxed) < 3 => {
                fe.lock().unwrap().push(format!("error: {}", e.error()));
            }
            _ => {}
        }
        gst::BusSyncReply::Drop
    });

    let buffer_ns = buffer_ms * 1_000_000;
    let mut elements = Vec::with_capacity(n);
    let mut pads = Vec::with_capacity(n);
    for i in 0..n {
        let (target, stt) = add_branch(&pipeline, &base_url, scaffold);
        elements.extend(stt);
        pads.push((i, target));
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let pads: Vec<gst::Pad> = pads
        .into_iter()
        .map(|(i, target)| {
            let pad = feeding_pad(&format!("bench-src-{i}"), &target, true, buffer_ns);
            start_stream(&pad, &format!("stream-{i}"));
            pad
        })
        .collect();

    let bytes = buffer_ms as usize * BYTES_PER_MS;
    // Each stream starts ~79 s further into the hour of audio than the previous one.
    let starts: Vec<usize> = (0..n)
        .map(|i| (i * 79 * 32_000 + i * 7 * bytes) % (total - bytes) / 2 * 2)
        .collect();
    let warm_rounds = warmup * 1000 / buffer_ms;
    let rounds = seconds * 1000 / buffer_ms;
    let server_cpu = || server_pid.as_deref().map(process_cpu_ns).unwrap_or(0);

    let mut wake_late = Vec::with_capacity(rounds as usize);
    let mut done_late = Vec::with_capacity(rounds as usize);
    let mut flow_errors = 0u64;
    let mut measure_start = None;
    // PTS are running times: buffer k is pushed when its last sample would have been captured.
    let rt0 = pipeline
        .current_running_time()
        .map(|t| t.nseconds())
        .unwrap_or(0);
    let t0 = now_ns();
    for k in 0..warm_rounds + rounds {
        let deadline = t0 + (k + 1) * buffer_ns;
        sleep_until_ns(deadline);
        if k == warm_rounds {
            measuring.store(true, Ordering::Relaxed);
            measure_start = Some((
                system_busy_s(),
                now_ns(),
                cpu_self(),
                ThreadGroups::snapshot(classify_thread),
                server_cpu(),
                rss_bytes(),
                counts.finals.load(Ordering::Relaxed),
            ));
        }
        let woke = now_ns();
        for (i, pad) in pads.iter().enumerate() {
            let offset = (starts[i] + k as usize * bytes) % (total - bytes) / 2 * 2;
            if pad
                .push(sub_buffer(&whole, offset, bytes, rt0 + k * buffer_ns))
                .is_err()
            {
                flow_errors += 1;
            }
        }
        if k >= warm_rounds {
            wake_late.push((woke - deadline) as f64 / 1e6);
            done_late.push((now_ns() - deadline) as f64 / 1e6);
        }
    }
    measuring.store(false, Ordering::Relaxed);
    let end = now_ns();
    let busy_end = system_busy_s();
    let cpu_end = cpu_self();
    let threads_end = ThreadGroups::snapshot(classify_thread);
    let server_end = server_cpu();
    let rss_end = rss_bytes();
    let finals_end = counts.finals.load(Ordering::Relaxed);
    let (busy_start, start, cpu_start, threads_start, server_start, rss_start, finals_start) =
        measure_start.expect("measured");
    let wall = (end - start) as f64 / 1e9;
    let dropped: u64 = elements
        .iter()
        .map(|e| e.property::<u32>("dropped-audio") as u64)
        .sum();
    let max_delay = elements
        .iter()
        .map(|e| e.property::<u32>("max-observed-delay"))
        .max()
        .unwrap_or(0);
    let mut delays: Vec<f64> = elements
        .iter()
        .map(|e| e.property::<u32>("max-observed-delay") as f64)
        .collect();
    delays.sort_by(|a, b| a.partial_cmp(b).unwrap());
    malloc_trim();
    let rss_trimmed = rss_bytes();
    let threads = threads_end.since(&threads_start);
    let cpu = cpu_end.since(&cpu_start);
    let server_cpu_s = (server_end - server_start) as f64 / 1e9;
    let others_cores = ((busy_end - busy_start) - cpu.total() - server_cpu_s).max(0.0) / wall;
    let lags = lags.lock().unwrap().clone();
    let result = json!({
        "others_cores": others_cores,
        "final_lag_p50": p(&lags, 50.0), "final_lag_p99": p(&lags, 99.0),
        "final_lag_max": lags.iter().cloned().fold(f64::NAN, f64::max), "final_lags": lags.len(),
        "streams": n, "scaffold": scaffold, "nofile": nofile,
        "wall": wall, "cpu_user": cpu.user, "cpu_sys": cpu.sys,
        "server_cpu_s": server_cpu_s,
        "rss_base": rss_base, "rss_start": rss_start, "rss_end": rss_end, "rss_trimmed": rss_trimmed,
        "wake_late_p50": p(&wake_late, 50.0), "wake_late_p99": p(&wake_late, 99.0),
        "done_late_p50": p(&done_late, 50.0), "done_late_p99": p(&done_late, 99.0),
        "done_late_max": done_late.iter().cloned().fold(0.0, f64::max),
        "rounds": done_late.len(), "rounds_over_period": done_late.iter().filter(|&&d| d > buffer_ms as f64).count(),
        "flow_errors": flow_errors, "dropped_audio_ms": dropped,
        "max_observed_delay_ms": max_delay,
        "observed_delay_p50_ms": p(&delays, 50.0),
        "finals_in_window": finals_end - finals_start,
        "finals": counts.finals.load(Ordering::Relaxed), "interims": counts.interims.load(Ordering::Relaxed),
        "other_messages": counts.other.load(Ordering::Relaxed),
        "warnings": counts.warnings.load(Ordering::Relaxed), "errors": counts.errors.load(Ordering::Relaxed),
        "first_problems": *first_error.lock().unwrap(),
        "threads": threads.0.values().map(|s| json!({
            "class": s.name, "count": s.tid, "cpu_ns": s.cpu_ns,
            "voluntary": s.voluntary_switches, "involuntary": s.involuntary_switches,
        })).collect::<Vec<_>>(),
    });
    println!("RESULT {result}");
    // Tear down without draining: 1,000 sequential drains would only measure the server.
    pipeline.set_state(gst::State::Null).unwrap();
}

fn driver(args: &Args) {
    let streams: Vec<usize> = args
        .get("--streams")
        .unwrap_or_else(|| "10,100,500,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let warmup: u64 = args.get_or("--warmup", 10);
    let seconds: u64 = args.get_or("--seconds", 30);
    let buffer_ms: u64 = args.get_or("--buffer-ms", 20);
    let nofile = raise_nofile_limit();
    println!("load average at start: {}", loadavg());
    let (audio, _) = speech_audio_file(60, 1);
    let exe = std::env::current_exe().unwrap();
    println!(
        "{} ms buffers, {warmup} s warm-up then {seconds} s measured per run; open-file limit {nofile}",
        buffer_ms
    );
    let mut rows = Vec::new();
    for &n in &streams {
        let common_args = |cmd: &mut Command| {
            cmd.args(["--role", "client", "--streams", &n.to_string()])
                .args([
                    "--warmup",
                    &warmup.to_string(),
                    "--seconds",
                    &seconds.to_string(),
                ])
                .args([
                    "--buffer-ms",
                    &buffer_ms.to_string(),
                    "--audio",
                    &path_str(&audio),
                ]);
        };
        let server = ServerProcess::start(&[]);
        let mut cmd = Command::new(&exe);
        common_args(&mut cmd);
        cmd.args(["--url", &server.base_url, "--server-pid", &server.pid()]);
        println!("{n} streams: fireworksstt ...");
        let element = run_child(&mut cmd).ok().and_then(|(code, cpu, rss, out)| {
            let r = out.lines().find_map(|l| l.strip_prefix("RESULT "))?;
            if code != 0 {
                eprintln!("client exited with {code}");
            }
            Some((serde_json::from_str::<Value>(r).ok()?, cpu, rss))
        });
        let server_rss = server.rss_bytes();
        drop(server);
        let mut cmd = Command::new(&exe);
        common_args(&mut cmd);
        cmd.arg("--scaffold");
        println!("{n} streams: scaffold (fakesink in place of fireworksstt) ...");
        let scaffold = run_child(&mut cmd).ok().and_then(|(_, cpu, rss, out)| {
            let r = out.lines().find_map(|l| l.strip_prefix("RESULT "))?;
            Some((serde_json::from_str::<Value>(r).ok()?, cpu, rss))
        });
        match (element, scaffold) {
            (Some(e), Some(s)) => rows.push((n, e.0, s.0, server_rss)),
            _ => eprintln!("{n} streams: a run failed"),
        }
    }

    println!();
    println!("CPU in cores (CPU seconds per second) during the measured window; memory in KiB per stream;");
    println!("lag = final transcript's arrival-time - (its end + 1 s text timeout), ms; others = cores used by other processes meanwhile.");
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>11} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "streams",
        "process",
        "scaffold",
        "element",
        "tokio",
        "server",
        "round p99",
        "round max",
        "over-period",
        "dropped",
        "lag p50",
        "lag p99",
        "lag max",
        "KiB/strm",
        "scaf KiB",
        "others"
    );
    for (n, e, s, _server_rss) in &rows {
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let cores = |v: &Value| (f(v, "cpu_user") + f(v, "cpu_sys")) / f(v, "wall");
        let tokio_ns: f64 = e["threads"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["class"].as_str().unwrap_or("").starts_with("tokio"))
            .map(|t| t["cpu_ns"].as_f64().unwrap_or(0.0))
            .sum();
        let per_stream = |v: &Value| (f(v, "rss_end") - f(v, "rss_base")) / *n as f64 / 1024.0;
        println!(
            "{:>6} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8.2}ms {:>8.2}ms {:>5}/{:<5} {:>6}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>9.0} {:>9.0} {:>7.2}",
            n,
            cores(e),
            cores(s),
            cores(e) - cores(s),
            tokio_ns / 1e9 / f(e, "wall"),
            f(e, "server_cpu_s") / f(e, "wall"),
            f(e, "done_late_p99"),
            f(e, "done_late_max"),
            e["rounds_over_period"],
            e["rounds"],
            e["dropped_audio_ms"],
            f(e, "final_lag_p50"),
            f(e, "final_lag_p99"),
            f(e, "final_lag_max"),
            per_stream(e),
            per_stream(s),
            f(e, "others_cores"),
        );
    }
    println!();
    for (n, e, s, server_rss) in &rows {
        let kib = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0) / 1024.0;
        println!(
            "{n} streams: finals in window {}, interims total {}, other element messages {}, warnings {}, errors {}, flow errors {} {}",
            e["finals_in_window"], e["interims"], e["other_messages"], e["warnings"], e["errors"], e["flow_errors"],
            e["first_problems"]
        );
        println!(
            "  RSS KiB: before pipeline {:.0}, window start {:.0}, window end {:.0}, after malloc_trim {:.0}; scaffold: before {:.0}, end {:.0}; server process {:.0}",
            kib(e, "rss_base"), kib(e, "rss_start"), kib(e, "rss_end"), kib(e, "rss_trimmed"),
            kib(s, "rss_base"), kib(s, "rss_end"), *server_rss as f64 / 1024.0
        );
        print!("  threads (cores, switches/s):");
        let wall = e["wall"].as_f64().unwrap_or(1.0);
        for t in e["threads"].as_array().unwrap() {
            print!(
                "  {} x{}: {:.3}, {:.0} vol + {:.0} invol",
                t["class"].as_str().unwrap_or(""),
                t["count"],
                t["cpu_ns"].as_f64().unwrap_or(0.0) / 1e9 / wall,
                t["voluntary"].as_f64().unwrap_or(0.0) / wall,
                t["involuntary"].as_f64().unwrap_or(0.0) / wall
            );
        }
        println!();
        println!(
            "  scaffold: round p99 {:.2} ms, wake p99 {:.2} ms",
            s["done_late_p99"].as_f64().unwrap_or(f64::NAN),
            s["wake_late_p99"].as_f64().unwrap_or(f64::NAN)
        );
    }
}

// SPDX-License-Identifier: MPL-2.0
//! CPU per stream-hour of ONE LIVE stream (audio arriving in real time), the element against
//! LiveKit's Fireworks plugin (`livekit-plugins-fireworksai`, the reference client) fed in real
//! time, side by side in one run against one test-server process.
//!
//!     cargo bench --bench live_cpu -- [--long-minutes 3] [--short-minutes 1] [--repeat 3]
//!                                     [--python PYTHON] [--no-python] [--baseline EXE]
//!
//! `--baseline EXE` also runs the element of another build of this benchmark (e.g. a copy of
//! `target/release/deps/live_cpu-*` made before a change) in the same repetitions: a before and
//! after side by side on the same machine at the same time.
//!
//! Method (why each part is there):
//! - **element**: `filesrc ! wavparse ! clocksync ! fireworksstt ! fakesink`, run by
//!   `gst::parse::launch` in a child process to EOS, as `gst-launch-1.0` would; clocksync
//!   releases the audio at the pace of the clock, as a microphone would.
//! - **scaffold**: the same pipeline without fireworksstt; subtracted, so only the element's own
//!   cost remains.
//! - **LiveKit**: `benches/reference_client.py --realtime`, 10 ms frames pushed at the pace of
//!   the wall clock (what a LiveKit room's audio stream delivers).
//! - Each is run on a long and a short recording; the whole child process's CPU (wait4) of the
//!   long run minus that of the short one, divided by the difference in audio, is the cost per
//!   stream-hour with start-up (imports, plugin loading, connecting) cancelled out.
//! - Every child of one repetition runs at the same time (they are live: each uses a few per
//!   cent of a core), so all clients see the same machine. Medians over the repetitions.
//!
//! PYTHON defaults as in `cargo bench --bench cpu` (the venv of benches/setup-reference-client.sh).
//! Roles (internal): `--role serve|pipeline`.

mod common;

use std::process::Command;

use common::*;
use gst::prelude::*;
use serde_json::{json, Value};

fn main() {
    let args = Args::from_env();
    maybe_serve(&args);
    match args.get("--role").as_deref() {
        Some("pipeline") => role_pipeline(&args),
        _ => driver(&args),
    }
}

/// One pipeline run to EOS; prints `RESULT {json}` with the finals and any ERROR or WARNING.
fn role_pipeline(args: &Args) {
    let wav = args.get("--wav").expect("--wav");
    let url = args.get("--url").unwrap_or_default();
    init_gst();
    let element = if args.flag("--scaffold") {
        String::new()
    } else {
        format!("fireworksstt base-url=\"{url}\" api-key=bench-key ! ")
    };
    let description =
        format!("filesrc location=\"{wav}\" ! wavparse ! clocksync ! {element}fakesink");
    let pipeline = gst::parse::launch(&description).expect("the pipeline parses");
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (mut finals, mut errors, mut warnings) = (Vec::<String>::new(), Vec::new(), Vec::new());
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Element(e) => {
                if let Some(s) = e
                    .structure()
                    .filter(|s| s.name() == "fireworksstt/transcript")
                {
                    if s.get::<bool>("final").unwrap_or(false) {
                        finals.push(s.get::<String>("text").unwrap_or_default());
                    }
                }
            }
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Error(e) => {
                errors.push(e.error().to_string());
                break;
            }
            gst::MessageView::Eos(_) => break,
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let result = json!({
        "finals": finals.len(), "hash": format!("{:016x}", fnv1a(&finals)),
        "errors": errors, "warnings": warnings,
    });
    println!("RESULT {result}");
}

/// A WAV file (16 kHz mono S16LE) holding `minutes` of the benchmarks' speech-like audio.
fn wav_file(minutes: u64) -> (std::path::PathBuf, usize) {
    let (raw, utterances) = speech_audio_file(minutes, 1);
    let wav = raw.with_extension("wav");
    if !wav.exists() {
        let data = std::fs::read(&raw).expect("audio file");
        let mut out = Vec::with_capacity(data.len() + 44);
        let riff_len = 36 + data.len() as u32;
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&riff_len.to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
        out.extend_from_slice(&1u16.to_le_bytes()); // PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // mono
        out.extend_from_slice(&(SAMPLE_RATE as u32).to_le_bytes());
        out.extend_from_slice(&(SAMPLE_RATE as u32 * 2).to_le_bytes()); // bytes per second
        out.extend_from_slice(&2u16.to_le_bytes()); // block align
        out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
        let tmp = wav.with_extension("wav.tmp");
        std::fs::write(&tmp, out).expect("write wav");
        std::fs::rename(&tmp, &wav).expect("rename wav");
    }
    (wav, utterances.len())
}

struct Run {
    client: &'static str,
    long: bool,
    cpu_s: f64,
    result: Value,
}

fn driver(args: &Args) {
    let long_minutes: u64 = args.get_or("--long-minutes", 3);
    let short_minutes: u64 = args.get_or("--short-minutes", 1);
    assert!(
        long_minutes > short_minutes,
        "--long-minutes must exceed --short-minutes"
    );
    let repeat: usize = args.get_or("--repeat", 3);
    let python = reference_python(args);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/reference_client.py");

    println!("load average at start: {}", loadavg());
    let server = ServerProcess::start(&[]);
    println!("server: {} (pid {})", server.base_url, server.pid());
    let exe = std::env::current_exe().unwrap();
    let baseline = args.get("--baseline");
    let files = [
        (true, wav_file(long_minutes)),
        (false, wav_file(short_minutes)),
    ];

    let mut runs: Vec<Run> = Vec::new();
    for rep in 0..repeat {
        let mut children: Vec<(&'static str, bool, Command)> = Vec::new();
        for (long, (wav, _)) in &files {
            let wav_s = path_str(wav);
            let builds = [
                ("element", false, Some(exe.display().to_string())),
                ("scaffold", true, Some(exe.display().to_string())),
                ("baseline", false, baseline.clone()),
            ];
            for (client, scaffold, exe) in builds {
                let Some(exe) = exe else { continue };
                let mut cmd = Command::new(exe);
                cmd.args([
                    "--role",
                    "pipeline",
                    "--wav",
                    &wav_s,
                    "--url",
                    &server.base_url,
                ]);
                if scaffold {
                    cmd.arg("--scaffold");
                }
                children.push((client, *long, cmd));
            }
            if let Some(python) = &python {
                let raw = path_str(&wav.with_extension("s16le"));
                let mut cmd = Command::new(python);
                cmd.arg(script)
                    .args(["--audio", &raw, "--url", &server.base_url, "--realtime"]);
                children.push(("LiveKit", *long, cmd));
            }
        }
        let t0 = now_ns();
        let busy0 = system_busy_s();
        let handles: Vec<_> = children
            .into_iter()
            .map(|(client, long, mut cmd)| {
                std::thread::spawn(move || {
                    let (code, cpu, _, out) = run_child(&mut cmd).expect("the child runs");
                    let result = out
                        .lines()
                        .find_map(|l| l.strip_prefix("RESULT "))
                        .and_then(|l| serde_json::from_str::<Value>(l).ok());
                    match result {
                        Some(result) if code == 0 => Some(Run {
                            client,
                            long,
                            cpu_s: cpu.total(),
                            result,
                        }),
                        _ => {
                            eprintln!("{client} (long: {long}) failed, exit {code}:\n{out}");
                            None
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            runs.extend(h.join().unwrap());
        }
        println!(
            "repetition {}: {:.0} s wall, machine busy {:.1} CPU-s",
            rep + 1,
            (now_ns() - t0) as f64 / 1e9,
            system_busy_s() - busy0
        );
    }

    let extra_hours = (long_minutes - short_minutes) as f64 / 60.0;
    let expected = [(true, files[0].1 .1), (false, files[1].1 .1)];
    println!();
    println!("Whole-process CPU seconds per run (finals checked against the audio's utterances):");
    for r in &runs {
        let want = expected.iter().find(|(l, _)| *l == r.long).unwrap().1;
        let finals = r.result.get("finals").and_then(Value::as_u64).unwrap_or(0);
        let problems: Vec<String> = ["errors", "warnings"]
            .iter()
            .filter_map(|k| r.result.get(*k).and_then(Value::as_array))
            .flatten()
            .map(|v| v.to_string())
            .collect();
        println!(
            "  {:<9} {:<5} {:>7.3} s  finals {finals}/{}{}",
            r.client,
            if r.long { "long" } else { "short" },
            r.cpu_s,
            if r.client == "scaffold" { 0 } else { want },
            if problems.is_empty() {
                String::new()
            } else {
                format!("  {problems:?}")
            }
        );
    }
    let median_of = |client: &str, long: bool| {
        let mut v: Vec<f64> = runs
            .iter()
            .filter(|r| r.client == client && r.long == long)
            .map(|r| r.cpu_s)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let per_hour =
        |client: &str| Some((median_of(client, true)? - median_of(client, false)?) / extra_hours);
    println!();
    println!(
        "CPU-s per stream-hour (long − short, medians of {repeat}; {long_minutes} vs {short_minutes} min):"
    );
    let element = per_hour("element");
    let scaffold = per_hour("scaffold");
    let livekit = per_hour("LiveKit");
    let baseline_own = per_hour("baseline").zip(scaffold).map(|(e, s)| e - s);
    let own = element.zip(scaffold).map(|(e, s)| e - s);
    println!("  pipeline with fireworksstt   {}", fmt(element));
    println!("  scaffold (no element)        {}", fmt(scaffold));
    println!("  fireworksstt alone           {}", fmt(own));
    if baseline.is_some() {
        println!("  baseline build's element     {}", fmt(baseline_own));
    }
    println!("  LiveKit plugin, real time    {}", fmt(livekit));
    if let (Some(own), Some(lk)) = (own, livekit) {
        println!("  LiveKit / fireworksstt       {:.1}×", lk / own);
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.2}"))
}

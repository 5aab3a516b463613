// SPDX-License-Identifier: MPL-2.0
//! Stress test of everything that reads server data: generates and mutates server frames with a
//! deterministic PRNG, feeds them through `parse_server_message` and one `TranscriptState` (with
//! reconnects and ends of stream), checks the invariants of
//! `tests/integration/untrusted_input.rs` after every call, and reports what it saw. Then it times
//! the parser on frames of 1–4 MiB of several shapes to show that parsing stays linear.
//!
//! ```text
//! cargo run --release --example fuzz-protocol -- [--messages N] [--seed S]
//! ```
//!
//! N defaults to 2,000,000 frames, S to 1. Exits with status 1 and the offending frame on the
//! first broken invariant.

#[path = "../tests/integration/untrusted_input/checker.rs"]
mod checker;
#[path = "../tests/integration/untrusted_input/generator.rs"]
mod generator;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use checker::{check_parse, EventChecker};
use generator::{Generator, Step};
use gstfireworks::protocol::transcript::{MAX_PENDING_BYTES, MAX_PENDING_SEGMENTS};
use gstfireworks::protocol::{ParseError, ServerMessage, TranscriptState};

const HELP: &str = "usage: fuzz-protocol [--messages N] [--seed S]

Stress test of everything that reads server data: generated and mutated server frames go through
the parser and one transcript state, with the invariants of tests/integration/untrusted_input.rs
checked after every call; then the parser is timed on 1-4 MiB frames to show it stays linear.

options:
  --messages N    frames to generate (default 2000000; `_` separators allowed)
  --seed S        seed of the deterministic generator (default 1)
  -h, --help      this help

Exit status: 0 no invariant broken, 1 an invariant broke (the frame is printed), 2 bad
arguments.";

struct Options {
    messages: u64,
    seed: u64,
    /// Internal: measure the peak memory of handling one 4 MiB frame of this shape, in a fresh
    /// process, and print it in KiB.
    memory_probe: Option<usize>,
}

/// The options; `Ok(None)`: help was asked for.
fn options() -> Result<Option<Options>, String> {
    let mut options = Options {
        messages: 2_000_000,
        seed: 1,
        memory_probe: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let text = args.next().ok_or(format!("{name} needs a value"))?;
            text.replace('_', "")
                .parse()
                .map_err(|e| format!("{name} {text:?}: {e}"))
        };
        match arg.as_str() {
            "--messages" => options.messages = value("--messages")?,
            "--seed" => options.seed = value("--seed")?,
            "--memory-probe" => options.memory_probe = Some(value("--memory-probe")? as usize),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Some(options))
}

#[derive(Default)]
struct Stats {
    frames: u64,
    frame_bytes: u64,
    largest_frame: usize,
    invalid_json: u64,
    not_an_object: u64,
    malformed: u64,
    /// Classified frames by kind.
    kinds: BTreeMap<&'static str, u64>,
    /// Frames by generator mode.
    modes: BTreeMap<String, u64>,
    reconnects: u64,
    ends_of_stream: u64,
    largest_transcript: usize,
}

fn kind(message: &ServerMessage) -> &'static str {
    match message {
        ServerMessage::Transcription(_) => "transcription",
        ServerMessage::CheckpointEcho { .. } => "checkpoint echo",
        ServerMessage::TraceEcho { .. } => "trace echo",
        ServerMessage::StateCleared { .. } => "state cleared",
        ServerMessage::Error { .. } => "error",
        ServerMessage::Other => "other",
    }
}

/// A field of `/proc/self/status` in KiB (`VmHWM` is the peak resident set size, `VmRSS` the
/// current one), if readable.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0); false if that is not possible.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            let usage = HELP.lines().next().unwrap_or_default();
            eprintln!("error: {message}\n{usage}\n(fuzz-protocol --help lists the options)");
            return ExitCode::from(2);
        }
    };
    if let Some(shape) = options.memory_probe {
        return memory_probe(shape);
    }
    println!(
        "fuzz-protocol: {} frames, seed {}",
        options.messages, options.seed
    );
    let started = Instant::now();
    match run(&options) {
        Ok((stats, checker)) => {
            report(&stats, &checker, started.elapsed());
            parser_scaling();
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: invariant broken: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<(Stats, EventChecker), String> {
    let mut generator = Generator::new(options.seed);
    let mut checker = EventChecker::new();
    let mut state = TranscriptState::new();
    let mut stats = Stats::default();
    let progress_every = (options.messages / 10).max(1);
    let started = Instant::now();
    while stats.frames < options.messages {
        let step = generator.next_step();
        let result = match &step {
            Step::BeginConnection => {
                stats.reconnects += 1;
                checker.begin_connection(&mut state)
            }
            Step::EndOfStream => {
                stats.ends_of_stream += 1;
                checker.end_of_stream(&mut state)
            }
            Step::Frame(text) => {
                stats.frames += 1;
                stats.frame_bytes += text.len() as u64;
                stats.largest_frame = stats.largest_frame.max(text.len());
                *stats
                    .modes
                    .entry(format!("{:?}", generator.mode()))
                    .or_default() += 1;
                match check_parse(text) {
                    Err(e) => Err(e),
                    Ok(Err(ParseError::InvalidJson { .. })) => {
                        stats.invalid_json += 1;
                        Ok(())
                    }
                    Ok(Err(ParseError::NotAnObject { .. })) => {
                        stats.not_an_object += 1;
                        Ok(())
                    }
                    Ok(Err(ParseError::MalformedTranscription { .. })) => {
                        stats.malformed += 1;
                        Ok(())
                    }
                    Ok(Ok(message)) => {
                        *stats.kinds.entry(kind(&message)).or_default() += 1;
                        match message {
                            ServerMessage::Transcription(m) => checker.handle(&mut state, &m),
                            _ => Ok(()),
                        }
                    }
                }
            }
        };
        if let Err(e) = result {
            let frame = match &step {
                Step::Frame(text) => text.chars().take(2000).collect(),
                other => format!("{other:?}"),
            };
            return Err(format!("after {} frames: {e}\nstep: {frame}", stats.frames));
        }
        if let Some(t) = checker.last_interim() {
            stats.largest_transcript = stats.largest_transcript.max(t.text.len());
        }
        if matches!(step, Step::Frame(_)) && stats.frames % progress_every == 0 {
            eprintln!(
                "  {:>9} frames, {:>6.1} s",
                stats.frames,
                started.elapsed().as_secs_f64()
            );
        }
    }
    checker.end_of_stream(&mut state)?;
    Ok((stats, checker))
}

fn report(stats: &Stats, checker: &EventChecker, elapsed: Duration) {
    let c = &checker.counts;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let parse_errors = stats.invalid_json + stats.not_an_object + stats.malformed;
    println!();
    println!("messages processed:      {}", stats.frames);
    println!(
        "  bytes:                 {:.1} MiB (largest frame {} bytes)",
        mib(stats.frame_bytes),
        stats.largest_frame
    );
    let modes: Vec<String> = stats
        .modes
        .iter()
        .map(|(m, n)| format!("{m} {n}"))
        .collect();
    println!("  by generator mode:     {}", modes.join(", "));
    println!(
        "  reconnects / ends:     {} / {}",
        stats.reconnects, stats.ends_of_stream
    );
    println!(
        "parse errors:            {parse_errors} (invalid JSON {}, not an object {}, malformed \
         transcription {})",
        stats.invalid_json, stats.not_an_object, stats.malformed
    );
    let kinds: Vec<String> = stats
        .kinds
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("parsed:                  {}", kinds.join(", "));
    println!(
        "transcriptions:          {} accepted, {} rejected (new segment without text)",
        c.accepted, c.rejected
    );
    println!(
        "events emitted:          {} (SpeechStarted {}, Interim {}, Final {} of which promoted \
         {}, SpeechEnded {})",
        c.events, c.speech_started, c.interims, c.finals, c.promoted, c.speech_ended
    );
    println!(
        "max pending segments:    {} (bound {MAX_PENDING_SEGMENTS})",
        c.max_pending_segments
    );
    println!(
        "max pending bytes:       {} (bound {MAX_PENDING_BYTES})",
        c.max_pending_bytes
    );
    println!(
        "largest transcript text: {} bytes",
        stats.largest_transcript
    );
    match status_kib("VmHWM:") {
        Some(kib) => println!(
            "peak RSS (VmHWM):        {:.1} MiB (before the scaling runs below)",
            kib as f64 / 1024.0
        ),
        None => println!("peak RSS (VmHWM):        unavailable"),
    }
    println!(
        "elapsed:                 {:.1} s ({:.0} frames/s)",
        elapsed.as_secs_f64(),
        stats.frames as f64 / elapsed.as_secs_f64()
    );
    println!("invariants:              all held");
}

const MIB: usize = 1024 * 1024;

type Shape = (&'static str, fn(usize) -> String);

/// Frames of about `n` bytes: one huge string, many small objects, an invalid one.
const SHAPES: [Shape; 6] = [
    ("one long segment text", |n| {
        format!(r#"{{"segments":[{{"id":0,"text":"{}"}}]}}"#, "a".repeat(n))
    }),
    ("many segments", |n| {
        let one = r#"{"id":7,"text":"t"},"#;
        let body = one.repeat(n / one.len());
        format!(r#"{{"segments":[{}{{"id":8,"text":"end"}}]}}"#, body)
    }),
    ("many words, final", |n| {
        let one = r#"{"word":"w","is_final":true},"#;
        let body = one.repeat(n / one.len());
        format!(
            r#"{{"segments":[{{"id":0,"text":"w","words":[{body}{{"word":"z","is_final":true}}]}}]}}"#
        )
    }),
    ("error object", |n| {
        format!(r#"{{"error":{{"detail":"{}"}}}}"#, "x".repeat(n))
    }),
    ("escaped unicode text", |n| {
        format!(
            r#"{{"segments":[{{"id":0,"text":"{}"}}]}}"#,
            "\\u00e9".repeat(n / 6)
        )
    }),
    ("truncated (invalid)", |n| {
        let one = r#"{"id":7,"text":"t"},"#;
        format!(r#"{{"segments":[{}"#, one.repeat(n / one.len()))
    }),
];

/// What the element does with a frame: parse it and apply a transcription to a state.
fn handle_frame(frame: &str) {
    if let Ok(ServerMessage::Transcription(m)) = gstfireworks::protocol::parse_server_message(frame)
    {
        let mut state = TranscriptState::new();
        let _ = state.handle(&m);
    }
}

/// In a fresh process: prints how far handling a 4 MiB frame of `SHAPES[shape]` raises the
/// peak RSS above the RSS with the frame built, in KiB.
fn memory_probe(shape: usize) -> ExitCode {
    let Some((_, make)) = SHAPES.get(shape) else {
        return ExitCode::from(2);
    };
    let frame = make(4 * MIB);
    let before = status_kib("VmRSS:");
    if !reset_peak_rss() {
        return ExitCode::FAILURE;
    }
    handle_frame(&frame);
    match (before, status_kib("VmHWM:")) {
        (Some(before), Some(peak)) => {
            println!("{}", peak.saturating_sub(before));
            ExitCode::SUCCESS
        }
        _ => ExitCode::FAILURE,
    }
}

/// Runs [`memory_probe`] in a child process, so that memory freed by earlier work does not hide
/// the peak.
fn probe_memory(shape: usize) -> Option<u64> {
    let output = std::process::Command::new(std::env::current_exe().ok()?)
        .args(["--memory-probe", &shape.to_string()])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

/// Parse (and apply) time per MiB for frames of 1–8 MiB of several shapes, which stays roughly
/// constant when parsing is linear; and the extra peak memory while handling a 4 MiB frame (the
/// client's limit on a message), also as a multiple of the frame's size.
fn parser_scaling() {
    println!();
    println!("parser scaling (best of 3, parse + apply, ms per MiB; extra peak RSS at 4 MiB):");
    println!(
        "  {:<24} {:>8} {:>8} {:>8} {:>8} {:>14}",
        "shape", "1 MiB", "2 MiB", "4 MiB", "8 MiB", "peak RSS"
    );
    for (index, (name, make)) in SHAPES.iter().enumerate() {
        let mut cells = Vec::new();
        for mib in [1, 2, 4, 8] {
            let frame = make(mib * MIB);
            let best = (0..3)
                .map(|_| {
                    let started = Instant::now();
                    handle_frame(&frame);
                    started.elapsed()
                })
                .min()
                .expect("three runs");
            let per_mib = best.as_secs_f64() * 1000.0 / (frame.len() as f64 / MIB as f64);
            cells.push(format!("{per_mib:>8.2}"));
        }
        let memory = match probe_memory(index) {
            Some(kib) => format!(
                "{:>4.0} MiB (×{:.0})",
                kib as f64 / 1024.0,
                (kib * 1024) as f64 / (4 * MIB) as f64
            ),
            None => "n/a".to_owned(),
        };
        println!("  {name:<24} {} {memory:>14}", cells.join(" "));
    }
}

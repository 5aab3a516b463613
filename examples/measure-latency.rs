// SPDX-License-Identifier: MPL-2.0
//! Measures how late words come back, to choose `latency` for live captions.
//!
//!     cargo run --release --example measure-latency -- --base-url ws://127.0.0.1:8765/v1
//!     FIREWORKS_API_KEY=fw_... cargo run --release --example measure-latency -- speech.wav
//!
//! Plays audio in real time through fireworksstt as a live source (a 16 kHz mono S16LE WAV
//! file, or generated test speech for the bundled server) and reports, per word:
//! - interim delay: from the word's start until an interim transcript first contains it;
//! - final delay: from the word's start until its final transcript arrives;
//! - lateness of the word buffers against their PTS (with the `latency` given).
//!
//! With `early-words` (the default) `latency` must cover the interim delay with room to spare;
//! without it, the final delay.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Args as ArgList;
use gst::prelude::*;

const HELP: &str = concat!(
    "usage: measure-latency [FILE.wav] [--base-url URL] [--seconds N] [--latency MS]

Plays audio in real time through fireworksstt as a live source and reports, per word, how late
transcripts come back (p50/p90/p99/max): the interim delay (word start → first interim holding
it), the final delay (word start → its final) and the lateness of the word buffers against
their PTS with the given latency. Use it to choose the element's `latency` for live captions.

options:
  FILE.wav            a 16 kHz mono S16LE WAV file to play (default: generated test speech,
                      which only the bundled local server understands)
  --base-url URL      the service endpoint (default: Fireworks' us-virginia-1 endpoint), e.g.
                      ws://127.0.0.1:8765/v1 for a local fireworks-test-server
  --seconds N         length of the generated test speech (default 60)
  --latency MS        the element's latency property (default 3000)
  -h, --help          this help

The run takes as long as the audio. Exit status: 0 done, 1 failed (the error on stderr), 2 bad
arguments.

",
    api_key_help!()
);

struct Args {
    file: Option<String>,
    base_url: Option<String>,
    seconds: u64,
    latency_ms: u32,
}

fn parse_args(list: Vec<String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        file: None,
        base_url: None,
        seconds: 60,
        latency_ms: 3000,
    };
    let mut it = ArgList::new(list);
    while let Some(arg) = it.next_arg() {
        match arg.as_str() {
            "--base-url" => args.base_url = Some(it.value("--base-url")?),
            "--seconds" => args.seconds = it.parsed("--seconds", "whole seconds")?,
            "--latency" => args.latency_ms = it.parsed("--latency", "milliseconds")?,
            "-h" | "--help" => return Ok(None),
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ if args.file.is_none() => args.file = Some(arg),
            _ => return Err("more than one input file".into()),
        }
    }
    if args.seconds == 0 {
        return Err("--seconds must be at least 1".into());
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    common::cli_main(HELP, parse_args, run)
}

/// 16 kHz mono S16LE samples from a WAV file, or generated test speech.
fn load_audio(args: &Args) -> Result<Vec<i16>, String> {
    match &args.file {
        Some(path) => {
            let (rate, samples) =
                fireworks_test_server::audio::read_wav(path).map_err(|e| format!("{path}: {e}"))?;
            if rate != 16_000 {
                return Err(format!(
                    "{path}: {rate} Hz; convert it to 16 kHz mono S16LE first"
                ));
            }
            Ok(samples)
        }
        None => Ok(fireworks_test_server::audio::synthesize_speech_like(
            Duration::from_secs(args.seconds),
            7,
        )
        .samples),
    }
}

fn percentiles(label: &str, mut values: Vec<f64>) {
    if values.is_empty() {
        println!("{label:<16} no samples");
        return;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label:<16} n={:<5} p50={:>6.0} ms  p90={:>6.0} ms  p99={:>6.0} ms  max={:>6.0} ms",
        values.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        values[values.len() - 1]
    );
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(file) = &args.file {
        common::require_input_file(file)?;
    }
    common::require_api_key(args.base_url.as_deref())?;
    let samples = load_audio(args)?;
    let audio_seconds = samples.len() as f64 / 16_000.0;
    gst::init()?;
    gstfireworks::plugin_register_static()?;
    common::require_elements(&["appsrc", "fakesink"])?;

    let pipeline = gst::Pipeline::new();
    let caps = gst::Caps::builder("audio/x-raw")
        .field("format", "S16LE")
        .field("rate", 16_000i32)
        .field("channels", 1i32)
        .field("layout", "interleaved")
        .build();
    let src = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .is_live(true)
        .build();
    let stt = gst::ElementFactory::make("fireworksstt")
        .property("latency", args.latency_ms)
        .build()?;
    common::point_at(&stt, args.base_url.as_deref());
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()?;
    pipeline.add_many([src.upcast_ref(), &stt, &sink])?;
    gst::Element::link_many([src.upcast_ref(), &stt, &sink])?;

    // Lateness of each word buffer: running time when it left the element minus its PTS.
    let lateness = Arc::new(Mutex::new(Vec::new()));
    let record = lateness.clone();
    let element = stt.clone();
    stt.static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let (Some(gst::PadProbeData::Buffer(b)), Some(now)) =
                (&info.data, element.current_running_time())
            {
                if let Some(pts) = b.pts() {
                    record
                        .lock()
                        .unwrap()
                        .push(now.nseconds() as f64 / 1e6 - pts.nseconds() as f64 / 1e6);
                }
            }
            gst::PadProbeReturn::Ok
        });

    common::start(&pipeline)?;
    let feeder = {
        let src = src.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut pts = 0u64;
            for chunk in samples.chunks(1600) {
                // A capture device delivers a buffer once its last sample is recorded.
                let recorded = Duration::from_nanos(pts + chunk.len() as u64 * 62_500);
                if let Some(wait) = (started + recorded).checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
                let mut buffer = gst::Buffer::from_mut_slice(bytes);
                buffer
                    .get_mut()
                    .unwrap()
                    .set_pts(gst::ClockTime::from_nseconds(pts));
                if src.push_buffer(buffer).is_err() {
                    break;
                }
                pts += chunk.len() as u64 * 62_500;
            }
            let _ = src.end_of_stream();
        })
    };

    // (utterance, word index) → word start; first interim and final arrival, in running time.
    let mut first_interim: HashMap<(u64, usize), f64> = HashMap::new();
    let mut final_delay = Vec::new();
    let bus = pipeline.bus().unwrap();
    // Each message must come within the audio's length plus two minutes; the loop ends early
    // (with this error) when one does not.
    let wait = gst::ClockTime::from_seconds(audio_seconds as u64 + 120);
    let mut result = Err(format!("no message for {wait}: giving up"));
    for msg in bus.iter_timed(wait) {
        match msg.view() {
            gst::MessageView::Element(e) => {
                let Some(s) = e.structure() else { continue };
                if s.name() != "fireworksstt/transcript" {
                    continue;
                }
                let (Ok(arrival), Ok(words), Ok(utterance), Ok(is_final)) = (
                    s.get::<gst::ClockTime>("arrival-time"),
                    s.get::<gst::List>("words"),
                    s.get::<u64>("utterance"),
                    s.get::<bool>("final"),
                ) else {
                    continue;
                };
                let arrival = arrival.nseconds() as f64 / 1e6;
                for (index, word) in words.iter().enumerate() {
                    let Ok(word) = word.get::<gst::Structure>() else {
                        continue;
                    };
                    let Ok(start) = word.get::<gst::ClockTime>("start") else {
                        continue;
                    };
                    let delay = arrival - start.nseconds() as f64 / 1e6;
                    if is_final {
                        final_delay.push(delay);
                    } else {
                        first_interim.entry((utterance, index)).or_insert(delay);
                    }
                }
            }
            gst::MessageView::Error(_) => {
                result = Err(common::error_text(&msg));
                break;
            }
            gst::MessageView::Eos(_) => {
                result = Ok(());
                break;
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null)?;
    let _ = feeder.join();
    result?;

    println!(
        "latency = {} ms, {audio_seconds:.0} s of audio played in real time",
        args.latency_ms
    );
    percentiles("interim delay", first_interim.into_values().collect());
    percentiles("final delay", final_delay);
    percentiles("buffer lateness", lateness.lock().unwrap().clone());
    println!(
        "max-observed-delay = {} ms",
        stt.property::<u32>("max-observed-delay")
    );
    Ok(())
}

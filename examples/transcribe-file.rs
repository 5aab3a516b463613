// SPDX-License-Identifier: MPL-2.0
//! Transcribes an audio file: prints each utterance as soon as it is final, with its start time,
//! and writes SRT and/or WebVTT subtitles.
//!
//!     FIREWORKS_API_KEY=fw_... cargo run --example transcribe-file -- talk.mp3 --srt talk.srt
//!     cargo run --example transcribe-file -- --local-server speech.wav --srt speech.srt
//!
//! `--help` lists the options. Any format GStreamer can decode works. `--local-server` starts
//! the bundled Fireworks-compatible server (crate fireworks-test-server) in this process on a
//! free 127.0.0.1 port and transcribes against it: no key, no network. It recognises the
//! tone-coded test audio that `make-test-audio` writes.
//!
//! The pipeline:
//!
//! ```text
//! filesrc ! decodebin ! audioconvert ! audioresample ! fireworksstt ! fakesink
//! ```
//!
//! The subtitles are laid out here from the words of each final `fireworksstt/transcript`
//! message and their times (examples/common/subtitles.rs): at most two lines of at most 42
//! characters per cue, at most 7 s per cue, split between words, never overlapping. GStreamer's
//! `srtenc`/`webvttenc` write one cue per buffer instead, so a long utterance would be one long
//! line on screen for its whole length.
//!
//! A progress bar (audio sent so far / length of the file) is drawn on stderr when stderr is a
//! terminal. Subtitle files appear only when complete: a failed run leaves none. Ctrl-C stops
//! early and still writes complete subtitle files for what was heard; a second Ctrl-C quits at
//! once (and leaves no file).

#[macro_use]
mod common;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{error_text, fmt_time, subtitles, Args, OutputFile};
use gst::prelude::*;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const HELP: &str = concat!(
    "usage: transcribe-file INPUT [--srt OUT.srt] [--vtt OUT.vtt] [--language CODE] \
[--model NAME] [--prompt TEXT] [--base-url URL | --local-server]

Transcribes an audio file (any format GStreamer decodes) with fireworksstt: prints each final
utterance with its start time on stdout, writes subtitles, and ends with a summary on stderr.

options:
  --srt OUT.srt       write SRT subtitles
  --vtt OUT.vtt       write WebVTT subtitles
                      (cues of at most 2 lines of 42 characters and 7 s, split between words
                      at the words' times, never overlapping, never across utterances)
  --language CODE     spoken language, e.g. en or en-US (default: detected by the service)
  --model NAME        ASR model, e.g. fireworks-asr-large or fireworks-asr-v2 (default: the
                      service's)
  --prompt TEXT       primes vocabulary or style, e.g. names that occur in the audio
  --base-url URL      the service endpoint (default: Fireworks' us-virginia-1 endpoint), e.g.
                      ws://127.0.0.1:8765/v1 for a local fireworks-test-server
  --local-server      start the bundled local server in this process and use it (no key, no
                      network; it understands the test audio make-test-audio writes)
  -h, --help          this help

Subtitle files appear only when complete. Ctrl-C stops early and writes what was heard; a second
Ctrl-C quits at once. Exit status: 0 done, 1 failed (the error on stderr), 2 bad arguments.

",
    api_key_help!()
);
/// How often the bus is polled and the progress bar redrawn.
const TICK: Duration = Duration::from_millis(250);
/// Give up when nothing at all happens for this long. fireworksstt bounds its own waits
/// (connect-timeout, retries, stall-timeout, drain-timeout); this is the application's backstop.
const NO_PROGRESS_LIMIT: Duration = Duration::from_secs(120);
/// After Ctrl-C: how long the pipeline may take to drain and finish the files.
const EOS_LIMIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Options {
    input: String,
    srt: Option<String>,
    vtt: Option<String>,
    base_url: Option<String>,
    local_server: bool,
    language: Option<String>,
    model: Option<String>,
    prompt: Option<String>,
}

fn parse_args(args: Vec<String>) -> Result<Option<Options>, String> {
    let mut args = Args::new(args);
    let mut o = Options::default();
    let mut input = None;
    while let Some(arg) = args.next_arg() {
        match arg.as_str() {
            "--srt" => o.srt = Some(args.value("--srt")?),
            "--vtt" => o.vtt = Some(args.value("--vtt")?),
            "--base-url" => o.base_url = Some(args.value("--base-url")?),
            "--local-server" => o.local_server = true,
            "--language" => o.language = Some(args.value("--language")?),
            "--model" => o.model = Some(args.value("--model")?),
            "--prompt" => o.prompt = Some(args.value("--prompt")?),
            "-h" | "--help" => return Ok(None),
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ if input.is_none() => input = Some(arg),
            _ => return Err("more than one input file".into()),
        }
    }
    if o.local_server && o.base_url.is_some() {
        return Err("--local-server and --base-url exclude each other".into());
    }
    if o.srt.is_some() && o.srt == o.vtt {
        return Err("--srt and --vtt name the same file".into());
    }
    o.input = input.ok_or("no input file given")?;
    Ok(Some(o))
}

fn main() -> ExitCode {
    common::cli_main(HELP, parse_args, run)
}

/// The elements the pipeline is made of (decoders for the input come from decodebin).
fn elements() -> Vec<&'static str> {
    vec![
        "filesrc",
        "decodebin",
        "audioconvert",
        "audioresample",
        "fakesink",
    ]
}

/// The pipeline; the transcripts come from the bus.
fn build_pipeline(
    o: &Options,
    base_url: Option<&str>,
) -> Result<gst::Pipeline, Box<dyn std::error::Error>> {
    let pipeline = gst::parse::launch(
        "filesrc name=src ! decodebin ! audioconvert ! audioresample ! \
         fireworksstt name=stt output-mode=utterances ! fakesink",
    )?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let by_name = |name: &str| pipeline.by_name(name).expect("named in the description");
    by_name("src").set_property("location", &o.input);

    let stt = by_name("stt");
    common::point_at(&stt, base_url);
    for (property, value) in [
        ("language-code", &o.language),
        ("model", &o.model),
        ("prompt", &o.prompt),
    ] {
        if let Some(value) = value {
            stt.set_property(property, value);
        }
    }
    Ok(pipeline)
}

/// The words of a final transcript with their stream times, timed by the transcript's span
/// where word times are missing.
fn final_words(s: &gst::StructureRef) -> Option<Vec<subtitles::TimedWord>> {
    let time = |s: &gst::StructureRef, field: &str| {
        s.get::<gst::ClockTime>(field)
            .ok()
            .map(|t| Duration::from_nanos(t.nseconds()))
    };
    let words: Vec<(String, Option<Duration>, Option<Duration>)> = s
        .get::<gst::List>("words")
        .ok()?
        .iter()
        .filter_map(|w| w.get::<gst::Structure>().ok())
        .filter_map(|w| {
            let text = w.get::<String>("text").ok()?;
            Some((text, time(&w, "start"), time(&w, "end")))
        })
        .collect();
    let span = time(s, "start").zip(time(s, "end"));
    subtitles::time_words(&words, span)
}

fn progress_bar() -> ProgressBar {
    let target = if common::stderr_is_terminal() {
        ProgressDrawTarget::stderr_with_hz(4)
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg} (ETA {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

fn run(o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    common::require_input_file(&o.input)?;
    gst::init()?;
    gstfireworks::plugin_register_static()?;
    common::require_elements(&elements())?;

    // The bundled server, for as long as the transcription runs.
    let local_server = common::local_server(o.local_server)?;
    let base_url = match &local_server {
        Some(server) => Some(server.base_url()),
        None => o.base_url.clone(),
    };
    common::require_api_key(base_url.as_deref())?;

    let mut outputs = Vec::new();
    if let Some(path) = &o.srt {
        outputs.push((
            subtitles::srt as fn(&[subtitles::Cue]) -> String,
            OutputFile::new(path)?,
        ));
    }
    if let Some(path) = &o.vtt {
        outputs.push((
            subtitles::webvtt as fn(&[subtitles::Cue]) -> String,
            OutputFile::new(path)?,
        ));
    }
    let pipeline = build_pipeline(o, base_url.as_deref())?;
    let stt = pipeline.by_name("stt").unwrap();

    // The end of the audio that has reached fireworksstt: the progress through the file.
    let position = Arc::new(AtomicU64::new(0));
    {
        let position = position.clone();
        stt.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(gst::PadProbeData::Buffer(buffer)) = &info.data {
                    if let Some(pts) = buffer.pts() {
                        let end = pts + buffer.duration().unwrap_or(gst::ClockTime::ZERO);
                        position.fetch_max(end.nseconds(), Ordering::Relaxed);
                    }
                }
                gst::PadProbeReturn::Ok
            });
    }

    let interrupted = common::on_ctrl_c()?;
    let bar = progress_bar();
    let started = Instant::now();
    let bus = pipeline.bus().unwrap();
    common::start(&pipeline)?;
    let mut utterances = 0;
    let mut timed_utterances: Vec<Vec<subtitles::TimedWord>> = Vec::new();
    let mut duration: Option<gst::ClockTime> = None;
    let mut last_activity = (Instant::now(), 0);
    let mut eos_sent_at: Option<Instant> = None;
    let result = loop {
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(TICK.as_nanos() as u64)) {
            last_activity.0 = Instant::now();
            match msg.view() {
                gst::MessageView::Element(e) => {
                    let Some(s) = e.structure() else { continue };
                    if s.name() == "fireworksstt/transcript" && s.get::<bool>("final")? {
                        let text = s.get::<String>("text")?;
                        let start = s.get::<gst::ClockTime>("start").ok();
                        utterances += 1;
                        match final_words(s) {
                            Some(words) => timed_utterances.push(words),
                            None => bar.suspend(|| {
                                eprintln!(
                                    "warning: no times for {text:?}: left out of the subtitles"
                                )
                            }),
                        }
                        bar.suspend(|| {
                            println!("[{}] {text}", start.map(fmt_time).unwrap_or_default())
                        });
                    }
                }
                gst::MessageView::Warning(w) => {
                    bar.suspend(|| eprintln!("warning: {}", w.error()));
                }
                gst::MessageView::Error(_) => break Err(error_text(&msg)),
                gst::MessageView::Eos(_) => break Ok(()),
                _ => {}
            }
        }

        let pos = position.load(Ordering::Relaxed);
        if pos != last_activity.1 {
            last_activity = (Instant::now(), pos);
        }
        if duration.is_none() {
            duration = pipeline.query_duration::<gst::ClockTime>();
            if let Some(d) = duration {
                bar.set_length(d.mseconds());
            }
        }
        bar.set_position(pos / 1_000_000);
        bar.set_message(match duration {
            Some(d) => format!(
                "{} / {}",
                fmt_time(gst::ClockTime::from_nseconds(pos)),
                fmt_time(d)
            ),
            None => fmt_time(gst::ClockTime::from_nseconds(pos)),
        });

        if interrupted.load(Ordering::SeqCst) && eos_sent_at.is_none() {
            bar.suspend(|| eprintln!("stopping: finishing the last utterance…"));
            pipeline.send_event(gst::event::Eos::new());
            eos_sent_at = Some(Instant::now());
        }
        if eos_sent_at.is_some_and(|at| at.elapsed() > EOS_LIMIT) {
            break Err(format!(
                "the pipeline did not finish within {EOS_LIMIT:?} after Ctrl-C"
            ));
        }
        if last_activity.0.elapsed() > NO_PROGRESS_LIMIT {
            break Err(format!(
                "no progress for {NO_PROGRESS_LIMIT:?}: giving up at {}",
                fmt_time(gst::ClockTime::from_nseconds(pos))
            ));
        }
    };
    bar.finish_and_clear();
    pipeline.set_state(gst::State::Null)?;
    // On failure the partial files are dropped, i.e. deleted.
    result?;

    let cues = subtitles::layout(&timed_utterances);
    let mut written = Vec::new();
    for (format, file) in outputs {
        std::fs::write(file.partial(), format(&cues))
            .map_err(|e| format!("{}: cannot write it ({e})", file.path().display()))?;
        written.push(file.path().display().to_string());
        file.commit()?;
    }
    let audio = gst::ClockTime::from_nseconds(position.load(Ordering::Relaxed));
    eprintln!(
        "{utterances} utterance(s) in {} of audio, transcribed in {:.2} s{}",
        fmt_time(audio),
        started.elapsed().as_secs_f64(),
        if written.is_empty() {
            String::new()
        } else {
            format!("; wrote {}", written.join(", "))
        }
    );
    Ok(())
}

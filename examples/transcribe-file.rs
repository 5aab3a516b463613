//! Transcribes an audio file: prints each utterance as soon as it is final, with its start time,
//! and writes SRT and/or WebVTT subtitles.
//!
//!     transcribe-file INPUT [--srt OUT.srt] [--vtt OUT.vtt] [--base-url URL] [--language CODE]
//!
//!     FIREWORKS_API_KEY=fw_... cargo run --example transcribe-file -- talk.mp3 --srt talk.srt
//!     cargo run --example transcribe-file -- speech.wav --srt speech.srt --vtt speech.vtt \
//!         --base-url ws://127.0.0.1:8765/v1
//!
//! The API key comes from FIREWORKS_API_KEY; with `--base-url` and no key set, a placeholder key
//! is sent (the local test server accepts any key). Any format GStreamer can decode works.
//!
//! The pipeline (the subtitle formats are GStreamer's own encoders, from gst-plugins-bad):
//!
//! ```text
//! filesrc ! decodebin ! audioconvert ! audioresample ! fireworksstt output-mode=utterances ! tee
//!     tee. ! queue ! srtenc ! filesink location=OUT.srt
//!     tee. ! queue ! webvttenc ! filesink location=OUT.vtt
//! ```
//!
//! A progress bar (audio sent so far / length of the file) is drawn on stderr when stderr is a
//! terminal. Ctrl-C stops early and still writes complete subtitle files for what was heard; a
//! second Ctrl-C quits at once. The exit code is non-zero, with the error on stderr, when the
//! pipeline posts an ERROR.

mod common;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{error_text, fmt_time};
use gst::prelude::*;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const USAGE: &str = "usage: transcribe-file INPUT [--srt OUT.srt] [--vtt OUT.vtt] \
                     [--base-url URL] [--language CODE]";
/// How often the bus is polled and the progress bar redrawn.
const TICK: Duration = Duration::from_millis(250);
/// Give up when nothing at all happens for this long. fireworksstt bounds its own waits
/// (connect-timeout, retries, stall-timeout, drain-timeout); this is the application's backstop.
const NO_PROGRESS_LIMIT: Duration = Duration::from_secs(120);
/// After Ctrl-C: how long the pipeline may take to drain and finish the files.
const EOS_LIMIT: Duration = Duration::from_secs(20);

struct Options {
    input: String,
    srt: Option<String>,
    vtt: Option<String>,
    base_url: Option<String>,
    language: Option<String>,
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut args = std::env::args().skip(1);
    let mut input = None;
    let (mut srt, mut vtt, mut base_url, mut language) = (None, None, None, None);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--srt" => srt = Some(value("--srt")?),
            "--vtt" => vtt = Some(value("--vtt")?),
            "--base-url" => base_url = Some(value("--base-url")?),
            "--language" => language = Some(value("--language")?),
            "-h" | "--help" => return Ok(None),
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(format!("unknown option {s}\n{USAGE}"))
            }
            _ if input.is_none() => input = Some(arg),
            _ => return Err(format!("more than one input file\n{USAGE}")),
        }
    }
    let input = input.ok_or(USAGE)?;
    Ok(Some(Options {
        input,
        srt,
        vtt,
        base_url,
        language,
    }))
}

fn main() -> ExitCode {
    common::cli_main(USAGE, parse_args, run)
}

fn build_pipeline(options: &Options) -> Result<gst::Pipeline, Box<dyn std::error::Error>> {
    // One tee branch per subtitle file; a fakesink when none is wanted.
    let mut description = String::from(
        "filesrc name=src ! decodebin ! audioconvert ! audioresample ! \
         fireworksstt name=stt output-mode=utterances ! tee name=t",
    );
    if options.srt.is_some() {
        description.push_str(" t. ! queue ! srtenc ! filesink name=srt");
    }
    if options.vtt.is_some() {
        description.push_str(" t. ! queue ! webvttenc ! filesink name=vtt");
    }
    if options.srt.is_none() && options.vtt.is_none() {
        description.push_str(" t. ! queue ! fakesink");
    }
    let pipeline = gst::parse::launch(&description)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let by_name = |name: &str| pipeline.by_name(name).expect("named in the description");
    by_name("src").set_property("location", &options.input);
    if let Some(path) = &options.srt {
        by_name("srt").set_property("location", path);
    }
    if let Some(path) = &options.vtt {
        by_name("vtt").set_property("location", path);
    }

    let stt = by_name("stt");
    if let Some(url) = &options.base_url {
        stt.set_property("base-url", url);
        if std::env::var_os("FIREWORKS_API_KEY").is_none() {
            // The bundled test server accepts any key.
            stt.set_property("api-key", "local-test-key");
        }
    }
    if let Some(code) = &options.language {
        stt.set_property("language-code", code);
    }

    // Utterance buffers end in "\n" (handy for `! filesink`); srtenc and webvttenc add their own
    // line breaks after the text, which would leave an extra blank line after every cue.
    stt.static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, |_, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
                let len = buffer.size();
                let trimmed = buffer.map_readable().map_or(len, |map| {
                    len - map
                        .iter()
                        .rev()
                        .take_while(|b| matches!(b, b'\n' | b'\r'))
                        .count()
                });
                if trimmed < len {
                    buffer.make_mut().set_size(trimmed);
                }
            }
            gst::PadProbeReturn::Ok
        });
    Ok(pipeline)
}

fn progress_bar() -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
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

fn run(options: &Options) -> Result<(), Box<dyn std::error::Error>> {
    gst::init()?;
    gstfireworks::plugin_register_static()?;
    let pipeline = build_pipeline(options)?;
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

    // Ctrl-C: finish what was heard (EOS); a second one quits at once.
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = interrupted.clone();
        ctrlc::set_handler(move || {
            if interrupted.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        })?;
    }

    let bar = progress_bar();
    let started = Instant::now();
    let bus = pipeline.bus().unwrap();
    if pipeline.set_state(gst::State::Playing).is_err() {
        // E.g. the file does not exist: the ERROR message says why.
        let msg = bus.pop_filtered(&[gst::MessageType::Error]);
        let _ = pipeline.set_state(gst::State::Null);
        return Err(msg
            .map_or("the pipeline could not start".into(), |m| error_text(&m))
            .into());
    }
    let mut utterances = 0;
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
    result?;

    let audio = gst::ClockTime::from_nseconds(position.load(Ordering::Relaxed));
    let written: Vec<&str> = [&options.srt, &options.vtt]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
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

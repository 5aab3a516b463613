// SPDX-License-Identifier: MPL-2.0
//! An application that transcribes an audio file and reads the transcripts from the bus.
//!
//!     FIREWORKS_API_KEY=fw_... cargo run --example read-bus-messages -- talk.wav
//!     cargo run --example read-bus-messages -- speech.wav --base-url ws://127.0.0.1:8765/v1
//!
//! On a terminal, interim transcripts overwrite the current line and finals are printed with
//! their times; when stdout is a file or a pipe, only the finals are written, as plain lines.
//! `--help` lists the options.

#[macro_use]
mod common;

use std::io::Write;
use std::process::ExitCode;

use common::{error_text, Args};
use gst::prelude::*;

const HELP: &str = concat!(
    "usage: read-bus-messages FILE [--base-url URL] [--language CODE]

Transcribes an audio file with fireworksstt and prints what its fireworksstt/* bus messages
say: finals as `[START → END] text` on stdout, usage reports on stderr. On a terminal, interim
transcripts are shown too, overwriting the current line; into a file or a pipe, only the finals
are written, as plain lines.

options:
  --base-url URL      the service endpoint (default: Fireworks' us-virginia-1 endpoint), e.g.
                      ws://127.0.0.1:8765/v1 for a local fireworks-test-server
  --language CODE     spoken language, e.g. en or en-US (default: detected by the service)
  -h, --help          this help

Exit status: 0 done, 1 failed (the error on stderr), 2 bad arguments.

",
    api_key_help!()
);

#[derive(Default)]
struct Options {
    file: String,
    base_url: Option<String>,
    language: Option<String>,
}

fn parse_args(args: Vec<String>) -> Result<Option<Options>, String> {
    let mut args = Args::new(args);
    let mut o = Options::default();
    let mut file = None;
    while let Some(arg) = args.next_arg() {
        match arg.as_str() {
            "--base-url" => o.base_url = Some(args.value("--base-url")?),
            "--language" => o.language = Some(args.value("--language")?),
            "-h" | "--help" => return Ok(None),
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ if file.is_none() => file = Some(arg),
            _ => return Err("more than one input file".into()),
        }
    }
    o.file = file.ok_or("no input file given")?;
    Ok(Some(o))
}

fn main() -> ExitCode {
    common::cli_main(HELP, parse_args, run)
}

fn run(o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    common::require_input_file(&o.file)?;
    common::require_api_key(o.base_url.as_deref())?;
    gst::init()?;
    gstfireworks::plugin_register_static()?;
    common::require_elements(&[
        "filesrc",
        "decodebin",
        "audioconvert",
        "audioresample",
        "fakesink",
    ])?;
    let pipeline = gst::parse::launch(
        "filesrc name=src ! decodebin ! audioconvert ! audioresample ! fireworksstt name=stt ! \
         fakesink",
    )?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    pipeline
        .by_name("src")
        .unwrap()
        .set_property("location", &o.file);
    let stt = pipeline.by_name("stt").unwrap();
    common::point_at(&stt, o.base_url.as_deref());
    if let Some(code) = &o.language {
        stt.set_property("language-code", code);
    }

    // On a terminal: "\r" and "erase to the end of the line" let an interim be redrawn in place.
    let terminal = common::stdout_is_terminal();
    let clear = if terminal { "\r\x1b[K" } else { "" };
    let mut interim_shown = false;
    common::start(&pipeline)?;
    let bus = pipeline.bus().unwrap();
    // fireworksstt bounds every wait of its own (connect-timeout, retries, stall-timeout,
    // drain-timeout); this is the application's backstop against a pipeline that never ends.
    let limit = gst::ClockTime::from_seconds(600);
    let result = loop {
        let Some(msg) = bus.timed_pop(limit) else {
            break Err(format!("no message for {limit}: giving up"));
        };
        match msg.view() {
            gst::MessageView::Element(e) => {
                let Some(s) = e.structure() else { continue };
                match s.name().as_str() {
                    "fireworksstt/transcript" => {
                        let text = s.get::<String>("text")?;
                        if s.get::<bool>("final")? {
                            let start = s.get::<gst::ClockTime>("start").ok();
                            let end = s.get::<gst::ClockTime>("end").ok();
                            println!(
                                "{}[{} → {}] {text}",
                                if interim_shown { clear } else { "" },
                                start.map(|t| t.to_string()).unwrap_or_default(),
                                end.map(|t| t.to_string()).unwrap_or_default()
                            );
                            interim_shown = false;
                        } else if terminal {
                            print!("{clear}… {text}");
                            std::io::stdout().flush()?;
                            interim_shown = true;
                        }
                    }
                    "fireworksstt/usage" => {
                        let total = s.get::<gst::ClockTime>("total-audio-duration")?;
                        if interim_shown {
                            // Keep the interim line intact: the report goes on a line of its own.
                            println!();
                            interim_shown = false;
                        }
                        eprintln!("(usage: {total} of audio sent so far)");
                    }
                    _ => {}
                }
            }
            gst::MessageView::Warning(w) => eprintln!("warning: {}", w.error()),
            gst::MessageView::Error(_) => break Err(error_text(&msg)),
            gst::MessageView::Eos(_) => break Ok(()),
            _ => {}
        }
    };
    if interim_shown {
        println!();
    }
    pipeline.set_state(gst::State::Null)?;
    Ok(result?)
}

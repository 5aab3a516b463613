//! An application that transcribes a WAV file and reads the transcripts from the bus.
//!
//!     cargo run --example read-bus-messages -- speech.wav
//!     cargo run --example read-bus-messages -- speech.wav --base-url ws://127.0.0.1:8765/v1
//!
//! The API key comes from FIREWORKS_API_KEY (the local test server accepts any key).
//! Interim transcripts overwrite the current line; finals are printed with their times.

use std::io::Write;

use gst::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut base_url = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--base-url" => base_url = args.next(),
            "-h" | "--help" => {
                println!("usage: read-bus-messages FILE.wav [--base-url URL]");
                return Ok(());
            }
            _ => file = Some(arg),
        }
    }
    let file = file.ok_or("usage: read-bus-messages FILE.wav [--base-url URL]")?;

    gst::init()?;
    gstfireworks::plugin_register_static()?;
    let pipeline = gst::parse::launch(
        "filesrc name=src ! decodebin ! audioconvert ! audioresample ! fireworksstt name=stt ! fakesink",
    )?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    pipeline
        .by_name("src")
        .unwrap()
        .set_property("location", &file);
    let stt = pipeline.by_name("stt").unwrap();
    if let Some(url) = base_url {
        stt.set_property("base-url", url);
        if std::env::var_os("FIREWORKS_API_KEY").is_none() {
            // The bundled test server accepts any key.
            stt.set_property("api-key", "local-test-key");
        }
    }

    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().unwrap();
    let mut result = Ok(());
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
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
                                "\r\x1b[K[{} → {}] {text}",
                                start.map(|t| t.to_string()).unwrap_or_default(),
                                end.map(|t| t.to_string()).unwrap_or_default()
                            );
                        } else {
                            print!("\r\x1b[K… {text}");
                            std::io::stdout().flush()?;
                        }
                    }
                    "fireworksstt/usage" => {
                        let total = s.get::<gst::ClockTime>("total-audio-duration")?;
                        eprintln!("\r\x1b[K(usage: {total} of audio sent so far)");
                    }
                    _ => {}
                }
            }
            gst::MessageView::Warning(w) => eprintln!("warning: {}", w.error()),
            gst::MessageView::Error(e) => {
                result = Err(format!("{} ({})", e.error(), e.debug().unwrap_or_default()).into());
                break;
            }
            gst::MessageView::Eos(_) => break,
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null)?;
    result
}

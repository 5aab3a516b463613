// SPDX-License-Identifier: MPL-2.0
//! Against the real Fireworks service. Runs only when FIREWORKS_API_KEY is set (and the
//! machine can reach the service); otherwise it says so and passes without doing anything.
//!
//!     FIREWORKS_API_KEY=fw_... cargo test --test integration live:: -- --nocapture
//!
//! The speech comes from the system's text-to-speech if `espeak-ng` is installed; without it a
//! tone is sent, which checks connection, authentication, streaming, drain and usage but
//! cannot check the words.

use std::time::Duration;

use crate::common::*;
use gst::prelude::*;

#[test]
fn live_service_round_trip() {
    let Ok(key) = std::env::var("FIREWORKS_API_KEY") else {
        eprintln!("live test skipped: FIREWORKS_API_KEY is not set");
        return;
    };
    init();
    let wav = std::env::temp_dir().join(format!("fireworksstt-live-{}.wav", std::process::id()));
    let spoken = std::process::Command::new("espeak-ng")
        .args([
            "-w",
            wav.to_str().unwrap(),
            "hello world, this is a live test",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let description = if spoken {
        format!(
            "filesrc location={} ! wavparse ! audioconvert ! audioresample ! fireworksstt name=stt ! fakesink",
            wav.display()
        )
    } else {
        "audiotestsrc num-buffers=100 ! audioconvert ! audioresample ! fireworksstt name=stt ! fakesink"
            .to_string()
    };
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let stt = pipeline.by_name("stt").unwrap();
    stt.set_property("api-key", key.as_str());
    if let Ok(url) = std::env::var("FIREWORKS_BASE_URL") {
        stt.set_property("base-url", url);
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let run = collect_bus(&pipeline, Duration::from_secs(60));
    pipeline.set_state(gst::State::Null).unwrap();
    let _ = std::fs::remove_file(&wav);

    assert!(run.errors.is_empty(), "{}", run.error_text());
    assert!(run.got_eos);
    assert!(
        !format!("{run:?}").contains(&key),
        "the key leaked into a message"
    );
    assert!(!run.messages_named("fireworksstt/usage").is_empty());
    if spoken {
        let text = run.finals().join(" ").to_lowercase();
        assert!(
            text.contains("hello") || text.contains("live"),
            "heard: {text:?}"
        );
    }
}

// SPDX-License-Identifier: MPL-2.0
//! A recogniser slower than the audio never makes a file short with exit status 0 (issue 15,
//! point 7). As a user runs it: `gst-launch-1.0 filesrc ! wavparse ! … ! fireworksstt ! fakesink`
//! on a WAV file of real speech (the five LibriVox clips of Debian's `pocketsphinx-testdata`,
//! 1.5 s apart), against the bundled server with its Whisper recogniser made slow
//! (`ServerConfig::decode_delay`: every decode holds its worker that much longer, as on a
//! machine too slow for the model). The file is pushed as fast as GStreamer reads it, so at
//! end of stream every final is still to be decoded.
//!
//! * Slow, but delivering within `drain-timeout` of each other (though not all within
//!   `drain-timeout` of the end of stream): the whole file is transcribed (one final per clip,
//!   WER within the speech tests' bound) and gst-launch exits 0.
//! * Slower than `drain-timeout`: the end of stream gives up, and the run says so — an ERROR
//!   naming the seconds of audio never transcribed, exit status 1 — never a short transcript
//!   with exit 0.
//!
//! Needs the speech model (`./scripts/setup.sh`). `cargo test --test integration slow_recogniser:: --
//! --nocapture` prints the timings.

use crate::common;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use fireworks_test_server::audio::write_wav;
use fireworks_test_server::evaluate::{librivox_clips, read_wav, word_error_rate};

/// The LibriVox bound of `tests/integration/speech.rs`.
const WER_BOUND: f64 = 0.12;
const GAP_SECONDS: f64 = 1.5;
/// Bound on one gst-launch run.
const RUN_BOUND: Duration = Duration::from_secs(180);

/// The clips joined by silence, written as a WAV file; their reference texts.
fn speech_file(dir: &std::path::Path) -> (std::path::PathBuf, Vec<String>, f64) {
    let clips = librivox_clips().expect("pocketsphinx-testdata (./scripts/setup.sh)");
    let gap = vec![0i16; (GAP_SECONDS * 16000.0) as usize];
    let mut samples = gap.clone();
    let mut references = Vec::new();
    for clip in &clips {
        let (rate, channels, audio) = read_wav(&clip.path).unwrap();
        assert_eq!((rate, channels), (16000, 1), "{}", clip.name);
        samples.extend_from_slice(&audio);
        samples.extend_from_slice(&gap);
        references.push(clip.reference.clone());
    }
    let path = dir.join("librivox.wav");
    write_wav(&path, &samples).unwrap();
    (path, references, samples.len() as f64 / 16000.0)
}

struct Launch {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Launch {
    /// Texts of the final transcripts, in order.
    fn finals(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter(|l| l.contains("fireworksstt/transcript") && l.contains("final=(boolean)true"))
            .filter_map(|l| {
                let rest = &l[l.find("text=(string)")? + "text=(string)".len()..];
                let text = match rest.strip_prefix('"') {
                    Some(quoted) => &quoted[..quoted.find('"')?],
                    None => &rest[..rest.find(',')?],
                };
                Some(text.replace("\\ ", " ").replace("\\,", ","))
            })
            .collect()
    }

    fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// `gst-launch-1.0 -m filesrc ! wavparse ! audioconvert ! audioresample ! fireworksstt … !
/// fakesink`, bounded by [`RUN_BOUND`] (killed beyond it).
fn gst_launch(dir: &std::path::Path, wav: &std::path::Path, element: &str) -> Launch {
    let plugins = plugin_dir();
    assert!(
        plugins.join("libgstfireworks.so").exists(),
        "the cdylib was not built in {}",
        plugins.display()
    );
    let pipeline = format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample ! {element} ! fakesink",
        wav.display()
    );
    let started = Instant::now();
    let child = Command::new("gst-launch-1.0")
        .arg("-m")
        .args(pipeline.split(' '))
        .env("GST_PLUGIN_PATH", &plugins)
        .env("GST_REGISTRY", dir.join("registry.bin"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 runs (scripts/setup.sh installs gstreamer1.0-tools)");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(RUN_BOUND) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("gst-launch-1.0 did not finish within {RUN_BOUND:?}");
        }
    };
    Launch {
        status: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fireworksstt-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What must hold of every run, whatever the recogniser's speed: exit 0 only with the whole
/// file transcribed; otherwise exit 1 with an ERROR naming the seconds never transcribed.
fn assert_complete_or_error(launch: &Launch, references: &[String]) {
    let finals = launch.finals();
    let wer = word_error_rate(&references.join(" "), &finals.join(" "));
    match launch.status {
        Some(0) => {
            assert_eq!(
                finals.len(),
                references.len(),
                "exit 0 with {} of {} finals:\n{}",
                finals.len(),
                references.len(),
                launch.output()
            );
            assert!(
                wer <= WER_BOUND,
                "exit 0 with WER {:.1} %: {finals:?}",
                100.0 * wer
            );
        }
        _ => {
            assert_eq!(launch.status, Some(1), "{}", launch.output());
            assert!(
                launch
                    .output()
                    .contains("s of audio were never transcribed"),
                "a failed run must name the seconds never transcribed:\n{}",
                launch.output()
            );
        }
    }
}

#[test]
fn a_slow_recogniser_still_transcribes_the_whole_file() {
    // The delays alone (5 x 2 s) outlast `drain-timeout`, so only a drain that counts from
    // the last transcript can wait for every final; the gap between two finals (2 s plus a
    // decode of 0.3-0.6 s on a quiet machine) leaves 5 s for a machine busy with other work.
    let delay = Duration::from_millis(2000);
    let drain_timeout = Duration::from_millis(8000);
    let dir = temp_dir("slow-recogniser");
    let (wav, references, seconds) = speech_file(&dir);
    let server = TestServer::start(
        ServerConfig::default()
            .with_decode_delay(delay)
            .with_recording(false, false),
    )
    .unwrap();
    let launch = gst_launch(
        &dir,
        &wav,
        &format!(
            "fireworksstt base-url={} api-key={TEST_KEY} drain-timeout={}",
            server.base_url(),
            drain_timeout.as_millis()
        ),
    );
    println!(
        "{seconds:.1} s of speech, every decode {delay:?} slower, drain-timeout {drain_timeout:?}: \
         exit {:?} after {:.1} s, finals {:?}",
        launch.status,
        launch.elapsed.as_secs_f64(),
        launch.finals()
    );
    assert_complete_or_error(&launch, &references);
    assert_eq!(launch.status, Some(0), "{}", launch.output());
    // The recogniser was slow indeed: the finals (decoded one after another on the
    // connection) took at least the delay each, most of them after the file was sent.
    assert!(
        launch.elapsed >= delay * references.len() as u32 && launch.elapsed > drain_timeout,
        "finished in {:?}",
        launch.elapsed
    );
    let record = &server.connections()[0];
    assert_eq!(
        record.audio_bytes,
        (seconds * 32000.0).round() as u64,
        "the server read the whole file"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_recogniser_slower_than_the_drain_timeout_ends_in_an_error_naming_the_seconds() {
    // Each decode takes longer than the element waits at end of stream for the next final.
    let delay = Duration::from_millis(2500);
    let dir = temp_dir("slower-recogniser");
    let (wav, references, seconds) = speech_file(&dir);
    let server = TestServer::start(
        ServerConfig::default()
            .with_decode_delay(delay)
            .with_recording(false, false),
    )
    .unwrap();
    let launch = gst_launch(
        &dir,
        &wav,
        &format!(
            "fireworksstt base-url={} api-key={TEST_KEY} drain-timeout=1000",
            server.base_url()
        ),
    );
    println!(
        "{seconds:.1} s of speech, every decode {delay:?} slower, drain-timeout 1 s: exit {:?} \
         after {:.1} s, finals {:?}\n{}",
        launch.status,
        launch.elapsed.as_secs_f64(),
        launch.finals(),
        launch
            .output()
            .lines()
            .filter(|l| l.contains("never transcribed"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_complete_or_error(&launch, &references);
    assert_eq!(
        launch.status,
        Some(1),
        "the drain cannot have waited for every final:\n{}",
        launch.output()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// SPDX-License-Identifier: MPL-2.0
//! fireworksstt as the transcriber of the real `transcriberbin` (gst-plugins-rs 0.13.7, the
//! newest that builds against GStreamer 1.22), on a live audio + video pipeline:
//!
//! ```text
//! appsrc (live speech) ──► sink_audio ┐                  ┌ src_audio ──► fakesink
//!                                     │ transcriberbin   │
//! videotestsrc (live) ──► sink_video ┘ transcriber=     └ src_video ──► ccextractor ──► fakesink
//!                                        fireworksstt                        └ caption ──► appsink
//! ```
//!
//! The captions transcriberbin attaches to the video (GstVideoCaptionMeta, CEA-708 cc_data with
//! CEA-608 on CC1 inside) are taken off by `ccextractor` and decoded here: the field-1 byte pairs
//! of the cc_data triplets are CEA-608, whose printable bytes are ASCII once the odd-parity bit
//! is stripped. The spoken words must come out, in order and in time, and transcriberbin must
//! never have switched to passthrough (which it does when its transcriber posts an ERROR).
//!
//! transcriberbin and the plugins it needs (textwrap, tttocea708, cea708mux) are not packaged
//! for Debian bookworm: `scripts/build-transcriberbin-plugins.sh` (run by `scripts/setup.sh`)
//! builds them into `${FIREWORKSSTT_PLUGIN_CACHE:-$HOME/.cache/fireworksstt/gst-plugins-rs-0.13}`
//! /plugins. Without them this test fails and says so.
//!
//! Loading those plugins changes the process's registry, and a hang ends the process: the test
//! runs alone in a child process of its own (`common::process`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use fireworks_test_server::ConnectionRecord;
use gst::prelude::*;

const UTTERANCES: [&str; 2] = ["hello world", "how are you"];
/// transcriberbin's `latency` (it passes it on to fireworksstt's `latency`). Finals come about
/// 1.1 s of audio after an utterance's last word (the test server's 1 s text timeout), so 3 s
/// leaves ample margin on a loaded machine.
const BIN_LATENCY_MS: u32 = 3000;
/// Audio is pushed in 100 ms buffers, each when the pipeline clock says it was "captured".
const CHUNK_SAMPLES: usize = 1600;
const CHUNK_NS: u64 = CHUNK_SAMPLES as u64 * 1_000_000_000 / 16_000;
/// 29.97 fps, as broadcast captions expect.
const FRAME_NS: u64 = 1_000_000_000 * 1001 / 30_000;
/// After EOS is sent, the drain and the muxers' timeouts must finish within this.
const EOS_TIMEOUT: Duration = Duration::from_secs(12);
/// Everything, including shutting down; a hang anywhere ends the process with a failure.
const WATCHDOG: Duration = Duration::from_secs(40);

const PLUGIN_LIBS: [&str; 2] = ["libgstrsclosedcaption.so", "libgsttextwrap.so"];
const NEEDED_ELEMENTS: [&str; 13] = [
    "transcriberbin",
    "textwrap",
    "tttocea708",
    "cea708mux",
    "cccombiner",
    "ccconverter",
    "ccextractor",
    "clocksync",
    "valve",
    "audioconvert",
    "audioresample",
    "videotestsrc",
    "appsink",
];

/// Where scripts/build-transcriberbin-plugins.sh puts the plugins.
fn transcriberbin_plugin_dir() -> PathBuf {
    let cache = std::env::var_os("FIREWORKSSTT_PLUGIN_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/fireworksstt/gst-plugins-rs-0.13")
        });
    cache.join("plugins")
}

/// Registers fireworksstt and the transcriberbin plugins, or fails saying how to get them.
fn register_plugins() {
    init();
    let dir = transcriberbin_plugin_dir();
    let missing: Vec<&str> = PLUGIN_LIBS
        .iter()
        .copied()
        .filter(|lib| !dir.join(lib).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "the transcriberbin plugins {missing:?} are not in {}: run scripts/setup.sh (which runs \
         scripts/build-transcriberbin-plugins.sh) first, with the same FIREWORKSSTT_PLUGIN_CACHE",
        dir.display()
    );
    gst::Registry::get().scan_path(&dir);
    let absent: Vec<&str> = NEEDED_ELEMENTS
        .iter()
        .copied()
        .filter(|name| gst::ElementFactory::find(name).is_none())
        .collect();
    assert!(
        absent.is_empty(),
        "elements {absent:?} are missing after loading {}: run scripts/setup.sh (Debian packages \
         gstreamer1.0-plugins-base/-bad and the plugins built by \
         scripts/build-transcriberbin-plugins.sh)",
        dir.display()
    );
}

/// Ends the process if the test is still running after `limit` (a hang is a failure, and a
/// hung `set_state` cannot be interrupted any other way).
fn start_watchdog(limit: Duration, done: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if done.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "transcriberbin test: still running after {limit:?}: a hang (state change, drain or \
             caption stall); failing"
        );
        std::process::exit(101);
    });
}

/// One caption buffer from ccextractor: its PTS and its cc_data triplets.
#[derive(Debug, Clone)]
struct CaptionBuffer {
    pts: Option<u64>,
    cc_data: Vec<u8>,
}

/// A decoded CEA-608 character (or a word break for a control code) and the PTS of the video
/// frame that carried it.
#[derive(Debug, Clone, Copy)]
struct Cea608Char {
    ch: char,
    pts: Option<u64>,
}

/// CEA-608 characters that differ from ASCII in the basic set.
fn cea608_basic_char(byte: u8) -> char {
    match byte {
        0x2a => 'á',
        0x5c => 'é',
        0x5e => 'í',
        0x5f => 'ó',
        0x60 => 'ú',
        0x7b => 'ç',
        0x7c => '÷',
        0x7d => 'Ñ',
        0x7e => 'ñ',
        0x7f => '■',
        b => b as char,
    }
}

/// Decodes the CC1/CC2 (field 1) CEA-608 data inside CEA-708 cc_data: each triplet is
/// `marker|cc_valid|cc_type, b1, b2`; cc_type 0 is field 1. Control codes (first byte
/// 0x10..=0x1f after the parity bit is stripped: preamble addresses, roll-up, carriage return,
/// mid-row and special characters) become a space; padding (0x80 0x80) is skipped.
fn decode_cea608_field1(buffers: &[CaptionBuffer]) -> Vec<Cea608Char> {
    let mut out = Vec::new();
    for buffer in buffers {
        for triplet in buffer.cc_data.chunks_exact(3) {
            let (header, b1, b2) = (triplet[0], triplet[1] & 0x7f, triplet[2] & 0x7f);
            let cc_valid = header & 0x04 != 0;
            let cc_type = header & 0x03;
            if !cc_valid || cc_type != 0 || (b1 == 0 && b2 == 0) {
                continue;
            }
            if (0x10..=0x1f).contains(&b1) {
                out.push(Cea608Char {
                    ch: ' ',
                    pts: buffer.pts,
                });
                continue;
            }
            for b in [b1, b2] {
                if b >= 0x20 {
                    out.push(Cea608Char {
                        ch: cea608_basic_char(b),
                        pts: buffer.pts,
                    });
                }
            }
        }
    }
    out
}

/// The decoded words, each with the PTS of the frame that carried its first letter.
fn caption_words(chars: &[Cea608Char]) -> Vec<(String, Option<u64>)> {
    let mut words: Vec<(String, Option<u64>)> = Vec::new();
    let mut current: Option<(String, Option<u64>)> = None;
    for c in chars {
        if c.ch.is_whitespace() {
            words.extend(current.take());
        } else {
            current
                .get_or_insert_with(|| (String::new(), c.pts))
                .0
                .push(c.ch);
        }
    }
    words.extend(current);
    words
}

fn fmt_s(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

#[derive(Debug, Default)]
struct BusLog {
    errors: Vec<String>,
    warnings: Vec<String>,
    got_eos: bool,
}

fn describe(msg: &gst::Message) -> String {
    let src = msg
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_default();
    match msg.view() {
        gst::MessageView::Error(e) => format!("{src}: {} ({:?})", e.error(), e.debug()),
        gst::MessageView::Warning(w) => format!("{src}: {} ({:?})", w.error(), w.debug()),
        _ => format!("{src}: {msg:?}"),
    }
}

/// Pops bus messages until EOS, an ERROR, or `deadline`.
fn drain_bus(bus: &gst::Bus, log: &mut BusLog, deadline: Instant, until_eos: bool) {
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timeout = if until_eos { remaining } else { Duration::ZERO };
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(timeout.as_nanos() as u64))
        else {
            return;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => {
                log.got_eos = true;
                return;
            }
            gst::MessageView::Error(_) => {
                log.errors.push(describe(&msg));
                return;
            }
            gst::MessageView::Warning(_) => log.warnings.push(describe(&msg)),
            _ => {}
        }
        if Instant::now() >= deadline {
            return;
        }
    }
}

#[test]
fn fireworksstt_is_a_working_transcriberbin_transcriber() {
    let test = test_name(
        module_path!(),
        "fireworksstt_is_a_working_transcriberbin_transcriber",
    );
    if let Some(child) = run_alone(&test, &[], WATCHDOG + Duration::from_secs(20)) {
        print!("{}", child.stdout);
        eprint!("{}", child.stderr);
        return;
    }
    let done = Arc::new(AtomicBool::new(false));
    start_watchdog(WATCHDOG, done.clone());
    register_plugins();

    let server = TestServer::start(ServerConfig {
        api_key: Some(TEST_KEY.to_string()),
        ..Default::default()
    })
    .unwrap();
    let audio = synthesize_utterances(&UTTERANCES).unwrap();
    assert!(
        audio.duration() < Duration::from_secs(6),
        "keep the test short: {:?}",
        audio.duration()
    );

    let rig = build_pipeline(&server);
    let played = play_live(&rig, &audio);
    let outcome = Outcome::collect(&rig, played, &audio, &server);
    eprintln!("{}", outcome.report);

    assert_transcriberbin_kept_fireworksstt(&outcome, &rig.stt);
    assert_captions_carry_the_words(&outcome, &audio);
    assert_words_fed_in_time(&outcome, &audio);
    assert_text_stream_keeps_up(&outcome);
    assert_one_language_tag(&outcome);
    assert_clean_end(&outcome);
    done.store(true, Ordering::SeqCst);
}

// --- The pipeline -----------------------------------------------------------------------------

/// The pipeline of the module's picture, and what the test records from it.
struct Rig {
    pipeline: gst::Pipeline,
    speech: gst_app::AppSrc,
    stt: gst::Element,
    tbin: gst::Element,
    passthrough_notified: Arc<AtomicUsize>,
    captions: Arc<Mutex<Vec<CaptionBuffer>>>,
    caption_pad_seen: Arc<AtomicBool>,
    /// What fireworksstt sends into transcriberbin's caption branch, with the running time at
    /// which it was sent: (running time, item).
    text_stream: Arc<Mutex<Vec<(u64, Out)>>>,
    /// The language tag transcriberbin receives, relative to the text: "tag LANG" / "text".
    language_stream: Arc<Mutex<Vec<String>>>,
}

fn build_pipeline(server: &TestServer) -> Rig {
    let pipeline = gst::Pipeline::new();
    let speech = gst_app::AppSrc::builder()
        .name("speech")
        .caps(&audio_caps())
        .format(gst::Format::Time)
        .is_live(true)
        .min_latency(CHUNK_NS as i64)
        .max_bytes(0)
        .build();
    let (vsrc, vcaps) = video_source();
    let stt = gst::ElementFactory::make("fireworksstt")
        .name("stt")
        .build()
        .unwrap();
    point_at(&stt, server);
    let tbin = transcriberbin_around(&stt);
    let passthrough_notified = Arc::new(AtomicUsize::new(0));
    {
        let notified = passthrough_notified.clone();
        tbin.connect_notify(Some("passthrough"), move |_, _| {
            notified.fetch_add(1, Ordering::SeqCst);
        });
    }
    let asink = gst::ElementFactory::make("fakesink")
        .name("audio_out")
        .property("sync", true)
        .build()
        .unwrap();
    let extractor = gst::ElementFactory::make("ccextractor").build().unwrap();
    let vsink = gst::ElementFactory::make("fakesink")
        .name("video_out")
        .property("sync", true)
        .build()
        .unwrap();
    let (ccsink, captions) = caption_sink();

    pipeline
        .add_many([
            speech.upcast_ref(),
            &vsrc,
            &vcaps,
            &tbin,
            &asink,
            &extractor,
            &vsink,
            ccsink.upcast_ref(),
        ])
        .unwrap();
    speech
        .static_pad("src")
        .unwrap()
        .link(&tbin.static_pad("sink_audio").unwrap())
        .unwrap();
    tbin.link_pads(Some("src_audio"), &asink, None).unwrap();
    gst::Element::link_many([&vsrc, &vcaps]).unwrap();
    vcaps.link_pads(None, &tbin, Some("sink_video")).unwrap();
    tbin.link_pads(Some("src_video"), &extractor, None).unwrap();
    extractor.link_pads(Some("src"), &vsink, None).unwrap();
    let caption_pad_seen = link_caption_pad_when_added(&extractor, &ccsink);

    Rig {
        text_stream: record_text_stream(&pipeline, &stt),
        language_stream: record_language_tags(&stt),
        pipeline,
        speech,
        stt,
        tbin,
        passthrough_notified,
        captions,
        caption_pad_seen,
    }
}

/// Live black 320×240 video at 29.97 fps: `videotestsrc ! capsfilter`.
fn video_source() -> (gst::Element, gst::Element) {
    let vsrc = gst::ElementFactory::make("videotestsrc")
        .property("is-live", true)
        .property_from_str("pattern", "black")
        .build()
        .unwrap();
    let vcaps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("width", 320i32)
                .field("height", 240i32)
                .field("framerate", gst::Fraction::new(30_000, 1001))
                .build(),
        )
        .build()
        .unwrap();
    (vsrc, vcaps)
}

fn cc_data_caps() -> gst::Caps {
    gst::Caps::builder("closedcaption/x-cea-708")
        .field("format", "cc_data")
        .build()
}

/// A transcriberbin (CEA-708 captions, [`BIN_LATENCY_MS`], language en-GB) with `stt` as its
/// transcriber.
fn transcriberbin_around(stt: &gst::Element) -> gst::Element {
    // mux-method must be given at construction (the bin builds its muxer in `constructed`):
    // Debian's 1.22 has no cea608mux, so with the default (cea608) the bin has no state.
    let tbin = gst::ElementFactory::make("transcriberbin")
        .name("tbin")
        .property_from_str("mux-method", "cea708")
        .build()
        .unwrap();
    tbin.set_property("latency", BIN_LATENCY_MS);
    tbin.set_property("cc-caps", cc_data_caps());
    // In 0.13.7 this element property forwards to the `sink_audio` pad's `transcriber`.
    tbin.set_property("transcriber", stt);
    // 0.13.7 sets `language-code` on the transcriber only when the pad's language changes
    // (default "en-US"): change it, so that the BCP-47 form with a region goes through.
    tbin.set_property("language-code", "en-GB");
    let installed = tbin.property::<Option<gst::Element>>("transcriber");
    assert_eq!(
        installed.as_ref(),
        Some(stt),
        "transcriberbin did not take fireworksstt as its transcriber"
    );
    tbin
}

/// An appsink for ccextractor's caption pad, and the caption buffers it receives.
fn caption_sink() -> (gst_app::AppSink, Arc<Mutex<Vec<CaptionBuffer>>>) {
    let ccsink = gst_app::AppSink::builder()
        .name("captions")
        .caps(&cc_data_caps())
        .sync(false)
        .build();
    // Linked only once ccextractor adds its caption pad: it must not hold up the state change.
    ccsink.set_property("async", false);
    let captions: Arc<Mutex<Vec<CaptionBuffer>>> = Arc::new(Mutex::new(Vec::new()));
    let received = captions.clone();
    ccsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(buffer) = sample.buffer() {
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    received.lock().unwrap().push(CaptionBuffer {
                        pts: buffer.pts().map(gst::ClockTime::nseconds),
                        cc_data: map.to_vec(),
                    });
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    (ccsink, captions)
}

/// Links ccextractor's "caption" pad to `ccsink` when it appears; true once it has.
fn link_caption_pad_when_added(
    extractor: &gst::Element,
    ccsink: &gst_app::AppSink,
) -> Arc<AtomicBool> {
    let seen = Arc::new(AtomicBool::new(false));
    let ccsink_pad = ccsink.static_pad("sink").unwrap();
    let flag = seen.clone();
    extractor.connect_pad_added(move |_, pad| {
        if pad.name() == "caption" {
            flag.store(true, Ordering::SeqCst);
            pad.link(&ccsink_pad)
                .expect("ccextractor's caption pad links to the appsink");
        }
    });
    seen
}

/// Records what leaves fireworksstt's src pad, with the running time at which it left.
fn record_text_stream(pipeline: &gst::Pipeline, stt: &gst::Element) -> Arc<Mutex<Vec<(u64, Out)>>> {
    let text_stream: Arc<Mutex<Vec<(u64, Out)>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = text_stream.clone();
    let pipeline_weak = pipeline.downgrade();
    stt.static_pad("src").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let now = pipeline_weak
                .upgrade()
                .and_then(|p| p.current_running_time())
                .map(gst::ClockTime::nseconds)
                .unwrap_or(0);
            // Words, GAPs, custom events and EOS (segments are not part of the text stream).
            let item = info.data.as_ref().and_then(as_out);
            if let Some(item) = item.filter(|item| !matches!(item, Out::Segment(_))) {
                sink.lock().unwrap().push((now, item));
            }
            gst::PadProbeReturn::Ok
        },
    );
    text_stream
}

/// Records the language tags leaving fireworksstt, relative to the text: "tag LANG" / "text".
fn record_language_tags(stt: &gst::Element) -> Arc<Mutex<Vec<String>>> {
    let language_stream: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = language_stream.clone();
    stt.static_pad("src").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let entry = match &info.data {
                Some(gst::PadProbeData::Buffer(_)) => Some("text".to_string()),
                Some(gst::PadProbeData::Event(e)) => match e.view() {
                    gst::EventView::Tag(tag) => tag
                        .tag()
                        .get::<gst::tags::LanguageCode>()
                        .map(|code| format!("tag {}", code.get())),
                    _ => None,
                },
                _ => None,
            };
            if let Some(entry) = entry {
                sink.lock().unwrap().push(entry);
            }
            gst::PadProbeReturn::Ok
        },
    );
    language_stream
}

// --- The run ----------------------------------------------------------------------------------

/// What one run measured, besides what the [`Rig`] recorded.
struct Played {
    log: BusLog,
    /// Running time of the first audio buffer, and of the end of the audio.
    first_pts: u64,
    audio_end: u64,
    fed_at: Duration,
    eos_after: Duration,
    stop_took: Duration,
    elapsed: Duration,
    passthrough: bool,
    max_delay_ms: u32,
    stt_latency_ms: u32,
    pipeline_latency: String,
}

/// Live speech in real time, then EOS; reads the properties, then stops the pipeline.
fn play_live(rig: &Rig, audio: &SynthAudio) -> Played {
    let pipeline = &rig.pipeline;
    let bus = pipeline.bus().unwrap();
    let mut log = BusLog::default();
    let started = Instant::now();
    pipeline
        .set_state(gst::State::Playing)
        .expect("the pipeline goes to PLAYING");
    let clock = pipeline.clock().expect("a playing pipeline has a clock");
    let base_time = pipeline
        .base_time()
        .expect("a playing pipeline has a base time");
    let running_time = || (clock.time() - base_time).nseconds();

    let first_pts = running_time();
    let mut pts = first_pts;
    for chunk in audio.samples.chunks(CHUNK_SAMPLES) {
        let duration = chunk.len() as u64 * 1_000_000_000 / 16_000;
        // A live source delivers a buffer once it has been captured.
        let due = pts + duration;
        let now = running_time();
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        rig.speech
            .push_buffer(audio_buffer(chunk, pts))
            .expect("transcriberbin accepts the audio");
        pts += duration;
        drain_bus(&bus, &mut log, Instant::now(), false);
        assert!(log.errors.is_empty(), "errors: {:#?}", log.errors);
    }
    let fed_at = started.elapsed();

    pipeline.send_event(gst::event::Eos::new());
    drain_bus(&bus, &mut log, Instant::now() + EOS_TIMEOUT, true);
    let eos_after = started.elapsed() - fed_at;

    let mut latency_query = gst::query::Latency::new();
    let pipeline_latency = pipeline
        .query(&mut latency_query)
        .then(|| latency_query.result());
    let played = Played {
        log,
        first_pts,
        audio_end: pts,
        fed_at,
        eos_after,
        stop_took: Duration::ZERO,
        elapsed: Duration::ZERO,
        passthrough: rig.tbin.property::<bool>("passthrough"),
        max_delay_ms: rig.stt.property::<u32>("max-observed-delay"),
        stt_latency_ms: rig.stt.property::<u32>("latency"),
        pipeline_latency: format!("{pipeline_latency:?}"),
    };

    let stopped = Instant::now();
    pipeline
        .set_state(gst::State::Null)
        .expect("the pipeline goes back to NULL");
    Played {
        stop_took: stopped.elapsed(),
        elapsed: started.elapsed(),
        ..played
    }
}

/// Everything the assertions look at: the run, what was recorded and decoded, the server's
/// connections, and a report of it all for failure messages.
struct Outcome {
    played: Played,
    captions: Vec<CaptionBuffer>,
    /// The caption words, each with the PTS of the frame that carried its first letter.
    words: Vec<(String, Option<u64>)>,
    connections: Vec<ConnectionRecord>,
    text_stream: Vec<(u64, Out)>,
    language_stream: Vec<String>,
    passthrough_notified: usize,
    report: String,
}

impl Outcome {
    fn collect(rig: &Rig, played: Played, audio: &SynthAudio, server: &TestServer) -> Outcome {
        let captions = std::mem::take(&mut *rig.captions.lock().unwrap());
        let chars = decode_cea608_field1(&captions);
        let mut outcome = Outcome {
            words: caption_words(&chars),
            captions,
            connections: server.connections(),
            text_stream: std::mem::take(&mut *rig.text_stream.lock().unwrap()),
            language_stream: std::mem::take(&mut *rig.language_stream.lock().unwrap()),
            passthrough_notified: rig.passthrough_notified.load(Ordering::SeqCst),
            played,
            report: String::new(),
        };
        let text: String = chars.iter().map(|c| c.ch).collect();
        outcome.report =
            outcome.describe(&text, rig.caption_pad_seen.load(Ordering::SeqCst), audio);
        outcome
    }

    fn describe(&self, text: &str, caption_pad_seen: bool, audio: &SynthAudio) -> String {
        let p = &self.played;
        let text_stream_report: String = self
            .text_stream
            .iter()
            .map(|(at, item)| format!("  at {}: {item:?}\n", fmt_s(*at)))
            .collect();
        let spoken: Vec<(String, String)> = audio
            .words
            .iter()
            .map(|w| (w.text.clone(), fmt_s(self.spoken_pts(w.start_sample))))
            .collect();
        format!(
            "caption text (CEA-608 CC1): {text:?}\n\
             caption buffers: {} (first PTS {:?}, last PTS {:?}), caption pad appeared: \
             {caption_pad_seen}\n\
             words (with caption PTS): {:?}\n\
             spoken at: {spoken:?}\n\
             audio: {} .. {} running time, fed in {:?}; EOS {} {:?} later; \
             shutdown took {:?}; total {:?}\n\
             bus errors: {:#?}\nbus warnings: {:#?}\n\
             passthrough: {} (notified {} times)\n\
             fireworksstt latency {} ms, max-observed-delay {} ms; pipeline latency {}\n\
             server connections: {}\n\
             fireworksstt → transcriberbin (running time when sent: item):\n{text_stream_report}",
            self.captions.len(),
            self.captions.first().and_then(|c| c.pts).map(fmt_s),
            self.captions.last().and_then(|c| c.pts).map(fmt_s),
            self.words,
            fmt_s(p.first_pts),
            fmt_s(p.audio_end),
            p.fed_at,
            if p.log.got_eos {
                "arrived"
            } else {
                "did NOT arrive"
            },
            p.eos_after,
            p.stop_took,
            p.elapsed,
            p.log.errors,
            p.log.warnings,
            p.passthrough,
            self.passthrough_notified,
            p.stt_latency_ms,
            p.max_delay_ms,
            p.pipeline_latency,
            self.connections.len(),
        )
    }

    /// The running time at which the audio sample `sample` was fed.
    fn spoken_pts(&self, sample: u64) -> u64 {
        self.played.first_pts + sample * 1_000_000_000 / 16_000
    }
}

// --- What is asserted -------------------------------------------------------------------------

fn expected_words() -> Vec<&'static str> {
    UTTERANCES
        .iter()
        .flat_map(|u| u.split_whitespace())
        .collect()
}

/// (b) transcriberbin kept using fireworksstt: no ERROR or WARNING, no passthrough, one
/// authenticated connection in the language and with the latency transcriberbin passed on.
fn assert_transcriberbin_kept_fireworksstt(o: &Outcome, stt: &gst::Element) {
    let (p, report) = (&o.played, &o.report);
    assert!(p.log.errors.is_empty(), "ERROR on the bus\n{report}");
    assert!(
        p.log.warnings.is_empty(),
        "WARNING on the bus (newer transcriberbins re-post a transcriber ERROR as a WARNING and \
         switch to passthrough; fireworksstt warns about late transcripts)\n{report}"
    );
    assert!(
        !p.passthrough && o.passthrough_notified == 0,
        "transcriberbin fell back to passthrough: fireworksstt posted an ERROR (transcriberbin \
         0.13.7 swallows it and only logs it: run with GST_DEBUG=transcriberbin:1)\n{report}"
    );
    assert_eq!(
        o.connections.len(),
        1,
        "one connection to the service, no reconnects\n{report}"
    );
    assert_eq!(
        stt.property::<Option<String>>("language-code").as_deref(),
        Some("en-GB"),
        "transcriberbin passed its language-code on\n{report}"
    );
    let language: Vec<&str> = o.connections[0]
        .query
        .iter()
        .filter(|(k, _)| k == "language")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        language,
        ["en"],
        "en-GB is sent to the service as its code\n{report}"
    );
    assert_eq!(
        o.connections[0].upgrade_status,
        Some(101),
        "authenticated and upgraded\n{report}"
    );
    // 0.13.7 does this when the video caps arrive (setup_transcription), not when the
    // transcriber is assigned.
    assert_eq!(
        p.stt_latency_ms, BIN_LATENCY_MS,
        "transcriberbin set its latency on fireworksstt\n{report}"
    );
    assert!(
        p.max_delay_ms < BIN_LATENCY_MS,
        "transcripts came back within transcriberbin's latency\n{report}"
    );
}

/// (a) The captions carry the words, in order and in time.
fn assert_captions_carry_the_words(o: &Outcome, audio: &SynthAudio) {
    let report = &o.report;
    let got: Vec<&str> = o.words.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(
        got,
        expected_words(),
        "the CEA-608 captions carry exactly the spoken words\n{report}"
    );
    assert_eq!(audio.words.len(), o.words.len());
    for (spoken, (word, caption_pts)) in audio.words.iter().zip(&o.words) {
        let spoken_pts = o.spoken_pts(spoken.start_sample);
        let caption_pts = caption_pts.expect("caption buffers are timestamped");
        // tttocea708 schedules a word at its PTS, CEA-608 carries 2 bytes a frame (the first
        // word trails its roll-up/preamble codes by ~3 frames) and cccombiner puts the data on
        // whole frames: measured 1–2 frames early to 3 frames late. Much more either way means
        // the word times or the segment (lateness) are wrong.
        assert!(
            caption_pts + 6 * FRAME_NS >= spoken_pts && caption_pts <= spoken_pts + 1_500_000_000,
            "caption {word:?} at {} but spoken at {}\n{report}",
            fmt_s(caption_pts),
            fmt_s(spoken_pts)
        );
    }
}

/// What fireworksstt fed the caption branch: one buffer per word at its spoken time, a final
/// transcript event per utterance, GAPs through the silences.
fn assert_words_fed_in_time(o: &Outcome, audio: &SynthAudio) {
    let report = &o.report;
    let pushed: Vec<(&str, u64)> = o
        .text_stream
        .iter()
        .filter_map(|(_, item)| match item {
            Out::Text { text, pts, .. } => Some((text.as_str(), *pts)),
            _ => None,
        })
        .collect();
    assert_eq!(
        pushed.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        expected_words(),
        "one buffer per word\n{report}"
    );
    for ((text, pts), spoken) in pushed.iter().zip(&audio.words) {
        let spoken_pts = o.spoken_pts(spoken.start_sample);
        assert!(
            pts.abs_diff(spoken_pts) <= 1_000_000,
            "{text:?} has PTS {} but was spoken at {}\n{report}",
            fmt_s(*pts),
            fmt_s(spoken_pts)
        );
    }
    let finals = o
        .text_stream
        .iter()
        .filter(|(_, item)| matches!(item, Out::Custom(name) if name == "rstranscribe/final-transcript"))
        .count();
    assert_eq!(
        finals,
        UTTERANCES.len(),
        "a final-transcript event per utterance\n{report}"
    );
    assert!(
        o.text_stream
            .iter()
            .any(|(_, item)| matches!(item, Out::Gap { .. })),
        "GAP events through the silences\n{report}"
    );
}

/// The muxers behind (cea708mux, cccombiner) wait at most the pipeline latency for text: the
/// stream's position must keep up with the running time, less transcriberbin's latency, through
/// words and GAPs alike. Checked at each push against the position before it (the slack covers
/// the 100 ms input buffers and scheduling). And EOS goes through.
fn assert_text_stream_keeps_up(o: &Outcome) {
    let report = &o.report;
    let allowed_lag = u64::from(BIN_LATENCY_MS) * 1_000_000 + 400_000_000;
    let mut position: Option<u64> = None;
    for (at, item) in &o.text_stream {
        if let Some(position) = position {
            assert!(
                at.saturating_sub(position) <= allowed_lag,
                "at {} the text stream was still at {}: more than latency behind, so the \
                 caption muxers time out without it\n{report}",
                fmt_s(*at),
                fmt_s(position)
            );
        }
        let end = match item {
            Out::Text { pts, duration, .. } | Out::Gap { pts, duration } => Some(pts + duration),
            _ => None,
        };
        if let Some(end) = end {
            position = Some(position.map_or(end, |p| p.max(end)));
        }
    }
    assert!(
        matches!(o.text_stream.last(), Some((_, Out::Eos))),
        "EOS went through fireworksstt\n{report}"
    );
}

/// The language reached transcriberbin as a tag before the first word (language-code en-GB is
/// sent as en, and the service reports en), once while it stays the same.
fn assert_one_language_tag(o: &Outcome) {
    let language_stream = &o.language_stream;
    assert_eq!(
        language_stream.first().map(String::as_str),
        Some("tag en"),
        "{language_stream:?}\n{}",
        o.report
    );
    assert_eq!(
        language_stream
            .iter()
            .filter(|e| e.starts_with("tag"))
            .count(),
        1,
        "one tag while the language stays the same: {language_stream:?}"
    );
}

/// A bounded, clean end: EOS reached the sinks, stopping and the whole run were quick.
fn assert_clean_end(o: &Outcome) {
    let (p, report) = (&o.played, &o.report);
    assert!(
        p.log.got_eos,
        "EOS must reach the sinks (fireworksstt drains within drain-timeout)\n{report}"
    );
    assert!(
        p.stop_took < Duration::from_secs(5),
        "stopping took {:?}\n{report}",
        p.stop_took
    );
    assert!(
        p.elapsed < Duration::from_secs(30),
        "took {:?}\n{report}",
        p.elapsed
    );
}

// SPDX-License-Identifier: MPL-2.0
//! Live captions burnt into video.
//!
//!     live-captions [--overlay | --cea708] [--audio-file FILE]
//!                   [--video-device DEVICE | --pattern NAME] [--output OUT.avi]
//!                   [--duration SECONDS] [--latency MS] [--base-url URL | --local-server]
//!                   [--language CODE]
//!
//!     # the microphone, captions over a test picture in a window (Ctrl-C to stop)
//!     FIREWORKS_API_KEY=fw_... cargo run --example live-captions
//!     # the same with no account: the bundled local server recognises English offline
//!     cargo run --example live-captions -- --local-server
//!     # a WAV file played in real time against the local test server, into an AVI file
//!     cargo run --example live-captions -- --audio-file speech.wav --output captions.avi \
//!         --duration 8 --base-url ws://127.0.0.1:8765/v1
//!
//! `--help` lists the options. Final utterances are also printed.
//!
//! `--overlay` (the default): the words, cut by `textwrap` into lines of at most two seconds
//! of speech, are drawn by `textoverlay` while they are spoken. The video waits for them (the
//! element's `latency`, 3 s by default, plus the 2 s a line gathers words and 0.3 s to close
//! it). With live input the element pushes each word by its own deadline, from the interims if
//! the final is not in yet, so words and picture stay in step however long the sentence, as
//! long as the service's interims come within `latency`:
//!
//! ```text
//! videotestsrc is-live=true (or v4l2src) ! queue ! textoverlay ! videoconvert ! autovideosink
//! autoaudiosrc (or filesrc ! decodebin ! clocksync) ! fireworksstt ! textwrap ─┘
//! ```
//!
//! `--cea708`: the broadcast way. `transcriberbin` (gst-plugins-rs, with fireworksstt as its
//! transcriber) turns the words into CEA-708 closed captions (with CEA-608 inside) on the video,
//! and `cea608overlay` renders them, roll-up style. transcriberbin is not packaged for Debian
//! bookworm (nor is `textwrap`): `scripts/setup.sh` builds them into
//! `${FIREWORKSSTT_PLUGIN_CACHE:-~/.cache/fireworksstt/gst-plugins-rs-0.13}/plugins`, which is
//! loaded from there when GStreamer does not already have them.
//!
//! `--audio-file` plays a file in real time (`clocksync`, a live source for fireworksstt) instead
//! of the microphone; without `--duration` the program then stops when the file has been
//! transcribed. `--output` writes Motion-JPEG AVI instead of opening a window: the frames a
//! window would have shown, i.e. a frame that comes later than the pipeline's latency is
//! dropped as a video sink drops it, and the picture freezes on the one before (the program
//! says how many). The file appears only when complete. Ctrl-C ends the stream cleanly (the
//! AVI is finalized); a second Ctrl-C quits at once. The exit code is non-zero, with the error on stderr, after an ERROR, or if
//! transcriberbin gives up on fireworksstt (passthrough).

#[macro_use]
mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{error_text, fmt_time, Args, OutputFile};
use gst::prelude::*;

const HELP: &str = concat!(
    "usage: live-captions [--overlay | --cea708] [--audio-file FILE] \
[--video-device DEVICE | --pattern NAME] [--output OUT.avi] [--duration SECONDS] [--latency MS] \
[--base-url URL | --local-server] [--language CODE]

Live captions on video: transcribes the microphone (or a file played in real time) with
fireworksstt and shows the words on the picture of a camera (or a test picture), in a window or
into an AVI file. Final utterances are also printed on stdout.

options:
  --overlay             draw the words with textoverlay, in lines cut by textwrap (the default;
                        needs the textwrap plugin scripts/setup.sh builds)
  --cea708              make CEA-708 closed captions with transcriberbin and render them with
                        cea608overlay (needs the plugins scripts/setup.sh builds)
  --audio-file FILE     play FILE in real time instead of the microphone; without --duration
                        the program stops when it has been transcribed
  --video-device DEV    a camera, e.g. /dev/video0 (default: a test picture)
  --pattern NAME        the test picture's pattern, e.g. smpte (default) or black
  --output OUT.avi      write Motion-JPEG AVI instead of opening a window (needed without a
                        display): the frames a window would show, late ones dropped; the file
                        appears only when complete
  --duration SECONDS    stop after this long
  --latency MS          how long the video waits for the words (the element's latency, default
                        3000, plus 2300 for textwrap's lines; with --cea708, transcriberbin's,
                        default 4000)
  --base-url URL        the service endpoint (default: Fireworks' us-virginia-1 endpoint), e.g.
                        ws://127.0.0.1:8765/v1 for a local fireworks-test-server
  --local-server        start the bundled local server in this process and use it (no key, no
                        network: English speech recognised offline by Whisper tiny.en, as
                        installed by scripts/setup.sh)
  --language CODE       spoken language, e.g. en or en-US (default: detected by the service)
  -h, --help            this help

Ctrl-C ends the stream cleanly (the AVI is finalized); a second Ctrl-C quits at once. Exit
status: 0 done, 1 failed (the error on stderr), 2 bad arguments.

",
    api_key_help!()
);
const TICK: Duration = Duration::from_millis(100);
/// After EOS is sent: time for the last transcript (drain-timeout) and the muxers to finish,
/// on top of the pipeline's latency (the video held back then still plays out at its pace).
const EOS_LIMIT: Duration = Duration::from_secs(20);
/// The gst-plugins-rs elements each mode needs, which scripts/build-transcriberbin-plugins.sh
/// builds (Debian bookworm packages none of them).
const OVERLAY_ELEMENTS: [&str; 1] = ["textwrap"];
const CEA708_ELEMENTS: [&str; 3] = ["transcriberbin", "cea608overlay", "tttocea708"];
/// `textwrap accumulate-time`: a caption line gathers the words of at most this much speech
/// before it is drawn, so it is read as a line, not word by word. textwrap adds it to the
/// latency it reports, and the video waits for it.
const CAPTION_LINE: gst::ClockTime = gst::ClockTime::from_seconds(2);
/// textwrap closes a caption line only when the text stream passes the line's end: at the next
/// word, or at the element's next heartbeat GAP (one step, `latency`/8 and at most 100 ms,
/// later). The video waits this much more than the latencies reported, so a line closed by a
/// GAP is still in time for its first frame.
const LINE_CLOSE: gst::ClockTime = gst::ClockTime::from_mseconds(300);
/// Characters in a caption line: what fits across the 640-pixel picture in "Sans 24".
const CAPTION_COLUMNS: u32 = 40;
/// How late a frame may reach the window (or the AVI) before it is dropped: a video sink's
/// default `max-lateness`.
const FRAME_LATENESS: gst::ClockTime = gst::ClockTime::from_mseconds(20);

#[derive(Default, Clone)]
struct Options {
    cea708: bool,
    audio_file: Option<String>,
    video_device: Option<String>,
    /// videotestsrc's pattern when there is no camera.
    pattern: Option<String>,
    output: Option<String>,
    duration: Option<Duration>,
    latency_ms: Option<u32>,
    base_url: Option<String>,
    local_server: bool,
    language: Option<String>,
}

fn parse_args(args: Vec<String>) -> Result<Option<Options>, String> {
    let mut args = Args::new(args);
    let mut o = Options::default();
    while let Some(arg) = args.next_arg() {
        match arg.as_str() {
            "--overlay" => o.cea708 = false,
            "--cea708" => o.cea708 = true,
            "--audio-file" => o.audio_file = Some(args.value("--audio-file")?),
            "--video-device" => o.video_device = Some(args.value("--video-device")?),
            "--pattern" => o.pattern = Some(args.value("--pattern")?),
            "--output" => o.output = Some(args.value("--output")?),
            "--duration" => {
                let secs: f64 = args.parsed("--duration", "seconds")?;
                if !(secs.is_finite() && secs > 0.0) {
                    return Err(format!("--duration takes seconds above 0, not {secs}"));
                }
                o.duration = Some(Duration::from_secs_f64(secs));
            }
            "--latency" => o.latency_ms = Some(args.parsed("--latency", "milliseconds")?),
            "--base-url" => o.base_url = Some(args.value("--base-url")?),
            "--local-server" => o.local_server = true,
            "--language" => o.language = Some(args.value("--language")?),
            "-h" | "--help" => return Ok(None),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            other => {
                return Err(format!(
                    "unexpected argument {other} (files are given with \
                                         --audio-file and --output)"
                ))
            }
        }
    }
    if o.local_server && o.base_url.is_some() {
        return Err("--local-server and --base-url exclude each other".into());
    }
    if o.video_device.is_some() && o.pattern.is_some() {
        return Err("--pattern is for the test picture, not for --video-device".into());
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    common::cli_main(HELP, parse_args, run)
}

/// Where scripts/build-transcriberbin-plugins.sh puts the caption plugins.
fn caption_plugin_dir() -> PathBuf {
    let cache = std::env::var_os("FIREWORKSSTT_PLUGIN_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/fireworksstt/gst-plugins-rs-0.13")
        });
    cache.join("plugins")
}

/// Makes the gst-plugins-rs elements `needed` by `mode` available, or says how to get them.
fn load_built_plugins(needed: &[&str], mode: &str) -> Result<(), String> {
    let have_all = || {
        needed
            .iter()
            .all(|name| gst::ElementFactory::find(name).is_some())
    };
    if have_all() {
        return Ok(());
    }
    let dir = caption_plugin_dir();
    if dir.is_dir() {
        gst::Registry::get().scan_path(&dir);
    }
    if have_all() {
        return Ok(());
    }
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|name| gst::ElementFactory::find(name).is_none())
        .collect();
    Err(format!(
        "{mode} needs gst-plugins-rs elements Debian does not package, but {} missing (looked in \
         {}): run scripts/setup.sh, which builds them there (set FIREWORKSSTT_PLUGIN_CACHE if \
         you built them elsewhere)",
        missing.join(", ") + if missing.len() == 1 { " is" } else { " are" },
        dir.display()
    ))
}

/// transcriberbin 0.13 does not pass its transcriber's ERROR message on: it logs it ("Transcriber
/// has posted an error (…)") and switches to passthrough. Catches the error text from that log.
fn catch_transcriber_error(caught: Arc<Mutex<Option<String>>>) {
    if std::env::var_os("GST_DEBUG").is_none() {
        // Only this line is wanted, not GStreamer's log on stderr.
        gst::log::remove_default_log_function();
        gst::log::set_threshold_for_name("transcriberbin", gst::DebugLevel::Error);
    }
    gst::log::add_log_function(move |category, level, _, _, _, _, message| {
        if level != gst::DebugLevel::Error || category.name() != "transcriberbin" {
            return;
        }
        let Some(line) = message.get() else { return };
        if !line.contains("Transcriber has posted an error") {
            return;
        }
        // The line holds the message's Debug form: `… message: "TEXT" …`.
        let text = line
            .split_once("message: \"")
            .and_then(|(_, rest)| {
                let mut escaped = false;
                let end = rest.char_indices().find_map(|(i, c)| {
                    let end_here = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    end_here.then_some(i)
                })?;
                Some(rest[..end].replace("\\\"", "\""))
            })
            .unwrap_or_else(|| line.to_string());
        caught.lock().unwrap().get_or_insert(text);
    });
}

/// The live video, ending in an element named `vtail`.
fn video_description(o: &Options) -> String {
    let framerate = if o.cea708 { "30000/1001" } else { "30/1" };
    let source = match &o.video_device {
        // Cameras give raw video or Motion-JPEG; decodebin handles both.
        Some(_) => "v4l2src name=camera ! decodebin ! videoconvert ! videorate",
        None => "videotestsrc name=testsrc is-live=true",
    };
    format!(
        "{source} ! videoconvert ! videoscale ! \
         capsfilter name=vtail caps=video/x-raw,width=640,height=360,framerate={framerate}"
    )
}

/// The live audio, ending in an element named `atail`.
fn audio_description(o: &Options) -> &'static str {
    match o.audio_file {
        // clocksync sync=true releases each buffer at its time and answers the latency query as
        // a live source: fireworksstt treats the file like a microphone.
        Some(_) => {
            "filesrc name=afile ! decodebin ! audioconvert ! audioresample ! clocksync ! \
             audioconvert name=atail"
        }
        None => "autoaudiosrc ! audioconvert name=atail",
    }
}

/// The video sink, starting with an element named `vsink`.
///
/// Into a file, the `display` appsink drops the frames that come later than the pipeline's
/// latency, as a video sink does (and says so in QoS messages); the frames it takes in time go
/// on through `recorder` (see `connect_recorder`), and `videorate` repeats the last one over a
/// hole, so the AVI keeps its timeline and shows what a viewer would have seen.
fn sink_description(o: &Options) -> String {
    match o.output {
        Some(_) => format!(
            "videoconvert name=vsink ! appsink name=display caps=video/x-raw sync=true qos=true \
             max-lateness={lateness} enable-last-sample=false \
             appsrc name=recorder format=time max-bytes=0 ! videorate ! videoconvert ! \
             jpegenc ! avimux ! filesink name=outfile async=false",
            lateness = FRAME_LATENESS.nseconds()
        ),
        None => "videoconvert name=vsink ! autovideosink".into(),
    }
}

/// Whether the pipeline is live, and the least latency its elements report (None when the
/// query fails).
fn reported_latency(pipeline: &impl IsA<gst::Element>) -> Option<(bool, gst::ClockTime)> {
    let mut query = gst::query::Latency::new();
    pipeline.query(&mut query).then(|| {
        let (live, min, _max) = query.result();
        (live, min)
    })
}

/// Ends the stream at the live sources, as `pipeline.send_event(eos)` does, except the
/// `recorder` appsrc: that ends after the display's last frame (`connect_recorder`), not
/// while the frames the video still holds back wait to be recorded.
fn end_of_stream(pipeline: &gst::Pipeline) {
    // The iterator fails when the bin changes under it (resync): then take the list again.
    let sources = (0..10)
        .find_map(|_| {
            pipeline
                .iterate_sources()
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .ok()
        })
        .unwrap_or_default();
    for source in sources.iter().filter(|source| source.name() != "recorder") {
        source.send_event(gst::event::Eos::new());
    }
}

/// --output: what the `display` appsink takes goes to the `recorder` appsrc, and its end of
/// stream after it.
fn connect_recorder(pipeline: &gst::Pipeline) {
    let (Some(display), Some(recorder)) =
        (pipeline.by_name("display"), pipeline.by_name("recorder"))
    else {
        return;
    };
    let display = display
        .downcast::<gst_app::AppSink>()
        .expect("display is an appsink");
    let recorder = recorder
        .downcast::<gst_app::AppSrc>()
        .expect("recorder is an appsrc");
    let recorder_eos = recorder.clone();
    display.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |display| {
                let sample = display.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                // Also sets the sample's caps on the appsrc.
                recorder.push_sample(&sample)
            })
            .eos(move |_| {
                let _ = recorder_eos.end_of_stream();
            })
            .build(),
    );
}

/// The elements of the pipeline `o` asks for, except fireworksstt and the caption plugins of
/// those `load_built_plugins` checks.
fn elements(o: &Options) -> Vec<&'static str> {
    let mut elements = vec!["videoconvert", "videoscale", "capsfilter"];
    elements.extend(match o.video_device {
        Some(_) => ["v4l2src", "decodebin", "videorate"].as_slice(),
        None => ["videotestsrc"].as_slice(),
    });
    elements.extend(match o.audio_file {
        Some(_) => [
            "filesrc",
            "decodebin",
            "audioconvert",
            "audioresample",
            "clocksync",
        ]
        .as_slice(),
        None => ["autoaudiosrc", "audioconvert"].as_slice(),
    });
    elements.extend(match o.output {
        Some(_) => [
            "appsink",
            "appsrc",
            "videorate",
            "jpegenc",
            "avimux",
            "filesink",
        ]
        .as_slice(),
        None => ["autovideosink"].as_slice(),
    });
    elements.extend(match o.cea708 {
        true => ["fakesink"].as_slice(),
        false => ["queue", "textoverlay"].as_slice(),
    });
    elements
}

fn configure_stt(stt: &gst::Element, o: &Options) {
    common::point_at(stt, o.base_url.as_deref());
    if let Some(code) = &o.language {
        stt.set_property("language-code", code);
    }
}

struct Built {
    pipeline: gst::Pipeline,
    stt: gst::Element,
    /// transcriberbin, in --cea708 mode.
    tbin: Option<gst::Element>,
    /// Lets audio through that is held back until the video flows (--cea708).
    release_audio: Option<Box<dyn Fn()>>,
}

fn link(a: &gst::Element, a_pad: &str, b: &gst::Element, b_pad: &str) -> Result<(), String> {
    a.link_pads(Some(a_pad), b, Some(b_pad)).map_err(|e| {
        format!(
            "cannot link {}:{a_pad} to {}:{b_pad}: {e}",
            a.name(),
            b.name()
        )
    })
}

fn build_overlay(o: &Options) -> Result<Built, Box<dyn std::error::Error>> {
    load_built_plugins(&OVERLAY_ELEMENTS, "--overlay")?;
    // Words, not utterances: each word is pushed within the element's latency of the time it
    // was spoken, whereas an utterance is only known after the speaker's pause, however long
    // the sentence, and the video would wait longer than the latency the pipeline reports.
    let stt = gst::ElementFactory::make("fireworksstt")
        .name("stt")
        .build()?;
    configure_stt(&stt, o);
    if let Some(ms) = o.latency_ms {
        stt.set_property("latency", ms);
    }
    // textoverlay holds each video frame until the text stream has reached its time, i.e. up to
    // fireworksstt's latency plus textwrap's: the queue must hold that much video.
    let latency = gst::ClockTime::from_mseconds(u64::from(stt.property::<u32>("latency")));
    let hold = latency + CAPTION_LINE + gst::ClockTime::from_seconds(3);
    let description = format!(
        "{video} ! queue max-size-buffers=0 max-size-bytes=0 max-size-time={hold} ! \
         textoverlay name=overlay font-desc=\"Sans 24\" valignment=bottom \
         shaded-background=true ! {sink} \
         {audio} \
         textwrap name=lines accumulate-time={line} columns={CAPTION_COLUMNS} lines=2 ! \
         queue name=textq max-size-buffers=1000 max-size-bytes=0 max-size-time=0",
        video = video_description(o),
        hold = hold.nseconds(),
        sink = sink_description(o),
        audio = audio_description(o),
        line = CAPTION_LINE.nseconds(),
    );
    let pipeline = gst::parse::launch(&description)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    pipeline.add(&stt)?;
    wait_longer_than_reported(&pipeline, LINE_CLOSE);
    let atail = pipeline.by_name("atail").unwrap();
    let overlay = pipeline.by_name("overlay").unwrap();
    atail.link(&stt)?;
    let lines = pipeline.by_name("lines").unwrap();
    stt.link(&lines)?;
    // textoverlay holds its text pad until the video reaches the text's end; the queue
    // (textq) keeps that wait away from fireworksstt, which would otherwise push the next
    // words late.
    let textq = pipeline.by_name("textq").unwrap();
    link(&textq, "src", &overlay, "text_sink")?;

    Ok(Built {
        pipeline,
        stt,
        tbin: None,
        release_audio: None,
    })
}

/// Gives the live pipeline `extra` latency on top of what its elements report (a bin's
/// `do-latency` handler replaces the default, which distributes the reported minimum).
fn wait_longer_than_reported(pipeline: &gst::Pipeline, extra: gst::ClockTime) {
    pipeline.connect_do_latency(move |pipeline| {
        let Some((live, min)) = reported_latency(pipeline) else {
            return Err(gst::glib::bool_error!("the latency query failed").into());
        };
        let latency = if live { min + extra } else { min };
        if pipeline.send_event(gst::event::Latency::new(latency)) {
            Ok(())
        } else {
            Err(gst::glib::bool_error!("the latency event was refused").into())
        }
    });
}

fn build_cea708(o: &Options) -> Result<Built, Box<dyn std::error::Error>> {
    load_built_plugins(&CEA708_ELEMENTS, "--cea708")?;
    let stt = gst::ElementFactory::make("fireworksstt")
        .name("stt")
        .build()?;
    configure_stt(&stt, o);
    // mux-method must be set at construction; GStreamer 1.22 has no cea608mux, so the default
    // (cea608) would leave the bin without a muxer.
    let tbin = gst::ElementFactory::make("transcriberbin")
        .name("tbin")
        .property_from_str("mux-method", "cea708")
        .build()?;
    tbin.set_property(
        "cc-caps",
        gst::Caps::builder("closedcaption/x-cea-708")
            .field("format", "cc_data")
            .build(),
    );
    if let Some(ms) = o.latency_ms {
        // transcriberbin passes it on to its transcriber.
        tbin.set_property("latency", ms);
    }
    if let Some(code) = &o.language {
        tbin.set_property("language-code", code);
    }
    tbin.set_property("transcriber", &stt);

    let description = format!(
        "{video} {audio} cea608overlay name=render black-background=true ! {sink} \
         fakesink name=aout sync=true",
        video = video_description(o),
        audio = audio_description(o),
        sink = sink_description(o),
    );
    let pipeline = gst::parse::launch(&description)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    pipeline.add(&tbin)?;
    let by_name = |name: &str| pipeline.by_name(name).unwrap();
    link(&by_name("vtail"), "src", &tbin, "sink_video")?;
    link(&by_name("atail"), "src", &tbin, "sink_audio")?;
    link(&tbin, "src_video", &by_name("render"), "sink")?;
    link(&tbin, "src_audio", &by_name("aout"), "sink")?;

    // transcriberbin 0.13 starts transcribing when the video caps reach it, and audio that comes
    // before is not transcribed (the start of a file would be lost): hold the audio until the
    // first video frame has gone in.
    let audio_out = by_name("atail").static_pad("src").unwrap();
    let hold = audio_out.add_probe(
        gst::PadProbeType::BLOCK | gst::PadProbeType::BUFFER,
        |_, _| gst::PadProbeReturn::Ok,
    );
    let hold = Arc::new(Mutex::new(hold));
    let release_audio = move || {
        if let Some(id) = hold.lock().unwrap().take() {
            audio_out.remove_probe(id);
        }
    };
    let release = release_audio.clone();
    by_name("vtail").static_pad("src").unwrap().add_probe(
        gst::PadProbeType::BUFFER,
        move |_, _| {
            release();
            gst::PadProbeReturn::Remove
        },
    );
    Ok(Built {
        pipeline,
        stt,
        tbin: Some(tbin),
        release_audio: Some(Box::new(release_audio)),
    })
}

fn run(o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    if o.output.is_none()
        && cfg!(target_os = "linux")
        && std::env::var_os("DISPLAY").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none()
    {
        // autovideosink would find no window system (and some of the sinks it tries crash).
        return Err(
            "no display (DISPLAY and WAYLAND_DISPLAY are unset): write a file with \
                    --output OUT.avi instead"
                .into(),
        );
    }
    if let Some(file) = &o.audio_file {
        common::require_input_file(file)?;
    }
    // Kept alive until the pipeline is done.
    let local_server = common::local_server(o.local_server)?;
    let with_local;
    let o = match &local_server {
        Some(server) => {
            with_local = Options {
                base_url: Some(server.base_url()),
                ..o.clone()
            };
            &with_local
        }
        None => o,
    };
    common::require_api_key(o.base_url.as_deref())?;
    gst::init()?;
    gstfireworks::plugin_register_static()?;
    common::require_elements(&elements(o))?;
    let output = o.output.as_deref().map(OutputFile::new).transpose()?;
    let built = if o.cea708 {
        build_cea708(o)?
    } else {
        build_overlay(o)?
    };
    let Built {
        pipeline,
        stt,
        tbin,
        release_audio,
    } = built;
    if let (Some(path), Some(el)) = (&o.audio_file, pipeline.by_name("afile")) {
        el.set_property("location", path);
    }
    if let (Some(device), Some(el)) = (&o.video_device, pipeline.by_name("camera")) {
        el.set_property("device", device);
    }
    if let (Some(pattern), Some(el)) = (&o.pattern, pipeline.by_name("testsrc")) {
        // e.g. "black" or "smpte" (the default); gst-inspect-1.0 videotestsrc lists them all.
        let class = el
            .find_property("pattern")
            .and_then(|spec| gst::glib::EnumClass::with_type(spec.value_type()))
            .expect("videotestsrc has an enum pattern property");
        let value = class.to_value_by_nick(pattern).ok_or_else(|| {
            let names: Vec<&str> = class.values().iter().map(|v| v.nick()).collect();
            format!(
                "unknown --pattern {pattern:?}; one of: {}",
                names.join(", ")
            )
        })?;
        el.set_property_from_value("pattern", &value);
    }
    if let (Some(file), Some(el)) = (&output, pipeline.by_name("outfile")) {
        el.set_property("location", file.partial());
    }

    // transcriberbin 0.13 keeps a transcriber's ERROR to itself and goes on without captions
    // (passthrough): watch for that, and catch the log line that says why.
    let passthrough = Arc::new(AtomicBool::new(false));
    let transcriber_error = Arc::new(Mutex::new(None));
    if let Some(tbin) = &tbin {
        catch_transcriber_error(transcriber_error.clone());
        let passthrough = passthrough.clone();
        tbin.connect_notify(Some("passthrough"), move |bin, _| {
            if bin.property::<bool>("passthrough") {
                passthrough.store(true, Ordering::SeqCst);
            }
        });
    }

    // With --audio-file and no --duration: stop once the file has been transcribed, i.e. when
    // end-of-stream has come out of fireworksstt.
    let transcribed = Arc::new(AtomicBool::new(false));
    {
        let transcribed = transcribed.clone();
        stt.static_pad("src").unwrap().add_probe(
            gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                if let Some(gst::PadProbeData::Event(e)) = &info.data {
                    if e.type_() == gst::EventType::Eos {
                        transcribed.store(true, Ordering::SeqCst);
                    }
                }
                gst::PadProbeReturn::Ok
            },
        );
    }

    // Ctrl-C: end the stream cleanly; a second one quits at once.
    let interrupted = common::on_ctrl_c()?;

    connect_recorder(&pipeline);
    // Video frames dropped as too late for the window (or the AVI), from the QoS messages of
    // the elements that dropped them (the sink, or a filter before it that saw its QoS events):
    // each element's latest count of dropped buffers. Late for any reason: captions that held
    // the video back, or a machine too busy to draw it in time.
    let mut late_frames: HashMap<String, u64> = HashMap::new();

    let bus = pipeline.bus().unwrap();
    common::start(&pipeline)?;
    eprintln!(
        "captions: {}; {}",
        if o.cea708 {
            "CEA-708 via transcriberbin, rendered by cea608overlay"
        } else {
            "textoverlay, in lines cut by textwrap"
        },
        match (o.duration, &o.audio_file) {
            (Some(d), _) => format!(
                "stopping after {:.1} s (Ctrl-C stops sooner)",
                d.as_secs_f64()
            ),
            (None, Some(_)) => "stopping when the file has been transcribed (or Ctrl-C)".into(),
            (None, None) => "Ctrl-C stops".into(),
        }
    );

    let started = Instant::now();
    // When EOS was sent, and how long the pipeline then has to finish.
    let mut eos_sent: Option<(Instant, Duration)> = None;
    let result = loop {
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(TICK.as_nanos() as u64)) {
            match msg.view() {
                gst::MessageView::Element(e) => {
                    let Some(s) = e.structure() else { continue };
                    if s.name() == "fireworksstt/transcript" && s.get::<bool>("final")? {
                        let text = s.get::<String>("text")?;
                        let start = s.get::<gst::ClockTime>("start").ok();
                        println!("[{}] {text}", start.map(fmt_time).unwrap_or_default());
                    }
                }
                gst::MessageView::Warning(w) => eprintln!("warning: {}", w.error()),
                gst::MessageView::Qos(q) => {
                    // Only video frames are dropped: the audio has no sink that drops.
                    if let (gst::GenericFormattedValue::Buffers(Some(dropped)), Some(src)) =
                        (q.stats().1, msg.src())
                    {
                        late_frames.insert(src.path_string().to_string(), *dropped);
                    }
                }
                gst::MessageView::Error(_) => break Err(error_text(&msg)),
                gst::MessageView::Eos(_) => break Ok(()),
                _ => {}
            }
        }
        if passthrough.load(Ordering::SeqCst) {
            let why = transcriber_error.lock().unwrap().take();
            break Err(format!(
                "transcriberbin stopped captioning (passthrough): {}",
                why.as_deref()
                    .unwrap_or("fireworksstt failed (GST_DEBUG=transcriberbin:1 shows why)")
            ));
        }
        let stop = interrupted.load(Ordering::SeqCst)
            || o.duration.is_some_and(|d| started.elapsed() >= d)
            || (o.duration.is_none()
                && o.audio_file.is_some()
                && transcribed.load(Ordering::SeqCst));
        if stop && eos_sent.is_none() {
            eprintln!("stopping: finishing the captions…");
            if let Some(release) = &release_audio {
                // In case no video ever came: the audio must reach its end of stream.
                release();
            }
            end_of_stream(&pipeline);
            let held_back = reported_latency(&pipeline).map_or(Duration::ZERO, |(_, min)| {
                Duration::from_nanos(min.nseconds())
            });
            eos_sent = Some((Instant::now(), EOS_LIMIT + held_back));
        }
        if let Some((_, limit)) = eos_sent.filter(|(at, limit)| at.elapsed() > *limit) {
            break Err(format!(
                "the pipeline did not finish within {:.1} s after end-of-stream",
                limit.as_secs_f64()
            ));
        }
    };
    pipeline.set_state(gst::State::Null)?;
    let late_frames: u64 = late_frames.values().sum();
    if late_frames > 0 {
        eprintln!(
            "warning: {late_frames} video frames came later than the pipeline's latency and \
             were dropped (the picture froze): if the captions held them back, raise --latency"
        );
    }
    // On failure the partial AVI is dropped, i.e. deleted.
    result?;
    if let Some(file) = output {
        let path = file.path().display().to_string();
        file.commit()?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

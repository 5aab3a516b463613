// SPDX-License-Identifier: MPL-2.0
//! Shared support for the GStreamer-level tests: plugin registration, and running
//! `appsrc ! fireworksstt ! fakesink` over synthesized audio while recording everything the
//! element sends downstream and posts on the bus.
#![allow(dead_code, unused_imports)]

pub mod gst_setup;
pub mod process;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gst::prelude::*;

pub use gst_setup::{audio_caps, init};
pub use process::{run_alone, run_command, test_name, Finished};

pub use fireworks_test_server::audio::{synthesize, synthesize_utterances, Script, SynthAudio};
pub use fireworks_test_server::{Dialect, Fault, ServerConfig, TestServer};

/// Runs each test twice, against the local server speaking each dialect of the service
/// (docs/protocol.md#dialects): as `NAME::v1` and `NAME::v2`. The test receives the dialect and
/// starts its server with `ServerConfig::default().with_dialect(dialect)`.
#[allow(unused_macros)] // Not every test file runs in both dialects.
macro_rules! in_both_dialects {
    ($($(#[$meta:meta])* fn $name:ident($dialect:ident: Dialect) $body:block)*) => {
        $(
            mod $name {
                use super::*;

                $(#[$meta])*
                fn run($dialect: Dialect) $body

                #[test]
                fn v1() {
                    run(Dialect::V1)
                }

                #[test]
                fn v2() {
                    run(Dialect::V2)
                }
            }
        )*
    };
}

pub const TEST_KEY: &str = "test-key-0123456789";
pub const MS: u64 = 1_000_000;

/// What left the element's src pad, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Text {
        text: String,
        pts: u64,
        duration: u64,
    },
    Gap {
        pts: u64,
        duration: u64,
    },
    Custom(String),
    Segment(gst::FormattedSegment<gst::ClockTime>),
    Eos,
}

#[derive(Debug, Default)]
pub struct Run {
    pub out: Vec<Out>,
    /// Element messages from fireworksstt, in bus order.
    pub messages: Vec<gst::Structure>,
    pub errors: Vec<(String, String, Option<gst::Structure>)>,
    pub warnings: Vec<(String, String, Option<gst::Structure>)>,
    pub got_eos: bool,
    pub elapsed: Duration,
}

impl Run {
    pub fn texts(&self) -> Vec<(String, u64, u64)> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Out::Text {
                    text,
                    pts,
                    duration,
                } => Some((text.clone(), *pts, *duration)),
                _ => None,
            })
            .collect()
    }

    pub fn messages_named(&self, name: &str) -> Vec<&gst::Structure> {
        self.messages.iter().filter(|s| s.name() == name).collect()
    }

    /// Final transcripts' texts, in order.
    pub fn finals(&self) -> Vec<String> {
        self.messages_named("fireworksstt/transcript")
            .into_iter()
            .filter(|s| s.get::<bool>("final").unwrap())
            .map(|s| s.get::<String>("text").unwrap())
            .collect()
    }

    /// The ERROR messages' texts: what a user reads (the debug strings are not included).
    pub fn error_text(&self) -> String {
        self.errors
            .iter()
            .map(|(message, _, _)| message.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub struct Feed {
    /// Samples per buffer pushed.
    pub buffer_samples: usize,
    /// First buffer's PTS.
    pub start_pts: u64,
    pub live: bool,
    pub timeout: Duration,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            buffer_samples: 1600,
            start_pts: 0,
            live: false,
            timeout: Duration::from_secs(30),
        }
    }
}

pub fn audio_buffer(samples: &[i16], pts: u64) -> gst::Buffer {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut buffer = gst::Buffer::from_mut_slice(bytes);
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(pts));
        b.set_duration(gst::ClockTime::from_nseconds(
            samples.len() as u64 * 1_000_000_000 / 16_000,
        ));
    }
    buffer
}

/// Records buffers and downstream events leaving `pad`.
pub fn record_output(pad: &gst::Pad) -> Arc<Mutex<Vec<Out>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            if let Some(item) = info.data.as_ref().and_then(as_out) {
                sink.lock().unwrap().push(item);
            }
            gst::PadProbeReturn::Ok
        },
    );
    out
}

/// A buffer or a downstream event as an [`Out`], if it is one the tests record.
pub fn as_out(data: &gst::PadProbeData) -> Option<Out> {
    match data {
        gst::PadProbeData::Buffer(b) => {
            let map = b.map_readable().unwrap();
            Some(Out::Text {
                text: String::from_utf8(map.to_vec()).unwrap(),
                pts: b.pts().map(|t| t.nseconds()).unwrap_or(u64::MAX),
                duration: b.duration().map(|t| t.nseconds()).unwrap_or(u64::MAX),
            })
        }
        gst::PadProbeData::Event(e) => match e.view() {
            gst::EventView::Gap(g) => {
                let (pts, duration) = g.get();
                Some(Out::Gap {
                    pts: pts.nseconds(),
                    duration: duration.map(|d| d.nseconds()).unwrap_or(0),
                })
            }
            gst::EventView::CustomDownstream(c) => {
                Some(Out::Custom(c.structure().unwrap().name().to_string()))
            }
            gst::EventView::Segment(s) => Some(Out::Segment(
                s.segment()
                    .downcast_ref::<gst::ClockTime>()
                    .unwrap()
                    .clone(),
            )),
            gst::EventView::Eos(_) => Some(Out::Eos),
            _ => None,
        },
        _ => None,
    }
}

/// Builds `appsrc ! fireworksstt ! fakesink`, lets `configure` set properties, pushes the
/// audio, and collects everything until EOS or ERROR (bounded by `feed.timeout`).
pub fn run_audio(samples: &[i16], feed: &Feed, configure: impl FnOnce(&gst::Element)) -> Run {
    init();
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&audio_caps())
        .format(gst::Format::Time)
        .is_live(feed.live)
        .max_bytes(0)
        .build();
    let stt = gst::ElementFactory::make("fireworksstt").build().unwrap();
    configure(&stt);
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", feed.live)
        .property("async", false)
        .build()
        .unwrap();
    pipeline.add_many([src.upcast_ref(), &stt, &sink]).unwrap();
    gst::Element::link_many([src.upcast_ref(), &stt, &sink]).unwrap();
    let out = record_output(&stt.static_pad("src").unwrap());

    let started = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut pts = feed.start_pts;
    for chunk in samples.chunks(feed.buffer_samples.max(1)) {
        let buffer = audio_buffer(chunk, pts);
        pts += chunk.len() as u64 * 1_000_000_000 / 16_000;
        if src.push_buffer(buffer).is_err() {
            break;
        }
    }
    let _ = src.end_of_stream();
    let mut run = collect_bus(&pipeline, feed.timeout);
    pipeline.set_state(gst::State::Null).unwrap();
    run.elapsed = started.elapsed();
    run.out = std::mem::take(&mut *out.lock().unwrap());
    run
}

/// Reads the bus until EOS or ERROR, or panics when `timeout` passes (a hang is a failure).
pub fn collect_bus(pipeline: &gst::Pipeline, timeout: Duration) -> Run {
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + timeout;
    let mut run = Run::default();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(
            !remaining.is_zero(),
            "pipeline neither reached EOS nor failed within {timeout:?}: {run:#?}"
        );
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(remaining.as_nanos() as u64))
        else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => {
                run.got_eos = true;
                break;
            }
            gst::MessageView::Error(e) => {
                run.errors.push((
                    e.error().to_string(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default(),
                    e.details().map(|d| d.to_owned()),
                ));
                break;
            }
            gst::MessageView::Warning(w) => run.warnings.push((
                w.error().to_string(),
                w.debug().map(|d| d.to_string()).unwrap_or_default(),
                w.details().map(|d| d.to_owned()),
            )),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure() {
                    if s.name().starts_with("fireworksstt/") {
                        run.messages.push(s.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    run
}

/// Sets the properties every test against the local server needs.
pub fn point_at(stt: &gst::Element, server: &TestServer) {
    stt.set_property("base-url", server.base_url());
    stt.set_property("api-key", TEST_KEY);
}

/// The words (and PTS) pushed until EOS. Output goes out from the element's own task, so this
/// waits for EOS (each pull is bounded by the harness's 60 s).
pub fn pull_until_eos(h: &mut gst_check::Harness) -> Vec<(String, u64)> {
    let mut words = Vec::new();
    let mut take = |h: &mut gst_check::Harness| {
        while let Some(buffer) = h.try_pull() {
            let text = String::from_utf8(buffer.map_readable().unwrap().to_vec()).unwrap();
            words.push((text, buffer.pts().unwrap().nseconds()));
        }
    };
    loop {
        take(h);
        let event = h.pull_event().expect("EOS reaches downstream");
        if event.type_() == gst::EventType::Eos {
            take(h);
            return words;
        }
    }
}

/// A fresh, empty directory for one test's files: fireworksstt-MODULE-PID-NAME in the temporary
/// directory.
pub fn scratch_dir(module: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "fireworksstt-{module}-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A directory holding only `libgstfireworks.so` as built with this test binary, for
/// `GST_PLUGIN_PATH` in the programs the tests start (`gst-launch-1.0`, the Python example).
///
/// `cargo test` builds the cdylib into target/<profile>/deps/, next to this binary, but only
/// `cargo build` copies it up to target/<profile>/: the copy there may be stale or missing. Nor
/// can GStreamer be pointed at deps/, which holds proc-macro libraries it would try to load as
/// plugins. So the first call copies the library into target/<profile>/fireworksstt-test-plugin/
/// (under a temporary name, then renamed: a program loading the previous copy, or another test
/// process doing the same, never sees a half-written file), and fails if that library is older
/// than a source of the plugin.
pub fn plugin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let deps = exe.parent().unwrap();
        let built = deps.join("libgstfireworks.so");
        assert_not_older_than_sources(&built);
        let dir = deps.parent().unwrap().join("fireworksstt-test-plugin");
        std::fs::create_dir_all(&dir).unwrap();
        let partial = dir.join(format!(".libgstfireworks.so.{}", std::process::id()));
        std::fs::copy(&built, &partial)
            .unwrap_or_else(|e| panic!("copying {} into {}: {e}", built.display(), dir.display()));
        std::fs::rename(&partial, dir.join("libgstfireworks.so")).unwrap();
        dir
    })
    .clone()
}

/// Runs `gst-launch-1.0` with `args` and the plugin of this build (GST_PLUGIN_PATH is
/// [`plugin_dir`], the registry a file of its own in `scratch`) to the end, or kills it after
/// `timeout` and fails.
pub fn gst_launch(args: &[&str], scratch: &Path, timeout: Duration) -> Finished {
    let mut command = std::process::Command::new("gst-launch-1.0");
    command
        .args(args)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", scratch.join("registry.bin"));
    run_command(
        command,
        "gst-launch-1.0 (scripts/setup.sh installs gstreamer1.0-tools)",
        timeout,
    )
}

/// Fails unless `library` exists and is at least as new as every file of src/ and build.rs
/// (cargo rebuilds the library when one changes): what a stale plugin looks like on disk.
pub fn assert_not_older_than_sources(library: &Path) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified());
    let built = modified(library).unwrap_or_else(|e| {
        panic!(
            "{} is not built ({e}): cargo test builds it with the tests",
            library.display()
        )
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![root.join("build.rs")];
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                sources.push(path);
            }
        }
    }
    let newest = sources
        .into_iter()
        .filter_map(|path| Some((modified(&path).ok()?, path)))
        .max()
        .unwrap();
    assert!(
        built >= newest.0,
        "{} is older than {}: a stale plugin (rebuild with cargo test or cargo build)",
        library.display(),
        newest.1.display()
    );
}

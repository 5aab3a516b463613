//! The `fireworksstt` element: its state, and the GObject/GStreamer entry points. The work
//! behind them lives in `session.rs` (audio in, the network session, events) and
//! `downstream.rs` (what goes out of the src pad).
//!
//! Lock order: `output` → `state` → `settings` → a session's shared data. `output` is only
//! taken by the streaming thread (and on stop/flush, when streaming has stopped); the network
//! thread takes only `settings` and the shared data, never both at once.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_transform::GenerateOutputSuccess;
use gst_base::subclass::prelude::*;
use once_cell::sync::Lazy;

use crate::client::{SessionAbort, StreamClient};

use super::bridge::{new_shared, Shared};
use super::output::InterimWordTimes;
use super::properties;
use super::settings::Settings;

pub static CAT: Lazy<gst::DebugCategory> = Lazy::new(|| {
    gst::DebugCategory::new(
        "fireworksstt",
        gst::DebugColorFlags::empty(),
        Some("Fireworks AI speech-to-text element"),
    )
});

pub(super) struct State {
    pub client: Option<StreamClient>,
    pub shared: Shared,
    /// The input segment, as received.
    pub segment: gst::FormattedSegment<gst::ClockTime>,
    /// A fatal error was posted: refuse further data until flushed or restarted.
    pub failed: bool,
    /// `options_generation` the running session was configured with.
    pub options_generation: u64,
}

impl Default for State {
    fn default() -> Self {
        let segment = gst::FormattedSegment::<gst::ClockTime>::new();
        State {
            client: None,
            shared: new_shared(segment.clone()),
            segment,
            failed: false,
            options_generation: 0,
        }
    }
}

/// Where the src pad's stream has got to.
#[derive(Default)]
pub(super) struct OutputState {
    pub position: Option<u64>,
    /// Utterance number, and the PTS up to which its words went out early, from interims.
    pub early: Option<(u64, u64)>,
    pub interim_times: InterimWordTimes,
}

pub struct FireworksStt {
    pub(super) settings: Mutex<Settings>,
    pub(super) state: Mutex<State>,
    pub(super) output: Mutex<OutputState>,
    /// Stops the running session from any thread, even while the streaming thread waits on it.
    pub(super) abort: Mutex<Option<SessionAbort>>,
    pub(super) max_observed_delay_ms: AtomicU32,
    pub(super) dropped_audio_ms: AtomicU32,
    pub(super) upstream_live: AtomicBool,
    /// An interim of an open utterance is waiting (a hint, read without locks, so that the
    /// streaming thread only reads the clock for early words when there may be some).
    pub(super) interim_open: AtomicBool,
    /// Set between FLUSH_START (or the way down to READY) and FLUSH_STOP (or the next start):
    /// a session ended on purpose is not an error.
    pub(super) flushing: AtomicBool,
    /// Bumped whenever a session property is set; a running session compares.
    pub(super) options_generation: AtomicU64,
}

#[glib::object_subclass]
impl ObjectSubclass for FireworksStt {
    const NAME: &'static str = "GstFireworksStt";
    type Type = super::FireworksStt;
    type ParentType = gst_base::BaseTransform;

    fn new() -> Self {
        FireworksStt {
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            output: Mutex::new(OutputState::default()),
            abort: Mutex::new(None),
            max_observed_delay_ms: AtomicU32::new(0),
            dropped_audio_ms: AtomicU32::new(0),
            upstream_live: AtomicBool::new(false),
            interim_open: AtomicBool::new(false),
            flushing: AtomicBool::new(false),
            options_generation: AtomicU64::new(0),
        }
    }
}

impl ObjectImpl for FireworksStt {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(properties::specs);
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let name = pspec.name();
        if name == "language-code" {
            if let Ok(Some(code)) = value.get::<Option<String>>() {
                if let Err(err) = crate::protocol::normalize_language_code(&code) {
                    gst::warning!(CAT, imp = self, "{err}");
                }
            }
        }
        properties::set(&mut self.settings.lock().unwrap(), name, value);
        if properties::SESSION_OPTIONS.contains(&name) {
            // After the value is stored: a running session picks it up at its next buffer.
            self.options_generation.fetch_add(1, Ordering::SeqCst);
        }
        if name == "latency" {
            let element = self.obj();
            let _ = element.post_message(gst::message::Latency::builder().src(&*element).build());
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "max-observed-delay" => self
                .max_observed_delay_ms
                .load(Ordering::Relaxed)
                .to_value(),
            "dropped-audio" => self.dropped_audio_ms.load(Ordering::Relaxed).to_value(),
            name => properties::get(&self.settings.lock().unwrap(), name),
        }
    }
}

impl GstObjectImpl for FireworksStt {}

impl ElementImpl for FireworksStt {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: Lazy<gst::subclass::ElementMetadata> = Lazy::new(|| {
            gst::subclass::ElementMetadata::new(
                "Fireworks AI Transcriber",
                "Audio/Text/Filter",
                "Speech to Text filter, using the Fireworks AI streaming speech-to-text service. \
                 Outputs timed words (or utterances) and posts fireworksstt/* bus messages; \
                 usable as transcriberbin's transcriber",
                "The gst-plugin-fireworks maintainers (see the crate's README.md)",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: Lazy<Vec<gst::PadTemplate>> = Lazy::new(|| {
            let sink_caps = gst_audio::AudioCapsBuilder::new_interleaved()
                .format(gst_audio::AudioFormat::S16le)
                .rate(16_000)
                .channels(1)
                .build();
            let src_caps = gst::Caps::builder("text/x-raw")
                .field("format", "utf8")
                .build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &sink_caps,
                )
                .expect("valid sink template"),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &src_caps,
                )
                .expect("valid src template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::PausedToReady {
            // Before the base class takes the stream lock: a streaming thread waiting for the
            // network (a full queue, a drain) is released at once.
            self.flushing.store(true, Ordering::SeqCst);
            self.abort_session();
        }
        self.parent_change_state(transition)
    }
}

fn template_caps(direction: gst::PadDirection) -> gst::Caps {
    FireworksStt::pad_templates()
        .iter()
        .find(|t| t.direction() == direction)
        .map(|t| t.caps().clone())
        .unwrap_or_else(gst::Caps::new_empty)
}

impl BaseTransformImpl for FireworksStt {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::NeverInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.reset(true);
        self.flushing.store(false, Ordering::SeqCst);
        // Statistics describe one run; they stay readable after it stops.
        self.dropped_audio_ms.store(0, Ordering::Relaxed);
        self.max_observed_delay_ms.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.reset(true);
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        _caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        // Audio on one side always means text on the other, and back.
        let other = match direction {
            gst::PadDirection::Sink => template_caps(gst::PadDirection::Src),
            _ => template_caps(gst::PadDirection::Sink),
        };
        Some(match filter {
            Some(filter) => filter.intersect_with_mode(&other, gst::CapsIntersectMode::First),
            None => other,
        })
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Src {
            if let gst::QueryViewMut::Latency(q) = query.view_mut() {
                return self.answer_latency(q);
            }
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Eos(_) => {
                self.drain_session();
                self.parent_sink_event(event)
            }
            gst::EventView::FlushStart(_) => {
                self.flushing.store(true, Ordering::SeqCst);
                self.abort_session();
                self.parent_sink_event(event)
            }
            gst::EventView::FlushStop(_) => {
                self.reset(false);
                self.flushing.store(false, Ordering::SeqCst);
                self.parent_sink_event(event)
            }
            gst::EventView::Segment(e) => {
                let Some(event) = self.on_segment(e.segment(), event.seqnum()) else {
                    return false;
                };
                self.parent_sink_event(event)
            }
            gst::EventView::Gap(gap) => {
                let (pts, duration) = gap.get();
                self.on_gap(pts, duration);
                true
            }
            _ => self.parent_sink_event(event),
        }
    }

    fn submit_input_buffer(
        &self,
        is_discont: bool,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        // Overriding this skips the base class's own check.
        if self.obj().sink_pad().current_caps().is_none() {
            return Err(gst::FlowError::NotNegotiated);
        }
        self.send_audio(is_discont, &buffer)?;
        Ok(gst::FlowSuccess::Ok)
    }

    fn generate_output(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        self.push_pending()?;
        Ok(GenerateOutputSuccess::NoOutput)
    }
}

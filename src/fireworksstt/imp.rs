// SPDX-License-Identifier: MPL-2.0
//! The `fireworksstt` element: the GObject/GStreamer entry points. The work behind them lives
//! in the threads' files: `streaming.rs` (audio and serialized events in), `network_events.rs`
//! (events from the network task), `src_task.rs` (the src pad task: everything that goes out of
//! the src pad) and `reporting.rs` (bus posts every thread makes).
//!
//! Threads: the streaming thread (audio and serialized events in), the network task (client
//! events), the src pad task (pushes downstream) and application threads (properties, state
//! changes). They share one [`State`] behind one mutex, held only for short bookkeeping:
//! never across a push, a network wait or a bus post. `settings` holds the property values and
//! is never locked while `state` is held.

use std::sync::{Condvar, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_transform::GenerateOutputSuccess;
use gst_base::subclass::prelude::*;
use once_cell::sync::Lazy;

use super::properties;
use super::settings::Settings;
use super::state::{Reset, State};
use super::CAT;

pub struct FireworksStt {
    pub(super) settings: Mutex<Settings>,
    /// The one owner of the stream's state (see [`State`]).
    pub(super) state: Mutex<State>,
    /// Signalled whenever `state` changes in a way a waiter may care about: output queued
    /// or taken, a state change, a flush, a failure.
    pub(super) state_cond: Condvar,
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
            state_cond: Condvar::new(),
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
        if name == properties::LANGUAGE_CODE {
            if let Ok(Some(code)) = value.get::<Option<String>>() {
                if let Err(err) = crate::protocol::normalize_language_code(&code) {
                    gst::warning!(CAT, imp = self, "{err}");
                }
            }
        }
        properties::set(&mut self.settings.lock().unwrap(), name, value);
        if properties::SESSION_OPTIONS.contains(&name) {
            // After the value is stored: a running session picks it up at its next buffer.
            self.state.lock().unwrap().settings_generation += 1;
        }
        // The src pad task reads latency, lateness, output-mode and early-words at each
        // wake-up: wake it for a change made in PLAYING.
        self.state_cond.notify_all();
        if name == properties::LATENCY {
            let element = self.obj();
            let _ = element.post_message(gst::message::Latency::builder().src(&*element).build());
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            properties::MAX_OBSERVED_DELAY => {
                ms_u32(self.state.lock().unwrap().stats.max_observed_delay).to_value()
            }
            properties::DROPPED_AUDIO => {
                ms_u32(self.state.lock().unwrap().stats.dropped_audio).to_value()
            }
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
                .rate(crate::client::SAMPLE_RATE as i32)
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
        match transition {
            gst::StateChange::PausedToReady => {
                // Before the base class takes the stream lock: a streaming thread waiting for
                // the network (a full queue, a drain) or for PLAYING is released at once.
                self.set_flushing(true);
            }
            gst::StateChange::PausedToPlaying => self.set_playing(true),
            _ => {}
        }
        let result = self.parent_change_state(transition);
        match transition {
            gst::StateChange::ReadyToPaused if result.is_ok() => {
                if let Err(err) = self.start_output_task() {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Thread,
                        ("Could not start the output task: {}", err)
                    );
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::PausedToReady => self.stop_output_task(),
            gst::StateChange::PlayingToPaused => self.set_playing(false),
            _ => {}
        }
        result
    }
}

/// A statistic in whole milliseconds, as the `u32` properties report it.
fn ms_u32(time: gst::ClockTime) -> u32 {
    u32::try_from(time.mseconds()).unwrap_or(u32::MAX)
}

pub(super) fn template_caps(direction: gst::PadDirection) -> gst::Caps {
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
        self.reset(Reset::Stop);
        let mut state = self.state.lock().unwrap();
        state.flushing = false;
        // Statistics describe one run; they stay readable after it stops.
        state.stats = Default::default();
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.reset(Reset::Stop);
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
        match (direction, query.view_mut()) {
            (gst::PadDirection::Src, gst::QueryViewMut::Latency(q)) => {
                return self.answer_latency(q);
            }
            // The base class would answer it by renegotiating the src pad and pushing caps
            // from the streaming thread, ahead of the stream-start still waiting in the output
            // queue. Everything leaves the src pad through that queue, in GStreamer's order
            // (stream-start, caps, segment); the audio needs no allocation proposal.
            (gst::PadDirection::Sink, gst::QueryViewMut::Allocation(_)) => return false,
            _ => {}
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    /// Serialized events go downstream through the output queue, in order with the text
    /// (the src pad task pushes them); only flushes and out-of-band events pass at once.
    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Eos(_) => {
                self.drain_session();
                self.report_dropped_at_eos();
                self.queue_end_of_stream(event);
                true
            }
            gst::EventView::FlushStart(_) => {
                self.set_flushing(true);
                let forwarded = self.parent_sink_event(event);
                // Downstream now refuses data, so a push in progress returns and the task stops.
                let _ = self.obj().src_pad().pause_task();
                forwarded
            }
            gst::EventView::FlushStop(_) => {
                self.reset(Reset::Flush);
                self.set_flushing(false);
                let forwarded = self.parent_sink_event(event);
                if let Err(err) = self.start_output_task() {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Thread,
                        ("Could not restart the output task: {}", err)
                    );
                    return false;
                }
                forwarded
            }
            gst::EventView::Segment(e) => {
                let Some(event) = self.on_segment(e.segment(), event.seqnum()) else {
                    return false;
                };
                self.queue_event(event);
                true
            }
            gst::EventView::Caps(_) => {
                // Input caps are fixed by the template; the output is always UTF-8 text.
                self.queue_event(gst::event::Caps::new(&template_caps(
                    gst::PadDirection::Src,
                )));
                true
            }
            gst::EventView::Gap(gap) => {
                let (pts, duration) = gap.get();
                self.on_gap(pts, duration);
                true
            }
            _ if event.is_serialized() => {
                self.queue_event(event);
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

    /// Output never comes from the streaming thread: the src pad task pushes it, so that a
    /// slow or synchronising downstream cannot hold up the audio.
    fn generate_output(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        Ok(GenerateOutputSuccess::NoOutput)
    }
}

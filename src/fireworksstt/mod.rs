//! The `fireworksstt` element: the GStreamer glue. Properties, pads, events and queries live
//! here; the protocol rules and the network session live in their own rooms.
//!
//! # fireworksstt
//!
//! Streams S16LE 16 kHz mono audio to the Fireworks AI streaming speech-to-text service and
//! delivers the transcripts as timed `text/x-raw` buffers on `src` (one per word, or one per
//! utterance) and as element messages on the bus (`fireworksstt/transcript`,
//! `fireworksstt/speech-started`, `fireworksstt/speech-ended`, `fireworksstt/usage`).
//!
//! Use it on its own (`... ! audioconvert ! audioresample ! fireworksstt ! fakesink`) or as
//! the transcriber of `transcriberbin`: it has the `language-code`, `latency` and `lateness`
//! properties transcriberbin sets, answers the LATENCY query without network access, emits
//! `rstranscribe/final-transcript` after each utterance and GAP events through silence.

use gst::glib;
use gst::prelude::*;

mod bridge;
mod bus;
mod downstream;
mod imp;
mod output;
mod properties;
mod session;
pub(crate) mod settings;
mod timeline;

pub use settings::OutputMode;

/// Which timestamps the service is asked for.
#[glib::flags(name = "GstFireworksSttTimestampGranularities")]
pub enum TimestampGranularities {
    #[flags_value(name = "Per-word start and end times", nick = "word")]
    WORD = 0b01,
    #[flags_value(name = "Per-segment start and end times", nick = "segment")]
    SEGMENT = 0b10,
}

glib::wrapper! {
    pub struct FireworksStt(ObjectSubclass<imp::FireworksStt>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    OutputMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    TimestampGranularities::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "fireworksstt",
        gst::Rank::NONE,
        FireworksStt::static_type(),
    )
}

// SPDX-License-Identifier: MPL-2.0
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
use once_cell::sync::Lazy;

// Leaves: data and pure logic, no element code (they never import `imp`).
mod bus;
pub mod item_meta;
mod output;
mod output_queue;
mod properties;
pub(crate) mod settings;
mod state;
mod timeline;
pub mod transcriber_events;
// The element type and its GObject/GStreamer entry points.
mod imp;
// The threads' code: inherent `impl FireworksStt` blocks, one file per thread or job.
mod network_events;
mod reporting;
mod src_task;
mod streaming;

pub use settings::OutputMode;

/// The element's debug category (`GST_DEBUG=fireworksstt:6` follows the network life).
pub(crate) static CAT: Lazy<gst::DebugCategory> = Lazy::new(|| {
    gst::DebugCategory::new(
        "fireworksstt",
        gst::DebugColorFlags::empty(),
        Some("Fireworks AI speech-to-text element"),
    )
});

/// Which timestamps the service is asked for.
#[glib::flags(name = "GstFireworksSttTimestampGranularities")]
pub enum TimestampGranularities {
    #[flags_value(name = "Per-word start and end times", nick = "word")]
    WORD = 0b01,
    #[flags_value(name = "Per-segment start and end times", nick = "segment")]
    SEGMENT = 0b10,
}

glib::wrapper! {
    /// SECTION:element-fireworksstt
    /// @see_also: transcriberbin, textoverlay, srtenc
    ///
    /// `fireworksstt` streams raw audio (S16LE, 16 kHz, mono) to the Fireworks AI streaming
    /// speech-to-text service over a WebSocket and delivers the transcripts in two forms:
    ///
    /// - timed `text/x-raw, format=utf8` buffers on its src pad, one per word
    ///   (`output-mode=words`, what `transcriberbin`, `tttocea608` and `textwrap` expect; each
    ///   utterance is followed by the custom downstream event `rstranscribe/final-transcript`) or
    ///   one per final utterance (`output-mode=utterances`);
    /// - element messages on the bus: `fireworksstt/transcript` (interim and final, with word
    ///   times), `fireworksstt/speech-started`, `fireworksstt/speech-ended` and `fireworksstt/usage`.
    ///
    /// Every text buffer carries a `FireworksItemMeta` (a registered `GstCustomMeta`) with
    /// `utterance`, `final` (false for a word pushed early from an interim), `language` and,
    /// on a word buffer, the word's `probability` and `hallucination-score` (an utterance
    /// buffer carries `words`, the list of its words with their times and scores). Right
    /// before each text buffer an `rstranscribe/new-item` custom upstream event (`speaker`,
    /// always NULL; `content`; `running-time`; `duration`) goes out of the sink pad, and a
    /// `LanguageCode` tag goes downstream before the first text in each language. Every
    /// final `fireworksstt/transcript` message carries `end-to-final`, the time from its last
    /// word's end to its arrival, in running time.
    ///
    /// Without `base-url`, the model picks the endpoint: `fireworks-asr-v2` connects to
    /// `wss://audio-streaming-v2.api.fireworks.ai/v1`, any other model to the regional v1 host.
    ///
    /// The API key comes from the `api-key` property or the `FIREWORKS_API_KEY` environment
    /// variable; it is sent only in the `Authorization` header and never logged. The connection is
    /// made on the first buffer (state changes need no network), dropped connections are retried
    /// with the unconfirmed audio replayed, and at EOS the element waits for the service's last
    /// words before forwarding EOS. Audio that could not be transcribed is reported in an ERROR
    /// that says how many seconds were lost.
    ///
    /// ## Example launch lines
    /// |[
    /// gst-launch-1.0 -m filesrc location=talk.wav ! decodebin ! audioconvert ! audioresample ! \
    ///     fireworksstt language-code=en ! fakesink
    /// ]| prints every transcript as a bus message.
    ///
    /// |[
    /// gst-launch-1.0 filesrc location=talk.wav ! decodebin ! audioconvert ! audioresample ! \
    ///     fireworksstt output-mode=utterances ! srtenc ! filesink location=talk.srt
    /// ]| writes subtitles.
    ///
    /// The repository's README lists every property and bus message field, and its bundled
    /// Fireworks-compatible server runs the same pipelines offline.
    ///
    /// Since: 0.1
    pub struct FireworksStt(ObjectSubclass<imp::FireworksStt>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    item_meta::register();
    OutputMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    TimestampGranularities::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "fireworksstt",
        gst::Rank::NONE,
        FireworksStt::static_type(),
    )
}

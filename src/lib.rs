// SPDX-License-Identifier: MPL-2.0
//! GStreamer plugin `fireworks`: the `fireworksstt` element streams audio to the Fireworks AI
//! streaming speech-to-text service and delivers transcripts as timed text buffers and bus
//! messages.
//!
//! The code lives in three rooms: [`protocol`] (pure: options, messages, transcript rules),
//! [`client`] (tokio: one WebSocket session with reconnects) and `fireworksstt` (the
//! GStreamer glue).

pub mod client;
mod fireworksstt;
pub mod protocol;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), gst::glib::BoolError> {
    fireworksstt::register(plugin)
}

gst::plugin_define!(
    fireworks,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);

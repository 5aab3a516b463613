// SPDX-License-Identifier: MPL-2.0
//! GStreamer set-up shared by the integration tests and the benchmark programs
//! (`benches/common/mod.rs` includes this file with `#[path]`), so it needs nothing but
//! GStreamer and the plugin.

use std::sync::Once;

/// Initializes GStreamer and registers the fireworks plugin of this build (statically), once.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initializes");
        gstfireworks::plugin_register_static().expect("the fireworks plugin registers");
    });
}

/// 16 kHz mono S16LE, the audio the tests and benchmarks feed.
pub fn audio_caps() -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "S16LE")
        .field("rate", 16_000i32)
        .field("channels", 1i32)
        .field("layout", "interleaved")
        .build()
}

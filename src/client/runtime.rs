// SPDX-License-Identifier: MPL-2.0
use once_cell::sync::Lazy;
use tokio::runtime::Runtime;

/// One runtime for every element instance in the process: a couple of workers carry all
/// WebSocket sessions, so a thousand streams do not mean a thousand threads.
static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gst-fireworks-runtime")
        .enable_all()
        .build()
        .expect("the tokio runtime for fireworksstt could not be created")
});

pub fn runtime() -> &'static Runtime {
    &RUNTIME
}

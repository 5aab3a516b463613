// SPDX-License-Identifier: MPL-2.0
use once_cell::sync::Lazy;
use tokio::runtime::Runtime;

/// One runtime for every element instance in the process, with one worker thread: it carries
/// every WebSocket session, so a thousand streams do not mean a thousand threads. The network
/// work of a stream is small and never blocks (1,000 live streams take well under half a core
/// of it, BENCHMARKS.md), and each event that wakes a second worker costs a context switch
/// more: a multi-threaded scheduler with two workers woke both for most frames, doubling the
/// runtime's share of a live stream's CPU.
static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gst-fireworks-runtime")
        .enable_all()
        .build()
        .expect("the tokio runtime for fireworksstt could not be created")
});

pub fn runtime() -> &'static Runtime {
    &RUNTIME
}

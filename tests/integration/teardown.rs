// SPDX-License-Identifier: MPL-2.0
//! Teardown under load: a thousand random state changes, flushes and EOS while audio flows.
//! No hang, no deadlock, no panic, and threads and file descriptors return to their baseline.
//!
//! Those are counts for the whole process, which the other tests of this binary change as they
//! run: the test runs alone in a child process of its own (`common::process`).

use std::time::{Duration, Instant};

use crate::common::*;
use gst::prelude::*;

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

fn threads() -> usize {
    count_dir("/proc/self/task")
}

fn fds() -> usize {
    count_dir("/proc/self/fd")
}

/// A small deterministic generator: the run is the same every time (seed printed on failure).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn build(server: &TestServer) -> (gst::Pipeline, gst::Element) {
    let pipeline = gst::parse::launch(
        "audiotestsrc is-live=true samplesperbuffer=800 wave=ticks ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! fireworksstt name=stt ! fakesink sync=false async=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let stt = pipeline.by_name("stt").unwrap();
    point_at(&stt, server);
    stt.set_property("drain-timeout", 300u32);
    stt.set_property("connect-timeout", 1000u32);
    (pipeline, stt)
}

fn settle(pipeline: &gst::Pipeline) {
    let _ = pipeline.state(gst::ClockTime::from_seconds(2));
}

/// Waits (bounded) until the counts come back down to the baseline.
fn returns_to(baseline: usize, slack: usize, count: fn() -> usize) -> Result<(), usize> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = count();
        if now <= baseline + slack {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(now);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_thousand_random_operations_while_audio_flows() {
    let test = test_name(
        module_path!(),
        "a_thousand_random_operations_while_audio_flows",
    );
    if let Some(child) = run_alone(&test, &[], Duration::from_secs(240)) {
        print!("{}", child.stdout);
        return;
    }
    init();
    let server = TestServer::start(ServerConfig::default()).unwrap();

    // Warm up once so lazily created threads (the shared runtime, GStreamer's pools) exist.
    let (pipeline, _stt) = build(&server);
    pipeline.set_state(gst::State::Playing).unwrap();
    settle(&pipeline);
    std::thread::sleep(Duration::from_millis(100));
    pipeline.set_state(gst::State::Null).unwrap();
    drop(pipeline);
    std::thread::sleep(Duration::from_millis(200));
    let (thread_baseline, fd_baseline) = (threads(), fds());

    let seed = 0x5eed_f12e;
    let mut rng = Lcg(seed);
    let (pipeline, stt) = build(&server);
    let started = Instant::now();
    for op in 0..1000 {
        match rng.next(7) {
            0 => {
                let _ = pipeline.set_state(gst::State::Null);
            }
            1 => {
                let _ = pipeline.set_state(gst::State::Ready);
            }
            2 => {
                let _ = pipeline.set_state(gst::State::Paused);
            }
            3 | 4 => {
                let _ = pipeline.set_state(gst::State::Playing);
            }
            5 => {
                // A flushing seek: flush-start arrives from this thread while the streaming
                // thread pushes audio.
                let _ = pipeline.seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::ZERO);
            }
            _ => {
                let _ = pipeline.send_event(gst::event::Eos::new());
            }
        }
        if rng.next(4) == 0 {
            std::thread::sleep(Duration::from_millis(rng.next(20)));
        }
        let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(5));
        assert!(
            !matches!(result, Err(gst::StateChangeError)) || op > 0,
            "state change failed at op {op} (seed {seed:#x})"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "1,000 operations took too long: a hang? (op {op}, seed {seed:#x})"
        );
    }
    pipeline.set_state(gst::State::Null).unwrap();
    drop(stt);
    drop(pipeline);
    println!("1,000 operations in {:?}", started.elapsed());

    // GLib keeps a couple of idle pool threads around for reuse; nothing else may remain.
    if let Err(now) = returns_to(thread_baseline, 2, threads) {
        panic!("threads: {now} now, {thread_baseline} at baseline");
    }
    if let Err(now) = returns_to(fd_baseline, 0, fds) {
        panic!("file descriptors: {now} now, {fd_baseline} at baseline");
    }
    assert!(
        server.connections().len() > 10,
        "the operations really streamed"
    );
}

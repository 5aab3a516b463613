// SPDX-License-Identifier: MPL-2.0
//! Live input as transcriberbin and live sources deliver it: holes from a leaky queue,
//! DISCONT flags, a network slower than the source, words later than the latency budget, and
//! repeated drops separated by finals.

use std::time::{Duration, Instant};

use crate::common::*;
use gst::prelude::*;

fn harness(server: &TestServer) -> (gst_check::Harness, gst::Element, gst::Bus) {
    init();
    let mut h = gst_check::Harness::new("fireworksstt");
    let stt = h.element().unwrap();
    let bus = gst::Bus::new();
    stt.set_bus(Some(&bus));
    point_at(&stt, server);
    h.set_src_caps(audio_caps());
    h.play();
    (h, stt, bus)
}

fn warnings(bus: &gst::Bus) -> Vec<String> {
    std::iter::from_fn(|| bus.pop())
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn holes_from_a_leaky_queue_neither_reconnect_nor_shift_later_words() {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let (mut h, _stt, _bus) = harness(&server);
    let audio = synthesize_utterances(&["before the hole", "after the hole", "and later"]).unwrap();
    // 100 ms buffers at their true PTS; drop four buffers in each silence between utterances,
    // as a leaky queue would: the service never hears them.
    let silence_after = |u: usize| {
        audio
            .words
            .iter()
            .rfind(|w| w.utterance == u)
            .unwrap()
            .end_sample
    };
    let holes = [silence_after(0) + 8000, silence_after(1) + 8000];
    let mut discont = false;
    for (i, chunk) in audio.samples.chunks(1600).enumerate() {
        let start = i as u64 * 1600;
        if holes.iter().any(|h| start >= *h && start < h + 6400) {
            discont = true;
            continue;
        }
        let mut buffer = audio_buffer(chunk, start * 62_500);
        if discont {
            buffer
                .get_mut()
                .unwrap()
                .set_flags(gst::BufferFlags::DISCONT);
            discont = false;
        }
        h.push(buffer).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let words = pull_until_eos(&mut h);
    let expected: Vec<&str> = audio.words.iter().map(|w| w.text.as_str()).collect();
    assert_eq!(
        words.iter().map(|w| w.0.as_str()).collect::<Vec<_>>(),
        expected
    );
    for (got, want) in words.iter().zip(&audio.words) {
        let want_pts = want.start_sample * 62_500;
        assert!(
            got.1.abs_diff(want_pts) <= 10 * MS,
            "{} at {} want {want_pts}",
            got.0,
            got.1
        );
    }
    assert_eq!(
        server.connections().len(),
        1,
        "a DISCONT is not a reason to reconnect"
    );
}

#[test]
fn a_live_source_is_never_held_up_by_a_stalled_network() {
    // The server stops reading: the socket buffers fill, then the queue; after that each
    // buffer may wait at most 100 ms before its audio is dropped and counted.
    let server = TestServer::start(
        ServerConfig::default().with_fault(0, Fault::StallAfterBytes { bytes: 32_000 }),
    )
    .unwrap();
    let (mut h, stt, bus) = harness(&server);
    stt.set_property("stall-timeout", 120_000u32);
    let second = vec![0i16; 16_000];
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut pts = 0;
    while stt.property::<u32>("dropped-audio") < 3000 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing was ever dropped"
        );
        let t = Instant::now();
        h.push(audio_buffer(&second, pts)).unwrap();
        slowest = slowest.max(t.elapsed());
        pts += 1_000_000_000;
    }
    assert!(
        slowest < Duration::from_millis(400),
        "a push took {slowest:?}"
    );
    let warned = warnings(&bus);
    assert!(
        warned.iter().any(|w| w.contains("dropped-audio")),
        "{warned:?}"
    );
    println!(
        "{} s of audio pushed, slowest push {slowest:?}",
        pts / 1_000_000_000
    );
    h.element().unwrap().set_state(gst::State::Null).unwrap();
}

#[test]
fn late_words_raise_max_observed_delay_and_warn() {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    // Real-time pacing: the final of "hi" can only come after a second of silence, and
    // without early words nothing goes out before it.
    let audio = synthesize(
        &Script::new()
            .utterance("hi")
            .trailing_silence(Duration::from_millis(1300)),
    )
    .unwrap();
    let live = run_live_in_real_time(&audio, &server, |stt| {
        stt.set_property("latency", 300u32);
        stt.set_property("early-words", false);
    });
    assert_eq!(live.words.len(), 1);
    assert!(
        live.max_observed_delay > 900,
        "max-observed-delay {}",
        live.max_observed_delay
    );
    let excessive = live
        .run
        .warnings
        .iter()
        .find_map(|(_, _, details)| {
            details
                .as_ref()
                .filter(|d| d.name() == "fireworksstt/excessive-delay")
                .map(|d| d.get::<gst::ClockTime>("new-observed-max-delay").unwrap())
        })
        .expect("an excessive-delay warning");
    assert!(excessive.mseconds() > 300);
}

#[test]
fn the_retry_counter_starts_again_after_each_final() {
    // Every connection drops 4 s into its audio, after at least one final: with max-retries=1
    // that is only survivable because each final resets the counter.
    let mut config = ServerConfig::default();
    for connection in 0..8 {
        config = config.with_fault(connection, Fault::DropAfterBytes { bytes: 4 * 32_000 });
    }
    let server = TestServer::start(config).unwrap();
    let utterances = [
        "one two",
        "three four",
        "five six",
        "seven eight",
        "nine ten",
    ];
    let audio = synthesize_utterances(&utterances).unwrap();
    let run = run_audio(&audio.samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property("max-retries", 1u32);
        stt.set_property("retry-interval", 50u32);
    });
    assert!(run.errors.is_empty(), "{}", run.error_text());
    assert_eq!(run.finals(), utterances);
    assert!(
        server.connections().len() >= 3,
        "{} connections",
        server.connections().len()
    );
}

struct LiveRun {
    /// (word, PTS, running time when it left the element)
    words: Vec<(String, u64, u64)>,
    run: Run,
    max_observed_delay: u32,
}

/// A live pipeline fed in real time; records when each word buffer left the element, in
/// running time.
fn run_live_in_real_time(
    audio: &SynthAudio,
    server: &TestServer,
    configure: impl FnOnce(&gst::Element),
) -> LiveRun {
    init();
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&audio_caps())
        .format(gst::Format::Time)
        .is_live(true)
        .build();
    let stt = gst::ElementFactory::make("fireworksstt").build().unwrap();
    point_at(&stt, server);
    configure(&stt);
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .unwrap();
    pipeline.add_many([src.upcast_ref(), &stt, &sink]).unwrap();
    gst::Element::link_many([src.upcast_ref(), &stt, &sink]).unwrap();
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = arrivals.clone();
    let element = stt.clone();
    stt.static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                let text = String::from_utf8(b.map_readable().unwrap().to_vec()).unwrap();
                let now = element.current_running_time().unwrap().nseconds();
                record
                    .lock()
                    .unwrap()
                    .push((text, b.pts().unwrap().nseconds(), now));
            }
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let started = Instant::now();
    let mut pts = 0u64;
    for chunk in audio.samples.chunks(1600) {
        // Hand each 100 ms buffer over once its last sample is "recorded", as a capture
        // device would.
        let due = started + Duration::from_nanos(pts + chunk.len() as u64 * 62_500);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        src.push_buffer(audio_buffer(chunk, pts)).unwrap();
        pts += chunk.len() as u64 * 62_500;
    }
    src.end_of_stream().unwrap();
    let run = collect_bus(&pipeline, Duration::from_secs(30));
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(run.errors.is_empty(), "{}", run.error_text());
    let words = arrivals.lock().unwrap().clone();
    LiveRun {
        words,
        run,
        max_observed_delay: stt.property::<u32>("max-observed-delay"),
    }
}

#[test]
fn live_words_go_out_before_their_deadline_even_in_long_utterances() {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let spoken = "one two three four five six seven eight nine ten eleven twelve";
    let audio = synthesize(
        &Script::new()
            .leading_silence(Duration::from_millis(300))
            .utterance(spoken)
            .trailing_silence(Duration::from_millis(1500)),
    )
    .unwrap();
    let latency = 1000u64;
    let finality = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let arrivals = run_live_in_real_time(&audio, &server, |stt| {
        stt.set_property("latency", latency as u32);
        record_finality(stt, finality.clone());
    })
    .words;
    // FireworksItemMeta says which words went out early, from an interim.
    let finality = std::mem::take(&mut *finality.lock().unwrap());
    assert_eq!(finality.len(), arrivals.len());
    assert!(
        finality.iter().any(|is_final| !is_final),
        "early words are marked final=false: {finality:?}"
    );
    let words: Vec<&str> = arrivals.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(
        words,
        spoken.split(' ').collect::<Vec<_>>(),
        "each word once, in order"
    );
    for ((text, pts, arrived), want) in arrivals.iter().zip(&audio.words) {
        assert!(
            pts.abs_diff(want.start_sample * 62_500) <= 10 * MS,
            "{text} at {pts}"
        );
        // On time: before its running time plus the latency the element reports.
        assert!(
            *arrived <= pts + latency * MS,
            "{text} arrived {} ms after its PTS",
            (arrived - pts) / MS
        );
    }
    // Without early words the first word waits for the final, far past the deadline.
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let finality = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let arrivals = run_live_in_real_time(&audio, &server, |stt| {
        stt.set_property("latency", latency as u32);
        stt.set_property("early-words", false);
        record_finality(stt, finality.clone());
    })
    .words;
    assert!(
        finality.lock().unwrap().iter().all(|is_final| *is_final),
        "without early words every word comes from a final"
    );
    let (_, pts, arrived) = &arrivals[0];
    assert!(
        *arrived > pts + latency * MS,
        "the final alone is late for long utterances"
    );
}

/// Records the `final` field of each text buffer's FireworksItemMeta.
fn record_finality(stt: &gst::Element, into: std::sync::Arc<std::sync::Mutex<Vec<bool>>>) {
    stt.static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                let meta = gst::meta::CustomMeta::from_buffer(b, "FireworksItemMeta")
                    .expect("every word carries FireworksItemMeta");
                into.lock()
                    .unwrap()
                    .push(meta.structure().get::<bool>("final").unwrap());
            }
            gst::PadProbeReturn::Ok
        });
}

// SPDX-License-Identifier: MPL-2.0
//! The output path: a slow, synchronising or blocked downstream never holds up the audio on
//! its way to the service nor the bus messages; text moves with time, not with the next input
//! buffer; PAUSED prerolls at once and spends (almost) no audio; utterance text carries a line
//! end only for consumers that read raw bytes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;
use gst::prelude::*;

const UTTERANCES: [&str; 3] = [
    "the quick brown fox",
    "jumps over the lazy dog",
    "and runs away",
];

fn three_utterances() -> SynthAudio {
    synthesize(
        &Script::new()
            .leading_silence(Duration::from_millis(1500))
            .utterance_then(UTTERANCES[0], Duration::from_millis(1200))
            .utterance_then(UTTERANCES[1], Duration::from_millis(1200))
            .utterance(UTTERANCES[2])
            .trailing_silence(Duration::from_millis(1500)),
    )
    .unwrap()
}

/// Audio bytes the service received over all connections.
fn audio_heard(server: &TestServer) -> u64 {
    server.connections().iter().map(|c| c.audio_bytes).sum()
}

fn scratch(name: &str) -> PathBuf {
    scratch_dir("output-path", name)
}

/// Adds `fireworksstt` (pointed at `server`) and a non-synchronising `fakesink` (`async` as
/// given) to `pipeline`, linked after `src`.
fn add_stt_and_fakesink(
    pipeline: &gst::Pipeline,
    src: &gst_app::AppSrc,
    server: &TestServer,
    sink_async: bool,
) -> (gst::Element, gst::Element) {
    let stt = gst::ElementFactory::make("fireworksstt").build().unwrap();
    point_at(&stt, server);
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", sink_async)
        .build()
        .unwrap();
    pipeline.add_many([src.upcast_ref(), &stt, &sink]).unwrap();
    gst::Element::link_many([src.upcast_ref(), &stt, &sink]).unwrap();
    (stt, sink)
}

/// Feeds `audio` into a live appsrc in real time, `buffer_samples` at a time, as a capture
/// device delivers it, then EOS.
fn feed_in_real_time(src: &gst_app::AppSrc, audio: &SynthAudio, buffer_samples: usize) {
    let started = Instant::now();
    let mut pts = 0u64;
    for chunk in audio.samples.chunks(buffer_samples) {
        let due = started + Duration::from_nanos(pts + chunk.len() as u64 * 62_500);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if src.push_buffer(audio_buffer(chunk, pts)).is_err() {
            break;
        }
        pts += chunk.len() as u64 * 62_500;
    }
    let _ = src.end_of_stream();
}

/// The case from the field: a capture-like live source that keeps 200 ms and drops the rest,
/// and a synchronising appsink right after the element. The sink holds every word until its
/// render time; that must not reach back to the audio.
#[test]
fn a_synchronising_sink_right_after_the_element_never_holds_up_live_audio() {
    init();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let audio = three_utterances();
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&audio_caps())
        .format(gst::Format::Time)
        .is_live(true)
        .build();
    let queue = gst::ElementFactory::make("queue")
        .property_from_str("leaky", "downstream")
        .property("max-size-time", 200_000_000u64)
        .property("max-size-buffers", 0u32)
        .property("max-size-bytes", 0u32)
        .build()
        .unwrap();
    let stt = gst::ElementFactory::make("fireworksstt").build().unwrap();
    point_at(&stt, &server);
    // Synchronising (the default); samples are read after EOS.
    let sink = gst_app::AppSink::builder()
        .sync(true)
        .wait_on_eos(false)
        .build();
    pipeline
        .add_many([src.upcast_ref(), &queue, &stt, sink.upcast_ref()])
        .unwrap();
    gst::Element::link_many([src.upcast_ref(), &queue, &stt, sink.upcast_ref()]).unwrap();
    let dropped_by_queue = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = dropped_by_queue.clone();
    queue.connect("overrun", false, move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        None
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    feed_in_real_time(&src, &audio, 320);
    let run = collect_bus(&pipeline, Duration::from_secs(30));
    let mut texts = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::ZERO) {
        let buffer = sample.buffer().unwrap();
        texts.push(String::from_utf8(buffer.map_readable().unwrap().to_vec()).unwrap());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(run.errors.is_empty(), "{}", run.error_text());
    assert!(run.got_eos);
    assert_eq!(
        audio_heard(&server),
        audio.samples.len() as u64 * 2,
        "the service heard every sample (the leaky queue overran {} times)",
        dropped_by_queue.load(std::sync::atomic::Ordering::SeqCst)
    );
    assert_eq!(stt.property::<u32>("dropped-audio"), 0);
    assert_eq!(run.finals(), UTTERANCES, "every final once and exact");
    let words: Vec<String> = UTTERANCES
        .iter()
        .flat_map(|u| u.split(' ').map(str::to_string))
        .collect();
    assert_eq!(texts, words, "the sink got every word once, in order");
}

/// A downstream that takes nothing at all (a blocked pad) holds up neither the audio nor the
/// bus messages; once it moves again it gets all the text, then EOS.
#[test]
fn a_blocked_downstream_holds_up_neither_audio_nor_bus_messages() {
    init();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let audio = three_utterances();
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&audio_caps())
        .format(gst::Format::Time)
        .is_live(true)
        .build();
    let (stt, _sink) = add_stt_and_fakesink(&pipeline, &src, &server, true);
    let srcpad = stt.static_pad("src").unwrap();
    let out = record_output(&srcpad);
    // Blocks the first text buffer, and everything after it, until removed.
    let block = srcpad
        .add_probe(
            gst::PadProbeType::BLOCK | gst::PadProbeType::BUFFER,
            |_, _| gst::PadProbeReturn::Ok,
        )
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let feeder = {
        let src = src.clone();
        let audio = audio.clone();
        std::thread::spawn(move || feed_in_real_time(&src, &audio, 1600))
    };
    // Every final reaches the bus while downstream is blocked.
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut finals = Vec::new();
    while finals.len() < UTTERANCES.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "finals on the bus so far: {finals:?}");
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(left.as_millis() as u64))
        else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Element(e) => {
                let s = e.structure().unwrap();
                if s.name() == "fireworksstt/transcript" && s.get::<bool>("final").unwrap() {
                    finals.push(s.get::<String>("text").unwrap());
                }
            }
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    assert_eq!(finals, UTTERANCES);
    feeder.join().unwrap();
    assert!(
        out.lock()
            .unwrap()
            .iter()
            .all(|o| !matches!(o, Out::Text { .. })),
        "downstream was blocked"
    );
    srcpad.remove_probe(block);
    let run = collect_bus(&pipeline, Duration::from_secs(30));
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(run.errors.is_empty(), "{}", run.error_text());
    assert_eq!(audio_heard(&server), audio.samples.len() as u64 * 2);
    assert_eq!(stt.property::<u32>("dropped-audio"), 0);
    let out = out.lock().unwrap();
    let texts: Vec<&str> = out
        .iter()
        .filter_map(|o| match o {
            Out::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts.join(" "), UTTERANCES.join(" "));
    assert_eq!(out.last(), Some(&Out::Eos), "EOS after all the text");
}

/// Words go downstream when the final arrives, not when the next input buffer does.
#[test]
fn text_moves_with_time_not_with_the_next_input_buffer() {
    init();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let mut h = gst_check::Harness::new("fireworksstt");
    point_at(&h.element().unwrap(), &server);
    h.set_src_caps(audio_caps());
    let audio = synthesize(
        &Script::new()
            .utterance("hello world")
            .trailing_silence(Duration::from_millis(1500)),
    )
    .unwrap();
    let mut pts = 0;
    for chunk in audio.samples.chunks(1600) {
        h.push(audio_buffer(chunk, pts)).unwrap();
        pts += chunk.len() as u64 * 62_500;
    }
    // No more input, no EOS: the words still come.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut words = Vec::new();
    while words.len() < 2 && Instant::now() < deadline {
        match h.try_pull() {
            Some(buffer) => {
                words.push(String::from_utf8(buffer.map_readable().unwrap().to_vec()).unwrap())
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert_eq!(words, ["hello", "world"]);
}

/// `filesrc ! wavparse ! fireworksstt ! fakesink` set to PAUSED: downstream prerolls after
/// about one buffer, and while the pipeline stays in PAUSED the service hears at most about a
/// second of audio. PLAYING then transcribes the whole file, and every transcript message
/// carries its arrival time.
#[test]
fn paused_prerolls_at_once_and_spends_at_most_a_second_of_audio() {
    init();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let audio = three_utterances();
    let dir = scratch("paused");
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! wavparse ! fireworksstt name=stt base-url={} api-key={} ! fakesink sync=false",
        wav.display(),
        server.base_url(),
        TEST_KEY
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let started = Instant::now();
    pipeline.set_state(gst::State::Paused).unwrap();
    let (result, state, _) = pipeline.state(gst::ClockTime::from_seconds(5));
    let prerolled_in = started.elapsed();
    assert_eq!(result, Ok(gst::StateChangeSuccess::Success), "prerolled");
    assert_eq!(state, gst::State::Paused);
    // Well under a second of audio is needed to preroll, however slow the service.
    assert!(
        prerolled_in < Duration::from_secs(2),
        "PAUSED took {prerolled_in:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let heard = audio_heard(&server);
    println!("prerolled in {prerolled_in:?}; heard in PAUSED: {heard} bytes");
    // One second (32,000 bytes) and the input buffer that crossed it.
    assert!(
        heard <= 32_000 + 16_000,
        "the service heard {} ms of audio while PAUSED",
        heard / 32
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let run = collect_bus(&pipeline, Duration::from_secs(30));
    pipeline.set_state(gst::State::Null).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(run.errors.is_empty(), "{}", run.error_text());
    assert_eq!(run.finals(), UTTERANCES);
    assert_eq!(audio_heard(&server), audio.samples.len() as u64 * 2);
    let transcripts = run.messages_named("fireworksstt/transcript");
    assert!(!transcripts.is_empty());
    for s in transcripts {
        assert!(
            s.has_field("arrival-time"),
            "a transcript message in PLAYING without arrival-time: {s:?}"
        );
    }
}

/// `output-mode=utterances ! srtenc` writes well-formed cues (no stray line ends), while
/// `output-mode=utterances ! filesink` still gets one line per utterance.
#[test]
fn utterances_end_with_a_line_end_only_for_raw_byte_consumers() {
    init();
    let audio = three_utterances();
    let dir = scratch("lines");
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let run_to = |tail: &str| {
        let server = TestServer::start(ServerConfig::default()).unwrap();
        let pipeline = gst::parse::launch(&format!(
            "filesrc location={} ! wavparse ! fireworksstt output-mode=utterances base-url={} api-key={} ! {tail}",
            wav.display(),
            server.base_url(),
            TEST_KEY
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let run = collect_bus(&pipeline, Duration::from_secs(30));
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(run.errors.is_empty(), "{}", run.error_text());
        assert_eq!(run.finals(), UTTERANCES);
        // Straight to PLAYING: a running time exists for every message.
        for s in run.messages_named("fireworksstt/transcript") {
            assert!(s.has_field("arrival-time"), "{s:?}");
        }
    };
    let txt = dir.join("out.txt");
    run_to(&format!("filesink location={}", txt.display()));
    let lines = std::fs::read_to_string(&txt).unwrap();
    assert_eq!(lines, format!("{}\n", UTTERANCES.join("\n")));
    for (encoder, header) in [("srtenc", ""), ("webvttenc", "WEBVTT\n\n")] {
        let file = dir.join(format!("out.{encoder}"));
        run_to(&format!("{encoder} ! filesink location={}", file.display()));
        let text = std::fs::read_to_string(&file).unwrap();
        let body = text
            .strip_prefix(header)
            .unwrap_or_else(|| panic!("{text:?}"));
        assert!(
            !body.contains("\n\n\n"),
            "{encoder}: stray line ends: {text:?}"
        );
        let cues: Vec<&str> = body
            .split("\n\n")
            .filter(|c| !c.trim().is_empty())
            .collect();
        assert_eq!(cues.len(), UTTERANCES.len(), "{encoder}: {text:?}");
        for (cue, want) in cues.iter().zip(UTTERANCES) {
            // A number line (SRT), a time line, the text.
            assert_eq!(cue.lines().last(), Some(want), "{encoder}: {text:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Stopping never waits for a downstream that does not take the text: the task is stopped at
/// once, also while a push is blocked.
#[test]
fn stopping_while_downstream_is_blocked_is_immediate() {
    init();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let audio = three_utterances();
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&audio_caps())
        .format(gst::Format::Time)
        .max_bytes(0)
        .build();
    let (stt, _sink) = add_stt_and_fakesink(&pipeline, &src, &server, false);
    let srcpad = stt.static_pad("src").unwrap();
    let (blocked_tx, blocked_rx) = std::sync::mpsc::channel();
    srcpad.add_probe(
        gst::PadProbeType::BLOCK | gst::PadProbeType::BUFFER,
        move |_, _| {
            let _ = blocked_tx.send(());
            gst::PadProbeReturn::Ok
        },
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut pts = 0;
    for chunk in audio.samples.chunks(1600) {
        src.push_buffer(audio_buffer(chunk, pts)).unwrap();
        pts += chunk.len() as u64 * 62_500;
    }
    blocked_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a word reached the blocked pad");
    let t = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    let took = t.elapsed();
    println!("set_state(NULL) with a blocked push took {took:?}");
    assert!(took < Duration::from_secs(2), "stop waited {took:?}");
}

/// Sticky events and texts as downstream of the element received them, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Event(gst::EventType),
    Text(String),
}

fn record_seen(pad: &gst::Pad) -> std::sync::Arc<std::sync::Mutex<Vec<Seen>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let item = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => Some(Seen::Text(
                    String::from_utf8(b.map_readable().unwrap().to_vec()).unwrap(),
                )),
                Some(gst::PadProbeData::Event(e)) => Some(Seen::Event(e.type_())),
                _ => None,
            };
            sink.lock().unwrap().extend(item);
            gst::PadProbeReturn::Ok
        },
    );
    seen
}

/// A new segment without a flush (concat, playlists, non-flushing seeks) ends the network
/// session: every word of the old segment still goes out, before the new segment, even when
/// downstream is slow to take them.
#[test]
fn a_new_segment_delivers_every_word_of_the_old_one_first() {
    init();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let first = synthesize_utterances(&UTTERANCES[..2]).unwrap();
    let second = synthesize_utterances(&UTTERANCES[2..]).unwrap();
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&audio_caps())
        .format(gst::Format::Time)
        .max_bytes(0)
        .build();
    src.set_property("handle-segment-change", true);
    let (_stt, sink) = add_stt_and_fakesink(&pipeline, &src, &server, true);
    let sink_pad = sink.static_pad("sink").unwrap();
    // A downstream that takes a while per word: words are still queued when the segment
    // changes.
    sink_pad.add_probe(gst::PadProbeType::BUFFER, |_, _| {
        std::thread::sleep(Duration::from_millis(40));
        gst::PadProbeReturn::Ok
    });
    let seen = record_seen(&sink_pad);
    pipeline.set_state(gst::State::Playing).unwrap();

    // Two files back to back, as concat plays them: the second segment starts at 0 again,
    // its base after the first.
    let first_duration = first.samples.len() as u64 * 62_500;
    let push = |audio: &SynthAudio, segment: &gst::FormattedSegment<gst::ClockTime>| {
        let mut pts = 0u64;
        for chunk in audio.samples.chunks(1600) {
            let sample = gst::Sample::builder()
                .buffer(&audio_buffer(chunk, pts))
                .caps(&audio_caps())
                .segment(segment)
                .build();
            src.push_sample(&sample).unwrap();
            pts += chunk.len() as u64 * 62_500;
        }
    };
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(gst::ClockTime::ZERO);
    push(&first, &segment);
    let mut next = segment.clone();
    next.set_base(gst::ClockTime::from_nseconds(first_duration));
    push(&second, &next);
    let _ = src.end_of_stream();
    let run = collect_bus(&pipeline, Duration::from_secs(60));
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(run.errors.is_empty(), "{}", run.error_text());
    assert_eq!(run.finals(), UTTERANCES);

    let seen = seen.lock().unwrap().clone();
    let segments: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == Seen::Event(gst::EventType::Segment))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(segments.len(), 2, "{seen:?}");
    let words = |range: &[Seen]| -> Vec<String> {
        range
            .iter()
            .filter_map(|s| match s {
                Seen::Text(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    };
    let expect = |utterances: &[&str]| -> Vec<String> {
        utterances
            .iter()
            .flat_map(|u| u.split(' '))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        words(&seen[..segments[1]]),
        expect(&UTTERANCES[..2]),
        "words of the first segment"
    );
    assert_eq!(
        words(&seen[segments[1]..]),
        expect(&UTTERANCES[2..]),
        "words of the second segment"
    );
}

/// Sticky events leave the src pad in GStreamer's order, stream-start, caps, segment, once
/// each, live or not, even when the src pad task is slow to get going (a loaded machine).
#[test]
fn sticky_events_go_out_in_order_and_once() {
    init();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    for live in [true, false] {
        for run in 0..5 {
            let pipeline = gst::parse::launch(&format!(
                "audiotestsrc is-live={live} num-buffers=10 samplesperbuffer=320 wave=silence \
                 ! audio/x-raw,format=S16LE,rate=16000,channels=1 \
                 ! fireworksstt name=stt ! fakesink name=sink sync=false"
            ))
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
            let stt = pipeline.by_name("stt").unwrap();
            point_at(&stt, &server);
            // The src pad task is slow to push stream-start: the streaming thread meanwhile
            // negotiates and pushes buffers.
            stt.static_pad("src").unwrap().add_probe(
                gst::PadProbeType::EVENT_DOWNSTREAM,
                |_, info| {
                    if let Some(gst::PadProbeData::Event(e)) = &info.data {
                        if e.type_() == gst::EventType::StreamStart {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                    gst::PadProbeReturn::Ok
                },
            );
            let seen = record_seen(
                &pipeline
                    .by_name("sink")
                    .unwrap()
                    .static_pad("sink")
                    .unwrap(),
            );
            pipeline.set_state(gst::State::Playing).unwrap();
            let result = collect_bus(&pipeline, Duration::from_secs(30));
            pipeline.set_state(gst::State::Null).unwrap();
            assert!(result.errors.is_empty(), "{}", result.error_text());
            let sticky: Vec<gst::EventType> = seen
                .lock()
                .unwrap()
                .iter()
                .filter_map(|s| match s {
                    Seen::Event(
                        t @ (gst::EventType::StreamStart
                        | gst::EventType::Caps
                        | gst::EventType::Segment),
                    ) => Some(*t),
                    _ => None,
                })
                .collect();
            assert_eq!(
                sticky,
                [
                    gst::EventType::StreamStart,
                    gst::EventType::Caps,
                    gst::EventType::Segment
                ],
                "live={live}, run {run}"
            );
        }
    }
}

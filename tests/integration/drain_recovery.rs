// SPDX-License-Identifier: MPL-2.0
//! End of stream recovers, or says what was lost. A connection that is stalled or never
//! answered at or near EOS is detected and replaced within the drain, and the audio no final
//! covers yet is replayed, so every final arrives once and exact when the service comes back;
//! when it does not, an ERROR says how many seconds of audio were never transcribed (and
//! `gst-launch-1.0` exits non-zero). All with the element's default timeouts unless a test
//! says otherwise.
//!
//! `cargo test --test integration drain_recovery:: -- --nocapture` prints the timings.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::*;
use gst::glib;
use gst::prelude::*;

/// About 21 s of speech-like audio in eight utterances.
const UTTERANCES: [&str; 8] = [
    "alpha bravo charlie",
    "delta echo foxtrot",
    "golf hotel india",
    "juliet kilo lima",
    "mike november oscar",
    "papa quebec romeo",
    "sierra tango",
    "uniform victor whiskey",
];

fn audio() -> &'static SynthAudio {
    static AUDIO: OnceLock<SynthAudio> = OnceLock::new();
    AUDIO.get_or_init(|| synthesize_utterances(&UTTERANCES).unwrap())
}

/// 16 kHz S16 mono.
const BYTES_PER_SECOND: u64 = 32_000;

fn run_with(config: ServerConfig, configure: impl FnOnce(&gst::Element)) -> (Run, TestServer) {
    let server = TestServer::start(config).unwrap();
    let run = run_audio(&audio().samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        configure(stt);
    });
    (run, server)
}

/// The words and times of a run against a server without faults.
fn baseline() -> &'static Vec<(String, u64, u64)> {
    static BASELINE: OnceLock<Vec<(String, u64, u64)>> = OnceLock::new();
    BASELINE.get_or_init(|| {
        let (run, _server) = run_with(ServerConfig::default(), |_| {});
        assert!(run.errors.is_empty(), "{}", run.error_text());
        assert_eq!(run.finals(), UTTERANCES);
        run.texts()
    })
}

/// Every final once, exact, at the fault-free times; nothing promoted, no error.
fn assert_every_final_once_and_exact(case: &str, run: &Run) {
    assert!(run.errors.is_empty(), "{case}: {}", run.error_text());
    assert!(run.got_eos, "{case}: no EOS");
    assert_eq!(run.finals(), UTTERANCES, "{case}: finals differ");
    let promoted = run
        .messages_named("fireworksstt/transcript")
        .into_iter()
        .filter(|s| s.get::<bool>("promoted").unwrap())
        .count();
    assert_eq!(promoted, 0, "{case}: a fragment stood in for a final");
    assert!(
        !run.warnings.iter().any(|w| w.0.contains("drain-timeout")),
        "{case}: the drain ran out: {:?}",
        run.warnings
    );
    let words = run.texts();
    let base = baseline();
    assert_eq!(words.len(), base.len(), "{case}: {words:?}");
    for (got, want) in words.iter().zip(base) {
        assert_eq!(got.0, want.0, "{case}");
        assert!(
            got.1.abs_diff(want.1) <= 10 * MS,
            "{case}: {} at {} was {}",
            got.0,
            got.1,
            want.1
        );
    }
}

/// The untranscribed audio an ERROR reports, from its details.
fn untranscribed(run: &Run) -> gst::ClockTime {
    let details = run.errors[0].2.as_ref().expect("error details");
    details
        .get::<gst::ClockTime>("untranscribed-audio")
        .expect("the error says how much audio was never transcribed")
}

#[test]
fn a_stall_before_eos_is_detected_in_the_drain_and_every_final_arrives() {
    baseline();
    // The service stops answering (and reading) 7 s into the 21 s file; the rest of the file
    // and the end-of-stream checkpoint go into a connection that never answers again.
    let stall = Fault::StallAfterBytes {
        bytes: 7 * BYTES_PER_SECOND,
    };
    let (run, server) = run_with(ServerConfig::default().with_fault(0, stall), |_| {});
    println!(
        "stall 7 s into {:.1} s: EOS after {} ms, {} connections",
        audio().duration().as_secs_f64(),
        run.elapsed.as_millis(),
        server.connections().len()
    );
    assert_every_final_once_and_exact("stall 7 s in", &run);
    assert_eq!(server.connections().len(), 2);
    assert!(
        run.warnings
            .iter()
            .any(|w| w.0.contains("Reconnecting") && w.0.contains("after a checkpoint")),
        "the silent connection is named in the reconnect warning: {:?}",
        run.warnings
    );
    // The file is pushed at once; then 3 s of silence after the checkpoint, a reconnect and
    // the replay of the unconfirmed audio. Without quick detection the drain would give up at
    // drain-timeout (5 s) before stall-timeout (15 s) noticed anything.
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
}

#[test]
fn only_the_first_upgrade_hanging_still_delivers_every_final() {
    baseline();
    // connect-timeout (10 s) is longer than drain-timeout (5 s): the drain must wait for the
    // retry instead of ending when drain-timeout passes.
    let (run, server) = run_with(
        ServerConfig::default().with_fault(0, Fault::NoUpgradeResponse),
        |_| {},
    );
    println!(
        "first upgrade never answered: EOS after {} ms",
        run.elapsed.as_millis()
    );
    assert_every_final_once_and_exact("first upgrade hangs", &run);
    assert_eq!(server.connections().len(), 2);
    assert!(
        run.warnings
            .iter()
            .any(|w| w.0.contains("Connecting to Fireworks failed, trying again")),
        "a connection that never succeeded is not a reconnect: {:?}",
        run.warnings
    );
    // 10 s connect-timeout, 100 ms before the retry, then the whole file at once.
    assert!(run.elapsed < Duration::from_secs(14), "{:?}", run.elapsed);
}

#[test]
fn every_upgrade_hanging_is_an_error_naming_the_audio_never_transcribed() {
    let mut config = ServerConfig::default();
    for connection in 0..4 {
        config = config.with_fault(connection, Fault::NoUpgradeResponse);
    }
    // Shorter than the defaults only to keep the test short: 4 attempts of 1 s.
    let (run, server) = run_with(config, |stt| {
        stt.set_property("connect-timeout", 1000u32);
        stt.set_property("retry-interval", 200u32);
    });
    println!(
        "every upgrade hangs: ERROR after {} ms: {}",
        run.elapsed.as_millis(),
        run.error_text()
    );
    assert_eq!(
        server.connections().len(),
        4,
        "max-retries (3) + 1 attempts"
    );
    let text = run.error_text();
    assert!(
        text.contains("Giving up after 3 retries")
            && text.contains("no connection ever succeeded")
            && text.contains("within 1000 ms (connect-timeout)"),
        "{text}"
    );
    let duration = audio().duration().as_secs_f64();
    assert!(
        text.contains(&format!("{duration:.1} s of audio were never transcribed")),
        "{text}"
    );
    let lost = untranscribed(&run);
    assert!(
        lost.nseconds()
            .abs_diff(audio().duration().as_nanos() as u64)
            <= 10 * MS,
        "{lost} of {duration} s"
    );
    assert!(run.finals().is_empty());
    // 4 × 1 s + 0.1 + 0.2 + 0.2 s of pauses.
    assert!(run.elapsed < Duration::from_secs(8), "{:?}", run.elapsed);
}

/// Forwards connections to `target`. After the first connection is accepted the port is
/// closed (connections are refused) for `closed_for`, then it listens again.
fn proxy_closing_after_first(target: std::net::SocketAddr, closed_for: Duration) -> String {
    use std::io::copy;
    use std::net::{Shutdown, TcpListener, TcpStream};
    fn forward(client: TcpStream, target: std::net::SocketAddr) {
        std::thread::spawn(move || {
            let Ok(upstream) = TcpStream::connect(target) else {
                return;
            };
            let (mut c1, mut u1) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = copy(&mut c1, &mut u1);
                let _ = u1.shutdown(Shutdown::Write);
            });
            let (mut c2, mut u2) = (client, upstream);
            let _ = copy(&mut u2, &mut c2);
            let _ = c2.shutdown(Shutdown::Write);
        });
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((first, _)) = listener.accept() else {
            return;
        };
        drop(listener);
        forward(first, target);
        std::thread::sleep(closed_for);
        // std sets SO_REUSEADDR, so the port can be bound again at once.
        let listener = TcpListener::bind(addr).unwrap();
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            forward(client, target);
        }
    });
    format!("ws://{addr}/v1")
}

#[test]
fn a_service_that_stalls_then_refuses_connections_is_retried_until_it_is_back() {
    baseline();
    // The service stops answering 7 s into the file and refuses connections for the next
    // 4 s: the drain finds the silent connection, the first retry is refused, the second
    // (retry-interval, 2 s later) gets through and the replay brings every final.
    let server = TestServer::start(ServerConfig::default().with_fault(
        0,
        Fault::StallAfterBytes {
            bytes: 7 * BYTES_PER_SECOND,
        },
    ))
    .unwrap();
    let url = proxy_closing_after_first(server.addr(), Duration::from_secs(4));
    let run = run_audio(&audio().samples, &Feed::default(), |stt| {
        point_at(stt, &server);
        stt.set_property("base-url", &url);
    });
    println!(
        "stall, then refused for 4 s: EOS after {} ms",
        run.elapsed.as_millis()
    );
    assert_every_final_once_and_exact("stall then refused", &run);
    let refused = run
        .warnings
        .iter()
        .filter(|w| w.0.contains("Reconnecting") && w.0.contains("Could not connect"))
        .count();
    assert!(refused >= 1, "{:?}", run.warnings);
    // 3 s to find the silence, 100 ms, a refused attempt, 2 s, then the replay.
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
}

#[test]
fn a_stall_that_never_ends_is_an_error_naming_the_loss() {
    // The first connection stalls 7 s in; every later one stalls at once, so nothing after
    // the last final of the first connection can ever be transcribed.
    let mut config =
        ServerConfig::default().with_fault(0, Fault::StallAfterBytes { bytes: 7 * 32_000 });
    for connection in 1..4 {
        config = config.with_fault(connection, Fault::StallAfterBytes { bytes: 0 });
    }
    let (run, server) = run_with(config, |_| {});
    println!(
        "stall that never ends: ERROR after {} ms: {}",
        run.elapsed.as_millis(),
        run.error_text()
    );
    assert_eq!(server.connections().len(), 4);
    let text = run.error_text();
    assert!(
        text.contains("Giving up after 3 retries") && text.contains("were never transcribed"),
        "{text}"
    );
    // What the first connection finalized was delivered, and exactly that is not in the loss.
    let finals = run.finals();
    assert!(
        !finals.is_empty() && finals.len() < UTTERANCES.len(),
        "{finals:?}"
    );
    assert_eq!(finals[..], UTTERANCES[..finals.len()]);
    let promoted = run
        .messages_named("fireworksstt/transcript")
        .into_iter()
        .filter(|s| s.get::<bool>("promoted").unwrap())
        .count();
    assert_eq!(promoted, 0, "no fragment stands in for what was lost");
    let lost = untranscribed(&run).nseconds();
    let last_final_end = audio()
        .words
        .iter()
        .filter(|w| w.utterance == finals.len() - 1)
        .map(|w| w.end_sample)
        .max()
        .unwrap()
        * 62_500;
    let total = audio().duration().as_nanos() as u64;
    // From the end of the last final word (as the service timed it) to the end of the audio.
    assert!(
        lost.abs_diff(total - last_final_end) <= 200 * MS,
        "lost {lost} ns, expected about {} ns",
        total - last_final_end
    );
    // 3 s of silence after each of 4 checkpoints, and the pauses between attempts.
    assert!(run.elapsed < Duration::from_secs(25), "{:?}", run.elapsed);
}

#[test]
fn options_changed_before_the_first_connection_keep_the_audio_before_them() {
    // The first upgrade hangs, so the new options arrive while the element is still
    // connecting: the audio before the change must still go out with the old options, and
    // only the audio after it with the new ones.
    init();
    let utterances = ["good morning", "first topic", "zweites thema", "ende"];
    let audio = synthesize_utterances(&utterances).unwrap();
    let server =
        TestServer::start(ServerConfig::default().with_fault(0, Fault::NoUpgradeResponse)).unwrap();
    let mut h = gst_check::Harness::new("fireworksstt");
    let stt = h.element().unwrap();
    let bus = gst::Bus::new();
    stt.set_bus(Some(&bus));
    point_at(&stt, &server);
    stt.set_property("connect-timeout", 500u32);
    h.set_src_caps(audio_caps());
    h.play();
    let after_second = audio
        .words
        .iter()
        .rfind(|w| w.utterance == 1)
        .unwrap()
        .end_sample as usize
        + 16_000;
    let mut pts = 0;
    let mut pushed = 0;
    for chunk in audio.samples.chunks(800) {
        if pushed >= after_second && pushed < after_second + 800 {
            stt.set_property("language-code", "de-DE");
        }
        h.push(audio_buffer(chunk, pts)).unwrap();
        pts += chunk.len() as u64 * 62_500;
        pushed += chunk.len();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let started = Instant::now();
    let words: Vec<String> = pull_until_eos(&mut h).into_iter().map(|w| w.0).collect();
    assert!(started.elapsed() < Duration::from_secs(10));
    let expected: Vec<&str> = utterances.iter().flat_map(|u| u.split(' ')).collect();
    assert_eq!(words, expected);

    let records = server.connections();
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_eq!(records[0].audio_bytes, 0, "the hung attempt");
    assert!(records[1].query.iter().all(|(k, _)| k != "language"));
    assert_eq!(records[1].checkpoints.len(), 1, "the old options finish");
    assert!(records[2].query.contains(&("language".into(), "de".into())));
    let sent: u64 = records.iter().map(|r| r.audio_bytes).sum();
    assert_eq!(sent, audio.samples.len() as u64 * 2, "every byte once");
    let languages: Vec<String> = std::iter::from_fn(|| bus.pop())
        .filter_map(|m| m.structure().map(|s| s.to_owned()))
        .filter(|s| s.name() == "fireworksstt/transcript" && s.get::<bool>("final").unwrap())
        .map(|s| s.get::<String>("language").unwrap())
        .collect();
    assert_eq!(languages, ["en", "en", "de", "de"]);
}

#[test]
fn gst_launch_exits_non_zero_when_the_service_never_answers() {
    let dir = plugin_dir();
    assert!(dir.join("libgstfireworks.so").exists());
    let tmp = std::env::temp_dir().join(format!("fireworksstt-drain-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let wav = tmp.join("speech.wav");
    audio().write_wav(&wav).unwrap();
    let mut config = ServerConfig::default();
    for connection in 0..2 {
        config = config.with_fault(connection, Fault::NoUpgradeResponse);
    }
    let server = TestServer::start(config).unwrap();
    let started = Instant::now();
    // drain-timeout is shorter than the two attempts: it must not end the stream as if
    // nothing were missing.
    let description = format!(
            "filesrc location={} ! wavparse ! audioconvert ! audioresample ! fireworksstt base-url={} api-key={} connect-timeout=1000 max-retries=1 drain-timeout=500 ! fakesink",
            wav.display(),
            server.base_url(),
            TEST_KEY
        );
    let output = gst_launch(
        &description.split(' ').collect::<Vec<_>>(),
        &tmp,
        Duration::from_secs(30),
    );
    let all = format!("{}{}", output.stdout, output.stderr);
    println!(
        "gst-launch, service never answers: exit {:?} after {} ms",
        output.status.code(),
        started.elapsed().as_millis()
    );
    assert!(!output.status.success(), "{all}");
    assert!(all.contains("were never transcribed"), "{all}");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `audio` pushed as fast as possible into the element pointed at `server`, with `properties`
/// set; long files get two minutes.
fn run_long(audio: &SynthAudio, server: &TestServer, properties: &[(&str, glib::Value)]) -> Run {
    let feed = Feed {
        timeout: Duration::from_secs(120),
        ..Feed::default()
    };
    run_audio(&audio.samples, &feed, |stt| {
        point_at(stt, server);
        for (name, value) in properties {
            stt.set_property_from_value(name, value);
        }
    })
}

/// Many utterances, pushed as fast as possible: far more audio than the replay log keeps.
fn long_audio(repeats: usize) -> SynthAudio {
    let utterances: Vec<&str> = UTTERANCES
        .iter()
        .copied()
        .cycle()
        .take(8 * repeats)
        .collect();
    synthesize_utterances(&utterances).unwrap()
}

/// A service that awaits its own sends before it reads on (as servers commonly do) sends more
/// than the socket buffers hold while a file is pushed as fast as possible: the element keeps
/// reading while it writes, so the connection never deadlocks, never counts as stalled, and
/// every final arrives on the one connection. (Before, both directions filled, and after
/// `stall-timeout` the connection was replaced.)
#[test]
fn a_service_that_blocks_on_its_own_sends_never_deadlocks_the_connection() {
    // The utterances, then silence: many times more audio (19 MB) than the socket buffers
    // hold, most of it still to be sent when the service starts sending.
    let audio = synthesize(
        &UTTERANCES
            .iter()
            .fold(Script::new(), |script, u| script.utterance(*u))
            .trailing_silence(Duration::from_secs(600)),
    )
    .unwrap();
    let flood = Fault::FloodAfterBytes {
        bytes: 3 * BYTES_PER_SECOND,
        messages: 96,
        size: 900_000,
    };
    let server = TestServer::start(
        ServerConfig::default()
            .with_receive_buffer(16 * 1024)
            .with_fault(0, flood)
            .with_recording(false, false),
    )
    .unwrap();
    let started = Instant::now();
    // A deadlock shows as a stall within this.
    let run = run_long(&audio, &server, &[("stall-timeout", 3_000u32.to_value())]);
    let record = &server.connections()[0];
    println!(
        "{:.0} s of audio and {} messages from the service in {:?}: {} connection(s), faults {:?}",
        audio.duration().as_secs_f64(),
        record.sent_text_count,
        started.elapsed(),
        server.connection_count(),
        record.faults_fired,
    );
    assert!(
        run.errors.is_empty(),
        "{}; warnings: {:?}",
        run.error_text(),
        run.warnings
    );
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    assert_eq!(server.connection_count(), 1);
    assert_eq!(run.finals(), UTTERANCES);
}

/// Non-live input whose audio could not all be sent again after a reconnect (the service
/// finalises nothing for longer than the replay log keeps, then the connection drops) ends
/// with an ERROR naming the seconds never transcribed, and gst-launch would exit non-zero.
#[test]
fn audio_a_reconnect_could_not_resend_ends_a_file_with_an_error() {
    // About 84 s of speech that the service finalises only after 29 s of silence: one
    // utterance, unconfirmed, longer than the 60 s the replay log keeps.
    let audio = long_audio(4);
    let drop = Fault::DropAfterBytes {
        bytes: 75 * BYTES_PER_SECOND,
    };
    let server = TestServer::start(
        ServerConfig::default()
            .with_fault(0, drop)
            .with_recording(false, false),
    )
    .unwrap();
    // The audio held back at the full replay log flows again after stall-timeout at most.
    let run = run_long(
        &audio,
        &server,
        &[
            ("text-timeout-seconds", 29.0f64.to_value()),
            ("stall-timeout", 2_000u32.to_value()),
        ],
    );
    println!("{}", run.error_text());
    assert_eq!(run.errors.len(), 1, "{:?}", run.warnings);
    assert!(
        run.error_text().contains("never transcribed"),
        "{}",
        run.error_text()
    );
    let lost = untranscribed(&run);
    assert!(
        lost >= gst::ClockTime::from_seconds(5),
        "reported {lost} never transcribed"
    );
}

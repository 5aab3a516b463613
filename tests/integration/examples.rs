// SPDX-License-Identifier: MPL-2.0
//! The examples users run, run as users run them: the built binaries (target/<profile>/examples/,
//! which cargo builds before the tests), against a local test server started here, on test audio
//! from `synthesize_utterances`. What is checked is what a user would look at: the subtitle files
//! and their cue times, the finals printed on the terminal, the exit code and the error text, and
//! the captions in the video frames.
//!
//! Every child process runs with a deadline and is killed when it passes it.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use gst::prelude::*;

/// How far a cue or a printed start time may be from the spoken audio.
const TIME_TOLERANCE: Duration = Duration::from_millis(50);

/// target/<profile>/examples/NAME, next to the deps/ folder holding this test. Fails when it is
/// missing or older than its source (e.g. after `cargo test --test integration` alone, which does
/// not rebuild examples).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let binary = profile_dir.join("examples").join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{} is not built ({e}): run `cargo build --examples` (or `cargo test`, which \
                 builds them)",
                binary.display()
            )
        });
    let edited = std::fs::metadata(&source)
        .and_then(|m| m.modified())
        .unwrap();
    assert!(
        built >= edited,
        "{} is older than {}: run `cargo build --examples`",
        binary.display(),
        source.display()
    );
    binary
}

/// Runs an example (without this environment's FIREWORKS_API_KEY, but with `env`) to the end,
/// or kills it after `timeout` and fails.
fn run(name: &str, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Finished {
    let mut command = Command::new(example(name));
    command.args(args).env_remove("FIREWORKS_API_KEY");
    for (key, value) in env {
        command.env(key, value);
    }
    run_command(command, &format!("{name} {args:?}"), timeout)
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    scratch_dir("examples", test)
}

fn samples(n: u64) -> Duration {
    Duration::from_nanos(n * 1_000_000_000 / 16_000)
}

/// Each utterance's (text, start of its first word, end of its last word).
fn spoken(audio: &SynthAudio) -> Vec<(String, Duration, Duration)> {
    audio
        .utterances
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let words: Vec<_> = audio.utterance_words(i).collect();
            (
                text.clone(),
                samples(words.first().unwrap().start_sample),
                samples(words.last().unwrap().end_sample),
            )
        })
        .collect()
}

fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) <= TIME_TOLERANCE
}

/// `HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (WebVTT; hours optional) or `H:MM:SS.mmm`.
fn parse_time(s: &str) -> Option<Duration> {
    let (hms, ms) = s.trim().rsplit_once([',', '.'])?;
    let mut secs = 0u64;
    for part in hms.split(':') {
        secs = secs * 60 + part.parse::<u64>().ok()?;
    }
    Some(Duration::from_secs(secs) + Duration::from_millis(ms.parse().ok()?))
}

/// The cues of an SRT or WebVTT file: (start, end, text lines joined by "\n"). Checks the block
/// structure on the way: blocks are separated by exactly one blank line.
fn parse_cues(file: &str, vtt: bool) -> Vec<(Duration, Duration, String)> {
    let body = if vtt {
        file.strip_prefix("WEBVTT\n\n")
            .unwrap_or_else(|| panic!("no WEBVTT header:\n{file}"))
    } else {
        file
    };
    assert!(
        !body.contains("\n\n\n") && !body.starts_with('\n'),
        "blank lines inside or between cues:\n{file:?}"
    );
    let mut cues = Vec::new();
    for (i, block) in body
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .enumerate()
    {
        let mut lines = block.lines();
        if !vtt {
            assert_eq!(
                lines.next(),
                Some((i + 1).to_string().as_str()),
                "cue number\n{file}"
            );
        }
        let timing = lines.next().unwrap();
        let (start, end) = timing
            .split_once(" --> ")
            .unwrap_or_else(|| panic!("not a cue timing line: {timing:?}\n{file}"));
        let text: Vec<&str> = lines.collect();
        assert!(
            text.iter().all(|l| !l.trim().is_empty()),
            "empty line in a cue\n{file:?}"
        );
        cues.push((
            parse_time(start).unwrap(),
            parse_time(end).unwrap(),
            text.join("\n"),
        ));
    }
    cues
}

/// The finals an example printed: lines `[H:MM:SS.mmm] text`.
fn printed_finals(stdout: &str) -> Vec<(Duration, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let (time, text) = line.strip_prefix('[')?.split_once("] ")?;
            Some((parse_time(time)?, text.to_string()))
        })
        .collect()
}

fn assert_finals_printed(run: &Finished, expected: &[(String, Duration, Duration)]) {
    let printed = printed_finals(&run.stdout);
    let texts: Vec<&str> = printed.iter().map(|(_, t)| t.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(texts, want, "the finals, in order\n{}", run.report());
    for ((at, text), (_, start, _)) in printed.iter().zip(expected) {
        assert!(
            close(*at, *start),
            "{text:?} printed as starting at {at:?}, spoken at {start:?}\n{}",
            run.report()
        );
    }
}

#[test]
fn transcribe_file_writes_srt_and_webvtt_and_prints_the_finals() {
    let dir = scratch("transcribe");
    let audio = synthesize_utterances(&["hello world", "how are you", "this is a test"]).unwrap();
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let (srt, vtt) = (dir.join("speech.srt"), dir.join("speech.vtt"));
    let server = TestServer::start(ServerConfig::default()).unwrap();

    let run = run(
        "transcribe-file",
        &[
            wav.to_str().unwrap(),
            "--srt",
            srt.to_str().unwrap(),
            "--vtt",
            vtt.to_str().unwrap(),
            "--base-url",
            &server.base_url(),
            "--language",
            "en",
        ],
        &[],
        Duration::from_secs(25),
    );
    assert!(run.status.success(), "{}", run.report());
    let expected = spoken(&audio);
    assert_finals_printed(&run, &expected);
    assert!(
        !run.stderr.contains('\r') && !run.stderr.contains('\x1b'),
        "no progress bar when stderr is not a terminal\n{}",
        run.report()
    );
    assert!(
        run.stderr.contains("3 utterance(s)"),
        "a summary at the end\n{}",
        run.report()
    );

    for (path, is_vtt) in [(&srt, false), (&vtt, true)] {
        let file = std::fs::read_to_string(path).unwrap();
        let cues = parse_cues(&file, is_vtt);
        assert_eq!(
            cues.len(),
            expected.len(),
            "one cue per utterance in {}:\n{file}",
            path.display()
        );
        for ((start, end, text), (want, spoken_start, spoken_end)) in cues.iter().zip(&expected) {
            assert_eq!(text, want, "{}:\n{file}", path.display());
            assert!(
                close(*start, *spoken_start) && close(*end, *spoken_end),
                "{}: cue {text:?} is {start:?} --> {end:?}, spoken {spoken_start:?} --> \
                 {spoken_end:?}\n{file}",
                path.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Subtitle practice for the files transcribe-file writes: at most two lines of at most 42
/// characters, at most 7 s per cue, cues split between words at the words' own times, never
/// overlapping, never across utterances. A long utterance (over 7 s and 84 characters) must be
/// split; the files are parsed back.
#[test]
fn transcribe_file_cues_are_readable_subtitles() {
    let dir = scratch("cues");
    let long = "the quick brown fox jumps over the lazy dog ".repeat(5);
    let audio = synthesize_utterances(&[long.trim(), "short one", "and a last line"]).unwrap();
    let long_words: Vec<_> = audio.utterance_words(0).collect();
    let long_span =
        samples(long_words.last().unwrap().end_sample) - samples(long_words[0].start_sample);
    assert!(
        long_span > Duration::from_secs(7) && long.len() > 84,
        "the long utterance must need splitting: {long_span:?}"
    );
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let (srt, vtt) = (dir.join("speech.srt"), dir.join("speech.vtt"));
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let run = run(
        "transcribe-file",
        &[
            wav.to_str().unwrap(),
            "--srt",
            srt.to_str().unwrap(),
            "--vtt",
            vtt.to_str().unwrap(),
            "--base-url",
            &server.base_url(),
        ],
        &[],
        Duration::from_secs(60),
    );
    assert!(run.status.success(), "{}", run.report());

    let srt_cues = parse_cues(&std::fs::read_to_string(&srt).unwrap(), false);
    let vtt_cues = parse_cues(&std::fs::read_to_string(&vtt).unwrap(), true);
    assert_eq!(srt_cues, vtt_cues, "the same cues in both formats");
    let file = std::fs::read_to_string(&srt).unwrap();
    let mut next_word = 0;
    for (i, (start, end, text)) in srt_cues.iter().enumerate() {
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            (1..=2).contains(&lines.len()) && lines.iter().all(|l| l.chars().count() <= 42),
            "cue {i}: at most 2 lines of 42 characters\n{file}"
        );
        assert!(
            start < end && *end - *start <= Duration::from_secs(7),
            "cue {i} lasts at most 7 s\n{file}"
        );
        if let Some((next_start, _, _)) = srt_cues.get(i + 1) {
            assert!(end <= next_start, "cue {i} overlaps the next\n{file}");
        }
        // The cue's words are the next spoken words, whole, all of one utterance, and the cue
        // starts with its first word and ends with its last (or where the next cue begins).
        let words: Vec<&str> = text.split_whitespace().collect();
        let spoken_words = &audio.words[next_word..next_word + words.len()];
        let texts: Vec<&str> = spoken_words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(words, texts, "cue {i}\n{file}");
        assert!(
            spoken_words
                .iter()
                .all(|w| w.utterance == spoken_words[0].utterance),
            "cue {i} spans two utterances\n{file}"
        );
        assert!(
            close(*start, samples(spoken_words[0].start_sample)),
            "cue {i} starts with its first word\n{file}"
        );
        let last_end = samples(spoken_words.last().unwrap().end_sample);
        let next_start = srt_cues.get(i + 1).map(|c| c.0);
        assert!(
            close(*end, last_end) || Some(*end) == next_start,
            "cue {i} ends with its last word\n{file}"
        );
        next_word += words.len();
    }
    assert_eq!(
        next_word,
        audio.words.len(),
        "every word is in a cue\n{file}"
    );
    assert!(
        srt_cues.len() >= 5,
        "the long utterance is split into several cues\n{file}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn transcribe_file_with_a_rejected_key_fails_with_a_readable_error() {
    let dir = scratch("badkey");
    let audio = synthesize_utterances(&["hello world"]).unwrap();
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let server = TestServer::start(ServerConfig::default().with_api_key(TEST_KEY)).unwrap();
    let wrong_key = "wrong-key-4242";

    let run = run(
        "transcribe-file",
        &[
            wav.to_str().unwrap(),
            "--srt",
            dir.join("out.srt").to_str().unwrap(),
            "--base-url",
            &server.base_url(),
        ],
        &[("FIREWORKS_API_KEY", wrong_key)],
        Duration::from_secs(25),
    );
    assert!(!run.status.success(), "{}", run.report());
    let first_line = run.stderr.lines().find(|l| l.starts_with("error: "));
    assert!(
        first_line
            .is_some_and(|l| l.contains("rejected the API key") && l.contains("FIREWORKS_API_KEY")),
        "the error says what to fix\n{}",
        run.report()
    );
    assert!(
        !run.stderr.contains(wrong_key) && !run.stdout.contains(wrong_key),
        "the key is never printed\n{}",
        run.report()
    );
    assert!(printed_finals(&run.stdout).is_empty(), "{}", run.report());
    assert!(
        run.took < Duration::from_secs(10),
        "a rejected key is not retried\n{}",
        run.report()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One decoded video frame: its PTS, how many pixels are bright (the examples are run with
/// `--pattern black`, so those are caption text) and a hash of the picture (to tell captions
/// apart).
#[derive(Debug)]
struct Frame {
    pts: Duration,
    bright: usize,
    picture: u64,
}

/// Decodes a Motion-JPEG AVI.
fn decode_avi(path: &Path) -> Vec<Frame> {
    init();
    let pipeline = gst::parse::launch(
        "filesrc name=file ! avidemux ! jpegdec ! videoconvert ! video/x-raw,format=GRAY8 ! \
         appsink name=frames sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline
        .by_name("file")
        .unwrap()
        .set_property("location", path);
    let sink = pipeline
        .by_name("frames")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let frames = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let frames = frames.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    let mut hasher = std::hash::DefaultHasher::new();
                    map.as_slice().hash(&mut hasher);
                    frames.lock().unwrap().push(Frame {
                        pts: Duration::from_nanos(buffer.pts().map_or(0, |t| t.nseconds())),
                        // Black decodes to 0..16 however the JPEG was made; text is white.
                        bright: map.iter().filter(|&&y| y > 100).count(),
                        picture: hasher.finish(),
                    });
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("decoding the AVI finishes within 20 s");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(msg.view(), gst::MessageView::Eos(_)),
        "cannot decode {}: {msg:?}",
        path.display()
    );
    let frames = std::mem::take(&mut *frames.lock().unwrap());
    frames
}

/// The picture shown at `t`.
fn picture_at(frames: &[Frame], t: Duration) -> Option<u64> {
    frames
        .iter()
        .take_while(|f| f.pts <= t)
        .last()
        .map(|f| f.picture)
}

/// How long live-captions' caption lines gather words (its `CAPTION_LINE`, textwrap's
/// `accumulate-time`): a line can stay on the picture that long after its first word.
const CAPTION_LINE: Duration = Duration::from_secs(2);
/// What live-captions prints when the window (or the AVI) had to drop frames that came later than
/// the pipeline's latency, e.g. when the captions held the picture back for longer.
const LATE_FRAMES: &str = " video frames came later than the pipeline's latency";

/// The frames live-captions says it dropped as late (0 when it says nothing).
fn late_frames(run: &Finished) -> usize {
    run.stderr
        .lines()
        .find_map(|line| line.strip_prefix("warning: ")?.split_once(LATE_FRAMES))
        .map(|(count, _)| count.parse().expect("a count of frames"))
        .unwrap_or(0)
}

/// The AVI holds what a window shows. At the defaults the words come within the latency the
/// pipeline reports and no frame is late; a machine busy with other tests may still be late
/// for a few (1 in 20 allowed), never for the captions' sake.
fn assert_few_late_frames(run: &Finished, frames: &[Frame]) {
    let late = late_frames(run);
    assert!(
        late * 20 <= frames.len(),
        "{late} late frames for {} recorded\n{}",
        frames.len(),
        run.report()
    );
}

/// The PTS of the frames with a caption on them.
fn captioned(frames: &[Frame]) -> Vec<Duration> {
    frames
        .iter()
        .filter(|f| f.bright > 50)
        .map(|f| f.pts)
        .collect()
}

fn live_captions_args<'a>(
    mode: &'a str,
    wav: &'a str,
    avi: &'a str,
    duration: &'a str,
    base_url: &'a str,
) -> [&'a str; 11] {
    [
        mode,
        "--audio-file",
        wav,
        "--output",
        avi,
        "--duration",
        duration,
        "--pattern",
        "black",
        "--base-url",
        base_url,
    ]
}

#[test]
fn live_captions_overlay_draws_the_words_while_they_are_spoken() {
    assert!(
        caption_plugins_built(),
        "textwrap is not built: run scripts/setup.sh first"
    );
    let dir = scratch("overlay");
    let audio = synthesize_utterances(&["hello world", "how are you"]).unwrap();
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let avi = dir.join("captions.avi");
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let duration = format!("{:.1}", audio.duration().as_secs_f64() + 0.5);

    let run = run(
        "live-captions",
        &live_captions_args(
            "--overlay",
            wav.to_str().unwrap(),
            avi.to_str().unwrap(),
            &duration,
            &server.base_url(),
        ),
        &[],
        Duration::from_secs(25),
    );
    assert!(run.status.success(), "{}", run.report());
    let expected = spoken(&audio);
    assert_finals_printed(&run, &expected);

    let size = std::fs::metadata(&avi).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "the AVI is {size} bytes\n{}", run.report());
    let frames = decode_avi(&avi);
    // 30 frames a second for --duration seconds.
    assert!(
        frames.len() >= 30 * audio.duration().as_secs() as usize,
        "{} frames\n{}",
        frames.len(),
        run.report()
    );
    assert_few_late_frames(&run, &frames);
    // textoverlay shows the words on the frames that overlap the time they were spoken; a
    // caption line may stay until textwrap closes it, but never comes before its words.
    let captioned = captioned(&frames);
    let frame = Duration::from_nanos(1_000_000_000 / 30);
    for (text, start, end) in &expected {
        assert!(
            captioned.iter().any(|t| t >= start && t < end),
            "no caption on the frames while {text:?} was spoken ({start:?} to {end:?}); \
             captioned frames at {captioned:?}\n{}",
            run.report()
        );
    }
    for t in &captioned {
        assert!(
            expected
                .iter()
                .any(|(_, start, end)| *t + frame + TIME_TOLERANCE > *start
                    && *t < (*end).max(*start + CAPTION_LINE) + TIME_TOLERANCE),
            "a caption at {t:?}, before anything was said or after the words' line was over \
             ({expected:?})\n{}",
            run.report()
        );
    }
    let during = |(_, start, _): &(String, Duration, Duration)| picture_at(&frames, *start + frame);
    assert_ne!(
        during(&expected[0]),
        during(&expected[1]),
        "each utterance has its own caption\n{}",
        run.report()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where scripts/build-transcriberbin-plugins.sh puts the caption plugins (as
/// tests/integration/transcriberbin.rs and the example look for them).
fn caption_plugins_built() -> bool {
    let cache = std::env::var_os("FIREWORKSSTT_PLUGIN_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/fireworksstt/gst-plugins-rs-0.13")
        });
    ["libgstrsclosedcaption.so", "libgsttextwrap.so"]
        .iter()
        .all(|plugin| cache.join("plugins").join(plugin).is_file())
}

#[test]
fn live_captions_cea708_renders_transcriberbin_captions() {
    assert!(
        caption_plugins_built(),
        "the transcriberbin plugins are not built: run scripts/setup.sh first"
    );
    let dir = scratch("cea708");
    let audio = synthesize_utterances(&["hello world", "how are you"]).unwrap();
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let avi = dir.join("captions.avi");
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let duration = format!("{:.1}", audio.duration().as_secs_f64() + 0.5);

    let run = run(
        "live-captions",
        &live_captions_args(
            "--cea708",
            wav.to_str().unwrap(),
            avi.to_str().unwrap(),
            &duration,
            &server.base_url(),
        ),
        &[],
        Duration::from_secs(25),
    );
    // The example fails when transcriberbin falls back to passthrough.
    assert!(run.status.success(), "{}", run.report());
    assert!(!run.stderr.contains("passthrough"), "{}", run.report());
    let expected = spoken(&audio);
    assert_finals_printed(&run, &expected);

    let frames = decode_avi(&avi);
    assert!(
        frames.len() >= 29 * audio.duration().as_secs() as usize,
        "{} frames\n{}",
        frames.len(),
        run.report()
    );
    // cea608overlay draws the roll-up captions from the first word on, and they stay on
    // screen. tttocea708 schedules a word at its time; CEA-608 carries two characters a frame.
    let captioned = captioned(&frames);
    let caption_delay = Duration::from_millis(1500);
    let first_word = expected[0].1;
    let first = captioned.first().copied();
    assert!(
        first.is_some_and(|t| t + TIME_TOLERANCE >= first_word && t <= first_word + caption_delay),
        "the first caption is drawn at {first:?}, the first word was spoken at {first_word:?}\n{}",
        run.report()
    );
    let first = first.unwrap();
    let after_first = frames.iter().filter(|f| f.pts >= first).count();
    assert_eq!(
        captioned.len(),
        after_first,
        "roll-up captions stay on screen once drawn; captioned frames: {captioned:?}\n{}",
        run.report()
    );
    // The second utterance rolls in: the picture changes after it starts, soon enough.
    let (_, second_start, _) = &expected[1];
    let before = picture_at(
        &frames,
        second_start.saturating_sub(Duration::from_millis(300)),
    );
    let changed = frames
        .iter()
        .find(|f| f.pts >= *second_start && Some(f.picture) != before)
        .map(|f| f.pts);
    assert!(
        changed.is_some_and(|t| t <= *second_start + caption_delay),
        "the second utterance ({second_start:?}) shows up at {changed:?}\n{}",
        run.report()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every example, and whether it talks to the service (then its help explains
/// FIREWORKS_API_KEY). The last two belong to the test server and share only the exit codes.
const EXAMPLES: [(&str, bool); 7] = [
    ("transcribe-file", true),
    ("live-captions", true),
    ("read-bus-messages", true),
    ("measure-latency", true),
    ("fuzz-protocol", false),
    ("fireworks-test-server", false),
    ("make-test-audio", false),
];
/// The examples that follow examples/common's convention to the letter.
const CONVENTION: [&str; 5] = [
    "transcribe-file",
    "live-captions",
    "read-bus-messages",
    "measure-latency",
    "fuzz-protocol",
];

#[test]
fn every_example_help_exits_0_and_describes_its_options() {
    for (name, uses_service) in EXAMPLES {
        let run = run(name, &["--help"], &[], Duration::from_secs(10));
        assert!(run.status.success(), "{name} --help\n{}", run.report());
        assert!(
            run.stdout.starts_with(&format!("usage: {name}")),
            "{name} --help starts with its usage line\n{}",
            run.report()
        );
        assert!(
            run.stdout.contains("options:") && run.stdout.contains("--help"),
            "{name} --help lists the options\n{}",
            run.report()
        );
        assert!(
            run.stdout.lines().count() >= 8,
            "{name} --help describes the options, not just the usage\n{}",
            run.report()
        );
        if uses_service {
            assert!(
                run.stdout.contains("FIREWORKS_API_KEY"),
                "{name} --help explains the key\n{}",
                run.report()
            );
        }
        assert!(run.stderr.is_empty(), "{name} --help\n{}", run.report());
    }
}

#[test]
fn examples_report_bad_arguments_the_same_way() {
    for (name, _) in EXAMPLES {
        let run = run(name, &["--no-such-option"], &[], Duration::from_secs(10));
        assert_eq!(run.status.code(), Some(2), "{name}\n{}", run.report());
        assert!(run.stdout.is_empty(), "{name}\n{}", run.report());
        assert!(
            run.stderr.contains("--no-such-option") && run.stderr.contains("usage: "),
            "{name} names the argument and shows the usage\n{}",
            run.report()
        );
        if CONVENTION.contains(&name) {
            assert!(
                run.stderr
                    .starts_with("error: unknown option --no-such-option\nusage: ")
                    && run
                        .stderr
                        .contains(&format!("({name} --help lists the options)")),
                "{name}\n{}",
                run.report()
            );
        }
        assert!(
            !run.stderr.contains("Error: \""),
            "no Rust debug quoting\n{}",
            run.report()
        );
    }
}

#[test]
fn examples_without_a_key_say_how_to_get_one() {
    let dir = scratch("nokey");
    let wav = dir.join("speech.wav");
    synthesize_utterances(&["hello"])
        .unwrap()
        .write_wav(&wav)
        .unwrap();
    let wav = wav.to_str().unwrap();
    let out = dir.join("out.avi");
    for (name, args) in [
        ("transcribe-file", vec![wav]),
        ("read-bus-messages", vec![wav]),
        ("measure-latency", vec![wav]),
        (
            "live-captions",
            vec!["--audio-file", wav, "--output", out.to_str().unwrap()],
        ),
    ] {
        let run = run(name, &args, &[], Duration::from_secs(10));
        assert_eq!(run.status.code(), Some(1), "{name}\n{}", run.report());
        assert!(
            run.stderr
                .starts_with("error: FIREWORKS_API_KEY is not set: export FIREWORKS_API_KEY="),
            "{name}\n{}",
            run.report()
        );
    }
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn read_bus_messages_writes_plain_lines_into_a_pipe() {
    let dir = scratch("plain");
    let audio = synthesize_utterances(&["hello world", "how are you"]).unwrap();
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let run = run(
        "read-bus-messages",
        &[wav.to_str().unwrap(), "--base-url", &server.base_url()],
        &[],
        Duration::from_secs(25),
    );
    assert!(run.status.success(), "{}", run.report());
    assert!(
        !run.stdout.contains('\x1b') && !run.stdout.contains('\r'),
        "no terminal codes off a terminal\n{:?}",
        run.stdout
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per final\n{}", run.report());
    assert!(lines[0].ends_with("] hello world") && lines[1].ends_with("] how are you"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// No file of `dir` is a partial output file or has one of `names`.
fn assert_no_output(dir: &Path, names: &[&str], run: &Finished) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial") || names.contains(&n.as_str()))
        .collect();
    assert!(
        left.is_empty(),
        "a failed run leaves no output file: {left:?}\n{}",
        run.report()
    );
}

#[test]
fn failed_runs_leave_no_output_files() {
    let dir = scratch("nopartial");
    let audio = synthesize_utterances(&["hello world", "how are you"]).unwrap();
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let server = TestServer::start(ServerConfig::default().with_api_key(TEST_KEY)).unwrap();
    let bad_key = [("FIREWORKS_API_KEY", "wrong-key-4242")];
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();

    let run1 = run(
        "transcribe-file",
        &[
            wav.to_str().unwrap(),
            "--srt",
            &path("out.srt"),
            "--vtt",
            &path("out.vtt"),
            "--base-url",
            &server.base_url(),
        ],
        &bad_key,
        Duration::from_secs(25),
    );
    assert_eq!(run1.status.code(), Some(1), "{}", run1.report());
    assert_no_output(&dir, &["out.srt", "out.vtt"], &run1);

    let run2 = run(
        "live-captions",
        &live_captions_args(
            "--overlay",
            wav.to_str().unwrap(),
            &path("out.avi"),
            "5",
            &server.base_url(),
        ),
        &bad_key,
        Duration::from_secs(25),
    );
    assert_eq!(run2.status.code(), Some(1), "{}", run2.report());
    assert!(
        run2.stderr.contains("rejected the API key"),
        "{}",
        run2.report()
    );
    assert_no_output(&dir, &["out.avi"], &run2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn transcribe_file_local_server_needs_no_key_and_no_server() {
    let dir = scratch("local");
    let audio = synthesize_utterances(&["hello world", "how are you"]).unwrap();
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let srt = dir.join("speech.srt");
    let run = run(
        "transcribe-file",
        &[
            "--local-server",
            wav.to_str().unwrap(),
            "--srt",
            srt.to_str().unwrap(),
            "--language",
            "en",
            "--model",
            "fireworks-asr-large",
            "--prompt",
            "greetings",
        ],
        &[],
        Duration::from_secs(25),
    );
    assert!(run.status.success(), "{}", run.report());
    let expected = spoken(&audio);
    assert_finals_printed(&run, &expected);
    let cues = parse_cues(&std::fs::read_to_string(&srt).unwrap(), false);
    let texts: Vec<&str> = cues.iter().map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(texts, ["hello world", "how are you"], "{}", run.report());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `live-captions --local-server` at its defaults, on real speech played live (a LibriVox
/// clip, real time through clocksync): no key, no server, and the words appear on the picture
/// of the AVI, which holds what a window would show, while they are spoken, and never before
/// the speech.
#[test]
fn live_captions_local_server_puts_spoken_words_on_the_picture() {
    use fireworks_test_server::evaluate::{librivox_clips, read_wav, word_error_rate};
    let dir = scratch("captions-local");
    let clip = librivox_clips().unwrap().remove(2);
    let (rate, _, samples) = read_wav(&clip.path).unwrap();
    // Where the speech is: 20 ms frames within 35 dB of the loudest.
    let frame = rate as usize / 50;
    let power: Vec<f64> = samples
        .chunks_exact(frame)
        .map(|f| f.iter().map(|&s| (s as f64).powi(2)).sum::<f64>())
        .collect();
    let max = power.iter().copied().fold(0.0, f64::max);
    let loud: Vec<usize> = (0..power.len())
        .filter(|&i| power[i] > max * 10f64.powf(-3.5))
        .collect();
    let speech_start = Duration::from_millis(20 * loud[0] as u64);
    let speech_end = Duration::from_millis(20 * (loud[loud.len() - 1] as u64 + 1));
    let avi = dir.join("captions.avi");
    let run = run(
        "live-captions",
        &[
            "--local-server",
            "--audio-file",
            clip.path.to_str().unwrap(),
            "--output",
            avi.to_str().unwrap(),
            "--pattern",
            "black",
        ],
        &[],
        Duration::from_secs(40),
    );
    assert!(run.status.success(), "{}", run.report());
    let printed = printed_finals(&run.stdout);
    let text: Vec<&str> = printed.iter().map(|(_, t)| t.as_str()).collect();
    let wer = word_error_rate(&clip.reference, &text.join(" "));
    assert!(wer <= 0.25, "WER {wer:.2}: {text:?}\n{}", run.report());
    let frames = decode_avi(&avi);
    let captioned = captioned(&frames);
    let during: Vec<&Duration> = captioned
        .iter()
        .filter(|t| **t >= speech_start && **t < speech_end)
        .collect();
    assert_few_late_frames(&run, &frames);
    // The words are on the picture while the sentence is spoken (a line appears with
    // its first word: only the short pauses between lines are bare).
    let speech_frames = frames
        .iter()
        .filter(|f| f.pts >= speech_start && f.pts < speech_end)
        .count();
    assert!(
        during.len() * 10 >= speech_frames * 7,
        "{} of {speech_frames} frames captioned while {:?} was spoken ({speech_start:?} to \
         {speech_end:?}); captioned frames at {captioned:?}\n{}",
        during.len(),
        clip.reference,
        run.report()
    );
    assert!(
        captioned.iter().all(|t| *t + TIME_TOLERANCE >= speech_start.saturating_sub(Duration::from_millis(500))),
        "a caption before the speech\n{}",
        run.report()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A GStreamer plugin directory holding every plugin of this machine except those providing
/// `without` (symbolic links), for running an example with those elements missing.
/// `(name, value)` pairs as `run` takes them.
fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn plugins_without(dir: &Path, without: &[&str]) -> PathBuf {
    init();
    let excluded: Vec<PathBuf> = without
        .iter()
        .map(|name| {
            let factory = gst::ElementFactory::find(name)
                .unwrap_or_else(|| panic!("{name} is installed on this machine"));
            factory.plugin().unwrap().filename().unwrap()
        })
        .collect();
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for plugin in gst::Registry::get().plugins() {
        let Some(file) = plugin.filename() else {
            continue; // static, like fireworks itself
        };
        if excluded.contains(&file) || !file.is_file() {
            continue;
        }
        let link = plugins.join(file.file_name().unwrap());
        if !link.exists() {
            std::os::unix::fs::symlink(&file, link).unwrap();
        }
    }
    plugins
}

#[test]
fn examples_name_the_debian_package_of_a_missing_element() {
    let dir = scratch("missing");
    let audio = synthesize_utterances(&["hello"]).unwrap();
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    // Each example without one element it needs, from separate plugin directories.
    let without = |name: &str| {
        let sub = dir.join(format!("without-{name}"));
        std::fs::create_dir_all(&sub).unwrap();
        let plugins = plugins_without(&sub, &[name]);
        let registry = sub.join("registry.bin");
        let (plugins, registry) = (
            plugins.to_str().unwrap().to_string(),
            registry.to_str().unwrap().to_string(),
        );
        [
            ("GST_PLUGIN_SYSTEM_PATH_1_0", plugins.clone()),
            ("GST_PLUGIN_SYSTEM_PATH", plugins),
            ("GST_PLUGIN_PATH_1_0", String::new()),
            ("GST_PLUGIN_PATH", String::new()),
            ("GST_REGISTRY_1_0", registry.clone()),
            ("GST_REGISTRY", registry),
        ]
    };
    let no_decodebin = without("decodebin");
    let no_textoverlay = without("textoverlay");
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let srt = dir.join("out.srt");
    let run1 = run(
        "transcribe-file",
        &[
            wav.to_str().unwrap(),
            "--srt",
            srt.to_str().unwrap(),
            "--base-url",
            &server.base_url(),
        ],
        &as_refs(&no_decodebin),
        Duration::from_secs(60),
    );
    assert_eq!(run1.status.code(), Some(1), "{}", run1.report());
    assert!(
        run1.stderr
            .contains("decodebin (Debian package gstreamer1.0-plugins-base)")
            && run1
                .stderr
                .contains("sudo apt-get install gstreamer1.0-plugins-base"),
        "{}",
        run1.report()
    );
    let avi = dir.join("out.avi");
    let run2 = run(
        "live-captions",
        &live_captions_args(
            "--overlay",
            wav.to_str().unwrap(),
            avi.to_str().unwrap(),
            "3",
            &server.base_url(),
        ),
        &as_refs(&no_textoverlay),
        Duration::from_secs(60),
    );
    assert_eq!(run2.status.code(), Some(1), "{}", run2.report());
    assert!(
        run2.stderr
            .contains("textoverlay (Debian package gstreamer1.0-x)")
            && run2.stderr.contains("sudo apt-get install gstreamer1.0-x"),
        "{}",
        run2.report()
    );
    assert_no_output(&dir, &["out.srt", "out.avi"], &run2);
    assert!(
        server.connections().is_empty(),
        "nothing is sent before the elements are checked"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's subtitle pipelines, `fireworksstt output-mode=utterances ! srtenc ! filesink`
/// (and webvttenc), with nothing in between: the files must parse back, one cue per utterance
/// and no blank lines inside or between cues.
#[test]
fn readme_subtitle_pipelines_write_well_formed_files() {
    init();
    let dir = scratch("readme-subtitles");
    let audio = synthesize_utterances(&["hello world", "how are you", "this is a test"]).unwrap();
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let expected = spoken(&audio);
    for (encoder, vtt) in [("srtenc", false), ("webvttenc", true)] {
        let out = dir.join(format!("out-{encoder}"));
        let pipeline = gst::parse::launch(&format!(
            "filesrc location={} ! wavparse ! audioconvert ! audioresample ! \
             fireworksstt output-mode=utterances base-url={} api-key=any ! {encoder} ! \
             filesink location={}",
            wav.display(),
            server.base_url(),
            out.display()
        ))
        .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let msg = pipeline
            .bus()
            .unwrap()
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(20),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("EOS or ERROR within 20 s");
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
        let file = std::fs::read_to_string(&out).unwrap();
        let cues = parse_cues(&file, vtt);
        let texts: Vec<&str> = cues.iter().map(|(_, _, t)| t.as_str()).collect();
        let want: Vec<&str> = expected.iter().map(|(t, _, _)| t.as_str()).collect();
        assert_eq!(texts, want, "{encoder}:\n{file:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `! filesink` keeps one line per utterance.
#[test]
fn utterances_into_filesink_are_one_line_each() {
    init();
    let dir = scratch("readme-lines");
    let audio = synthesize_utterances(&["hello world", "how are you"]).unwrap();
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let out = dir.join("out.txt");
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample ! \
         fireworksstt output-mode=utterances base-url={} api-key=any ! filesink location={}",
        wav.display(),
        server.base_url(),
        out.display()
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS or ERROR within 20 s");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "hello world\nhow are you\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Debian's system Python, where the python3-gi and gir1.2-gstreamer-1.0 packages (installed by
/// scripts/setup.sh) are importable; a python3 earlier on PATH (pyenv, a venv) may not see them.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Runs examples/NAME with the system Python, fireworksstt found through GST_PLUGIN_PATH.
fn run_python(name: &str, args: &[&str], timeout: Duration) -> Finished {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let mut command = Command::new(SYSTEM_PYTHON);
    command
        .arg(&script)
        .args(args)
        .env_remove("FIREWORKS_API_KEY")
        .env("GST_PLUGIN_PATH", plugin_dir());
    run_command(command, &format!("{name} {args:?}"), timeout)
}

/// The PyGObject example, against the bundled server: the transcripts, speech boundaries and
/// usage from the bus, and each word's FireworksItemMeta from its pad probe; the key terms it
/// sets reach the server; an ERROR is reported with its kind and exit status 1.
#[test]
fn python_example_reads_the_bus_and_the_word_meta() {
    let dir = scratch("python");
    let audio = synthesize_utterances(&["hello world", "how are you"]).unwrap();
    let wav = dir.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let run = run_python(
        "read-transcripts.py",
        &[
            wav.to_str().unwrap(),
            "--base-url",
            &server.base_url(),
            "--keyterm",
            "GStreamer",
            "--keyterm",
            "Fireworks AI",
        ],
        Duration::from_secs(60),
    );
    assert!(run.status.success(), "{}", run.report());
    let lines: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .map(|l| l.split('\t').collect())
        .collect();
    let of_kind = |kind: &str| -> Vec<Vec<&str>> {
        lines
            .iter()
            .filter(|l| l[0] == kind)
            .map(|l| l[1..].to_vec())
            .collect()
    };
    let finals: Vec<(&str, &str)> = of_kind("final").iter().map(|l| (l[0], l[1])).collect();
    assert_eq!(
        finals,
        [("0", "hello world"), ("1", "how are you")],
        "{}",
        run.report()
    );
    assert_eq!(
        of_kind("speech-started"),
        [["0"], ["1"]],
        "{}",
        run.report()
    );
    assert_eq!(of_kind("speech-ended"), [["0"], ["1"]], "{}", run.report());
    assert!(!of_kind("interim").is_empty(), "{}", run.report());
    let words = of_kind("word");
    assert_eq!(words.len(), audio.words.len(), "{}", run.report());
    for (line, spoken) in words.iter().zip(&audio.words) {
        assert_eq!(
            line.as_slice(),
            [
                spoken.text.as_str(),
                &format!("utterance={}", spoken.utterance),
                "final=True",
                "probability=0.9",
                "language=en"
            ],
            "{}",
            run.report()
        );
    }
    let usage = of_kind("usage");
    let total: f64 = usage.last().expect("a usage line")[0].parse().unwrap();
    assert!(
        (total - audio.duration().as_secs_f64()).abs() < 0.01,
        "{}",
        run.report()
    );
    assert!(server.connections()[0].query.contains(&(
        "prompt".to_string(),
        "Key terms: GStreamer, Fireworks AI.".to_string()
    )));

    let refusing = TestServer::start(ServerConfig::default().with_fault(
        0,
        Fault::RejectUpgrade {
            status: 401,
            body: "bad key".into(),
        },
    ))
    .unwrap();
    let failed = run_python(
        "read-transcripts.py",
        &[wav.to_str().unwrap(), "--base-url", &refusing.base_url()],
        Duration::from_secs(60),
    );
    assert_eq!(failed.status.code(), Some(1), "{}", failed.report());
    assert!(
        failed.stderr.contains("rejected the API key")
            && failed.stderr.contains("kind=auth-rejected"),
        "{}",
        failed.report()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

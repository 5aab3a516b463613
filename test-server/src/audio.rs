// SPDX-License-Identifier: MPL-2.0
//! The test-audio codec: text "spoken" as square-wave letter blocks, and its streaming decoder.
//!
//! Audio is S16LE, 16 kHz, mono, the format the Fireworks service takes.
//!
//! * Alphabet: `a`–`z` (codes 1–26), `0`–`9` (27–36) and `'` (37).
//! * A letter is a block of [`LETTER_SAMPLES`] samples (30 ms) of a square wave alternating
//!   `+M, -M, +M, …` with magnitude `M = 2000 + 500 * code`. The decoder maps each sample's
//!   magnitude to the nearest code, so letters decode the same however the audio is chunked.
//! * A word is its letter blocks back to back. A run of one code lasting `n` samples is
//!   `round(n / 480)` letters (at least one), so "hello" and "bookkeeper" survive.
//! * Silence is zero samples; the decoder treats `|s| < 500` as silence. Words of an utterance are
//!   separated by [`WORD_GAP`] (100 ms) of silence; a word ends once [`WORD_END_SILENCE_SAMPLES`]
//!   (60 ms) of silence follow it. Utterances are separated by a longer, configurable silence
//!   (default [`DEFAULT_UTTERANCE_GAP`], 2 s, longer than the service's default 1 s text timeout).

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

/// The only sample rate of the protocol.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples in one letter block (30 ms).
pub const LETTER_SAMPLES: u64 = 480;
/// Samples whose magnitude is below this are silence.
pub const SILENCE_THRESHOLD: i32 = 500;
/// Consecutive silent samples that end a word (60 ms). Shorter gaps inside a word are ignored.
pub const WORD_END_SILENCE_SAMPLES: u64 = 960;
/// Silence the synthesizer puts between the words of an utterance.
pub const WORD_GAP: Duration = Duration::from_millis(100);
/// Default silence the synthesizer puts after each utterance.
pub const DEFAULT_UTTERANCE_GAP: Duration = Duration::from_secs(2);
/// The letters of the alphabet, in code order (code = index + 1).
pub const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz0123456789'";

const MAX_CODE: i32 = 37;

/// The code (1..=37) of a letter, or `None` outside the alphabet.
pub fn letter_code(c: char) -> Option<u8> {
    ALPHABET.chars().position(|a| a == c).map(|i| (i + 1) as u8)
}

/// The letter of a code (1..=37).
pub fn code_letter(code: u8) -> Option<char> {
    if code == 0 {
        return None;
    }
    ALPHABET.chars().nth(code as usize - 1)
}

/// The square-wave magnitude of a code.
pub fn code_magnitude(code: u8) -> i16 {
    (2000 + 500 * code as i32) as i16
}

fn magnitude_code(magnitude: i32) -> u8 {
    // Nearest code, rounding half up; magnitudes outside the range clamp to the ends.
    let code = (magnitude - 2000 + 250).div_euclid(500);
    code.clamp(1, MAX_CODE) as u8
}

/// Converts a duration to a whole number of samples (rounded to the nearest sample).
pub fn duration_to_samples(d: Duration) -> u64 {
    ((d.as_nanos() * SAMPLE_RATE as u128 + 500_000_000) / 1_000_000_000) as u64
}

/// Converts a number of samples to a duration.
pub fn samples_to_duration(samples: u64) -> Duration {
    Duration::from_nanos((samples as u128 * 1_000_000_000 / SAMPLE_RATE as u128) as u64)
}

/// Converts a sample position to seconds, exactly as the test server writes times on the wire.
pub fn samples_to_seconds(samples: u64) -> f64 {
    samples as f64 / SAMPLE_RATE as f64
}

/// Text that cannot be spoken by the codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioError {
    /// A character outside `a`–`z`, `0`–`9`, `'`.
    UnsupportedChar { text: String, ch: char },
    /// An utterance without any word.
    EmptyUtterance { index: usize },
    /// A word gap too short to separate words (must be at least 60 ms).
    WordGapTooShort(Duration),
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioError::UnsupportedChar { text, ch } => write!(
                f,
                "character {ch:?} in {text:?} is outside the test-audio alphabet ({ALPHABET})"
            ),
            AudioError::EmptyUtterance { index } => write!(f, "utterance {index} has no words"),
            AudioError::WordGapTooShort(d) => write!(
                f,
                "word gap {d:?} is shorter than the {} ms that end a word",
                WORD_END_SILENCE_SAMPLES * 1000 / SAMPLE_RATE as u64
            ),
        }
    }
}

impl std::error::Error for AudioError {}

/// One utterance of a [`Script`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptUtterance {
    /// Words separated by whitespace.
    pub text: String,
    /// Silence after the utterance; `None` means the script's `gap`.
    pub trailing_silence: Option<Duration>,
}

/// A description of test audio: leading silence, then utterances each followed by silence.
///
/// ```
/// use fireworks_test_server::audio::{synthesize, Script};
/// use std::time::Duration;
/// let audio = synthesize(
///     &Script::new()
///         .leading_silence(Duration::from_millis(500))
///         .utterance("hello world")
///         .utterance_then("how are you", Duration::from_millis(300)),
/// )
/// .unwrap();
/// assert_eq!(audio.utterances, vec!["hello world", "how are you"]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub leading_silence: Duration,
    pub gap: Duration,
    pub word_gap: Duration,
    pub utterances: Vec<ScriptUtterance>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            leading_silence: Duration::ZERO,
            gap: DEFAULT_UTTERANCE_GAP,
            word_gap: WORD_GAP,
            utterances: Vec::new(),
        }
    }
}

impl Script {
    pub fn new() -> Self {
        Self::default()
    }

    /// Silence before the first utterance.
    pub fn leading_silence(mut self, d: Duration) -> Self {
        self.leading_silence = d;
        self
    }

    /// The default silence after each utterance (2 s unless changed).
    pub fn gap(mut self, d: Duration) -> Self {
        self.gap = d;
        self
    }

    /// Silence between the words of an utterance (100 ms unless changed; at least 60 ms).
    pub fn word_gap(mut self, d: Duration) -> Self {
        self.word_gap = d;
        self
    }

    /// Adds an utterance followed by the default gap.
    pub fn utterance(mut self, text: impl Into<String>) -> Self {
        self.utterances.push(ScriptUtterance {
            text: text.into(),
            trailing_silence: None,
        });
        self
    }

    /// Adds an utterance followed by `silence`.
    pub fn utterance_then(mut self, text: impl Into<String>, silence: Duration) -> Self {
        self.utterances.push(ScriptUtterance {
            text: text.into(),
            trailing_silence: Some(silence),
        });
        self
    }

    /// Sets the silence after the last utterance added so far.
    pub fn trailing_silence(mut self, d: Duration) -> Self {
        if let Some(u) = self.utterances.last_mut() {
            u.trailing_silence = Some(d);
        }
        self
    }
}

/// A word the synthesizer put into the audio, with its exact sample span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedWord {
    pub text: String,
    /// Index of the utterance (in [`SynthAudio::utterances`]).
    pub utterance: usize,
    /// First sample of the word.
    pub start_sample: u64,
    /// One past the last sample of the word.
    pub end_sample: u64,
}

impl ExpectedWord {
    /// Start time in seconds, as the test server reports it.
    pub fn start_seconds(&self) -> f64 {
        samples_to_seconds(self.start_sample)
    }
    /// End time in seconds, as the test server reports it.
    pub fn end_seconds(&self) -> f64 {
        samples_to_seconds(self.end_sample)
    }
}

/// Synthesized audio and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SynthAudio {
    pub samples: Vec<i16>,
    pub words: Vec<ExpectedWord>,
    /// The normalized text of each utterance (words joined by single spaces).
    pub utterances: Vec<String>,
}

impl SynthAudio {
    /// The audio as S16LE bytes, ready to send as binary frames.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        samples_to_le_bytes(&self.samples)
    }

    /// Length of the audio.
    pub fn duration(&self) -> Duration {
        samples_to_duration(self.samples.len() as u64)
    }

    /// The words of one utterance.
    pub fn utterance_words(&self, utterance: usize) -> impl Iterator<Item = &ExpectedWord> {
        self.words.iter().filter(move |w| w.utterance == utterance)
    }

    /// Writes the audio as a 16 kHz mono 16-bit WAV file.
    pub fn write_wav(&self, path: impl AsRef<Path>) -> io::Result<()> {
        write_wav(path, &self.samples)
    }
}

/// Samples to S16LE bytes.
pub fn samples_to_le_bytes(samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Checks a word and returns its letter codes.
fn word_codes(word: &str) -> Result<Vec<u8>, AudioError> {
    word.chars()
        .map(|c| {
            letter_code(c).ok_or_else(|| AudioError::UnsupportedChar {
                text: word.to_string(),
                ch: c,
            })
        })
        .collect()
}

/// Appends the blocks of one word; returns the number of samples appended.
fn push_word(samples: &mut Vec<i16>, codes: &[u8]) -> u64 {
    let mut n = 0;
    for &code in codes {
        let m = code_magnitude(code);
        let start = samples.len();
        samples.resize(start + LETTER_SAMPLES as usize, m);
        for s in samples[start..].iter_mut().skip(1).step_by(2) {
            *s = -m;
        }
        n += LETTER_SAMPLES;
    }
    n
}

fn push_silence(samples: &mut Vec<i16>, n: u64) {
    samples.resize(samples.len() + n as usize, 0);
}

/// Synthesizes a script.
pub fn synthesize(script: &Script) -> Result<SynthAudio, AudioError> {
    let word_gap = duration_to_samples(script.word_gap);
    if word_gap < WORD_END_SILENCE_SAMPLES {
        return Err(AudioError::WordGapTooShort(script.word_gap));
    }
    // Validate everything before allocating.
    let mut parsed = Vec::with_capacity(script.utterances.len());
    for (index, u) in script.utterances.iter().enumerate() {
        let words: Vec<&str> = u.text.split_whitespace().collect();
        if words.is_empty() {
            return Err(AudioError::EmptyUtterance { index });
        }
        let codes = words
            .iter()
            .map(|w| word_codes(w))
            .collect::<Result<Vec<_>, _>>()?;
        parsed.push((words, codes, u.trailing_silence.unwrap_or(script.gap)));
    }

    let mut audio = SynthAudio::default();
    push_silence(
        &mut audio.samples,
        duration_to_samples(script.leading_silence),
    );
    for (index, (words, codes, trailing)) in parsed.into_iter().enumerate() {
        for (i, (word, codes)) in words.iter().zip(codes.iter()).enumerate() {
            if i > 0 {
                push_silence(&mut audio.samples, word_gap);
            }
            let start = audio.samples.len() as u64;
            let n = push_word(&mut audio.samples, codes);
            audio.words.push(ExpectedWord {
                text: word.to_string(),
                utterance: index,
                start_sample: start,
                end_sample: start + n,
            });
        }
        audio.utterances.push(words.join(" "));
        push_silence(&mut audio.samples, duration_to_samples(trailing));
    }
    Ok(audio)
}

/// Synthesizes utterances separated (and followed) by the default 2 s gap.
pub fn synthesize_utterances(utterances: &[&str]) -> Result<SynthAudio, AudioError> {
    let script = utterances
        .iter()
        .fold(Script::new(), |s, u| s.utterance(*u));
    synthesize(&script)
}

const VOCABULARY: &[&str] = &[
    "the",
    "be",
    "to",
    "of",
    "and",
    "a",
    "in",
    "that",
    "have",
    "it",
    "for",
    "not",
    "on",
    "with",
    "he",
    "as",
    "you",
    "do",
    "at",
    "this",
    "but",
    "his",
    "by",
    "from",
    "they",
    "we",
    "say",
    "her",
    "she",
    "or",
    "an",
    "will",
    "my",
    "one",
    "all",
    "would",
    "there",
    "their",
    "what",
    "so",
    "up",
    "out",
    "if",
    "about",
    "who",
    "get",
    "which",
    "go",
    "me",
    "when",
    "make",
    "can",
    "like",
    "time",
    "no",
    "just",
    "him",
    "know",
    "take",
    "people",
    "into",
    "year",
    "your",
    "good",
    "some",
    "could",
    "them",
    "see",
    "other",
    "than",
    "then",
    "now",
    "look",
    "only",
    "come",
    "its",
    "over",
    "think",
    "also",
    "back",
    "after",
    "use",
    "two",
    "how",
    "our",
    "work",
    "first",
    "well",
    "way",
    "even",
    "new",
    "want",
    "because",
    "any",
    "these",
    "give",
    "day",
    "most",
    "us",
    "weather",
    "hello",
    "world",
    "streaming",
    "transcript",
    "letter",
    "llama",
    "bookkeeper",
    "don't",
    "it's",
    "42",
    "2025",
    "7",
    "coffee",
    "speech",
    "fireworks",
];

/// A small deterministic PRNG (splitmix64); no external dependency, same output everywhere.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Pseudo-random speech of exactly `duration`: utterances of 2–12 vocabulary words, separated by
/// 1.3–3.0 s of silence (so a 1 s text timeout finalizes each one). Deterministic for a seed; an hour
/// takes well under a second in a release build. The last utterance is always followed by at least
/// 1.3 s of silence (the audio ends in silence, padded or trimmed to `duration`).
pub fn synthesize_speech_like(duration: Duration, seed: u64) -> SynthAudio {
    let total = duration_to_samples(duration);
    let mut rng = SplitMix64::new(seed);
    let mut audio = SynthAudio {
        samples: Vec::with_capacity(total as usize),
        ..Default::default()
    };
    let vocab: Vec<Vec<u8>> = VOCABULARY
        .iter()
        .map(|w| word_codes(w).expect("vocabulary is in the alphabet"))
        .collect();
    let word_gap = duration_to_samples(WORD_GAP);
    let min_tail = duration_to_samples(Duration::from_millis(1300));
    push_silence(&mut audio.samples, rng.range(0, 8000));
    loop {
        let n_words = rng.range(2, 12) as usize;
        let picks: Vec<usize> = (0..n_words)
            .map(|_| rng.range(0, vocab.len() as u64 - 1) as usize)
            .collect();
        let speech: u64 = picks
            .iter()
            .map(|&i| vocab[i].len() as u64 * LETTER_SAMPLES)
            .sum::<u64>()
            + word_gap * (n_words as u64 - 1);
        let gap = rng.range(min_tail, duration_to_samples(Duration::from_secs(3)));
        if audio.samples.len() as u64 + speech + min_tail > total {
            break;
        }
        let index = audio.utterances.len();
        let mut text = Vec::with_capacity(n_words);
        for (i, &p) in picks.iter().enumerate() {
            if i > 0 {
                push_silence(&mut audio.samples, word_gap);
            }
            let start = audio.samples.len() as u64;
            let n = push_word(&mut audio.samples, &vocab[p]);
            audio.words.push(ExpectedWord {
                text: VOCABULARY[p].to_string(),
                utterance: index,
                start_sample: start,
                end_sample: start + n,
            });
            text.push(VOCABULARY[p]);
        }
        audio.utterances.push(text.join(" "));
        let room = total - audio.samples.len() as u64;
        push_silence(&mut audio.samples, gap.min(room));
    }
    let len = audio.samples.len() as u64;
    if len < total {
        push_silence(&mut audio.samples, total - len);
    }
    audio
}

/// Writes 16 kHz mono 16-bit PCM as a WAV file.
pub fn write_wav(path: impl AsRef<Path>, samples: &[i16]) -> io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut w = io::BufWriter::new(file);
    write_wav_to(&mut w, samples)?;
    w.flush()
}

/// Writes 16 kHz mono 16-bit PCM as WAV to any writer.
pub fn write_wav_to(w: &mut impl Write, samples: &[i16]) -> io::Result<()> {
    let data_len = u32::try_from(samples.len() * 2)
        .ok()
        .filter(|n| *n <= u32::MAX - 36)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "audio too long for WAV"))?;
    w.write_all(b"RIFF")?;
    w.write_all(&(36 + data_len).to_le_bytes())?;
    w.write_all(b"WAVEfmt ")?;
    w.write_all(&16u32.to_le_bytes())?;
    w.write_all(&1u16.to_le_bytes())?; // PCM
    w.write_all(&1u16.to_le_bytes())?; // mono
    w.write_all(&SAMPLE_RATE.to_le_bytes())?;
    w.write_all(&(SAMPLE_RATE * 2).to_le_bytes())?; // byte rate
    w.write_all(&2u16.to_le_bytes())?; // block align
    w.write_all(&16u16.to_le_bytes())?; // bits per sample
    w.write_all(b"data")?;
    w.write_all(&data_len.to_le_bytes())?;
    let mut buf = Vec::with_capacity(64 * 1024);
    for chunk in samples.chunks(32 * 1024) {
        buf.clear();
        for s in chunk {
            buf.extend_from_slice(&s.to_le_bytes());
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

/// Reads a 16-bit mono PCM WAV file (as written by [`write_wav`]); returns the sample rate and the
/// samples.
pub fn read_wav(path: impl AsRef<Path>) -> io::Result<(u32, Vec<i16>)> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    parse_wav(&bytes)
}

fn parse_wav(bytes: &[u8]) -> io::Result<(u32, Vec<i16>)> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("not a RIFF/WAVE file"));
    }
    let mut pos = 12;
    let mut format: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body_start = pos + 8;
        let body_end = body_start.saturating_add(len).min(bytes.len());
        let body = &bytes[body_start..body_end];
        if id == b"fmt " {
            if body.len() < 16 {
                return Err(bad("short fmt chunk"));
            }
            let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
            let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            format = Some((u16_at(0), u16_at(2), rate, u16_at(14)));
        } else if id == b"data" {
            let (fmt, channels, rate, bits) = format.ok_or_else(|| bad("data before fmt"))?;
            if fmt != 1 || channels != 1 || bits != 16 {
                return Err(bad("only 16-bit mono PCM WAV is supported"));
            }
            let samples = body
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            return Ok((rate, samples));
        }
        pos = body_start.saturating_add(len + (len & 1));
    }
    Err(bad("no data chunk"))
}

/// What the streaming decoder found. Sample positions count samples since the decoder was created
/// (for the server: since the start of the connection's audio). End positions are exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeEvent {
    /// A letter was decoded. `word` is the word so far, including this letter.
    Letter {
        letter: char,
        start_sample: u64,
        end_sample: u64,
        word: String,
        word_start_sample: u64,
    },
    /// A word ended: 60 ms of silence followed it (or the decoder was flushed).
    Word(DecodedWord),
    /// Silence after the last word reached the configured long-silence threshold. Reported once per
    /// group of words; `since_sample` is the end of the last word, `at_sample` the position where the
    /// threshold was reached (`since_sample + threshold`, or later after a flush).
    LongSilence { since_sample: u64, at_sample: u64 },
}

/// A decoded word with its sample span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedWord {
    pub text: String,
    pub start_sample: u64,
    pub end_sample: u64,
}

#[derive(Debug, Clone)]
struct Run {
    code: u8,
    start: u64,
    len: u64,
    emitted: u64,
}

#[derive(Debug, Clone)]
struct WordAcc {
    text: String,
    start: u64,
    end: u64,
}

/// Streaming decoder of the test-audio codec.
///
/// Feed it byte chunks of any size ([`push_bytes`](Self::push_bytes), a dangling odd byte is kept
/// for the next chunk) or samples. Letters are reported when a block completes (every 480 samples of
/// one code) or when the code changes (a remainder of at least 240 samples, or a run shorter than one
/// block, counts as one more letter). A word ends when 60 ms of silence follow it.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    long_silence: Option<u64>,
    pos: u64,
    dangling: Option<u8>,
    run: Option<Run>,
    word: Option<WordAcc>,
    silence: u64,
    long_silence_armed: bool,
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new(None)
    }
}

impl StreamDecoder {
    /// A decoder; `long_silence` (in samples) enables [`DecodeEvent::LongSilence`].
    pub fn new(long_silence: Option<u64>) -> Self {
        StreamDecoder {
            long_silence,
            pos: 0,
            dangling: None,
            run: None,
            word: None,
            silence: 0,
            long_silence_armed: false,
        }
    }

    /// Samples consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The word being decoded, if any: (text so far, start sample).
    pub fn current_word(&self) -> Option<(&str, u64)> {
        self.word.as_ref().map(|w| (w.text.as_str(), w.start))
    }

    /// Feeds S16LE bytes of any length.
    pub fn push_bytes(&mut self, mut bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        if bytes.is_empty() {
            return;
        }
        if let Some(lo) = self.dangling.take() {
            let s = i16::from_le_bytes([lo, bytes[0]]);
            self.push_sample(s, out);
            bytes = &bytes[1..];
        }
        let mut chunks = bytes.chunks_exact(2);
        for b in &mut chunks {
            self.push_sample(i16::from_le_bytes([b[0], b[1]]), out);
        }
        if let [last] = chunks.remainder() {
            self.dangling = Some(*last);
        }
    }

    /// Counts `n` samples as received without decoding them: for silence before the decoder's
    /// first sample (its state is only the position then).
    pub fn advance_samples(&mut self, n: u64) {
        self.pos += n;
    }

    /// Counts S16LE bytes as received without decoding them (the position keeps counting).
    pub fn advance_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let n = bytes.len() + usize::from(self.dangling.is_some());
        self.pos += (n / 2) as u64;
        self.dangling = if n % 2 == 1 {
            bytes.last().copied()
        } else {
            None
        };
    }

    /// Feeds samples.
    pub fn push_samples(&mut self, samples: &[i16], out: &mut Vec<DecodeEvent>) {
        for &s in samples {
            self.push_sample(s, out);
        }
    }

    fn push_sample(&mut self, s: i16, out: &mut Vec<DecodeEvent>) {
        let p = self.pos;
        self.pos += 1;
        let mag = (s as i32).abs();
        if mag < SILENCE_THRESHOLD {
            if self.run.is_some() {
                self.close_run(p, out);
            }
            self.silence += 1;
            if self.silence == WORD_END_SILENCE_SAMPLES {
                self.end_word(out);
            }
            self.check_long_silence(out);
            return;
        }
        self.silence = 0;
        self.long_silence_armed = false;
        let code = magnitude_code(mag);
        if let Some(run) = self.run.as_mut().filter(|r| r.code == code) {
            run.len += 1;
            if run.len % LETTER_SAMPLES == 0 {
                let start = run.start + run.emitted * LETTER_SAMPLES;
                run.emitted += 1;
                self.emit_letter(code, start, p + 1, out);
            }
            return;
        }
        if self.run.is_some() {
            self.close_run(p, out);
        }
        self.run = Some(Run {
            code,
            start: p,
            len: 1,
            emitted: 0,
        });
        if self.word.is_none() {
            self.word = Some(WordAcc {
                text: String::new(),
                start: p,
                end: p,
            });
        }
    }

    fn check_long_silence(&mut self, out: &mut Vec<DecodeEvent>) {
        if let Some(threshold) = self.long_silence {
            if self.long_silence_armed && self.word.is_none() && self.silence >= threshold {
                self.long_silence_armed = false;
                out.push(DecodeEvent::LongSilence {
                    since_sample: self.pos - self.silence,
                    at_sample: self.pos,
                });
            }
        }
    }

    fn emit_letter(&mut self, code: u8, start: u64, end: u64, out: &mut Vec<DecodeEvent>) {
        let letter = code_letter(code).unwrap_or('?');
        let word = self.word.get_or_insert_with(|| WordAcc {
            text: String::new(),
            start,
            end: start,
        });
        word.text.push(letter);
        word.end = end;
        out.push(DecodeEvent::Letter {
            letter,
            start_sample: start,
            end_sample: end,
            word: word.text.clone(),
            word_start_sample: word.start,
        });
    }

    /// Closes the current run at `end` (exclusive), emitting its remaining letter if any.
    fn close_run(&mut self, end: u64, out: &mut Vec<DecodeEvent>) {
        if let Some(run) = self.run.take() {
            let remainder = run.len - run.emitted * LETTER_SAMPLES;
            if run.emitted == 0 || remainder >= LETTER_SAMPLES / 2 {
                let start = run.start + run.emitted * LETTER_SAMPLES;
                self.emit_letter(run.code, start, end, out);
            }
        }
    }

    fn end_word(&mut self, out: &mut Vec<DecodeEvent>) {
        if let Some(w) = self.word.take() {
            if !w.text.is_empty() {
                out.push(DecodeEvent::Word(DecodedWord {
                    text: w.text,
                    start_sample: w.start,
                    end_sample: w.end,
                }));
                self.long_silence_armed = true;
            }
        }
    }

    /// Ends the word in progress now, as if enough silence had followed it. Later letters start a
    /// new word. A dangling odd byte is kept.
    pub fn flush(&mut self, out: &mut Vec<DecodeEvent>) {
        if self.run.is_some() {
            self.close_run(self.pos, out);
        }
        self.end_word(out);
        self.check_long_silence(out);
    }

    /// Forgets the letters and word in progress and any pending long silence. Sample positions and
    /// a dangling odd byte are kept, so later audio stays aligned.
    pub fn reset(&mut self) {
        self.run = None;
        self.word = None;
        self.long_silence_armed = false;
    }
}

/// Decodes complete audio into words (flushing at the end).
pub fn decode_words(samples: &[i16]) -> Vec<DecodedWord> {
    let mut d = StreamDecoder::new(None);
    let mut events = Vec::new();
    d.push_samples(samples, &mut events);
    d.flush(&mut events);
    events
        .into_iter()
        .filter_map(|e| match e {
            DecodeEvent::Word(w) => Some(w),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words_of(events: &[DecodeEvent]) -> Vec<DecodedWord> {
        events
            .iter()
            .filter_map(|e| match e {
                DecodeEvent::Word(w) => Some(w.clone()),
                _ => None,
            })
            .collect()
    }

    fn expected(audio: &SynthAudio) -> Vec<DecodedWord> {
        audio
            .words
            .iter()
            .map(|w| DecodedWord {
                text: w.text.clone(),
                start_sample: w.start_sample,
                end_sample: w.end_sample,
            })
            .collect()
    }

    #[test]
    fn alphabet_codes_round_trip() {
        for (i, c) in ALPHABET.chars().enumerate() {
            let code = letter_code(c).unwrap();
            assert_eq!(code as usize, i + 1);
            assert_eq!(code_letter(code), Some(c));
            assert_eq!(magnitude_code(code_magnitude(code) as i32), code);
        }
        assert_eq!(code_magnitude(37), 20500);
        assert_eq!(letter_code('A'), None);
        assert_eq!(code_letter(0), None);
        assert_eq!(code_letter(38), None);
        // Magnitudes far outside the range clamp.
        assert_eq!(magnitude_code(500), 1);
        assert_eq!(magnitude_code(32768), 37);
    }

    #[test]
    fn synthesize_layout_is_exact() {
        let audio = synthesize(
            &Script::new()
                .leading_silence(Duration::from_millis(250))
                .utterance("hi you")
                .utterance_then("ok", Duration::from_millis(500)),
        )
        .unwrap();
        let lead = 4000;
        assert_eq!(audio.words[0].start_sample, lead);
        assert_eq!(audio.words[0].end_sample, lead + 2 * 480);
        assert_eq!(audio.words[1].start_sample, lead + 960 + 1600);
        assert_eq!(audio.words[1].end_sample, lead + 960 + 1600 + 3 * 480);
        let second = lead + 960 + 1600 + 1440 + 32000;
        assert_eq!(audio.words[2].start_sample, second);
        assert_eq!(audio.words[2].utterance, 1);
        assert_eq!(audio.samples.len() as u64, second + 960 + 8000);
        assert_eq!(audio.utterances, vec!["hi you", "ok"]);
        assert_eq!(
            audio.duration(),
            Duration::from_nanos(audio.samples.len() as u64 * 62_500)
        );
        // Square wave: +M, -M, ...
        let m = code_magnitude(letter_code('h').unwrap());
        assert_eq!(audio.samples[lead as usize], m);
        assert_eq!(audio.samples[lead as usize + 1], -m);
        assert_eq!(audio.to_le_bytes().len(), audio.samples.len() * 2);
    }

    #[test]
    fn invalid_text_is_an_error() {
        assert!(matches!(
            synthesize_utterances(&["Hello"]),
            Err(AudioError::UnsupportedChar { ch: 'H', .. })
        ));
        assert!(matches!(
            synthesize_utterances(&["héllo"]),
            Err(AudioError::UnsupportedChar { ch: 'é', .. })
        ));
        assert!(matches!(
            synthesize_utterances(&["ok", "  "]),
            Err(AudioError::EmptyUtterance { index: 1 })
        ));
        assert!(matches!(
            synthesize(
                &Script::new()
                    .word_gap(Duration::from_millis(50))
                    .utterance("a b")
            ),
            Err(AudioError::WordGapTooShort(_))
        ));
        assert!(synthesize_utterances(&["hello, world"])
            .unwrap_err()
            .to_string()
            .contains("','"));
    }

    #[test]
    fn whitespace_is_normalized() {
        let audio = synthesize_utterances(&["  hello \t world  "]).unwrap();
        assert_eq!(audio.utterances, vec!["hello world"]);
    }

    #[test]
    fn round_trip_identical_letters_digits_apostrophe() {
        let audio =
            synthesize_utterances(&["hello bookkeeper", "aaa zz9 don't 2025 '''", "x"]).unwrap();
        assert_eq!(decode_words(&audio.samples), expected(&audio));
    }

    #[test]
    fn round_trip_with_random_and_odd_chunks() {
        let audio = synthesize_utterances(&["hello world", "how are you", "llama 0099"]).unwrap();
        let bytes = audio.to_le_bytes();
        let want = expected(&audio);
        let mut rng = SplitMix64::new(7);
        for round in 0..40 {
            let mut d = StreamDecoder::new(None);
            let mut events = Vec::new();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = match round % 4 {
                    0 => rng.range(1, 7) as usize,     // tiny, often odd
                    1 => rng.range(1, 5000) as usize,  // random
                    2 => 1599,                         // always odd
                    _ => rng.range(1, 40000) as usize, // big
                }
                .min(rest.len());
                d.push_bytes(&rest[..n], &mut events);
                rest = &rest[n..];
            }
            d.flush(&mut events);
            assert_eq!(words_of(&events), want, "round {round}");
            assert_eq!(d.position(), audio.samples.len() as u64);
        }
    }

    #[test]
    fn letters_are_reported_as_blocks_complete() {
        let audio = synthesize_utterances(&["abba"]).unwrap();
        let mut d = StreamDecoder::new(None);
        let mut events = Vec::new();
        d.push_samples(&audio.samples[..480 * 3], &mut events);
        // "a" complete, "b" x2 complete (run of 960).
        let letters: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                DecodeEvent::Letter {
                    letter,
                    start_sample,
                    end_sample,
                    ..
                } => Some((*letter, *start_sample, *end_sample)),
                _ => None,
            })
            .collect();
        assert_eq!(
            letters,
            vec![('a', 0, 480), ('b', 480, 960), ('b', 960, 1440)]
        );
        assert_eq!(d.current_word(), Some(("abb", 0)));
    }

    #[test]
    fn word_ends_after_60ms_of_silence_and_long_silence_after_threshold() {
        let audio = synthesize_utterances(&["ab cd"]).unwrap();
        let mut d = StreamDecoder::new(Some(16000));
        let mut events = Vec::new();
        let first_end = 960usize;
        d.push_samples(&audio.samples[..first_end + 959], &mut events);
        assert!(words_of(&events).is_empty());
        d.push_samples(
            &audio.samples[first_end + 959..first_end + 960],
            &mut events,
        );
        assert_eq!(words_of(&events).len(), 1);
        events.clear();
        d.push_samples(&audio.samples[first_end + 960..], &mut events);
        // The second word, then exactly one long silence (the 100 ms gap did not trigger it).
        let second_end = audio.words[1].end_sample;
        assert_eq!(
            events.last(),
            Some(&DecodeEvent::LongSilence {
                since_sample: second_end,
                at_sample: second_end + 16000
            })
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, DecodeEvent::LongSilence { .. }))
                .count(),
            1
        );
    }

    #[test]
    fn flush_ends_a_word_without_silence_and_reset_forgets_it() {
        let audio = synthesize(&Script::new().utterance_then("abc", Duration::ZERO)).unwrap();
        let mut d = StreamDecoder::new(None);
        let mut events = Vec::new();
        d.push_samples(&audio.samples, &mut events);
        assert!(words_of(&events).is_empty());
        d.flush(&mut events);
        assert_eq!(
            words_of(&events),
            vec![DecodedWord {
                text: "abc".into(),
                start_sample: 0,
                end_sample: 1440
            }]
        );
        let mut d = StreamDecoder::new(None);
        let mut events = Vec::new();
        d.push_samples(&audio.samples[..1000], &mut events);
        d.reset();
        d.push_samples(&[0; 2000], &mut events);
        d.flush(&mut events);
        assert!(words_of(&events).is_empty());
        assert_eq!(d.position(), 3000);
    }

    #[test]
    fn lost_and_duplicated_audio_changes_the_text() {
        let audio = synthesize_utterances(&["abc"]).unwrap();
        let mut lost = audio.samples.clone();
        lost.drain(480..960); // drop "b"
        assert_eq!(decode_words(&lost)[0].text, "ac");
        let mut dup = audio.samples.clone();
        let b: Vec<i16> = dup[480..960].to_vec();
        dup.splice(960..960, b);
        assert_eq!(decode_words(&dup)[0].text, "abbc");
    }

    #[test]
    fn hostile_samples_do_not_panic() {
        let mut d = StreamDecoder::new(Some(1));
        let mut events = Vec::new();
        d.push_samples(&[i16::MIN, i16::MAX, -1, 0, 499, -500, 30000], &mut events);
        d.push_bytes(&[0xff], &mut events);
        d.push_bytes(&[0x80, 0x00], &mut events);
        d.flush(&mut events);
        d.flush(&mut events);
        assert_eq!(d.position(), 8);
    }

    #[test]
    fn speech_like_is_deterministic_and_decodes() {
        let a = synthesize_speech_like(Duration::from_secs(60), 42);
        let b = synthesize_speech_like(Duration::from_secs(60), 42);
        let c = synthesize_speech_like(Duration::from_secs(60), 43);
        assert_eq!(a, b);
        assert_ne!(a.words, c.words);
        assert_eq!(a.samples.len(), 60 * 16000);
        assert!(a.utterances.len() >= 5);
        assert_eq!(decode_words(&a.samples), expected(&a));
        // Every utterance ends with at least 1.3 s of silence before the next one.
        for pair in a.words.windows(2) {
            if pair[0].utterance != pair[1].utterance {
                assert!(pair[1].start_sample - pair[0].end_sample >= 20800);
            }
        }
        let last = a.words.last().unwrap();
        assert!(a.samples.len() as u64 - last.end_sample >= 20800);
    }

    #[test]
    fn wav_round_trip() {
        let audio = synthesize_utterances(&["wav file"]).unwrap();
        let mut bytes = Vec::new();
        write_wav_to(&mut bytes, &audio.samples).unwrap();
        assert_eq!(bytes.len(), 44 + audio.samples.len() * 2);
        let (rate, samples) = parse_wav(&bytes).unwrap();
        assert_eq!(rate, 16000);
        assert_eq!(samples, audio.samples);
        assert!(parse_wav(b"RIFF....WAVE").is_err());
        assert!(parse_wav(b"nope").is_err());
    }

    #[test]
    fn durations_and_samples() {
        assert_eq!(duration_to_samples(Duration::from_millis(30)), 480);
        assert_eq!(duration_to_samples(Duration::from_secs(2)), 32000);
        assert_eq!(samples_to_duration(16000), Duration::from_secs(1));
        assert_eq!(samples_to_seconds(480), 0.03);
    }
}

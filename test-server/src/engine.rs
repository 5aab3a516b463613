// SPDX-License-Identifier: MPL-2.0
//! The transcript engine: decoded audio → Fireworks `verbose_json` messages. Pure, no I/O, so it
//! can also be driven directly (e.g. to produce realistic message sequences in unit tests).

use serde::Serialize;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::audio::{samples_to_seconds, DecodeEvent, StreamDecoder, SILENCE_THRESHOLD};
use crate::config::{Dialect, ServerConfig};
use crate::query::SessionOptions;
use crate::recognizer::{Pass, Recognition, Recognizer, RECOGNIZER_NAME};
use crate::speech::{Gate, Segmenter, UtteranceAudio};
use crate::vad::VadSettings;

/// The behaviour switches of the engine (taken from [`ServerConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    pub max_words_per_segment: usize,
    pub revise_partial_words: bool,
    pub grow_finalized_segment: bool,
    pub retract_trailing_segment: bool,
    pub send_string_ids: bool,
    pub finalize_on_checkpoint: bool,
    pub dialect: Dialect,
    pub report_language: bool,
    /// See [`ServerConfig::decode_delay`].
    pub decode_delay: std::time::Duration,
}

impl From<&ServerConfig> for Behaviour {
    fn from(c: &ServerConfig) -> Self {
        Behaviour {
            max_words_per_segment: c.max_words_per_segment.max(1),
            revise_partial_words: c.revise_partial_words,
            grow_finalized_segment: c.grow_finalized_segment,
            retract_trailing_segment: c.retract_trailing_segment,
            send_string_ids: c.send_string_ids || c.dialect == Dialect::V2,
            finalize_on_checkpoint: c.finalize_on_checkpoint,
            dialect: c.dialect,
            report_language: c.report_language,
            decode_delay: c.decode_delay,
        }
    }
}

impl Default for Behaviour {
    fn default() -> Self {
        (&ServerConfig::default()).into()
    }
}

/// A word of a finalized utterance, as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalWord {
    pub text: String,
    pub segment_id: u64,
    pub start_sample: u64,
    pub end_sample: u64,
}

/// An utterance the server finalized (its newly finalized words only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalUtterance {
    /// Words joined by single spaces.
    pub text: String,
    pub words: Vec<FinalWord>,
    /// Sample position (connection audio) at which the final was sent.
    pub at_sample: u64,
}

#[derive(Debug, Clone)]
struct Word {
    text: String,
    start: u64,
    end: u64,
    is_final: bool,
    probability: f64,
}

/// What the connection's audio turned out to be (see [`Transcriber`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioKind {
    /// Nothing but silence so far.
    Undecided,
    /// The tone-coded test audio of [`crate::audio`]: exact transcripts.
    TestCode,
    /// Anything else: recognised as English speech by Whisper.
    Speech,
}

/// Loud samples examined before deciding between test code and speech.
const CLASSIFY_SAMPLES: u32 = 32;
/// Largest distance of a test-code sample's magnitude from its code's (the code steps are 500).
const CODE_TOLERANCE: i32 = 100;

/// Whether a decode is for an interim or a final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeKind {
    Interim,
    Final,
}

/// A decode of one utterance's audio, to be run off the async reactor ([`DecodeJob::run`] blocks
/// for up to about a second).
pub struct DecodeJob {
    pub kind: DecodeKind,
    /// The connection (transcriber) the decode is for: the scheduler drops a connection's
    /// queued interims once its final is queued.
    pub stream: u64,
    /// Added to the decode's time (see [`ServerConfig::decode_delay`]).
    delay: std::time::Duration,
    audio: UtteranceAudio,
    recognizer: Arc<Recognizer>,
}

/// A finished [`DecodeJob`], for [`Transcriber::on_decoded`].
#[derive(Debug)]
pub struct DecodeDone {
    pub kind: DecodeKind,
    generation: u64,
    start: u64,
    /// Samples of audio decoded.
    samples: usize,
    /// Other decodes were running or waiting in the shared queue when this one finished (set
    /// by [`crate::scheduler`]): the decoders have no spare time for an early retry.
    pub backlog: bool,
    result: Result<Recognition, String>,
}

impl DecodeJob {
    /// Seconds of audio to decode.
    pub fn seconds(&self) -> f64 {
        self.audio.samples.len() as f64 / 16000.0
    }

    /// Identifies the exact audio decoded (see [`UtteranceAudio::key`]).
    pub fn key(&self) -> (u64, u64, usize) {
        self.audio.key()
    }

    pub fn run(self) -> DecodeDone {
        self.run_unless(&|| false)
            .expect("a decode that is never abandoned finishes")
    }

    /// Runs the decode unless `abandon` says yes between its steps (see
    /// [`Recognizer::recognize_unless`]); `None` when it was abandoned.
    pub fn run_unless(self, abandon: &dyn Fn() -> bool) -> Option<DecodeDone> {
        let pass = match self.kind {
            DecodeKind::Interim => Pass::Quick,
            DecodeKind::Final => Pass::Full,
        };
        let result = match self.recognizer.recognize_unless(
            &self.audio.samples,
            pass,
            self.audio.spectral_guard,
            abandon,
        ) {
            Ok(None) => return None,
            Ok(Some(mut r)) => {
                if !self.delay.is_zero() {
                    std::thread::sleep(self.delay);
                    r.decode_time += self.delay;
                }
                Ok(r)
            }
            Err(e) => Err(e),
        };
        Some(DecodeDone {
            kind: self.kind,
            generation: self.audio.generation,
            start: self.audio.start,
            samples: self.audio.samples.len(),
            backlog: false,
            result,
        })
    }
}

/// The speech side of a connection.
struct SpeechState {
    segmenter: Segmenter,
    recognizer: Option<Arc<Recognizer>>,
    /// Closed utterances waiting for their final decode, in order.
    finals_due: VecDeque<UtteranceAudio>,
    /// Utterances at or below this generation are finalized or forgotten: late interims for
    /// them are dropped.
    done_below: u64,
    /// A byte left over from an odd-length frame.
    odd_byte: Option<u8>,
    /// Local agreement of the open utterance's interims.
    agreement: Agreement,
}

/// Local agreement state of one utterance's interims: its generation, the words two
/// consecutive interims agreed on (kept by every later interim), the last interim's normalised
/// words.
#[derive(Debug, Default)]
struct Agreement {
    generation: u64,
    agreed: Vec<Word>,
    last_interim: Vec<String>,
}

/// Counters for the connection's log line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineStats {
    pub finals: u64,
    pub interims: u64,
    pub decodes: u64,
    pub decode_seconds: f64,
    pub decode_errors: u64,
}

#[derive(Debug, Clone)]
struct Segment {
    id: u64,
    words: Vec<Word>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireId {
    Num(u64),
    Str(String),
}

#[derive(Serialize)]
struct WireWord<'a> {
    word: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
    probability: f64,
    hallucination_score: f64,
    is_final: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<f64>,
}

#[derive(Serialize)]
struct WireSegment<'a> {
    id: WireId,
    /// v2 only: fields clients ignore.
    #[serde(skip_serializing_if = "Option::is_none")]
    seek: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<f64>,
    words: Vec<WireWord<'a>>,
}

#[derive(Serialize)]
struct WireTranscript<'a> {
    task: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
    text: String,
    /// v2 only: seconds of audio received.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<f64>,
    segments: Vec<WireSegment<'a>>,
}

/// Local agreement (the streaming policy of Macháček et al., "Turning Whisper into Real-Time
/// Transcription System"): the words on which two consecutive interims of an utterance agree
/// (same normalised text, from the start) are kept as they are by every later interim, so what
/// a viewer has read does not change until the final. Returns the words to show.
impl Agreement {
    fn apply(&mut self, generation: u64, words: Vec<Word>) -> Vec<Word> {
        let sp = self;
        if sp.generation != generation {
            sp.generation = generation;
            sp.agreed.clear();
            sp.last_interim.clear();
        }
        let norm: Vec<String> = words
            .iter()
            .map(|w| crate::evaluate::normalize(&w.text).join(" "))
            .collect();
        // Agreement of this interim with the previous one, from the start.
        let agree = norm
            .iter()
            .zip(&sp.last_interim)
            .take_while(|(a, b)| a == b)
            .count();
        let kept = sp.agreed.len();
        // Where the agreed words end in this interim: usually right after them; if this decode
        // heard the start differently ("and mister john dashwood" after agreeing on "and mister
        // dashwood"), just after the last agreed word's text, searched near its position; failing
        // that, after its start time.
        let agreed_norm: Vec<String> = sp
            .agreed
            .iter()
            .map(|w| crate::evaluate::normalize(&w.text).join(" "))
            .collect();
        let resume = match sp.agreed.last() {
            None => 0,
            Some(_) if norm.len() >= kept && norm[..kept] == agreed_norm[..] => kept,
            Some(last) => {
                let last_text = &agreed_norm[kept - 1];
                let lo = kept.saturating_sub(3);
                let hi = (kept + 3).min(norm.len());
                (lo..hi)
                    .filter(|&i| norm[i] == *last_text)
                    .min_by_key(|&i| i.abs_diff(kept - 1))
                    .map(|i| i + 1)
                    .unwrap_or_else(|| {
                        words
                            .iter()
                            .position(|w| w.start > last.start)
                            .unwrap_or(words.len())
                    })
            }
        };
        // Words after the agreed ones on which this interim and the previous one agree join them.
        let mut resume = resume;
        if agree > resume {
            sp.agreed.extend_from_slice(&words[resume..agree]);
            resume = agree;
        }
        sp.last_interim = norm;
        let floor = sp.agreed.last().map(|w| w.end).unwrap_or(0);
        let mut out = sp.agreed.clone();
        out.extend(words.into_iter().skip(resume).map(|mut w| {
            w.start = w.start.max(floor);
            w.end = w.end.max(w.start);
            w
        }));
        out
    }
}

/// Probability written on every word.
pub const WORD_PROBABILITY: f64 = 0.9;

/// One connection's transcription state.
#[derive(Debug)]
pub struct Transcriber {
    /// Unique in the process (see [`DecodeJob::stream`]).
    stream: u64,
    behaviour: Behaviour,
    language: String,
    word_times: bool,
    segment_times: bool,
    decoder: StreamDecoder,
    events: Vec<DecodeEvent>,
    next_id: u64,
    last_final: Option<Segment>,
    open: Vec<Segment>,
    finals: Vec<FinalUtterance>,
    text_timeout: u64,
    requested_language: Option<String>,
    kind: AudioKind,
    /// Audio received while [`AudioKind::Undecided`] (the last second of it), as samples.
    undecided: VecDeque<i16>,
    /// Connection sample position of `undecided[0]`.
    undecided_start: u64,
    undecided_odd: Option<u8>,
    loud_seen: u32,
    code_like: u32,
    last_loud: i32,
    language_ok: bool,
    speech: Option<Box<SpeechState>>,
    skip_vad: bool,
    vad_settings: VadSettings,
    /// `vad_kwargs` keys the detector does not take (reported in the connection's log line).
    vad_unknown: Vec<String>,
    /// A protocol error to send, after which the server closes the connection.
    fatal: Option<String>,
    stats: EngineStats,
}

impl std::fmt::Debug for SpeechState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechState")
            .field("segmenter", &self.segmenter)
            .field("recognizer", &self.recognizer.is_some())
            .field("finals_due", &self.finals_due.len())
            .finish()
    }
}

impl Transcriber {
    pub fn new(options: &SessionOptions, behaviour: Behaviour) -> Self {
        let (vad_settings, vad_unknown) = VadSettings::from_kwargs(options.vad_kwargs.as_ref());
        static STREAMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Transcriber {
            stream: STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            skip_vad: options.skip_vad.unwrap_or(false),
            vad_settings,
            vad_unknown,
            behaviour,
            language: options.reported_language().to_string(),
            word_times: options.word_timestamps,
            segment_times: options.segment_timestamps,
            decoder: StreamDecoder::new(Some(options.text_timeout_samples())),
            events: Vec::new(),
            next_id: 0,
            last_final: None,
            open: Vec::new(),
            finals: Vec::new(),
            text_timeout: options.text_timeout_samples(),
            requested_language: options.language.clone(),
            kind: AudioKind::Undecided,
            undecided: VecDeque::new(),
            undecided_start: 0,
            undecided_odd: None,
            loud_seen: 0,
            code_like: 0,
            last_loud: 0,
            language_ok: options
                .language
                .as_deref()
                .is_none_or(|l| l.eq_ignore_ascii_case("en")),
            speech: None,
            fatal: None,
            stats: EngineStats::default(),
        }
    }

    /// What the audio turned out to be.
    pub fn kind(&self) -> AudioKind {
        self.kind
    }

    /// The recogniser in use, for logs: "test code", Whisper's name, or why there is none.
    pub fn recognizer_label(&self) -> &'static str {
        match self.kind {
            AudioKind::Undecided => "none (no sound received)",
            AudioKind::TestCode => "test-code decoder",
            AudioKind::Speech => match &self.speech {
                Some(s) if s.recognizer.is_some() => RECOGNIZER_NAME,
                _ if !self.language_ok => "none (language not supported)",
                _ => "none (speech model not installed)",
            },
        }
    }

    /// The voice-activity gate of speech, for logs (`None` before speech arrived).
    pub fn vad_label(&self) -> Option<&'static str> {
        self.speech.as_ref().map(|s| s.segmenter.gate_label())
    }

    /// `vad_kwargs` keys the detector does not take.
    pub fn vad_unknown_keys(&self) -> &[String] {
        &self.vad_unknown
    }

    /// Utterances finalized so far.
    pub fn finals_sent(&self) -> u64 {
        self.stats.finals
    }

    /// Interim messages sent so far from speech decodes (test code: counted as finals only).
    pub fn interims_sent(&self) -> u64 {
        self.stats.interims
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// A protocol error that ends the connection (sent as `{"error": …}`, then closed).
    pub fn take_fatal(&mut self) -> Option<String> {
        self.fatal.take()
    }

    /// Decides, from the first loud samples, whether this is tone-coded test audio: every test-code
    /// letter alternates `+M, −M` sample by sample with `M` on the code grid; speech never does.
    fn classify(&mut self, bytes: &[u8]) {
        let mut odd = self.undecided_odd.take();
        let mut data = Vec::with_capacity(bytes.len() + 1);
        data.extend(odd.take());
        data.extend_from_slice(bytes);
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            let s = i16::from_le_bytes([c[0], c[1]]);
            self.undecided.push_back(s);
            if self.kind != AudioKind::Undecided {
                continue;
            }
            let v = s as i32;
            if v.abs() >= SILENCE_THRESHOLD {
                let m = v.abs();
                let on_grid = m >= 2250 && ((m - 2000 + 250) % 500 - 250).abs() <= CODE_TOLERANCE;
                let alternates = self.loud_seen == 0 || (v > 0) != (self.last_loud > 0);
                if on_grid && alternates {
                    self.code_like += 1;
                }
                self.last_loud = v;
                self.loud_seen += 1;
                if self.loud_seen >= CLASSIFY_SAMPLES {
                    self.kind = if self.code_like + 2 >= self.loud_seen {
                        AudioKind::TestCode
                    } else {
                        AudioKind::Speech
                    };
                }
            }
        }
        self.undecided_odd = chunks.remainder().first().copied();
        while self.kind == AudioKind::Undecided && self.undecided.len() > 16000 {
            self.undecided.pop_front();
            self.undecided_start += 1;
        }
    }

    /// Switches the connection to speech: the audio kept so far goes to the segmenter.
    fn start_speech(&mut self) {
        let recognizer = if self.language_ok {
            Recognizer::shared()
        } else {
            self.fatal = Some(format!(
                "language {:?} is not supported by the local speech recogniser ({RECOGNIZER_NAME}, \
                 English only): supported languages: en",
                self.requested_language.as_deref().unwrap_or_default()
            ));
            None
        };
        let start = self.undecided_start;
        let gate = Gate::for_session(self.skip_vad);
        let mut segmenter =
            Segmenter::with_gate(self.text_timeout, gate, self.vad_settings.clone());
        segmenter.set_position(start);
        let samples: Vec<f32> = self
            .undecided
            .drain(..)
            .map(|s| s as f32 / 32768.0)
            .collect();
        let mut closed = Vec::new();
        segmenter.push(&samples, &mut closed);
        self.speech = Some(Box::new(SpeechState {
            segmenter,
            recognizer,
            finals_due: closed.into(),
            done_below: 0,
            odd_byte: self.undecided_odd.take(),
            agreement: Agreement::default(),
        }));
    }

    fn speech_audio(&mut self, bytes: &[u8]) {
        let Some(sp) = self.speech.as_mut() else {
            return;
        };
        let mut data = Vec::with_capacity(bytes.len() + 1);
        data.extend(sp.odd_byte.take());
        data.extend_from_slice(bytes);
        let mut chunks = data.chunks_exact(2);
        let samples: Vec<f32> = (&mut chunks)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)
            .collect();
        sp.odd_byte = chunks.remainder().first().copied();
        let mut closed = Vec::new();
        sp.segmenter.push(&samples, &mut closed);
        sp.finals_due.extend(closed);
    }

    /// The next final decode that must run (and be applied with [`Self::on_decoded`]) before
    /// anything else is sent: utterances closed by silence, a checkpoint or the 30 s limit, in
    /// order. Without a recogniser they are dropped here.
    pub fn next_final_job(&mut self) -> Option<DecodeJob> {
        let sp = self.speech.as_mut()?;
        let audio = sp.finals_due.pop_front()?;
        let Some(recognizer) = sp.recognizer.clone() else {
            sp.finals_due.clear();
            return None;
        };
        Some(DecodeJob {
            kind: DecodeKind::Final,
            stream: self.stream,
            delay: self.behaviour.decode_delay,
            audio,
            recognizer,
        })
    }

    /// A speculative final decode of the open utterance, offered once when the detector sees
    /// its speech end (see [`crate::speech`]): the caller runs it while the timeout elapses and
    /// applies it instead of running the final job whose [`DecodeJob::key`] equals its own; a
    /// speculation whose key matches no final is discarded.
    pub fn speculative_job(&mut self) -> Option<DecodeJob> {
        let sp = self.speech.as_mut()?;
        let audio = sp.segmenter.take_speculative()?;
        let recognizer = sp.recognizer.clone()?;
        Some(DecodeJob {
            kind: DecodeKind::Final,
            stream: self.stream,
            delay: self.behaviour.decode_delay,
            audio,
            recognizer,
        })
    }

    /// An interim decode of the open utterance, when one is due (after each further half
    /// second of its audio). The caller runs at most one at a time and skips none of the finals
    /// for it.
    pub fn interim_job(&mut self) -> Option<DecodeJob> {
        let sp = self.speech.as_mut()?;
        let recognizer = sp.recognizer.clone()?;
        if !sp.finals_due.is_empty() {
            return None;
        }
        let audio = sp.segmenter.interim_due()?;
        Some(DecodeJob {
            kind: DecodeKind::Interim,
            stream: self.stream,
            delay: self.behaviour.decode_delay,
            audio,
            recognizer,
        })
    }

    /// Applies a finished decode: an interim replaces the open utterance's words (if that
    /// utterance is still open), a final replaces and finalizes them.
    pub fn on_decoded(&mut self, done: DecodeDone, out: &mut Vec<String>) {
        let Some(sp) = self.speech.as_mut() else {
            return;
        };
        if done.generation < sp.done_below {
            return;
        }
        self.stats.decodes += 1;
        let words: Vec<Word> = match &done.result {
            Ok(r) => {
                self.stats.decode_seconds += r.decode_time.as_secs_f64();
                r.words
                    .iter()
                    .map(|w| Word {
                        text: w.text.clone(),
                        start: done.start + w.start_sample,
                        end: done.start + w.end_sample,
                        is_final: false,
                        probability: w.probability as f64,
                    })
                    .collect()
            }
            Err(_) => {
                self.stats.decode_errors += 1;
                Vec::new()
            }
        };
        match done.kind {
            DecodeKind::Interim => {
                if words.is_empty() && self.open.iter().all(|s| s.words.is_empty()) {
                    // Asked again early only when a decoder is free for it: under load the
                    // extra decode would delay other streams' finals (BENCHMARKS.md, 7).
                    if !done.backlog {
                        sp.segmenter
                            .first_interim_was_empty(done.generation, done.samples);
                    }
                    return;
                }
                let words = sp.agreement.apply(done.generation, words);
                self.set_open_words(words);
                self.stats.interims += 1;
                out.push(self.render(&self.window()));
            }
            DecodeKind::Final => {
                sp.done_below = done.generation + 1;
                sp.agreement = Agreement::default();
                let had_interim = self.open.iter().any(|s| !s.words.is_empty());
                self.set_open_words(words);
                if self.open.iter().all(|s| s.words.is_empty()) {
                    if had_interim {
                        // The interim words are withdrawn: the window without them.
                        out.push(self.render(&self.window()));
                    }
                    self.open.clear();
                    return;
                }
                self.finalize(out);
            }
        }
    }

    /// Replaces the open utterance's words, keeping its segment ids (ids not needed any more are
    /// given back, so they stay consecutive).
    fn set_open_words(&mut self, words: Vec<Word>) {
        let max = self.behaviour.max_words_per_segment.max(1);
        let first_id = self.open.first().map(|s| s.id).unwrap_or(self.next_id);
        self.open.clear();
        for (i, chunk) in words.chunks(max).enumerate() {
            self.open.push(Segment {
                id: first_id + i as u64,
                words: chunk.to_vec(),
            });
        }
        self.next_id = first_id + self.open.len() as u64;
    }

    /// Samples received so far.
    pub fn position(&self) -> u64 {
        match self.kind {
            AudioKind::Undecided => self.undecided_start + self.undecided.len() as u64,
            _ => self.decoder.position(),
        }
    }

    /// Utterances finalized since the last call.
    pub fn take_finals(&mut self) -> Vec<FinalUtterance> {
        std::mem::take(&mut self.finals)
    }

    /// Decodes audio bytes; appends the messages to send.
    ///
    /// Until the first loud samples arrive the kind of audio is unknown and the audio waits in a
    /// buffer (its last second: silence before the first sound gives no words either way). Then
    /// test code goes, buffer first, to the exact decoder, and anything else to speech
    /// recognition, whose decodes the caller runs ([`Self::next_final_job`],
    /// [`Self::interim_job`]).
    pub fn on_audio(&mut self, bytes: &[u8], out: &mut Vec<String>) {
        match self.kind {
            AudioKind::Speech => {
                self.decoder.advance_bytes(bytes);
                self.speech_audio(bytes);
            }
            AudioKind::TestCode => self.code_audio(bytes, out),
            AudioKind::Undecided => {
                self.classify(bytes);
                match self.kind {
                    AudioKind::Undecided => {}
                    AudioKind::Speech => {
                        // The decoder only counts the position from here on.
                        let n = self.undecided_start + self.undecided.len() as u64;
                        self.decoder.advance_samples(n);
                        if let Some(b) = self.undecided_odd {
                            self.decoder.advance_bytes(&[b]);
                        }
                        self.start_speech();
                    }
                    AudioKind::TestCode => {
                        self.decoder.advance_samples(self.undecided_start);
                        let mut held: Vec<u8> = self
                            .undecided
                            .drain(..)
                            .flat_map(|s| s.to_le_bytes())
                            .collect();
                        held.extend(self.undecided_odd.take());
                        self.code_audio(&held, out);
                    }
                }
            }
        }
    }

    fn code_audio(&mut self, bytes: &[u8], out: &mut Vec<String>) {
        let mut events = std::mem::take(&mut self.events);
        self.decoder.push_bytes(bytes, &mut events);
        self.handle_events(&mut events, out);
        self.events = events;
    }

    /// A checkpoint: with `finalize_on_checkpoint`, the word in progress is ended and the open
    /// utterance finalized. The caller sends the echo after `out`.
    pub fn on_checkpoint(&mut self, out: &mut Vec<String>) {
        if let Some(sp) = self.speech.as_mut() {
            // Speech: the open utterance becomes a final decode (see `next_final_job`).
            if self.behaviour.finalize_on_checkpoint {
                if let Some(u) = sp.segmenter.close_now() {
                    sp.finals_due.push_back(u);
                }
            }
            return;
        }
        if self.behaviour.finalize_on_checkpoint {
            let mut events = std::mem::take(&mut self.events);
            self.decoder.flush(&mut events);
            self.handle_events(&mut events, out);
            self.events = events;
            self.finalize(out);
        }
    }

    /// `stt.state.clear`: forgets the word in progress, the open utterance and the last final
    /// segment. Segment ids keep rising; sample positions keep counting.
    pub fn on_clear(&mut self) {
        if let Some(sp) = self.speech.as_mut() {
            sp.segmenter.clear();
            sp.finals_due.clear();
            sp.done_below = sp.segmenter.next_generation();
        }
        self.decoder.reset();
        self.open.clear();
        self.last_final = None;
    }

    fn handle_events(&mut self, events: &mut Vec<DecodeEvent>, out: &mut Vec<String>) {
        for ev in events.drain(..) {
            match ev {
                DecodeEvent::Letter {
                    word,
                    word_start_sample,
                    end_sample,
                    ..
                } => {
                    if self.behaviour.revise_partial_words && word.chars().count() == 2 {
                        self.ensure_slot();
                        let mut window = self.window();
                        if let Some(seg) = window.last_mut() {
                            seg.words.push(Word {
                                text: word,
                                start: word_start_sample,
                                end: end_sample,
                                is_final: false,
                                probability: WORD_PROBABILITY,
                            });
                        }
                        out.push(self.render(&window));
                    }
                }
                DecodeEvent::Word(w) => {
                    self.ensure_slot();
                    let next_id = self.next_id;
                    let Some(seg) = self.open.last_mut() else {
                        continue;
                    };
                    seg.words.push(Word {
                        text: w.text,
                        start: w.start_sample,
                        end: w.end_sample,
                        is_final: false,
                        probability: WORD_PROBABILITY,
                    });
                    let speculate = self.behaviour.retract_trailing_segment
                        && seg.words.len() == 2
                        && !seg.words[0].is_final;
                    if speculate {
                        // TV5: first show the word as a new trailing segment, then merge it back.
                        let mut window = self.window();
                        if let Some(word) = window.last_mut().and_then(|s| s.words.pop()) {
                            window.push(Segment {
                                id: next_id,
                                words: vec![word],
                            });
                            out.push(self.render(&window));
                        }
                    }
                    out.push(self.render(&self.window()));
                }
                DecodeEvent::LongSilence { .. } => self.finalize(out),
            }
        }
    }

    /// Makes sure the last open segment can take one more word.
    fn ensure_slot(&mut self) {
        let max = self.behaviour.max_words_per_segment.max(1);
        match self.open.last() {
            None => {
                let reopen = self.behaviour.grow_finalized_segment
                    && self
                        .last_final
                        .as_ref()
                        .is_some_and(|s| s.words.len() < max);
                if reopen {
                    if let Some(seg) = self.last_final.take() {
                        self.open.push(seg);
                        return;
                    }
                }
                self.new_segment();
            }
            Some(seg) if seg.words.len() >= max => self.new_segment(),
            Some(_) => {}
        }
    }

    fn new_segment(&mut self) {
        self.open.push(Segment {
            id: self.next_id,
            words: Vec::new(),
        });
        self.next_id += 1;
    }

    /// The working window: the last finalized segment (unless it was reopened) and the open
    /// utterance's segments.
    fn window(&self) -> Vec<Segment> {
        self.last_final
            .iter()
            .chain(self.open.iter())
            .cloned()
            .collect()
    }

    fn finalize(&mut self, out: &mut Vec<String>) {
        self.open.retain(|s| !s.words.is_empty());
        if self.open.is_empty() {
            return;
        }
        let at_sample = match &self.speech {
            Some(sp) => sp.segmenter.position(),
            None => self.decoder.position(),
        };
        let mut fin = FinalUtterance {
            text: String::new(),
            words: Vec::new(),
            at_sample,
        };
        for seg in &mut self.open {
            for w in &mut seg.words {
                if !w.is_final {
                    w.is_final = true;
                    fin.words.push(FinalWord {
                        text: w.text.clone(),
                        segment_id: seg.id,
                        start_sample: w.start,
                        end_sample: w.end,
                    });
                }
            }
        }
        fin.text = fin
            .words
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        out.push(self.render(&self.window()));
        self.last_final = self.open.pop();
        self.open.clear();
        if !fin.words.is_empty() {
            self.stats.finals += 1;
            self.finals.push(fin);
        }
    }

    fn render(&self, segments: &[Segment]) -> String {
        let lang = self.language.as_str();
        let reported = self.behaviour.report_language.then_some(lang);
        let v2 = self.behaviour.dialect == Dialect::V2;
        let mut texts = Vec::with_capacity(segments.len());
        let wire: Vec<WireSegment<'_>> = segments
            .iter()
            .filter(|s| !s.words.is_empty())
            .map(|s| {
                let text = s
                    .words
                    .iter()
                    .map(|w| w.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                texts.push(text.clone());
                let (first, last) = (&s.words[0], &s.words[s.words.len() - 1]);
                WireSegment {
                    id: if self.behaviour.send_string_ids {
                        WireId::Str(s.id.to_string())
                    } else {
                        WireId::Num(s.id)
                    },
                    seek: v2.then_some(0),
                    language: reported.filter(|_| v2),
                    text,
                    start: self.segment_times.then(|| samples_to_seconds(first.start)),
                    end: self.segment_times.then(|| samples_to_seconds(last.end)),
                    words: s
                        .words
                        .iter()
                        .map(|w| WireWord {
                            word: &w.text,
                            language: reported,
                            probability: w.probability,
                            hallucination_score: 0.0,
                            is_final: w.is_final,
                            start: self.word_times.then(|| samples_to_seconds(w.start)),
                            end: self.word_times.then(|| samples_to_seconds(w.end)),
                        })
                        .collect(),
                }
            })
            .collect();
        let msg = WireTranscript {
            task: "transcribe",
            language: reported,
            text: texts.join(" "),
            duration: v2.then(|| samples_to_seconds(self.decoder.position())),
            segments: wire,
        };
        serde_json::to_string(&msg).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{synthesize, synthesize_utterances, Script};
    use serde_json::Value;
    use std::time::Duration;

    /// (id, text, [(word, final)]) per segment.
    type Seg = (Value, String, Vec<(String, bool)>);

    fn segs(msg: &str) -> Vec<Seg> {
        let v: Value = serde_json::from_str(msg).unwrap();
        v["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].clone(),
                    s["text"].as_str().unwrap().to_string(),
                    s["words"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|w| {
                            (
                                w["word"].as_str().unwrap().to_string(),
                                w["is_final"].as_bool().unwrap(),
                            )
                        })
                        .collect(),
                )
            })
            .collect()
    }

    /// Compact form: "0:hello world* | 1:how" with * marking a final word.
    fn compact(msg: &str) -> String {
        segs(msg)
            .iter()
            .map(|(id, _, words)| {
                format!(
                    "{id}:{}",
                    words
                        .iter()
                        .map(|(w, f)| if *f { format!("{w}*") } else { w.clone() })
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn run(
        behaviour: Behaviour,
        options: &SessionOptions,
        bytes: &[u8],
    ) -> (Vec<String>, Transcriber) {
        let mut t = Transcriber::new(options, behaviour);
        let mut out = Vec::new();
        for chunk in bytes.chunks(1600) {
            t.on_audio(chunk, &mut out);
        }
        (out, t)
    }

    #[test]
    fn interim_words_two_decodes_agreed_on_stay() {
        let words = |text: &str| -> Vec<Word> {
            text.split_whitespace()
                .enumerate()
                .map(|(i, t)| Word {
                    text: t.to_string(),
                    start: i as u64 * 1000,
                    end: i as u64 * 1000 + 900,
                    is_final: false,
                    probability: 0.9,
                })
                .collect()
        };
        let text = |w: Vec<Word>| {
            w.iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut a = Agreement::default();
        assert_eq!(text(a.apply(1, words("and mister"))), "and mister");
        assert_eq!(
            text(a.apply(1, words("and mister john"))),
            "and mister john"
        );
        // "and mister" agreed; the next two agree on "dashwood".
        assert_eq!(
            text(a.apply(1, words("And Mr. dashwood"))),
            "and mister dashwood"
        );
        assert_eq!(
            text(a.apply(1, words("and mister dashwood had"))),
            "and mister dashwood had"
        );
        // A later decode hears the start differently: the agreed words stay, nothing doubles.
        assert_eq!(
            text(a.apply(1, words("and mister john dashwood had then leisure"))),
            "and mister dashwood had then leisure"
        );
        // A new utterance starts afresh.
        assert_eq!(text(a.apply(2, words("he was"))), "he was");
    }

    #[test]
    fn test_code_and_other_sound_are_told_apart_without_leaking_messages() {
        let audio = synthesize_utterances(&["hello"]).unwrap();
        let (out, t) = run(
            Behaviour::default(),
            &SessionOptions::default(),
            &audio.to_le_bytes(),
        );
        assert_eq!(t.kind(), AudioKind::TestCode);
        assert_eq!(out.len(), 3, "{out:?}");

        // A voice-like onset: a slowly rising 200 Hz wave, byte by byte.
        let mut bytes = vec![0u8; 3201];
        for i in 0..16000 {
            let a = (i as f64 * 0.5).min(6000.0);
            let s = (a * (2.0 * std::f64::consts::PI * 200.0 * i as f64 / 16000.0).sin()) as i16;
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        let mut t = Transcriber::new(&SessionOptions::default(), Behaviour::default());
        let mut out = Vec::new();
        for c in bytes.chunks(777) {
            t.on_audio(c, &mut out);
        }
        assert_eq!(t.kind(), AudioKind::Speech);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(t.position(), 16000 + 1600);
    }

    #[test]
    fn interims_partials_and_final() {
        let audio = synthesize_utterances(&["hello world"]).unwrap();
        let (out, mut t) = run(
            Behaviour::default(),
            &SessionOptions::default(),
            &audio.to_le_bytes(),
        );
        let c: Vec<String> = out.iter().map(|m| compact(m)).collect();
        assert_eq!(
            c,
            vec![
                "0:he",
                "0:hello",
                "0:hello wo",
                "0:hello world",
                "0:hello* world*"
            ]
        );
        let v: Value = serde_json::from_str(&out[3]).unwrap();
        assert_eq!(v["task"], "transcribe");
        assert_eq!(v["language"], "en");
        assert_eq!(v["text"], "hello world");
        let w = &v["segments"][0]["words"][0];
        assert_eq!(w["probability"], 0.9);
        assert_eq!(w["hallucination_score"], 0.0);
        assert_eq!(w["language"], "en");
        assert!(w.get("start").is_none() && v["segments"][0].get("start").is_none());
        let finals = t.take_finals();
        assert_eq!(finals.len(), 1);
        assert_eq!(finals[0].text, "hello world");
        assert_eq!(finals[0].at_sample, audio.words[1].end_sample + 16000);
    }

    #[test]
    fn exact_times_with_granularities() {
        let audio = synthesize(
            &Script::new()
                .leading_silence(Duration::from_millis(333))
                .utterance("ab cde"),
        )
        .unwrap();
        let opts = SessionOptions {
            word_timestamps: true,
            segment_timestamps: true,
            language: Some("de".into()),
            ..Default::default()
        };
        let b = Behaviour {
            revise_partial_words: false,
            ..Default::default()
        };
        let (out, _) = run(b, &opts, &audio.to_le_bytes());
        let v: Value = serde_json::from_str(out.last().unwrap()).unwrap();
        let seg = &v["segments"][0];
        assert_eq!(v["language"], "de");
        assert_eq!(seg["start"].as_f64(), Some(audio.words[0].start_seconds()));
        assert_eq!(seg["end"].as_f64(), Some(audio.words[1].end_seconds()));
        for (i, w) in audio.words.iter().enumerate() {
            assert_eq!(seg["words"][i]["start"].as_f64(), Some(w.start_seconds()));
            assert_eq!(seg["words"][i]["end"].as_f64(), Some(w.end_seconds()));
            assert_eq!(seg["words"][i]["language"], "de");
        }
        assert_eq!(seg["words"][0]["start"].as_f64(), Some(5328.0 / 16000.0));
    }

    #[test]
    fn segments_split_and_window_resends_last_final() {
        let audio = synthesize_utterances(&["a b c d e", "f g"]).unwrap();
        let b = Behaviour {
            max_words_per_segment: 2,
            revise_partial_words: false,
            ..Default::default()
        };
        let (out, _) = run(b, &SessionOptions::default(), &audio.to_le_bytes());
        let c: Vec<String> = out.iter().map(|m| compact(m)).collect();
        assert_eq!(
            c,
            vec![
                "0:a",
                "0:a b",
                "0:a b | 1:c",
                "0:a b | 1:c d",
                "0:a b | 1:c d | 2:e",
                "0:a* b* | 1:c* d* | 2:e*",
                "2:e* | 3:f",
                "2:e* | 3:f g",
                "2:e* | 3:f* g*",
            ]
        );
    }

    #[test]
    fn grow_finalized_segment_scenario() {
        let audio = synthesize_utterances(&["hello world", "again"]).unwrap();
        let b = Behaviour {
            grow_finalized_segment: true,
            revise_partial_words: false,
            ..Default::default()
        };
        let (out, _) = run(b, &SessionOptions::default(), &audio.to_le_bytes());
        let c: Vec<String> = out.iter().map(|m| compact(m)).collect();
        assert_eq!(
            c,
            vec![
                "0:hello",
                "0:hello world",
                "0:hello* world*",
                "0:hello* world* again",
                "0:hello* world* again*",
            ]
        );
    }

    #[test]
    fn retract_trailing_segment_scenario() {
        let audio = synthesize_utterances(&["one two three"]).unwrap();
        let b = Behaviour {
            retract_trailing_segment: true,
            revise_partial_words: false,
            ..Default::default()
        };
        let (out, _) = run(b, &SessionOptions::default(), &audio.to_le_bytes());
        let c: Vec<String> = out.iter().map(|m| compact(m)).collect();
        assert_eq!(
            c,
            vec![
                "0:one",
                "0:one | 1:two",
                "0:one two",
                "0:one two three",
                "0:one* two* three*",
            ]
        );
    }

    #[test]
    fn string_ids_scenario() {
        let audio = synthesize_utterances(&["hi"]).unwrap();
        let b = Behaviour {
            send_string_ids: true,
            ..Default::default()
        };
        let (out, _) = run(b, &SessionOptions::default(), &audio.to_le_bytes());
        assert!(out.iter().all(|m| m.contains(r#""id":"0""#)));
    }

    #[test]
    fn v2_dialect_writes_string_ids_and_extra_fields() {
        let audio = synthesize_utterances(&["hi"]).unwrap();
        let b = Behaviour {
            dialect: Dialect::V2,
            ..(&ServerConfig::default().with_dialect(Dialect::V2)).into()
        };
        let (out, _) = run(b, &SessionOptions::default(), &audio.to_le_bytes());
        assert!(!out.is_empty());
        for message in &out {
            let v: Value = serde_json::from_str(message).unwrap();
            assert!(v["duration"].is_f64(), "{message}");
            for segment in v["segments"].as_array().unwrap() {
                assert!(segment["id"].is_string(), "{message}");
                assert_eq!(segment["seek"], 0, "{message}");
                assert_eq!(segment["language"], "en", "{message}");
            }
        }
    }

    #[test]
    fn the_language_can_go_unreported() {
        let audio = synthesize_utterances(&["hi"]).unwrap();
        let b: Behaviour = (&ServerConfig::default().with_report_language(false)).into();
        let (out, _) = run(b, &SessionOptions::default(), &audio.to_le_bytes());
        assert!(!out.is_empty());
        assert!(out.iter().all(|m| !m.contains("language")), "{out:?}");
    }

    #[test]
    fn checkpoint_finalizes_word_in_progress() {
        let audio = synthesize(&Script::new().utterance_then("ab cd", Duration::ZERO)).unwrap();
        let mut t = Transcriber::new(&SessionOptions::default(), Behaviour::default());
        let mut out = Vec::new();
        t.on_audio(&audio.to_le_bytes(), &mut out);
        out.clear();
        t.on_checkpoint(&mut out);
        let c: Vec<String> = out.iter().map(|m| compact(m)).collect();
        assert_eq!(c, vec!["0:ab cd", "0:ab* cd*"]);
        // Long silence afterwards does not finalize again.
        out.clear();
        t.on_audio(&[0; 64000], &mut out);
        assert!(out.is_empty());
        assert_eq!(t.take_finals().len(), 1);

        let mut t = Transcriber::new(
            &SessionOptions::default(),
            Behaviour {
                finalize_on_checkpoint: false,
                ..Default::default()
            },
        );
        let mut out = Vec::new();
        t.on_audio(&audio.to_le_bytes(), &mut out);
        out.clear();
        t.on_checkpoint(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn state_clear_drops_open_utterance() {
        let audio =
            synthesize(&Script::new().utterance_then("ab cd", Duration::from_millis(200))).unwrap();
        let b = Behaviour {
            revise_partial_words: false,
            ..Default::default()
        };
        let mut t = Transcriber::new(&SessionOptions::default(), b);
        let mut out = Vec::new();
        t.on_audio(&audio.to_le_bytes(), &mut out);
        assert_eq!(out.len(), 2);
        t.on_clear();
        out.clear();
        t.on_audio(&[0; 64000], &mut out);
        assert!(out.is_empty(), "nothing left to finalize");
        let more = synthesize_utterances(&["ef"]).unwrap();
        t.on_audio(&more.to_le_bytes(), &mut out);
        let c: Vec<String> = out.iter().map(|m| compact(m)).collect();
        assert_eq!(c, vec!["1:ef", "1:ef*"]);
        let finals = t.take_finals();
        assert_eq!(
            finals[0].words[0].start_sample,
            audio.samples.len() as u64 + 32000
        );
    }
}

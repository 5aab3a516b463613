// SPDX-License-Identifier: MPL-2.0
//! Utterances of real speech found by voice activity, in *sample time*: every decision depends
//! only on the samples received, never on the wall clock, so pushing a file as fast as possible
//! gives the same utterances (and the same finals) as playing it live.
//!
//! * Voice activity ([`Gate`]): per 32 ms hop, Silero VAD's speech probability
//!   ([`crate::vad`]) with hysteresis (speech from `threshold`, until it falls below
//!   `neg_threshold`); without the detector installed, an energy threshold ([`VAD_RMS`],
//!   −40 dBFS); with `skip_vad`, the energy threshold too (the gate is off: every stretch of
//!   sound is decoded, only Whisper's no-speech probability decides). `min_speech_duration_ms`
//!   of voice opens an utterance, which starts `speech_pad_ms` earlier.
//! * An utterance closes once `timeout` samples (`text_timeout_seconds`) without voice follow its
//!   last voiced hop; its audio runs to [`TAIL_SAMPLES`] (150 ms, at most `timeout`) past it.
//! * **Speculation:** as soon as [`TAIL_SAMPLES`] without voice follow the last voiced hop, the
//!   audio the utterance will close with (if no voice comes back) is offered once
//!   ([`Segmenter::take_speculative`]) so its final decode can run while the timeout elapses;
//!   it is exactly the audio of the closed utterance, so a speculative result is used only
//!   when the keys ([`UtteranceAudio::key`]) match.
//! * Whisper sees at most 30 s: an utterance reaching [`MAX_UTTERANCE_SAMPLES`] (28 s) is cut at
//!   its quietest 200 ms between 14 s and 27.5 s, and the rest continues as a new utterance.
//! * Interims are due every [`INTERIM_EVERY_SAMPLES`] (0.5 s) of utterance audio, on a fixed
//!   grid from the utterance's first interim (a late request does not delay the next), and
//!   only when voice came since the last one (no re-decoding of the trailing pause). A first
//!   interim that comes back without words is asked again [`EMPTY_RETRY_SAMPLES`] (0.1 s)
//!   later, once, when a decoder is free ([`Segmenter::first_interim_was_empty`]).

use std::collections::VecDeque;

use crate::vad::{SileroModel, SileroStream, VadSettings, HOP_SAMPLES};

/// Samples per voice-activity decision (32 ms, Silero's hop at 16 kHz).
pub const FRAME_SAMPLES: usize = HOP_SAMPLES;
pub const VAD_RMS: f32 = 0.01;
/// Audio kept after the last voiced hop, and how long after it the speculative final decode
/// starts: 150 ms. Measured (BENCHMARKS.md, section 7): 150, 300, 500 and 800 ms gave the same
/// espeak-ng WER (10.4 % greedy) and LibriVox WER (4.2 %); 150 ms starts the speculative
/// decode 150 ms earlier than 300 ms did, which is time the decode has before the timeout.
pub const TAIL_SAMPLES: u64 = 2400;
/// Environment variable overriding [`TAIL_SAMPLES`], in ms (for comparisons).
pub const TAIL_ENV: &str = "FIREWORKSSTT_TAIL_MS";
/// Environment variable overriding when the first interim is due, in ms of utterance audio.
pub const FIRST_INTERIM_ENV: &str = "FIREWORKSSTT_FIRST_INTERIM_MS";

fn env_samples(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| ms * 16)
        .unwrap_or(default)
}

fn tail_samples() -> u64 {
    static TAIL: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TAIL.get_or_init(|| env_samples(TAIL_ENV, TAIL_SAMPLES))
}

/// Environment variable: `0` puts each interim 0.5 s after the previous one was asked for
/// (as before the grid), for comparisons.
pub const INTERIM_GRID_ENV: &str = "FIREWORKSSTT_INTERIM_GRID";

fn interim_grid() -> bool {
    static GRID: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GRID.get_or_init(|| crate::config::switched_on(INTERIM_GRID_ENV))
}

/// Environment variable overriding the interim step, in ms of utterance audio (for
/// comparisons).
pub const INTERIM_EVERY_ENV: &str = "FIREWORKSSTT_INTERIM_EVERY_MS";

/// The interim step in use: [`INTERIM_EVERY_SAMPLES`] unless [`INTERIM_EVERY_ENV`] says
/// otherwise (at least 100 ms).
fn interim_every_samples() -> usize {
    static EVERY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *EVERY.get_or_init(|| env_samples(INTERIM_EVERY_ENV, INTERIM_EVERY_SAMPLES as u64).max(1600))
        as usize
}

/// When the first interim is due: [`FIRST_INTERIM_ENV`], else one interim step.
fn first_interim_samples() -> usize {
    static FIRST: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *FIRST.get_or_init(|| env_samples(FIRST_INTERIM_ENV, interim_every_samples() as u64)) as usize
}
pub const MAX_UTTERANCE_SAMPLES: usize = 28 * 16000;
const CUT_FROM: usize = 14 * 16000;
const CUT_TO: usize = 27 * 16000 + 8000;
/// About 200 ms of frames.
const CUT_WINDOW_FRAMES: usize = 6;
/// An interim is due after each further half second of utterance audio.
pub const INTERIM_EVERY_SAMPLES: usize = 8000;
/// After an utterance's first interim came back without words, the next is due this much
/// audio (0.1 s) after it rather than a whole step (see [`Segmenter::first_interim_was_empty`]).
/// Live, the decode takes longer than that, so the retry is asked for as soon as the empty
/// result is in. Measured (BENCHMARKS.md, section 7, "An empty first interim asked again"):
/// one live stream's first text p95 1.21–1.27 → 0.99–1.00 s clean and 1.44–1.48 → 1.22–1.25 s
/// in pink noise 10 dB, p50 unchanged; 0.2 s gave the same within the spread.
pub const EMPTY_RETRY_SAMPLES: usize = 1600;
/// Environment variable: `0` turns the early retry after an empty first interim off (for
/// comparisons).
pub const EMPTY_RETRY_ENV: &str = "FIREWORKSSTT_EMPTY_RETRY";

fn empty_retry() -> bool {
    static RETRY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *RETRY.get_or_init(|| crate::config::switched_on(EMPTY_RETRY_ENV))
}

/// A stretch of audio to decode; `start` is its first sample in connection time.
#[derive(Debug, Clone)]
pub struct UtteranceAudio {
    pub generation: u64,
    pub start: u64,
    pub samples: Vec<f32>,
    /// The audio passed no trained detector (energy fallback): the recogniser's spectral check
    /// against steady tones and noise applies.
    pub spectral_guard: bool,
}

impl UtteranceAudio {
    /// What identifies this exact audio: a speculative decode is used for a closed utterance
    /// only when both keys are equal.
    pub fn key(&self) -> (u64, u64, usize) {
        (self.generation, self.start, self.samples.len())
    }
}

/// How voice is told from the rest.
#[derive(Debug)]
pub enum Gate {
    /// Silero VAD with the session's settings.
    Silero(SileroStream),
    /// Frames louder than [`VAD_RMS`]: the detector is not installed.
    Energy,
    /// `skip_vad`: frames louder than [`VAD_RMS`], and no spectral check either.
    Off,
}

impl Gate {
    /// The gate for a session: Silero unless `skip_vad` or the detector is not installed.
    pub fn for_session(skip_vad: bool) -> Gate {
        if skip_vad {
            return Gate::Off;
        }
        match SileroModel::shared() {
            Some(m) => Gate::Silero(SileroStream::new(m)),
            None => Gate::Energy,
        }
    }

    /// As logged.
    pub fn label(&self) -> &'static str {
        match self {
            Gate::Silero(_) => crate::vad::VAD_NAME,
            Gate::Energy => "energy threshold (Silero VAD not installed)",
            Gate::Off => "off (skip_vad)",
        }
    }
}

#[derive(Debug)]
struct Open {
    generation: u64,
    start: u64,
    samples: Vec<f32>,
    /// RMS per whole frame of `samples`.
    energy: Vec<f32>,
    last_voice_end: u64,
    next_interim: usize,
    /// Voice came since the last interim was due.
    voice_since_interim: bool,
    /// The speculative audio for the current `last_voice_end` was offered.
    speculated: bool,
    /// An interim that came back without words was asked for again early (once per utterance).
    retried_empty: bool,
}

/// Splits a stream of samples into utterances.
#[derive(Debug)]
pub struct Segmenter {
    timeout: u64,
    gate: Gate,
    settings: VadSettings,
    in_speech: bool,
    position: u64,
    frame: Vec<f32>,
    preroll: VecDeque<f32>,
    preroll_samples: usize,
    open_after_frames: usize,
    voiced_run: usize,
    open: Option<Open>,
    speculative: Option<UtteranceAudio>,
    next_generation: u64,
}

fn rms(frame: &[f32]) -> f32 {
    (frame.iter().map(|x| x * x).sum::<f32>() / frame.len().max(1) as f32).sqrt()
}

impl Segmenter {
    /// `timeout`: samples of silence that end an utterance. Voice by energy (see
    /// [`Self::with_gate`] for the trained detector).
    pub fn new(timeout: u64) -> Self {
        Segmenter::with_gate(timeout, Gate::Energy, VadSettings::default())
    }

    pub fn with_gate(timeout: u64, gate: Gate, settings: VadSettings) -> Self {
        let preroll_samples = settings.speech_pad_ms as usize * 16;
        // `vad_kwargs` tune the trained detector; the energy gate opens after 64 ms.
        let min_speech = match gate {
            Gate::Silero(_) => settings.min_speech_duration_ms as usize * 16,
            Gate::Energy | Gate::Off => 1024,
        };
        let open_after_frames = min_speech.div_ceil(FRAME_SAMPLES).max(1);
        Segmenter {
            timeout: timeout.max(FRAME_SAMPLES as u64),
            gate,
            settings,
            in_speech: false,
            position: 0,
            frame: Vec::with_capacity(FRAME_SAMPLES),
            preroll: VecDeque::with_capacity(preroll_samples + FRAME_SAMPLES),
            preroll_samples,
            open_after_frames,
            voiced_run: 0,
            open: None,
            speculative: None,
            next_generation: 0,
        }
    }

    /// The voice-activity gate, as logged.
    pub fn gate_label(&self) -> &'static str {
        self.gate.label()
    }

    /// Samples consumed (whole frames; a partial frame waits for the rest).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Starts counting at `position` (the stream's first sample given to [`Self::push`]).
    pub fn set_position(&mut self, position: u64) {
        self.position = position;
    }

    /// The generation the next utterance will get.
    pub fn next_generation(&self) -> u64 {
        self.next_generation
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Generation of the open utterance.
    pub fn open_generation(&self) -> Option<u64> {
        self.open.as_ref().map(|o| o.generation)
    }

    /// Feeds samples; closed utterances are appended to `closed`, in order.
    pub fn push(&mut self, samples: &[f32], closed: &mut Vec<UtteranceAudio>) {
        for &s in samples {
            self.frame.push(s);
            if self.frame.len() == FRAME_SAMPLES {
                let frame = std::mem::replace(&mut self.frame, Vec::with_capacity(FRAME_SAMPLES));
                self.on_frame(&frame, closed);
            }
        }
    }

    /// Whether `frame` is voice (with the detector's hysteresis).
    fn voiced(&mut self, frame: &[f32], e: f32) -> bool {
        self.in_speech = match &mut self.gate {
            Gate::Silero(s) => {
                let p = s.probability(frame);
                if self.in_speech {
                    p >= self.settings.neg_threshold
                } else {
                    p >= self.settings.threshold
                }
            }
            Gate::Energy | Gate::Off => e > VAD_RMS,
        };
        self.in_speech
    }

    fn utterance(&self, generation: u64, start: u64, samples: Vec<f32>) -> UtteranceAudio {
        UtteranceAudio {
            generation,
            start,
            samples,
            spectral_guard: matches!(self.gate, Gate::Energy),
        }
    }

    fn on_frame(&mut self, frame: &[f32], closed: &mut Vec<UtteranceAudio>) {
        self.position += frame.len() as u64;
        let e = rms(frame);
        let voiced = self.voiced(frame, e);
        let tail = tail_samples().min(self.timeout);
        match &mut self.open {
            Some(open) => {
                open.samples.extend_from_slice(frame);
                open.energy.push(e);
                if voiced {
                    open.last_voice_end = self.position;
                    open.voice_since_interim = true;
                    open.speculated = false;
                    self.speculative = None;
                }
                if self.position >= open.last_voice_end + self.timeout {
                    let end = (open.last_voice_end + tail) - open.start;
                    let mut open = self.open.take().expect("open");
                    open.samples.truncate(end as usize);
                    closed.push(self.utterance(open.generation, open.start, open.samples));
                    self.speculative = None;
                    self.preroll.clear();
                    self.voiced_run = 0;
                } else if open.samples.len() >= MAX_UTTERANCE_SAMPLES {
                    self.speculative = None;
                    self.cut(closed);
                } else if !open.speculated
                    && tail < self.timeout
                    && self.position >= open.last_voice_end + tail
                {
                    open.speculated = true;
                    let end = (open.last_voice_end + tail - open.start) as usize;
                    let (generation, start) = (open.generation, open.start);
                    let samples = open.samples[..end.min(open.samples.len())].to_vec();
                    self.speculative = Some(self.utterance(generation, start, samples));
                }
            }
            None => {
                self.voiced_run = if voiced { self.voiced_run + 1 } else { 0 };
                self.preroll.extend(frame.iter().copied());
                if self.voiced_run >= self.open_after_frames {
                    let samples: Vec<f32> = self.preroll.drain(..).collect();
                    let start = self.position - samples.len() as u64;
                    let frames = samples.len() / FRAME_SAMPLES;
                    let energy = (0..frames)
                        .map(|i| rms(&samples[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES]))
                        .collect();
                    self.open = Some(Open {
                        generation: self.next_generation,
                        start,
                        samples,
                        energy,
                        last_voice_end: self.position,
                        next_interim: first_interim_samples(),
                        voice_since_interim: true,
                        speculated: false,
                        retried_empty: false,
                    });
                    self.next_generation += 1;
                } else {
                    // The pad before the speech, plus the frames that opened it.
                    let keep = self.preroll_samples + self.open_after_frames * FRAME_SAMPLES;
                    while self.preroll.len() > keep {
                        self.preroll.pop_front();
                    }
                }
            }
        }
    }

    /// Cuts the open (too long) utterance at its quietest 200 ms between 14 s and 27.5 s.
    fn cut(&mut self, closed: &mut Vec<UtteranceAudio>) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        let (from, to) = (CUT_FROM / FRAME_SAMPLES, CUT_TO / FRAME_SAMPLES);
        let to = to.min(open.energy.len().saturating_sub(CUT_WINDOW_FRAMES));
        let mut best = (f32::MAX, to.max(from));
        for f in from..to {
            let e: f32 = open.energy[f..f + CUT_WINDOW_FRAMES].iter().sum();
            if e < best.0 {
                best = (e, f);
            }
        }
        let cut = ((best.1 + CUT_WINDOW_FRAMES / 2) * FRAME_SAMPLES).min(open.samples.len());
        let rest = open.samples.split_off(cut);
        let rest_energy = open
            .energy
            .split_off((cut / FRAME_SAMPLES).min(open.energy.len()));
        let rest_start = open.start + cut as u64;
        closed.push(self.utterance(open.generation, open.start, open.samples));
        self.open = Some(Open {
            generation: self.next_generation,
            start: rest_start,
            samples: rest,
            energy: rest_energy,
            last_voice_end: open.last_voice_end.max(rest_start),
            next_interim: interim_every_samples(),
            voice_since_interim: true,
            speculated: false,
            retried_empty: false,
        });
        self.next_generation += 1;
    }

    /// The open utterance's audio so far, when an interim is due (once per further half
    /// second, if voice came since the last one).
    pub fn interim_due(&mut self) -> Option<UtteranceAudio> {
        let open = self.open.as_mut()?;
        if open.samples.len() < open.next_interim || !open.voice_since_interim {
            return None;
        }
        // The next one is due at the next point of this utterance's 0.5 s grid, not 0.5 s
        // from now: a request that waited for the rest of a frame or for the previous decode
        // does not push every later one back (which made interims 0.5 s plus that wait apart).
        let late = open.samples.len() - open.next_interim;
        let every = interim_every_samples();
        if interim_grid() {
            open.next_interim += every * (late / every + 1);
        } else {
            open.next_interim = open.samples.len() + every;
        }
        open.voice_since_interim = false;
        let (generation, start, samples) = (open.generation, open.start, open.samples.clone());
        Some(self.utterance(generation, start, samples))
    }

    /// The first interim of utterance `generation`, over its first `samples`, came back without
    /// words (mostly: the first word was not complete yet). Once per utterance, the next
    /// interim is then due [`EMPTY_RETRY_SAMPLES`] after that request instead of a whole step,
    /// so the first text does not wait for the next point of the grid; the grid continues
    /// from there.
    pub fn first_interim_was_empty(&mut self, generation: u64, samples: usize) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if open.generation != generation || open.retried_empty || !empty_retry() {
            return;
        }
        open.retried_empty = true;
        open.next_interim = open.next_interim.min(samples + EMPTY_RETRY_SAMPLES);
        open.voice_since_interim = true;
    }

    /// The audio the open utterance will close with if no voice comes back, once, as soon as
    /// the detector sees the speech end (see the module docs).
    pub fn take_speculative(&mut self) -> Option<UtteranceAudio> {
        self.speculative.take()
    }

    /// Closes the open utterance now (checkpoint): all its audio so far.
    pub fn close_now(&mut self) -> Option<UtteranceAudio> {
        let open = self.open.take()?;
        self.preroll.clear();
        self.voiced_run = 0;
        self.speculative = None;
        Some(self.utterance(open.generation, open.start, open.samples))
    }

    /// Forgets the open utterance and the recent audio (state clear).
    pub fn clear(&mut self) {
        self.open = None;
        self.speculative = None;
        self.preroll.clear();
        self.voiced_run = 0;
        self.in_speech = false;
        if let Gate::Silero(s) = &mut self.gate {
            s.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|i| amp * (i as f32 * 0.3).sin()).collect()
    }

    #[test]
    fn utterances_close_after_the_timeout_in_sample_time_whatever_the_chunking() {
        let mut audio = vec![0.0; 8000];
        audio.extend(tone(16000, 0.3));
        audio.extend(vec![0.0; 20000]);
        audio.extend(tone(8000, 0.3));
        audio.extend(vec![0.0; 20000]);
        let run = |chunk: usize| {
            let mut s = Segmenter::new(16000);
            let mut closed = Vec::new();
            for c in audio.chunks(chunk) {
                s.push(c, &mut closed);
            }
            closed
                .iter()
                .map(|u| (u.generation, u.start, u.samples.len()))
                .collect::<Vec<_>>()
        };
        let a = run(1);
        assert_eq!(a, run(1234));
        assert_eq!(a.len(), 2);
        // Starts the speech pad (200 ms) before the opening frames, ends 150 ms after the last
        // voiced frame (frames are 512 samples, so within a frame of the tone's edges).
        let (start, len) = (a[0].1 as usize, a[0].2);
        assert!(
            (8000 - 3200 - 2 * FRAME_SAMPLES..=8000 - 3200).contains(&start),
            "{start}"
        );
        let end = start + len;
        assert!(
            (24000 + TAIL_SAMPLES as usize..24000 + TAIL_SAMPLES as usize + FRAME_SAMPLES)
                .contains(&end),
            "{end}"
        );
    }

    #[test]
    fn the_speculative_audio_is_the_audio_the_utterance_closes_with() {
        let mut audio = vec![0.0; 8000];
        audio.extend(tone(16000, 0.3));
        audio.extend(vec![0.0; 8000]);
        audio.extend(tone(8000, 0.3));
        audio.extend(vec![0.0; 20000]);
        let mut s = Segmenter::new(16000);
        let mut closed = Vec::new();
        let mut offered = Vec::new();
        for c in audio.chunks(512) {
            s.push(c, &mut closed);
            offered.extend(s.take_speculative().map(|u| (u.key(), s.position())));
        }
        assert_eq!(closed.len(), 1, "a 0.5 s pause does not end the utterance");
        // Offered twice: after the first stretch (discarded: the voice came back) and after the
        // second, 150 ms (plus up to a frame) after the voice ended, long before the close.
        assert_eq!(offered.len(), 2, "{offered:?}");
        assert_ne!(offered[0].0, closed[0].key());
        assert_eq!(offered[1].0, closed[0].key());
        assert!(
            offered[1].1 < 8000 + 16000 + 8000 + 8000 + TAIL_SAMPLES + 2 * FRAME_SAMPLES as u64
        );
    }

    #[test]
    fn long_speech_is_cut_before_30_s_at_the_quietest_point() {
        let mut audio = tone(20 * 16000, 0.3);
        audio.extend(vec![0.0; 4000]);
        audio.extend(tone(15 * 16000, 0.3));
        let mut s = Segmenter::new(16000);
        let mut closed = Vec::new();
        s.push(&audio, &mut closed);
        assert_eq!(closed.len(), 1);
        let len = closed[0].samples.len();
        assert!(len > 20 * 16000 && len < 20 * 16000 + 4000, "{len}");
        assert!(s.is_open());
    }

    #[test]
    fn interims_stay_on_a_half_second_grid_whatever_the_frame_size() {
        // 100 ms frames do not divide into 32 ms hops: each request comes with the frame that
        // crosses its grid point, and the lateness never adds up.
        let audio = tone(10 * 16000, 0.3);
        let mut s = Segmenter::new(16000);
        let mut closed = Vec::new();
        let mut lengths = Vec::new();
        for c in audio.chunks(1600) {
            s.push(c, &mut closed);
            lengths.extend(s.interim_due().map(|u| u.samples.len()));
        }
        assert!(lengths.len() >= 18, "{lengths:?}");
        for (k, len) in lengths.iter().enumerate() {
            let due = first_interim_samples() + k * interim_every_samples();
            assert!(
                (due..due + 1600 + FRAME_SAMPLES).contains(len),
                "interim {k}: {len} samples, due at {due}: {lengths:?}"
            );
        }
    }

    #[test]
    fn an_empty_first_interim_is_asked_again_after_a_tenth_of_a_second_once() {
        let audio = tone(4 * 16000, 0.3);
        let mut s = Segmenter::new(16000);
        let mut closed = Vec::new();
        let mut requests: Vec<(u64, usize)> = Vec::new();
        for c in audio.chunks(800) {
            s.push(c, &mut closed);
            if let Some(u) = s.interim_due() {
                // The first and the retried interim come back empty; so does one of an
                // utterance that is no longer open.
                if requests.len() < 2 {
                    s.first_interim_was_empty(u.generation, u.samples.len());
                    s.first_interim_was_empty(u.generation + 1, u.samples.len());
                }
                requests.push((u.generation, u.samples.len()));
            }
        }
        let lengths: Vec<usize> = requests.iter().map(|r| r.1).collect();
        assert!(
            requests.iter().all(|r| r.0 == requests[0].0),
            "{requests:?}"
        );
        let first = first_interim_samples();
        assert!((first..first + 800).contains(&lengths[0]), "{lengths:?}");
        // Asked again 0.1 s later (with the hop that crosses that point), once; then on the
        // grid from there.
        let retry_due = lengths[0] + EMPTY_RETRY_SAMPLES;
        let every = interim_every_samples();
        for (k, due) in [retry_due, retry_due + every, retry_due + 2 * every]
            .into_iter()
            .enumerate()
        {
            assert!(
                (due..due + 800 + FRAME_SAMPLES).contains(&lengths[k + 1]),
                "request {}: due at {due}: {lengths:?}",
                k + 1
            );
        }
    }

    #[test]
    fn silence_opens_nothing() {
        let mut s = Segmenter::new(16000);
        let mut closed = Vec::new();
        s.push(&vec![0.001; 160000], &mut closed);
        assert!(closed.is_empty() && !s.is_open());
    }
}

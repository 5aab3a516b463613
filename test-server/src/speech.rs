// SPDX-License-Identifier: MPL-2.0
//! Utterances of real speech found by voice activity, in *sample time*: every decision depends
//! only on the samples received, never on the wall clock, so pushing a file as fast as possible
//! gives the same utterances (and the same finals) as playing it live.
//!
//! * Voice activity: 20 ms frames whose RMS exceeds [`VAD_RMS`] (−40 dBFS). Two such frames in a
//!   row open an utterance, which starts [`PREROLL_SAMPLES`] (200 ms) earlier.
//! * An utterance closes once `timeout` samples (`text_timeout_seconds`) without voice follow its
//!   last voiced frame; its audio runs to 300 ms (at most `timeout`) past that frame.
//! * Whisper sees at most 30 s: an utterance reaching [`MAX_UTTERANCE_SAMPLES`] (28 s) is cut at
//!   its quietest 200 ms between 14 s and 27.5 s, and the rest continues as a new utterance.
//! * Non-speech that is loud (tones, noise) does open utterances; the recogniser's no-speech
//!   probability keeps them from producing text.

use std::collections::VecDeque;

pub const FRAME_SAMPLES: usize = 320;
pub const VAD_RMS: f32 = 0.01;
pub const PREROLL_SAMPLES: usize = 3200;
pub const TAIL_SAMPLES: u64 = 4800;
pub const MAX_UTTERANCE_SAMPLES: usize = 28 * 16000;
const CUT_FROM: usize = 14 * 16000;
const CUT_TO: usize = 27 * 16000 + 8000;
const CUT_WINDOW_FRAMES: usize = 10;
/// An interim is due after each further second of utterance audio.
pub const INTERIM_EVERY_SAMPLES: usize = 16000;

/// A stretch of audio to decode; `start` is its first sample in connection time.
#[derive(Debug, Clone)]
pub struct UtteranceAudio {
    pub generation: u64,
    pub start: u64,
    pub samples: Vec<f32>,
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
}

/// Splits a stream of samples into utterances.
#[derive(Debug)]
pub struct Segmenter {
    timeout: u64,
    position: u64,
    frame: Vec<f32>,
    preroll: VecDeque<f32>,
    voiced_run: usize,
    open: Option<Open>,
    next_generation: u64,
}

fn rms(frame: &[f32]) -> f32 {
    (frame.iter().map(|x| x * x).sum::<f32>() / frame.len().max(1) as f32).sqrt()
}

impl Segmenter {
    /// `timeout`: samples of silence that end an utterance.
    pub fn new(timeout: u64) -> Self {
        Segmenter {
            timeout: timeout.max(FRAME_SAMPLES as u64),
            position: 0,
            frame: Vec::with_capacity(FRAME_SAMPLES),
            preroll: VecDeque::with_capacity(PREROLL_SAMPLES + FRAME_SAMPLES),
            voiced_run: 0,
            open: None,
            next_generation: 0,
        }
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

    fn on_frame(&mut self, frame: &[f32], closed: &mut Vec<UtteranceAudio>) {
        self.position += frame.len() as u64;
        let e = rms(frame);
        let voiced = e > VAD_RMS;
        match &mut self.open {
            Some(open) => {
                open.samples.extend_from_slice(frame);
                open.energy.push(e);
                if voiced {
                    open.last_voice_end = self.position;
                }
                if self.position >= open.last_voice_end + self.timeout {
                    let end = (open.last_voice_end + TAIL_SAMPLES.min(self.timeout)) - open.start;
                    let mut open = self.open.take().expect("open");
                    open.samples.truncate(end as usize);
                    closed.push(UtteranceAudio {
                        generation: open.generation,
                        start: open.start,
                        samples: open.samples,
                    });
                    self.preroll.clear();
                    self.voiced_run = 0;
                } else if open.samples.len() >= MAX_UTTERANCE_SAMPLES {
                    self.cut(closed);
                }
            }
            None => {
                self.voiced_run = if voiced { self.voiced_run + 1 } else { 0 };
                self.preroll.extend(frame.iter().copied());
                if self.voiced_run >= 2 {
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
                        next_interim: INTERIM_EVERY_SAMPLES,
                    });
                    self.next_generation += 1;
                } else {
                    let keep = PREROLL_SAMPLES + FRAME_SAMPLES;
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
        closed.push(UtteranceAudio {
            generation: open.generation,
            start: open.start,
            samples: open.samples,
        });
        self.open = Some(Open {
            generation: self.next_generation,
            start: rest_start,
            samples: rest,
            energy: rest_energy,
            last_voice_end: open.last_voice_end.max(rest_start),
            next_interim: INTERIM_EVERY_SAMPLES,
        });
        self.next_generation += 1;
    }

    /// The open utterance's audio so far, when an interim is due (once per further second).
    pub fn interim_due(&mut self) -> Option<UtteranceAudio> {
        let open = self.open.as_mut()?;
        if open.samples.len() < open.next_interim {
            return None;
        }
        open.next_interim = open.samples.len() + INTERIM_EVERY_SAMPLES;
        Some(UtteranceAudio {
            generation: open.generation,
            start: open.start,
            samples: open.samples.clone(),
        })
    }

    /// Closes the open utterance now (checkpoint): all its audio so far.
    pub fn close_now(&mut self) -> Option<UtteranceAudio> {
        let open = self.open.take()?;
        self.preroll.clear();
        self.voiced_run = 0;
        Some(UtteranceAudio {
            generation: open.generation,
            start: open.start,
            samples: open.samples,
        })
    }

    /// Forgets the open utterance and the recent audio (state clear).
    pub fn clear(&mut self) {
        self.open = None;
        self.preroll.clear();
        self.voiced_run = 0;
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
        assert_eq!(a[0].1, 8000 - PREROLL_SAMPLES as u64);
        assert_eq!(a[0].2, PREROLL_SAMPLES + 16000 + 4800);
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
    fn silence_opens_nothing() {
        let mut s = Segmenter::new(16000);
        let mut closed = Vec::new();
        s.push(&vec![0.001; 160000], &mut closed);
        assert!(closed.is_empty() && !s.is_open());
    }
}

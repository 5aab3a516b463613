// SPDX-License-Identifier: MPL-2.0
//! Whisper's log-mel spectrogram, computed as Whisper computes it (`whisper/audio.py`): 16 kHz
//! audio zero-padded to the 30 s window, a centred 400-point STFT (periodic Hann window, reflect
//! padding, hop 160) whose last frame is dropped, power spectrum, 80 Slaney-normalised mel filters
//! on the Slaney mel scale, `log10(max(x, 1e-10))`, clamped at `max − 8`, then `(x + 4) / 4`.
//! Whisper was trained on exactly these features; an approximation costs several points of WER.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_MELS: usize = 80;
/// Samples in Whisper's window (30 s at 16 kHz).
pub const WINDOW_SAMPLES: usize = 480_000;
/// Mel frames in Whisper's window.
pub const WINDOW_FRAMES: usize = WINDOW_SAMPLES / HOP;
const N_BINS: usize = N_FFT / 2 + 1;

/// Precomputed window, filters and FFT plan; cheap to share.
pub struct LogMel {
    window: Vec<f32>,
    /// `N_MELS` rows of `N_BINS` weights; `(first, last)` non-zero bin per row.
    filters: Vec<(usize, Vec<f32>)>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

fn hz_to_mel(f: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= MIN_LOG_HZ {
        min_log_mel + (f / MIN_LOG_HZ).ln() / logstep
    } else {
        f / F_SP
    }
}

fn mel_to_hz(m: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        MIN_LOG_HZ * (logstep * (m - min_log_mel)).exp()
    } else {
        F_SP * m
    }
}

impl LogMel {
    pub fn new() -> Self {
        // Periodic Hann window (torch.hann_window default).
        let window = (0..N_FFT)
            .map(|n| {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos()) as f32
            })
            .collect();
        // librosa.filters.mel(sr=16000, n_fft=400, n_mels=80), htk=False, norm="slaney".
        let sr = 16000.0f64;
        let fft_freqs: Vec<f64> = (0..N_BINS).map(|i| i as f64 * sr / N_FFT as f64).collect();
        let (mel_min, mel_max) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
        let mel_f: Vec<f64> = (0..N_MELS + 2)
            .map(|i| mel_to_hz(mel_min + (mel_max - mel_min) * i as f64 / (N_MELS + 1) as f64))
            .collect();
        let filters = (0..N_MELS)
            .map(|m| {
                let enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
                let row: Vec<f64> = fft_freqs
                    .iter()
                    .map(|&f| {
                        let lower = (f - mel_f[m]) / (mel_f[m + 1] - mel_f[m]);
                        let upper = (mel_f[m + 2] - f) / (mel_f[m + 2] - mel_f[m + 1]);
                        lower.min(upper).max(0.0) * enorm
                    })
                    .collect();
                let first = row.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&w| w > 0.0).unwrap_or(0);
                (
                    first,
                    row[first..=last.max(first)]
                        .iter()
                        .map(|&w| w as f32)
                        .collect(),
                )
            })
            .collect();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        LogMel {
            window,
            filters,
            fft,
        }
    }

    /// Features of one Whisper window, row-major `[N_MELS][WINDOW_FRAMES]`, for at most 30 s of
    /// audio in [-1, 1] (longer input is cut at 30 s).
    pub fn window_features(&self, audio: &[f32]) -> Vec<f32> {
        self.features(audio, WINDOW_FRAMES)
    }

    /// The first `frames` (at most [`WINDOW_FRAMES`]) frames of [`Self::window_features`], row-major
    /// `[N_MELS][frames]`, with the `max − 8` clamp taken over those frames.
    pub fn features(&self, audio: &[f32], frames: usize) -> Vec<f32> {
        let frames = frames.min(WINDOW_FRAMES);
        let audio = &audio[..audio.len().min(WINDOW_SAMPLES)];
        // Reflect padding of N_FFT/2 on both sides of the zero-padded 30 s signal.
        let pad = N_FFT / 2;
        let sample = |i: usize| -> f32 {
            // Index into the padded signal → index into the 30 s signal (reflect at both ends).
            let j = i as isize - pad as isize;
            let n = WINDOW_SAMPLES as isize;
            let k = if j < 0 {
                -j
            } else if j >= n {
                2 * (n - 1) - j
            } else {
                j
            };
            audio.get(k as usize).copied().unwrap_or(0.0)
        };
        let mut mel = vec![0f32; N_MELS * frames];
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f32; N_BINS];
        // Frames whose 400 samples are all past the audio are silent: their power is 0.
        let audio_frames = (audio.len() + pad).div_ceil(HOP).min(WINDOW_FRAMES);
        for t in 0..frames {
            if t < audio_frames {
                for (n, x) in input.iter_mut().enumerate() {
                    *x = sample(t * HOP + n) * self.window[n];
                }
                if self
                    .fft
                    .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                    .is_err()
                {
                    power.iter_mut().for_each(|p| *p = 0.0);
                } else {
                    for (p, c) in power.iter_mut().zip(&spectrum) {
                        *p = c.norm_sqr();
                    }
                }
            } else {
                power.iter_mut().for_each(|p| *p = 0.0);
            }
            for (m, (first, weights)) in self.filters.iter().enumerate() {
                let e: f32 = weights
                    .iter()
                    .zip(&power[*first..])
                    .map(|(w, p)| w * p)
                    .sum();
                mel[m * frames + t] = e.max(1e-10).log10();
            }
        }
        let max = mel.iter().copied().fold(f32::MIN, f32::max);
        for x in &mut mel {
            *x = (x.max(max - 8.0) + 4.0) / 4.0;
        }
        mel
    }
}

/// Which frames of [`LogMel::features`] are loud: the RMS of the 400 samples the frame's window
/// covers exceeds `rms`.
pub fn loud_frames(audio: &[f32], frames: usize, rms: f32) -> Vec<bool> {
    (0..frames)
        .map(|t| {
            let from = (t * HOP).saturating_sub(N_FFT / 2).min(audio.len());
            let to = (t * HOP + N_FFT / 2).min(audio.len());
            let w = &audio[from..to];
            !w.is_empty() && (w.iter().map(|x| x * x).sum::<f32>() / N_FFT as f32).sqrt() > rms
        })
        .collect()
}

/// How much the spectrum changes over time where the audio is loud: the standard deviation over
/// the frames marked in `loud` of each mel band of `features` (as from [`LogMel::features`] with
/// `frames` frames), in log10 units, averaged over the bands. Speech — syllables, changing
/// formants — gives about 1 or more; a steady tone or white noise well under 0.5.
pub fn spectral_modulation(features: &[f32], frames: usize, loud: &[bool]) -> f32 {
    let cols: Vec<usize> = (0..frames.min(loud.len())).filter(|&t| loud[t]).collect();
    if cols.len() < 2 {
        return 0.0;
    }
    let n = cols.len() as f64;
    let mut total = 0.0f64;
    for m in 0..N_MELS {
        let row = &features[m * frames..(m + 1) * frames];
        let mean = cols.iter().map(|&t| row[t] as f64).sum::<f64>() / n;
        let var = cols
            .iter()
            .map(|&t| (row[t] as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        // Features are (log10 + 4) / 4: back to log10 units.
        total += 4.0 * var.sqrt();
    }
    (total / N_MELS as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "calibration printout"]
    fn modulation_of_speech_tone_noise() {
        let mel = LogMel::new();
        let m = |a: &[f32]| {
            let frames = a.len() / HOP;
            let f = mel.features(a, frames);
            spectral_modulation(&f, frames, &loud_frames(a, frames, 0.01))
        };
        for clip in crate::evaluate::librivox_clips().unwrap() {
            let (_, _, s) = crate::evaluate::read_wav(&clip.path).unwrap();
            let a: Vec<f32> = s.iter().map(|&x| x as f32 / 32768.0).collect();
            eprintln!("librivox {:.3} (first 1 s {:.3})", m(&a), m(&a[..16000]));
        }
        for voice in ["en-us", "en+f3", "en-us+m3"] {
            let sp = crate::evaluate::espeak(
                "Please call me back when you have finished reading the report.",
                voice,
                170,
            )
            .unwrap();
            let a: Vec<f32> = (0..sp.samples.len() * 16000 / 22050)
                .map(|i| sp.samples[i * 22050 / 16000] as f32 / 32768.0)
                .collect();
            eprintln!(
                "espeak {voice} {:.3} (first 1 s {:.3})",
                m(&a),
                m(&a[..16000])
            );
        }
        let tone: Vec<f32> = (0..48000)
            .map(|i| 0.25 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16000.0).sin())
            .collect();
        eprintln!("tone {:.3}", m(&tone));
        let mut x = 12345u32;
        let noise: Vec<f32> = (0..48000)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((x >> 16) as i16) as f32 / 8.0 / 32768.0
            })
            .collect();
        eprintln!("noise {:.3}", m(&noise));
        let mut with_silence = vec![0.0f32; 3200];
        with_silence.extend_from_slice(&tone);
        with_silence.extend(vec![0.0f32; 4800]);
        eprintln!("tone with pre/post silence {:.3}", m(&with_silence));
        let mut with_silence = vec![0.0f32; 3200];
        with_silence.extend_from_slice(&noise);
        with_silence.extend(vec![0.0f32; 4800]);
        eprintln!("noise with pre/post silence {:.3}", m(&with_silence));
    }

    #[test]
    fn slaney_scale_round_trips() {
        for f in [0.0, 500.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(f)) - f).abs() < 1e-6);
        }
    }

    #[test]
    fn tone_energy_lands_in_the_right_band_and_padding_is_floor() {
        let mel = LogMel::new();
        let audio: Vec<f32> = (0..16000)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin())
            .collect();
        let f = mel.window_features(&audio);
        let fr = &f;
        let col = |t: usize| (0..N_MELS).map(move |m| fr[m * WINDOW_FRAMES + t]);
        let (best, _) = col(50)
            .enumerate()
            .fold((0, f32::MIN), |a, (m, x)| if x > a.1 { (m, x) } else { a });
        // 1 kHz is mel 15 on the Slaney scale; 80 filters span 0..=mel(8000) ≈ 45.2.
        let expected = (15.0 / hz_to_mel(8000.0) * 81.0).round() as usize;
        assert!(best.abs_diff(expected) <= 1, "peak in filter {best}");
        let max = f.iter().copied().fold(f32::MIN, f32::max);
        // Far past the audio: clamped floor (max − 8), i.e. (max_log − 8 + 4) / 4.
        assert!((f[2999] - (max - 2.0)).abs() < 1e-5);
    }
}

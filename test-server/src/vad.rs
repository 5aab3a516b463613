// SPDX-License-Identifier: MPL-2.0
//! Voice activity from a trained detector: Silero VAD v6 (`silero_vad.onnx` of PyPI
//! `silero-vad==6.2.3`), run by ONNX Runtime (`libonnxruntime.so.1.23.2` of PyPI
//! `onnxruntime==1.23.2`, loaded at run time through the `ort` crate's `load-dynamic`).
//!
//! * **Files:** the directory named by `FIREWORKSSTT_VAD_DIR`, else
//!   `${XDG_CACHE_HOME:-$HOME/.cache}/fireworksstt/models/silero-vad`, where
//!   `scripts/fetch-speech-model.sh` puts `silero_vad.onnx` and `libonnxruntime.so.1.23.2`
//!   (both pinned and sha256-checked). Loaded once per process on first use; one session is
//!   shared by every connection (the detector's recurrent state is an input, kept per stream).
//! * **Why Silero and not `earshot`:** measured side by side on the same noisy recordings
//!   (`benches/vad_compare.py`, BENCHMARKS.md): both find the pauses down to 5 dB SNR, but
//!   earshot flags 25–57 % of the frames of tones, sweeps, chords and a tone running into
//!   noise as speech, Silero none; at 0 dB SNR earshot misses 13–40 % of the pauses, Silero
//!   none. Its CPU cost (2.5 ms per second of audio) is negligible next to Whisper's.
//! * Without these files the server falls back to an energy threshold (and says so once).

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::value::Tensor;

/// Environment variable naming the detector's directory.
pub const VAD_DIR_ENV: &str = "FIREWORKSSTT_VAD_DIR";
/// The model file.
pub const MODEL_FILE: &str = "silero_vad.onnx";
/// The ONNX Runtime library (its API level 23 is what the `ort` crate is built for).
pub const RUNTIME_FILE: &str = "libonnxruntime.so.1.23.2";
/// Samples per detector decision at 16 kHz (32 ms).
pub const HOP_SAMPLES: usize = 512;
/// Samples of the previous hop the model sees before each hop.
const CONTEXT_SAMPLES: usize = 64;
/// The detector's name, as logged.
pub const VAD_NAME: &str = "silero-vad-v6";

/// The default detector directory (see the module docs).
pub fn default_vad_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(VAD_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("fireworksstt/models/silero-vad"))
}

/// The loaded model, shared by all streams.
pub struct SileroModel {
    session: Mutex<Session>,
}

impl SileroModel {
    /// Loads the runtime and the model from `dir`.
    pub fn load(dir: &std::path::Path) -> Result<SileroModel, String> {
        for f in [MODEL_FILE, RUNTIME_FILE] {
            if !dir.join(f).is_file() {
                return Err(format!("{} is missing", dir.join(f).display()));
            }
        }
        static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
        let env = ENV
            .get_or_init(|| {
                ort::init_from(dir.join(RUNTIME_FILE))
                    .map_err(|e| format!("loading ONNX Runtime: {e}"))?
                    .with_name("fireworksstt-vad")
                    .build()
                    .map_err(|e| format!("ONNX Runtime: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let session = Session::builder(env)
            .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
            .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
            .and_then(|mut b| b.commit_from_file(dir.join(MODEL_FILE)))
            .map_err(|e| format!("loading {MODEL_FILE}: {e}"))?;
        Ok(SileroModel {
            session: Mutex::new(session),
        })
    }

    /// The process-wide detector, loaded on first use from [`default_vad_dir`]; `None` (and one
    /// line on stderr, once) when it cannot be loaded.
    pub fn shared() -> Option<&'static SileroModel> {
        static SHARED: OnceLock<Option<SileroModel>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let loaded = match default_vad_dir() {
                    Some(dir) => SileroModel::load(&dir),
                    None => Err(format!("no detector directory (set {VAD_DIR_ENV})")),
                };
                match loaded {
                    Ok(m) => Some(m),
                    Err(e) => {
                        eprintln!(
                            "fireworks test server: no voice activity detector ({e}); run \
                             ./scripts/setup.sh to install Silero VAD — falling back to an energy \
                             threshold"
                        );
                        None
                    }
                }
            })
            .as_ref()
    }

    /// Speech probability of one hop, given the previous hop's last samples and the state.
    fn infer(&self, input: Vec<f32>, state: &mut Vec<f32>) -> Result<f32, String> {
        let e = |e: ort::Error| e.to_string();
        let input =
            Tensor::from_array(([1usize, CONTEXT_SAMPLES + HOP_SAMPLES], input)).map_err(e)?;
        let st = Tensor::from_array(([2usize, 1, 128], std::mem::take(state))).map_err(e)?;
        let sr = Tensor::from_array((Vec::<usize>::new(), vec![16000i64])).map_err(e)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs!["input" => input, "state" => st, "sr" => sr])
            .map_err(e)?;
        let (_, p) = outputs["output"].try_extract_tensor::<f32>().map_err(e)?;
        let (_, next) = outputs["stateN"].try_extract_tensor::<f32>().map_err(e)?;
        *state = next.to_vec();
        Ok(p.first().copied().unwrap_or(0.0))
    }
}

/// One stream's detector: feed it hops of [`HOP_SAMPLES`], get speech probabilities.
pub struct SileroStream {
    model: &'static SileroModel,
    state: Vec<f32>,
    context: Vec<f32>,
}

impl std::fmt::Debug for SileroStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SileroStream")
    }
}

impl SileroStream {
    pub fn new(model: &'static SileroModel) -> Self {
        SileroStream {
            model,
            state: vec![0.0; 2 * 128],
            context: vec![0.0; CONTEXT_SAMPLES],
        }
    }

    /// Speech probability of `hop` ([`HOP_SAMPLES`] samples in [-1, 1]); 0 if the runtime
    /// fails (never panics on audio).
    pub fn probability(&mut self, hop: &[f32]) -> f32 {
        let mut input = Vec::with_capacity(CONTEXT_SAMPLES + HOP_SAMPLES);
        input.extend_from_slice(&self.context);
        input.extend_from_slice(hop);
        input.resize(CONTEXT_SAMPLES + HOP_SAMPLES, 0.0);
        self.context
            .copy_from_slice(&input[input.len() - CONTEXT_SAMPLES..]);
        match self.model.infer(input, &mut self.state) {
            Ok(p) => p,
            Err(_) => {
                self.state = vec![0.0; 2 * 128];
                0.0
            }
        }
    }

    /// Forgets the recurrent state (stream restarted).
    pub fn reset(&mut self) {
        self.state = vec![0.0; 2 * 128];
        self.context = vec![0.0; CONTEXT_SAMPLES];
    }
}

/// The detector's settings, from the session's `vad_kwargs` (names as Silero's own
/// `get_speech_timestamps` takes them).
#[derive(Debug, Clone, PartialEq)]
pub struct VadSettings {
    /// A hop is speech at or above this probability.
    pub threshold: f32,
    /// Once in speech, a hop stays speech until its probability falls below this.
    pub neg_threshold: f32,
    /// Speech this long (ms) opens an utterance.
    pub min_speech_duration_ms: u32,
    /// Audio kept before the speech starts and after it ends (ms).
    pub speech_pad_ms: u32,
}

impl Default for VadSettings {
    fn default() -> Self {
        VadSettings {
            threshold: 0.5,
            neg_threshold: 0.35,
            min_speech_duration_ms: 64,
            speech_pad_ms: 200,
        }
    }
}

impl VadSettings {
    /// Settings from `vad_kwargs` (a JSON object); returns the keys it does not know (or whose
    /// value is not a number in range), which the connection's log line reports.
    pub fn from_kwargs(kwargs: Option<&serde_json::Value>) -> (VadSettings, Vec<String>) {
        let mut s = VadSettings::default();
        let mut unknown = Vec::new();
        let mut neg_given = false;
        if let Some(serde_json::Value::Object(map)) = kwargs {
            for (k, v) in map {
                let n = v.as_f64();
                match (k.as_str(), n) {
                    ("threshold", Some(x)) if (0.0..=1.0).contains(&x) => s.threshold = x as f32,
                    ("neg_threshold", Some(x)) if (0.0..=1.0).contains(&x) => {
                        s.neg_threshold = x as f32;
                        neg_given = true;
                    }
                    ("min_speech_duration_ms", Some(x)) if (0.0..=10_000.0).contains(&x) => {
                        s.min_speech_duration_ms = x as u32
                    }
                    ("speech_pad_ms", Some(x)) if (0.0..=1_000.0).contains(&x) => {
                        s.speech_pad_ms = x as u32
                    }
                    _ => unknown.push(k.clone()),
                }
            }
        }
        if !neg_given {
            // Silero's own default: 0.15 below the threshold.
            s.neg_threshold = (s.threshold - 0.15).max(0.01);
        }
        s.neg_threshold = s.neg_threshold.min(s.threshold);
        (s, unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kwargs_tune_the_detector_and_unknown_keys_are_returned() {
        let (s, unknown) = VadSettings::from_kwargs(Some(&json!({"threshold": 0.15})));
        assert_eq!(s.threshold, 0.15);
        assert!((s.neg_threshold - 0.01).abs() < 1e-6);
        assert!(unknown.is_empty());
        let (s, unknown) = VadSettings::from_kwargs(Some(
            &json!({"threshold": 2, "window": 3, "speech_pad_ms": 100, "neg_threshold": 0.2}),
        ));
        assert_eq!(s.threshold, 0.5);
        assert_eq!(s.speech_pad_ms, 100);
        assert_eq!(s.neg_threshold, 0.2);
        assert_eq!(unknown, vec!["threshold", "window"]);
        assert_eq!(VadSettings::from_kwargs(None).0, VadSettings::default());
    }

    /// Needs the installed detector (`./scripts/setup.sh`); skipped without it.
    #[test]
    fn silero_hears_speech_and_not_a_tone() {
        let Some(model) = SileroModel::shared() else {
            eprintln!("Silero VAD not installed; skipped");
            return;
        };
        let clips = crate::evaluate::librivox_clips().unwrap();
        let (_, _, samples) = crate::evaluate::read_wav(&clips[1].path).unwrap();
        let speech: Vec<f32> = samples.iter().map(|&s| s as f32 / 32768.0).collect();
        let tone: Vec<f32> = (0..48000)
            .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16000.0).sin())
            .collect();
        let share = |audio: &[f32]| {
            let mut s = SileroStream::new(model);
            let p: Vec<f32> = audio
                .chunks_exact(HOP_SAMPLES)
                .map(|h| s.probability(h))
                .collect();
            p.iter().filter(|&&p| p >= 0.5).count() as f64 / p.len() as f64
        };
        assert!(share(&speech) > 0.6, "{}", share(&speech));
        assert_eq!(share(&tone), 0.0);
    }
}

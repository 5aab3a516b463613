// SPDX-License-Identifier: MPL-2.0
//! Support for tests and benchmarks on real speech: WAV reading, text normalisation and word
//! error rate, the LibriVox clips of Debian's `pocketsphinx-testdata`, and espeak-ng speech with
//! espeak-ng's own word times (through `libespeak-ng.so.1`, loaded at run time).

use std::ffi::{c_char, c_int, c_short, c_uint, c_void, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where Debian's `pocketsphinx-testdata` puts the LibriVox utterances.
pub const LIBRIVOX_DIR: &str = "/usr/share/pocketsphinx/test/data/librivox";

/// Reads a 16-bit PCM WAV file: (sample rate, channels, interleaved samples).
pub fn read_wav(path: &Path) -> Result<(u32, u16, Vec<i16>), String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if data.len() < 12 || &data[0..4] != b"RIFF" || &data[8..12] != b"WAVE" {
        return Err(format!("{}: not a WAV file", path.display()));
    }
    let (mut rate, mut channels, mut bits) = (0u32, 0u16, 0u16);
    let mut pos = 12;
    while pos + 8 <= data.len() {
        let id = &data[pos..pos + 4];
        let len = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]])
            as usize;
        let body = &data[pos + 8..(pos + 8 + len).min(data.len())];
        if id == b"fmt " && body.len() >= 16 {
            channels = u16::from_le_bytes([body[2], body[3]]);
            rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            bits = u16::from_le_bytes([body[14], body[15]]);
        } else if id == b"data" {
            if bits != 16 || channels == 0 {
                return Err(format!("{}: not 16-bit PCM", path.display()));
            }
            let samples = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Ok((rate, channels, samples));
        }
        pos += 8 + len + (len & 1);
    }
    Err(format!("{}: no data chunk", path.display()))
}

/// A recording with its reference transcript.
#[derive(Debug, Clone)]
pub struct Clip {
    pub name: String,
    pub path: PathBuf,
    pub reference: String,
}

/// The LibriVox clips (real human speech, 16 kHz mono) with their transcripts, in file order.
pub fn librivox_clips() -> Result<Vec<Clip>, String> {
    let dir = Path::new(LIBRIVOX_DIR);
    let text = std::fs::read_to_string(dir.join("transcription")).map_err(|e| {
        format!("{LIBRIVOX_DIR}/transcription: {e} (install Debian's pocketsphinx-testdata)")
    })?;
    let mut clips = Vec::new();
    for line in text.lines() {
        let Some((words, id)) = line.rsplit_once('(') else {
            continue;
        };
        let name = id.trim_end_matches(')').trim().to_string();
        let reference = words
            .replace("<s>", "")
            .replace("</s>", "")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        clips.push(Clip {
            path: dir.join(format!("{name}.wav")),
            name,
            reference,
        });
    }
    Ok(clips)
}

/// Lower case, punctuation removed, a few spellings unified ("Mr." → "mister"), split into words.
pub fn normalize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace(['-', '—', '–'], " ")
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .map(|w| match w.as_str() {
            "mr" => "mister".to_string(),
            "mrs" => "missus".to_string(),
            "dr" => "doctor".to_string(),
            _ => w,
        })
        .collect()
}

/// Word-level edit distance between reference and hypothesis word lists.
pub fn edit_distance(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut cur = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(r != h))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[hypothesis.len()]
}

/// Word error rate of `hypothesis` against `reference` (normalised texts).
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (normalize(reference), normalize(hypothesis));
    edit_distance(&r, &h) as f64 / r.len().max(1) as f64
}

/// Speech synthesised by espeak-ng.
#[derive(Debug, Clone)]
pub struct Spoken {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
    /// (word as espeak-ng read it, start in seconds), in order.
    pub words: Vec<(String, f64)>,
}

#[repr(C)]
struct EspeakEvent {
    kind: c_int,
    unique_identifier: c_uint,
    text_position: c_int,
    length: c_int,
    audio_position: c_int,
    sample: c_int,
    user_data: *mut c_void,
    id: [u8; 8],
}

type SynthCallback = extern "C" fn(*mut c_short, c_int, *mut EspeakEvent) -> c_int;

type InitializeFn = extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type SetCallbackFn = extern "C" fn(SynthCallback);
type SetVoiceFn = extern "C" fn(*const c_char) -> c_int;
type SetParameterFn = extern "C" fn(c_int, c_int, c_int) -> c_int;
type SynthFn = extern "C" fn(
    *const c_void,
    usize,
    c_uint,
    c_int,
    c_uint,
    c_uint,
    *mut c_uint,
    *mut c_void,
) -> c_int;
type SynchronizeFn = extern "C" fn() -> c_int;

struct Espeak {
    set_voice: SetVoiceFn,
    set_parameter: SetParameterFn,
    synth: SynthFn,
    synchronize: SynchronizeFn,
    rate: u32,
}

/// What the callback collects (espeak-ng is driven from one thread at a time: the mutex).
struct Collect {
    samples: Vec<i16>,
    /// (text position (1-based characters), length, audio position ms).
    words: Vec<(usize, usize, i64)>,
}

static COLLECT: Mutex<Option<Collect>> = Mutex::new(None);
static ESPEAK: Mutex<Option<Result<Espeak, String>>> = Mutex::new(None);

extern "C" fn on_synth(wav: *mut c_short, n: c_int, events: *mut EspeakEvent) -> c_int {
    let Ok(mut guard) = COLLECT.try_lock() else {
        return 0;
    };
    let Some(c) = guard.as_mut() else {
        return 0;
    };
    if !wav.is_null() && n > 0 {
        // SAFETY: espeak-ng passes `n` valid samples at `wav`.
        let s = unsafe { std::slice::from_raw_parts(wav, n as usize) };
        c.samples.extend_from_slice(s);
    }
    let mut e = events;
    // SAFETY: the event list ends with an event of type 0 (espeakEVENT_LIST_TERMINATED).
    unsafe {
        while !e.is_null() && (*e).kind != 0 {
            if (*e).kind == 1 {
                c.words.push((
                    (*e).text_position.max(1) as usize,
                    (*e).length.max(0) as usize,
                    (*e).audio_position as i64,
                ));
            }
            e = e.add(1);
        }
    }
    0
}

fn load_espeak() -> Result<Espeak, String> {
    // SAFETY: plain dlopen/dlsym of libespeak-ng's documented C API (speak_lib.h), with the
    // signatures declared there.
    unsafe {
        let name = CString::new("libespeak-ng.so.1").expect("no NUL");
        let lib = libc::dlopen(name.as_ptr(), libc::RTLD_NOW);
        if lib.is_null() {
            return Err("libespeak-ng.so.1 not found (install Debian's espeak-ng)".into());
        }
        let sym = |n: &str| -> Result<*mut c_void, String> {
            let c = CString::new(n).expect("no NUL");
            let p = libc::dlsym(lib, c.as_ptr());
            if p.is_null() {
                Err(format!("libespeak-ng lacks {n}"))
            } else {
                Ok(p)
            }
        };
        let initialize =
            std::mem::transmute::<*mut c_void, InitializeFn>(sym("espeak_Initialize")?);
        let set_callback =
            std::mem::transmute::<*mut c_void, SetCallbackFn>(sym("espeak_SetSynthCallback")?);
        // AUDIO_OUTPUT_SYNCHRONOUS = 2; 0 = default buffer; no path; no options.
        let rate = initialize(2, 0, std::ptr::null(), 0);
        if rate <= 0 {
            return Err("espeak_Initialize failed".into());
        }
        set_callback(on_synth);
        Ok(Espeak {
            set_voice: std::mem::transmute::<*mut c_void, SetVoiceFn>(sym(
                "espeak_SetVoiceByName",
            )?),
            set_parameter: std::mem::transmute::<*mut c_void, SetParameterFn>(sym(
                "espeak_SetParameter",
            )?),
            synth: std::mem::transmute::<*mut c_void, SynthFn>(sym("espeak_Synth")?),
            synchronize: std::mem::transmute::<*mut c_void, SynchronizeFn>(sym(
                "espeak_Synchronize",
            )?),
            rate: rate as u32,
        })
    }
}

/// Speaks `text` with espeak-ng `voice` (e.g. "en-us", "en+f3") at `words_per_minute`, returning
/// the audio at espeak-ng's rate (22050 Hz) and each word's start as espeak-ng reports it.
pub fn espeak(text: &str, voice: &str, words_per_minute: i32) -> Result<Spoken, String> {
    let mut lib = ESPEAK.lock().unwrap_or_else(|p| p.into_inner());
    let lib = lib
        .get_or_insert_with(load_espeak)
        .as_ref()
        .map_err(Clone::clone)?;
    let voice_c = CString::new(voice).map_err(|e| e.to_string())?;
    let text_c = CString::new(text).map_err(|e| e.to_string())?;
    *COLLECT.lock().unwrap_or_else(|p| p.into_inner()) = Some(Collect {
        samples: Vec::new(),
        words: Vec::new(),
    });
    if (lib.set_voice)(voice_c.as_ptr()) != 0 {
        return Err(format!("espeak-ng has no voice {voice:?}"));
    }
    // espeakRATE = 1.
    (lib.set_parameter)(1, words_per_minute, 0);
    // POS_CHARACTER = 1, espeakCHARS_UTF8 = 1.
    let r = (lib.synth)(
        text_c.as_ptr() as *const c_void,
        text.len() + 1,
        0,
        1,
        0,
        1,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    (lib.synchronize)();
    let collected = COLLECT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or("nothing collected")?;
    if r != 0 {
        return Err(format!("espeak_Synth failed ({r})"));
    }
    let chars: Vec<char> = text.chars().collect();
    let words = collected
        .words
        .iter()
        .map(|&(pos, len, ms)| {
            let w: String = chars.iter().skip(pos - 1).take(len).collect();
            (w, ms as f64 / 1000.0)
        })
        .collect();
    Ok(Spoken {
        sample_rate: lib.rate,
        samples: collected.samples,
        words,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wer_counts_substitutions_insertions_deletions() {
        assert_eq!(word_error_rate("a b c d", "a x c d e"), 0.5);
        assert_eq!(word_error_rate("Mister Smith", "Mr. smith."), 0.0);
        assert_eq!(word_error_rate("a b", ""), 1.0);
    }
}

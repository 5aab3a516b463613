//! The transcript engine: decoded audio → Fireworks `verbose_json` messages. Pure, no I/O, so it
//! can also be driven directly (e.g. to produce realistic message sequences in unit tests).

use serde::Serialize;

use crate::audio::{samples_to_seconds, DecodeEvent, StreamDecoder};
use crate::config::ServerConfig;
use crate::query::SessionOptions;

/// The behaviour switches of the engine (taken from [`ServerConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    pub max_words_per_segment: usize,
    pub revise_partial_words: bool,
    pub grow_finalized_segment: bool,
    pub retract_trailing_segment: bool,
    pub send_string_ids: bool,
    pub finalize_on_checkpoint: bool,
}

impl From<&ServerConfig> for Behaviour {
    fn from(c: &ServerConfig) -> Self {
        Behaviour {
            max_words_per_segment: c.max_words_per_segment.max(1),
            revise_partial_words: c.revise_partial_words,
            grow_finalized_segment: c.grow_finalized_segment,
            retract_trailing_segment: c.retract_trailing_segment,
            send_string_ids: c.send_string_ids,
            finalize_on_checkpoint: c.finalize_on_checkpoint,
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
    language: &'a str,
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
    language: &'a str,
    text: String,
    segments: Vec<WireSegment<'a>>,
}

/// Probability written on every word.
pub const WORD_PROBABILITY: f64 = 0.9;

/// One connection's transcription state.
#[derive(Debug)]
pub struct Transcriber {
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
}

impl Transcriber {
    pub fn new(options: &SessionOptions, behaviour: Behaviour) -> Self {
        Transcriber {
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
        }
    }

    /// Samples received so far.
    pub fn position(&self) -> u64 {
        self.decoder.position()
    }

    /// Utterances finalized since the last call.
    pub fn take_finals(&mut self) -> Vec<FinalUtterance> {
        std::mem::take(&mut self.finals)
    }

    /// Decodes audio bytes; appends the messages to send.
    pub fn on_audio(&mut self, bytes: &[u8], out: &mut Vec<String>) {
        let mut events = std::mem::take(&mut self.events);
        self.decoder.push_bytes(bytes, &mut events);
        self.handle_events(&mut events, out);
        self.events = events;
    }

    /// A checkpoint: with `finalize_on_checkpoint`, the word in progress is ended and the open
    /// utterance finalized. The caller sends the echo after `out`.
    pub fn on_checkpoint(&mut self, out: &mut Vec<String>) {
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
        let mut fin = FinalUtterance {
            text: String::new(),
            words: Vec::new(),
            at_sample: self.decoder.position(),
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
            self.finals.push(fin);
        }
    }

    fn render(&self, segments: &[Segment]) -> String {
        let lang = self.language.as_str();
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
                    text,
                    start: self.segment_times.then(|| samples_to_seconds(first.start)),
                    end: self.segment_times.then(|| samples_to_seconds(last.end)),
                    words: s
                        .words
                        .iter()
                        .map(|w| WireWord {
                            word: &w.text,
                            language: lang,
                            probability: WORD_PROBABILITY,
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
            language: lang,
            text: texts.join(" "),
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

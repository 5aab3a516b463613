// SPDX-License-Identifier: MPL-2.0
//! `FireworksItemMeta`: what the service said about the text of one output buffer, carried on
//! the buffer as a registered `GstCustomMeta`, as `speechmaticstranscriber`
//! (`SpeechmaticsItemMeta`) and `awstranscriber2` (`AWSTranscribeItemMeta`) carry theirs.
//!
//! The meta's structure (named `FireworksItemMeta`) has, on every buffer:
//!
//! * `utterance` (guint64): the utterance the text belongs to (as in the bus messages);
//! * `final` (gboolean): true when the text comes from a final transcript, false for a word
//!   pushed early from an interim (`early-words`), which the final may still revise;
//! * `language` (string, when known): the language the service reported, else `language-code`;
//!
//! and, on a word buffer (`output-mode=words`), the word's own
//!
//! * `probability` (gdouble, when the service sent it): its confidence, 0–1;
//! * `hallucination-score` (gdouble, when sent): its estimate that the word was not spoken.
//!
//! An utterance buffer (`output-mode=utterances`) holds many words, so it carries no
//! probability of its own but `words`, a list of `word` structures in order, each with `text`,
//! `pts` and `duration` (GstClockTime, where the buffer's words lie on the timeline) and the
//! word's `probability` and `hallucination-score` when sent.

use gst::meta::CustomMeta;

/// The registered name of the meta, and of its structure.
pub const ITEM_META: &str = "FireworksItemMeta";

/// One word of an utterance buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct WordInfo {
    pub text: String,
    pub pts: gst::ClockTime,
    pub duration: gst::ClockTime,
    pub probability: Option<f64>,
    pub hallucination_score: Option<f64>,
}

/// What goes into the meta of one text buffer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ItemInfo {
    pub utterance: u64,
    pub is_final: bool,
    pub language: Option<String>,
    /// Word buffers only.
    pub probability: Option<f64>,
    /// Word buffers only.
    pub hallucination_score: Option<f64>,
    /// Utterance buffers only: the words behind the text.
    pub words: Vec<WordInfo>,
}

/// Registers the meta (once per process; later calls do nothing). Called from plugin_init, so
/// that applications can look the meta up by name before any buffer carries it.
pub fn register() {
    if !CustomMeta::is_registered(ITEM_META) {
        CustomMeta::register(ITEM_META, &[]);
    }
}

/// Attaches the meta described by `info` to `buffer`.
pub fn attach(buffer: &mut gst::BufferRef, info: &ItemInfo) {
    let Ok(mut meta) = CustomMeta::add(buffer, ITEM_META) else {
        // Only possible if the meta was not registered, which plugin_init does.
        return;
    };
    let s = meta.mut_structure();
    s.set("utterance", info.utterance);
    s.set("final", info.is_final);
    if let Some(language) = &info.language {
        s.set("language", language);
    }
    if let Some(p) = info.probability {
        s.set("probability", p);
    }
    if let Some(h) = info.hallucination_score {
        s.set("hallucination-score", h);
    }
    if !info.words.is_empty() {
        let words = gst::List::new(info.words.iter().map(|w| {
            let mut word = gst::Structure::builder("word")
                .field("text", &w.text)
                .field("pts", w.pts)
                .field("duration", w.duration);
            if let Some(p) = w.probability {
                word = word.field("probability", p);
            }
            if let Some(h) = w.hallucination_score {
                word = word.field("hallucination-score", h);
            }
            word.build()
        }));
        s.set("words", words);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_buffer_carries_its_fields() {
        gst::init().unwrap();
        register();
        register();
        let mut buffer = gst::Buffer::from_slice(b"hello");
        attach(
            buffer.get_mut().unwrap(),
            &ItemInfo {
                utterance: 3,
                is_final: false,
                language: Some("en".into()),
                probability: Some(0.75),
                hallucination_score: Some(0.125),
                words: Vec::new(),
            },
        );
        let meta = CustomMeta::from_buffer(&buffer, ITEM_META).expect("meta");
        let s = meta.structure();
        assert_eq!(s.get::<u64>("utterance").unwrap(), 3);
        assert!(!s.get::<bool>("final").unwrap());
        assert_eq!(s.get::<String>("language").unwrap(), "en");
        assert_eq!(s.get::<f64>("probability").unwrap(), 0.75);
        assert_eq!(s.get::<f64>("hallucination-score").unwrap(), 0.125);
        assert!(!s.has_field("words"));
    }
}

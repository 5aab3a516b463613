// SPDX-License-Identifier: MPL-2.0
//! Key terms folded into the free-text `prompt` (docs/protocol.md#key-terms).
//!
//! Other services take a list of terms to favour (Deepgram `keyterm`, AssemblyAI
//! `keyterms_prompt`, ElevenLabs `keyterms`); Fireworks has only `prompt`, which primes the
//! recogniser with text. The terms therefore go into the prompt, after any prompt text, in one
//! documented form:
//!
//! ```text
//! <prompt> Key terms: <term 1>, <term 2>, <term 3>.
//! ```
//!
//! Each term is trimmed and its inner whitespace collapsed to single spaces; empty terms and
//! repeats are dropped. A prompt conditions Whisper-family models through a context of at most
//! 224 tokens, so a list the model could not read whole is refused rather than silently cut:
//! at most [`MAX_KEYTERMS`] terms of at most [`MAX_KEYTERM_CHARS`] characters, and at most
//! [`MAX_KEYTERMS_TEXT_CHARS`] characters for the `Key terms: …` part.

use std::fmt;

/// Most terms in the list.
pub const MAX_KEYTERMS: usize = 100;
/// Longest single term, in characters.
pub const MAX_KEYTERM_CHARS: usize = 100;
/// Longest `Key terms: …` text, in characters (about 200 tokens of English).
pub const MAX_KEYTERMS_TEXT_CHARS: usize = 800;

const LEAD: &str = "Key terms: ";

/// Why a key-term list cannot be sent. The text names the `keyterms` property.
#[derive(Debug, Clone, PartialEq)]
pub enum KeytermsError {
    TooMany(usize),
    TermTooLong(String),
    TextTooLong(usize),
}

impl fmt::Display for KeytermsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany(n) => write!(
                f,
                "keyterms has {n} terms; at most {MAX_KEYTERMS} fit in the prompt the model reads"
            ),
            Self::TermTooLong(term) => write!(
                f,
                "keyterms: the term {:?}… is longer than {MAX_KEYTERM_CHARS} characters",
                term.chars().take(40).collect::<String>()
            ),
            Self::TextTooLong(n) => write!(
                f,
                "keyterms make {n} characters of prompt text; at most {MAX_KEYTERMS_TEXT_CHARS} \
                 fit in the prompt the model reads (drop some terms)"
            ),
        }
    }
}

impl std::error::Error for KeytermsError {}

/// The prompt to send: `prompt` (trimmed), then the key terms in the form above. `None` when
/// both are empty.
pub fn prompt_with_keyterms(
    prompt: Option<&str>,
    keyterms: &[String],
) -> Result<Option<String>, KeytermsError> {
    let mut terms: Vec<String> = Vec::new();
    for term in keyterms {
        let term = term.split_whitespace().collect::<Vec<_>>().join(" ");
        if term.is_empty() || terms.contains(&term) {
            continue;
        }
        if term.chars().count() > MAX_KEYTERM_CHARS {
            return Err(KeytermsError::TermTooLong(term));
        }
        terms.push(term);
    }
    if terms.len() > MAX_KEYTERMS {
        return Err(KeytermsError::TooMany(terms.len()));
    }
    let prompt = prompt.map(str::trim).filter(|p| !p.is_empty());
    if terms.is_empty() {
        return Ok(prompt.map(str::to_owned));
    }
    let text = format!("{LEAD}{}.", terms.join(", "));
    let chars = text.chars().count();
    if chars > MAX_KEYTERMS_TEXT_CHARS {
        return Err(KeytermsError::TextTooLong(chars));
    }
    Ok(Some(match prompt {
        Some(prompt) => format!("{prompt} {text}"),
        None => text,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn the_documented_form() {
        let both = prompt_with_keyterms(
            Some(" Minutes of the board. "),
            &terms(&["GStreamer", " Fireworks  AI ", "", "GStreamer"]),
        );
        assert_eq!(
            both.unwrap().as_deref(),
            Some("Minutes of the board. Key terms: GStreamer, Fireworks AI.")
        );
        assert_eq!(
            prompt_with_keyterms(None, &terms(&["Kubernetes"]))
                .unwrap()
                .as_deref(),
            Some("Key terms: Kubernetes.")
        );
        assert_eq!(
            prompt_with_keyterms(Some("only a prompt"), &[])
                .unwrap()
                .as_deref(),
            Some("only a prompt")
        );
        assert_eq!(
            prompt_with_keyterms(Some("  "), &terms(&[" "])).unwrap(),
            None
        );
    }

    #[test]
    fn lists_the_model_cannot_read_whole_are_refused() {
        let many: Vec<String> = (0..=MAX_KEYTERMS).map(|i| format!("t{i}")).collect();
        assert_eq!(
            prompt_with_keyterms(None, &many),
            Err(KeytermsError::TooMany(MAX_KEYTERMS + 1))
        );
        let long = "x".repeat(MAX_KEYTERM_CHARS + 1);
        assert!(matches!(
            prompt_with_keyterms(None, &[long]),
            Err(KeytermsError::TermTooLong(_))
        ));
        let wide: Vec<String> = (0..20).map(|i| format!("{i:0>60}")).collect();
        let err = prompt_with_keyterms(None, &wide).unwrap_err();
        assert!(matches!(err, KeytermsError::TextTooLong(_)));
        assert!(err.to_string().contains("keyterms"), "{err}");
        // Up to the bound is fine.
        let fits: Vec<String> = (0..8).map(|i| format!("{i}{}", "z".repeat(95))).collect();
        let text = prompt_with_keyterms(None, &fits).unwrap().unwrap();
        assert!(text.chars().count() <= MAX_KEYTERMS_TEXT_CHARS);
    }
}

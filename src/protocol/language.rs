// SPDX-License-Identifier: MPL-2.0
//! Maps the `language-code` property (BCP-47 or POSIX forms, as `transcriberbin` sets them) to
//! a language code the Fireworks service accepts (docs/protocol.md#validation).

use std::fmt;

/// The languages Fireworks documents for streaming transcription, in the documented order.
pub const SUPPORTED_LANGUAGES: &[&str] = &[
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it",
    "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur",
    "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn",
    "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si",
    "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo",
    "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln",
    "ha", "ba", "jw", "su", "yue", "zh-hant", "zh-hans",
];

/// Other names for supported languages: deprecated ISO 639-1 codes, English names and the
/// ISO 639-2/3 codes of the bigger languages. Keys are lowercase primary subtags.
const ALIASES: &[(&str, &str)] = &[
    ("iw", "he"),
    ("in", "id"),
    ("ji", "yi"),
    ("jv", "jw"),
    ("nb", "no"),
    ("english", "en"),
    ("eng", "en"),
    ("deu", "de"),
    ("ger", "de"),
    ("fra", "fr"),
    ("fre", "fr"),
    ("spa", "es"),
    ("jpn", "ja"),
    ("zho", "zh"),
    ("chi", "zh"),
    ("cmn", "zh"),
    ("por", "pt"),
    ("rus", "ru"),
    ("ita", "it"),
    ("kor", "ko"),
    ("ara", "ar"),
    ("hin", "hi"),
    ("nld", "nl"),
    ("dut", "nl"),
    ("tur", "tr"),
    ("pol", "pl"),
];

/// A `language-code` that maps to no language Fireworks supports.
#[derive(Debug, Clone, PartialEq)]
pub struct LanguageError {
    /// The code as the user gave it (surrounding whitespace removed).
    pub code: String,
}

impl fmt::Display for LanguageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "language-code '{}' is not supported by Fireworks; use one of: {}, \
             or leave it unset for auto-detection",
            self.code,
            SUPPORTED_LANGUAGES.join(", ")
        )
    }
}

impl std::error::Error for LanguageError {}

/// Turns a `language-code` value into the code to send as `language`.
///
/// `Ok(None)` means "let the server auto-detect" (empty, whitespace or `auto`).
pub fn normalize_language_code(code: &str) -> Result<Option<String>, LanguageError> {
    let trimmed = code.trim();
    // POSIX locales may carry a codeset or modifier (`en_US.UTF-8`, `ca_ES@valencia`).
    let without_posix_suffix = trimmed.split(['.', '@']).next().unwrap_or_default();
    let tag = without_posix_suffix.to_ascii_lowercase().replace('_', "-");

    if trimmed.is_empty() || tag == "auto" {
        return Ok(None);
    }
    if let Some(exact) = supported(&tag) {
        return Ok(Some(exact.to_owned()));
    }

    let mut subtags = tag.split('-');
    let primary = subtags.next().unwrap_or_default();
    let primary = alias_target(primary).unwrap_or(primary);
    let rest: Vec<&str> = subtags.collect();

    let resolved = if primary == "zh" {
        Some(chinese_variant(&rest))
    } else {
        supported(primary)
    };
    resolved
        .map(|c| Some(c.to_owned()))
        .ok_or_else(|| LanguageError {
            code: trimmed.to_owned(),
        })
}

/// Chinese is the one language where Fireworks distinguishes scripts, so a script subtag wins,
/// and regions that write Traditional Chinese map to `zh-hant`.
fn chinese_variant(subtags: &[&str]) -> &'static str {
    if subtags.contains(&"hant") {
        return "zh-hant";
    }
    if subtags.contains(&"hans") {
        return "zh-hans";
    }
    if subtags.iter().any(|s| matches!(*s, "tw" | "hk" | "mo")) {
        return "zh-hant";
    }
    "zh"
}

fn supported(code: &str) -> Option<&'static str> {
    SUPPORTED_LANGUAGES.iter().copied().find(|c| *c == code)
}

fn alias_target(primary: &str) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == primary)
        .map(|(_, target)| *target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(code: &str) -> Option<String> {
        normalize_language_code(code).expect("should be accepted")
    }

    #[test]
    fn list_matches_the_documented_order() {
        assert_eq!(SUPPORTED_LANGUAGES.len(), 102);
        assert_eq!(SUPPORTED_LANGUAGES[0], "en");
        assert_eq!(SUPPORTED_LANGUAGES[1], "zh");
        assert_eq!(&SUPPORTED_LANGUAGES[99..], &["yue", "zh-hant", "zh-hans"]);
        for code in SUPPORTED_LANGUAGES {
            assert_eq!(norm(code).as_deref(), Some(*code));
        }
    }

    #[test]
    fn unset_and_auto_mean_auto_detect() {
        for code in ["", "   ", "\t", "auto", "AUTO", " Auto "] {
            assert_eq!(norm(code), None, "{code:?}");
        }
    }

    #[test]
    fn exact_codes_any_case() {
        assert_eq!(norm("EN").as_deref(), Some("en"));
        assert_eq!(norm(" fr ").as_deref(), Some("fr"));
        assert_eq!(norm("zh-Hant").as_deref(), Some("zh-hant"));
        assert_eq!(norm("zh-Hans").as_deref(), Some("zh-hans"));
        assert_eq!(norm("zh_hant").as_deref(), Some("zh-hant"));
        assert_eq!(norm("YUE").as_deref(), Some("yue"));
        assert_eq!(norm("haw").as_deref(), Some("haw"));
    }

    #[test]
    fn regions_reduce_to_the_primary_subtag() {
        for (code, want) in [
            ("en-US", "en"),
            ("en_GB", "en"),
            ("en-us", "en"),
            ("pt-BR", "pt"),
            ("sr-Latn-RS", "sr"),
            ("yue-HK", "yue"),
            ("haw-US", "haw"),
            ("en_US.UTF-8", "en"),
            ("ca_ES@valencia", "ca"),
        ] {
            assert_eq!(norm(code).as_deref(), Some(want), "{code}");
        }
    }

    #[test]
    fn chinese_regions_and_scripts() {
        for (code, want) in [
            ("zh-TW", "zh-hant"),
            ("zh-HK", "zh-hant"),
            ("zh_MO", "zh-hant"),
            ("zh-CN", "zh"),
            ("zh-SG", "zh"),
            ("zh", "zh"),
            ("zh-Hant-TW", "zh-hant"),
            ("zh-Hans-CN", "zh-hans"),
            ("zh-Hans-HK", "zh-hans"),
            ("chi-TW", "zh-hant"),
            ("zho", "zh"),
        ] {
            assert_eq!(norm(code).as_deref(), Some(want), "{code}");
        }
    }

    #[test]
    fn aliases() {
        for (code, want) in [
            ("iw", "he"),
            ("iw-IL", "he"),
            ("in", "id"),
            ("ji", "yi"),
            ("jv", "jw"),
            ("nb", "no"),
            ("nb-NO", "no"),
            ("English", "en"),
            ("eng", "en"),
            ("deu", "de"),
            ("ger", "de"),
            ("fra", "fr"),
            ("fre", "fr"),
            ("spa", "es"),
            ("jpn", "ja"),
            ("chi", "zh"),
            ("cmn", "zh"),
            ("por", "pt"),
            ("rus", "ru"),
            ("ita", "it"),
            ("kor", "ko"),
            ("ara", "ar"),
            ("hin", "hi"),
            ("nld", "nl"),
            ("dut", "nl"),
            ("tur", "tr"),
            ("pol", "pl"),
        ] {
            assert_eq!(norm(code).as_deref(), Some(want), "{code}");
        }
    }

    #[test]
    fn every_alias_points_at_a_supported_code() {
        for (alias, target) in ALIASES {
            assert!(supported(target).is_some(), "{alias} -> {target}");
            assert!(supported(alias).is_none(), "{alias} shadows a real code");
        }
    }

    #[test]
    fn unknown_codes_are_refused_with_the_list() {
        for code in [
            "xx",
            "klingon",
            "-en",
            "e",
            "zz-US",
            "auto-detect",
            ".UTF-8",
            "@euro",
        ] {
            let err = normalize_language_code(code).expect_err(code);
            assert_eq!(err.code, code.trim());
        }
        let err = normalize_language_code(" xx ").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(
            "language-code 'xx' is not supported by Fireworks; use one of: en, zh, de,"
        ));
        assert!(text.contains("yue, zh-hant, zh-hans, or leave it unset for auto-detection"));
    }

    #[test]
    fn odd_input_does_not_panic() {
        for code in [
            "\u{0}",
            "--",
            "__",
            ".",
            "@",
            "é",
            "日本語",
            "zh-\u{301}",
            "-",
        ] {
            let _ = normalize_language_code(code);
        }
        assert!(normalize_language_code(".").is_err());
    }
}

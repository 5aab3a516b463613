// SPDX-License-Identifier: MPL-2.0
//! Request validation: path, query options and authentication.

/// The only path served. Clients use the base URL `ws://HOST:PORT/v1`.
pub const STREAMING_PATH: &str = "/v1/audio/transcriptions/streaming";

/// Supported language codes (docs/protocol.md#validation), matched case-insensitively.
pub const LANGUAGES: &[&str] = &[
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it",
    "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur",
    "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn",
    "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si",
    "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo",
    "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln",
    "ha", "ba", "jw", "su", "yue", "zh-hant", "zh-hans",
];

/// The query keys the server knows; others are ignored (but recorded).
pub const KNOWN_KEYS: &[&str] = &[
    "model",
    "language",
    "prompt",
    "temperature",
    "skip_vad",
    "vad_kwargs",
    "text_timeout_seconds",
    "response_format",
    "timestamp_granularities",
    "authorization",
];

/// Options of one session, parsed from the query string.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOptions {
    pub model: Option<String>,
    pub language: Option<String>,
    pub prompt: Option<String>,
    pub temperature: Option<f64>,
    pub skip_vad: Option<bool>,
    pub vad_kwargs: Option<serde_json::Value>,
    /// Default 1.0.
    pub text_timeout_seconds: f64,
    pub word_timestamps: bool,
    pub segment_timestamps: bool,
    /// Keys outside [`KNOWN_KEYS`], in order of appearance.
    pub unknown_keys: Vec<String>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            model: None,
            language: None,
            prompt: None,
            temperature: None,
            skip_vad: None,
            vad_kwargs: None,
            text_timeout_seconds: 1.0,
            word_timestamps: false,
            segment_timestamps: false,
            unknown_keys: Vec::new(),
        }
    }
}

impl SessionOptions {
    /// The language written into messages: the requested one, or "en".
    pub fn reported_language(&self) -> &str {
        self.language.as_deref().unwrap_or("en")
    }

    /// The text timeout in samples.
    pub fn text_timeout_samples(&self) -> u64 {
        (self.text_timeout_seconds * crate::audio::SAMPLE_RATE as f64).round() as u64
    }
}

/// Decodes a raw query string (`+` is a space, percent-escapes decoded) into ordered pairs,
/// repeated keys kept.
pub fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{key}: expected a boolean, got {v:?}")),
    }
}

fn parse_float(key: &str, v: &str) -> Result<f64, String> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .ok_or_else(|| format!("{key}: expected a number, got {v:?}"))
}

/// Validates the query options. An `Err` holds the text of the HTTP 400 body.
///
/// Repeated scalar keys: the last one wins (each one is still validated).
pub fn parse_options(pairs: &[(String, String)]) -> Result<SessionOptions, String> {
    let mut o = SessionOptions::default();
    for (key, value) in pairs {
        match key.as_str() {
            "model" => o.model = Some(value.clone()),
            "prompt" => o.prompt = Some(value.clone()),
            "language" => {
                let lower = value.trim().to_ascii_lowercase();
                if !LANGUAGES.contains(&lower.as_str()) {
                    return Err(format!("language: unsupported language code {value:?}"));
                }
                o.language = Some(value.trim().to_string());
            }
            "temperature" => o.temperature = Some(parse_float(key, value)?),
            "skip_vad" => o.skip_vad = Some(parse_bool(key, value)?),
            "vad_kwargs" => {
                let v: serde_json::Value = serde_json::from_str(value)
                    .ok()
                    .filter(|v: &serde_json::Value| v.is_object())
                    .ok_or_else(|| format!("vad_kwargs: expected a JSON object, got {value:?}"))?;
                o.vad_kwargs = Some(v);
            }
            "text_timeout_seconds" => {
                let t = parse_float(key, value)?;
                if !(1.0..=29.0).contains(&t) {
                    return Err(format!(
                        "text_timeout_seconds: {value} is outside the range 1.0 to 29.0"
                    ));
                }
                o.text_timeout_seconds = t;
            }
            "response_format" => {
                if value != "verbose_json" {
                    return Err(format!(
                        "response_format: only verbose_json is supported for streaming, got {value:?}"
                    ));
                }
            }
            "timestamp_granularities" => {
                for g in value.split(',').map(str::trim).filter(|g| !g.is_empty()) {
                    match g {
                        "word" => o.word_timestamps = true,
                        "segment" => o.segment_timestamps = true,
                        _ => {
                            return Err(format!(
                                "timestamp_granularities: unknown granularity {g:?} (word, segment)"
                            ))
                        }
                    }
                }
            }
            k if k.eq_ignore_ascii_case("authorization") => {}
            _ => o.unknown_keys.push(key.clone()),
        }
    }
    Ok(o)
}

/// Strips an optional `Bearer ` prefix (any case).
pub fn strip_bearer(value: &str) -> &str {
    let v = value.trim();
    match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => v[7..].trim(),
        _ => v,
    }
}

/// Checks the credentials: the `Authorization` header if present, else the `Authorization`
/// query parameter; raw key or `Bearer <key>`. Without a configured key everything passes.
pub fn check_auth(expected: Option<&str>, header: Option<&str>, query: Option<&str>) -> bool {
    match expected {
        None => true,
        Some(key) => header
            .or(query)
            .map(strip_bearer)
            .is_some_and(|given| given == key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        parse_query(Some(q))
    }

    #[test]
    fn reference_client_query_parses() {
        let q = "model=fireworks-asr-large&language=en&prompt=Um%2C+here%27s%2C+uh%2C+what+was+recorded.&temperature=0.0&skip_vad=False&vad_kwargs=%7B%22threshold%22%3A+0.15%7D&text_timeout_seconds=2.5&response_format=verbose_json&timestamp_granularities=word&timestamp_granularities=segment&max_retries=1";
        let p = pairs(q);
        assert_eq!(p[2].1, "Um, here's, uh, what was recorded.");
        let o = parse_options(&p).unwrap();
        assert_eq!(o.model.as_deref(), Some("fireworks-asr-large"));
        assert_eq!(o.language.as_deref(), Some("en"));
        assert_eq!(o.temperature, Some(0.0));
        assert_eq!(o.skip_vad, Some(false));
        assert_eq!(o.vad_kwargs, Some(serde_json::json!({"threshold": 0.15})));
        assert_eq!(o.text_timeout_seconds, 2.5);
        assert!(o.word_timestamps && o.segment_timestamps);
        assert_eq!(o.unknown_keys, vec!["max_retries"]);
        assert_eq!(o.text_timeout_samples(), 40000);
    }

    #[test]
    fn defaults_and_forms() {
        let o = parse_options(&[]).unwrap();
        assert_eq!(o.text_timeout_seconds, 1.0);
        assert_eq!(o.reported_language(), "en");
        assert!(!o.word_timestamps && !o.segment_timestamps);
        let o = parse_options(&pairs(
            "text_timeout_seconds=2&timestamp_granularities=word%2Csegment&skip_vad=TRUE",
        ))
        .unwrap();
        assert_eq!(o.text_timeout_seconds, 2.0);
        assert!(o.word_timestamps && o.segment_timestamps);
        assert_eq!(o.skip_vad, Some(true));
        let o = parse_options(&pairs("timestamp_granularities=segment&skip_vad=1")).unwrap();
        assert!(!o.word_timestamps && o.segment_timestamps);
        let o = parse_options(&pairs("language=zh-Hant")).unwrap();
        assert_eq!(o.reported_language(), "zh-Hant");
        for ok in ["1", "1.0", "29", "29.0", "12.75"] {
            assert!(parse_options(&pairs(&format!("text_timeout_seconds={ok}"))).is_ok());
        }
    }

    #[test]
    fn invalid_options_are_rejected() {
        for bad in [
            "text_timeout_seconds=0.5",
            "text_timeout_seconds=29.5",
            "text_timeout_seconds=abc",
            "text_timeout_seconds=NaN",
            "text_timeout_seconds=inf",
            "response_format=json",
            "timestamp_granularities=char",
            "skip_vad=maybe",
            "temperature=hot",
            "vad_kwargs=threshold",
            "vad_kwargs=%5B1%5D",
            "language=xx",
            "language=english",
        ] {
            assert!(parse_options(&pairs(bad)).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn auth_forms() {
        assert!(check_auth(None, None, None));
        assert!(check_auth(None, Some("whatever"), None));
        assert!(check_auth(Some("k1"), Some("k1"), None));
        assert!(check_auth(Some("k1"), Some("Bearer k1"), None));
        assert!(check_auth(Some("k1"), Some("bearer  k1"), None));
        assert!(check_auth(Some("k1"), None, Some("k1")));
        assert!(check_auth(Some("k1"), None, Some("Bearer k1")));
        assert!(!check_auth(Some("k1"), None, None));
        assert!(!check_auth(Some("k1"), Some("k2"), None));
        assert!(!check_auth(Some("k1"), Some("k2"), Some("k1")));
        assert!(!check_auth(Some("k1"), Some(""), None));
        assert!(!check_auth(Some("k1"), Some("Bearer"), None));
        assert_eq!(strip_bearer("Bearer"), "Bearer");
        assert_eq!(strip_bearer("  é"), "é");
    }
}

// SPDX-License-Identifier: MPL-2.0
//! Session options and the streaming URL built from them (docs/protocol.md#url,
//! docs/protocol.md#query-parameters, docs/protocol.md#validation).
//!
//! The query string is byte-for-byte what LiveKit's plugin (`livekit-plugins-fireworksai`) builds
//! with Python's `urlencode(..., doseq=True)`
//! produces, except for our deliberate fixes: `vad_kwargs` is JSON and the timestamp
//! granularities are requested by default.

use std::fmt;

use url::Url;

use super::options_format::{python_bool, python_float, quote_plus};

/// Appended to the base URL, after trailing slashes are stripped from it.
pub const STREAMING_PATH: &str = "/audio/transcriptions/streaming";

/// The only `response_format` the streaming endpoint supports.
pub const SUPPORTED_RESPONSE_FORMAT: &str = "verbose_json";

const MIN_TEXT_TIMEOUT_SECONDS: f64 = 1.0;
const MAX_TEXT_TIMEOUT_SECONDS: f64 = 29.0;

/// Everything that goes into the query string of one streaming session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOptions {
    pub model: Option<String>,
    /// An already-normalized Fireworks code; `None` lets the server auto-detect.
    pub language: Option<String>,
    pub prompt: Option<String>,
    pub temperature: Option<f64>,
    pub skip_vad: Option<bool>,
    pub vad_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    /// Seconds of silence before the server marks words final; 1.0..=29.0.
    pub text_timeout_seconds: f64,
    pub response_format: String,
    pub word_timestamps: bool,
    pub segment_timestamps: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            model: None,
            language: None,
            prompt: None,
            temperature: None,
            skip_vad: None,
            vad_kwargs: None,
            text_timeout_seconds: 1.0,
            response_format: SUPPORTED_RESPONSE_FORMAT.to_owned(),
            // Unlike LiveKit's plugin: our output buffers need word times.
            word_timestamps: true,
            segment_timestamps: true,
        }
    }
}

impl SessionOptions {
    /// Checks the values the service would reject, with errors that name the property to fix.
    pub fn validate(&self) -> Result<(), OptionsError> {
        let timeout = self.text_timeout_seconds;
        if !(MIN_TEXT_TIMEOUT_SECONDS..=MAX_TEXT_TIMEOUT_SECONDS).contains(&timeout) {
            return Err(OptionsError::TextTimeoutOutOfRange(timeout));
        }
        if self.response_format != SUPPORTED_RESPONSE_FORMAT {
            return Err(OptionsError::UnsupportedResponseFormat(
                self.response_format.clone(),
            ));
        }
        if let Some(temperature) = self.temperature.filter(|t| !t.is_finite()) {
            return Err(OptionsError::NonFiniteTemperature(temperature));
        }
        Ok(())
    }

    /// The query pairs in LiveKit's plugin's order, unset options left out.
    pub fn query_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        let mut push_text = |key, value: &Option<String>| {
            // An empty string is treated as unset: sending `model=` would only confuse the server.
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                pairs.push((key, value.to_owned()));
            }
        };
        push_text("model", &self.model);
        push_text("language", &self.language);
        push_text("prompt", &self.prompt);
        if let Some(temperature) = self.temperature {
            pairs.push(("temperature", python_float(temperature)));
        }
        if let Some(skip_vad) = self.skip_vad {
            pairs.push(("skip_vad", python_bool(skip_vad).to_owned()));
        }
        // An empty dict sends nothing in LiveKit's plugin either.
        if let Some(kwargs) = self.vad_kwargs.as_ref().filter(|k| !k.is_empty()) {
            let json = serde_json::Value::Object(kwargs.clone()).to_string();
            pairs.push(("vad_kwargs", json));
        }
        pairs.push((
            "text_timeout_seconds",
            python_float(self.text_timeout_seconds),
        ));
        pairs.push(("response_format", self.response_format.clone()));
        // A list goes out as repeated keys, never joined with commas
        // (docs/protocol.md#query-parameters).
        if self.word_timestamps {
            pairs.push(("timestamp_granularities", "word".to_owned()));
        }
        if self.segment_timestamps {
            pairs.push(("timestamp_granularities", "segment".to_owned()));
        }
        pairs
    }
}

/// Why no streaming URL could be built. Each message names the element property to fix.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionsError {
    /// The base URL did not parse; holds the parser's reason (not the URL, which may hold secrets).
    InvalidBaseUrl(String),
    /// The base URL's scheme is not `ws` or `wss`.
    UnsupportedScheme(String),
    /// The base URL carries a user name or password.
    CredentialsInBaseUrl,
    /// The base URL carries a query string.
    QueryInBaseUrl,
    /// The base URL carries a fragment.
    FragmentInBaseUrl,
    TextTimeoutOutOfRange(f64),
    UnsupportedResponseFormat(String),
    NonFiniteTemperature(f64),
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidBaseUrl(reason) => write!(
                f,
                "base-url is not a valid URL ({reason}); expected something like \
                 wss://audio-streaming.api.fireworks.ai/v1"
            ),
            Self::UnsupportedScheme(scheme) => {
                write!(f, "base-url must use ws:// or wss://, not {scheme}://")
            }
            Self::CredentialsInBaseUrl => write!(
                f,
                "base-url must not contain a user name or password; \
                 set the API key with the api-key property or FIREWORKS_API_KEY"
            ),
            Self::QueryInBaseUrl => write!(
                f,
                "base-url must not contain a query string; session options are set through \
                 the element's properties and the API key through api-key"
            ),
            Self::FragmentInBaseUrl => write!(f, "base-url must not contain a #fragment"),
            Self::TextTimeoutOutOfRange(value) => write!(
                f,
                "text-timeout-seconds must be between {MIN_TEXT_TIMEOUT_SECONDS:.1} and \
                 {MAX_TEXT_TIMEOUT_SECONDS:.1}, got {value}"
            ),
            Self::UnsupportedResponseFormat(value) => write!(
                f,
                "response-format '{value}' is not supported: the Fireworks streaming endpoint \
                 only supports {SUPPORTED_RESPONSE_FORMAT}"
            ),
            Self::NonFiniteTemperature(value) => {
                write!(f, "temperature must be a finite number, got {value}")
            }
        }
    }
}

impl std::error::Error for OptionsError {}

/// Builds `<base_url>/audio/transcriptions/streaming?<query>` for one session.
///
/// The base must be a plain `ws://` or `wss://` URL: a query, fragment or credentials are
/// refused, so the API key can never end up in a URL (it travels in the `Authorization` header).
pub fn streaming_url(base_url: &str, opts: &SessionOptions) -> Result<Url, OptionsError> {
    let mut url = Url::parse(base_url).map_err(|e| OptionsError::InvalidBaseUrl(e.to_string()))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(OptionsError::UnsupportedScheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OptionsError::CredentialsInBaseUrl);
    }
    // A bare `?` or `#` carries nothing, so only non-empty ones are refused.
    if url.query().is_some_and(|q| !q.is_empty()) {
        return Err(OptionsError::QueryInBaseUrl);
    }
    if url.fragment().is_some_and(|f| !f.is_empty()) {
        return Err(OptionsError::FragmentInBaseUrl);
    }
    opts.validate()?;

    let path = format!("{}{STREAMING_PATH}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_fragment(None);
    let query = opts
        .query_pairs()
        .iter()
        .map(|(key, value)| format!("{}={}", quote_plus(key), quote_plus(value)))
        .collect::<Vec<_>>()
        .join("&");
    url.set_query(Some(&query));
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "wss://audio-streaming.us-virginia-1.direct.fireworks.ai/v1";

    fn url_for(base: &str, opts: &SessionOptions) -> String {
        streaming_url(base, opts)
            .expect("valid options")
            .to_string()
    }

    fn query_for(opts: &SessionOptions) -> String {
        let url = streaming_url(BASE, opts).expect("valid options");
        url.query().unwrap_or_default().to_owned()
    }

    #[test]
    fn defaults() {
        assert_eq!(
            url_for(BASE, &SessionOptions::default()),
            "wss://audio-streaming.us-virginia-1.direct.fireworks.ai/v1\
             /audio/transcriptions/streaming?text_timeout_seconds=1.0&response_format=verbose_json\
             &timestamp_granularities=word&timestamp_granularities=segment"
        );
    }

    #[test]
    fn everything_set() {
        let mut kwargs = serde_json::Map::new();
        kwargs.insert("threshold".into(), serde_json::json!(0.15));
        let opts = SessionOptions {
            model: Some("fireworks-asr-large".into()),
            language: Some("en".into()),
            prompt: Some("Um, here's, uh, what was recorded.".into()),
            temperature: Some(0.0),
            skip_vad: Some(false),
            vad_kwargs: Some(kwargs),
            text_timeout_seconds: 2.5,
            ..SessionOptions::default()
        };
        assert_eq!(
            query_for(&opts),
            "model=fireworks-asr-large&language=en\
             &prompt=Um%2C+here%27s%2C+uh%2C+what+was+recorded.&temperature=0.0&skip_vad=False\
             &vad_kwargs=%7B%22threshold%22%3A0.15%7D&text_timeout_seconds=2.5\
             &response_format=verbose_json\
             &timestamp_granularities=word&timestamp_granularities=segment"
        );
    }

    #[test]
    fn prompt_is_encoded_like_python_quote_plus() {
        let opts = SessionOptions {
            prompt: Some("Grüße, 日本 a+b=c&d/e?f~g*h_i.j-k 'q' \"r\" #1 100%".into()),
            ..SessionOptions::default()
        };
        // urllib.parse.quote_plus of the same string.
        let want = "prompt=Gr%C3%BC%C3%9Fe%2C+%E6%97%A5%E6%9C%AC+a%2Bb%3Dc%26d%2Fe%3Ff~g%2Ah_i.j-k\
                    +%27q%27+%22r%22+%231+100%25&";
        assert!(query_for(&opts).starts_with(want), "{}", query_for(&opts));
    }

    #[test]
    fn scalars_are_rendered_like_python_str() {
        let opts = SessionOptions {
            temperature: Some(0.2),
            skip_vad: Some(true),
            text_timeout_seconds: 29.0,
            ..SessionOptions::default()
        };
        let query = query_for(&opts);
        assert!(query.starts_with("temperature=0.2&skip_vad=True&text_timeout_seconds=29.0&"));
    }

    #[test]
    fn vad_kwargs_is_compact_json() {
        let mut kwargs = serde_json::Map::new();
        kwargs.insert("threshold".into(), serde_json::json!(0.5));
        kwargs.insert("min_silence_ms".into(), serde_json::json!(300));
        kwargs.insert("mode".into(), serde_json::json!("fast lane"));
        let opts = SessionOptions {
            vad_kwargs: Some(kwargs),
            ..SessionOptions::default()
        };
        let url = streaming_url(BASE, &opts).unwrap();
        let sent: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(sent[0].0, "vad_kwargs");
        let decoded: serde_json::Value = serde_json::from_str(&sent[0].1).unwrap();
        assert_eq!(
            decoded,
            serde_json::json!({"threshold":0.5,"min_silence_ms":300,"mode":"fast lane"})
        );
        assert!(!sent[0].1.contains(": "), "compact JSON: {}", sent[0].1);
    }

    #[test]
    fn empty_values_are_left_out() {
        let opts = SessionOptions {
            model: Some(String::new()),
            prompt: Some(String::new()),
            vad_kwargs: Some(serde_json::Map::new()),
            ..SessionOptions::default()
        };
        assert!(query_for(&opts).starts_with("text_timeout_seconds=1.0&"));
    }

    #[test]
    fn granularities_are_repeated_keys_of_the_enabled_ones() {
        let only_word = SessionOptions {
            segment_timestamps: false,
            ..SessionOptions::default()
        };
        assert!(query_for(&only_word).ends_with("verbose_json&timestamp_granularities=word"));
        let only_segment = SessionOptions {
            word_timestamps: false,
            ..SessionOptions::default()
        };
        assert!(query_for(&only_segment).ends_with("verbose_json&timestamp_granularities=segment"));
        let neither = SessionOptions {
            word_timestamps: false,
            segment_timestamps: false,
            ..SessionOptions::default()
        };
        assert_eq!(
            query_for(&neither),
            "text_timeout_seconds=1.0&response_format=verbose_json"
        );
    }

    #[test]
    fn base_path_handling() {
        let tail = "?text_timeout_seconds=1.0&response_format=verbose_json\
                    &timestamp_granularities=word&timestamp_granularities=segment";
        let opts = SessionOptions::default();
        for (base, want) in [
            (
                "ws://127.0.0.1:9000/v1/",
                "ws://127.0.0.1:9000/v1/audio/transcriptions/streaming",
            ),
            (
                "ws://127.0.0.1:9000/v1//",
                "ws://127.0.0.1:9000/v1/audio/transcriptions/streaming",
            ),
            (
                "ws://127.0.0.1:9000",
                "ws://127.0.0.1:9000/audio/transcriptions/streaming",
            ),
            (
                "ws://127.0.0.1:9000/",
                "ws://127.0.0.1:9000/audio/transcriptions/streaming",
            ),
            (
                "WSS://Example.COM/a/b",
                "wss://example.com/a/b/audio/transcriptions/streaming",
            ),
            ("wss://h/v1?", "wss://h/v1/audio/transcriptions/streaming"),
        ] {
            assert_eq!(url_for(base, &opts), format!("{want}{tail}"), "{base}");
        }
    }

    #[test]
    fn refused_base_urls() {
        let opts = SessionOptions::default();
        let err = |base: &str| streaming_url(base, &opts).expect_err(base);
        assert!(matches!(err("https://h/v1"), OptionsError::UnsupportedScheme(s) if s == "https"));
        assert!(matches!(
            err("http://h/v1"),
            OptionsError::UnsupportedScheme(_)
        ));
        assert!(matches!(err("not a url"), OptionsError::InvalidBaseUrl(_)));
        assert!(matches!(err(""), OptionsError::InvalidBaseUrl(_)));
        assert!(matches!(err("wss://"), OptionsError::InvalidBaseUrl(_)));
        assert_eq!(
            err("wss://h/v1?Authorization=k"),
            OptionsError::QueryInBaseUrl
        );
        assert_eq!(err("wss://h/v1#frag"), OptionsError::FragmentInBaseUrl);
        assert_eq!(
            err("wss://user:secret@h/v1"),
            OptionsError::CredentialsInBaseUrl
        );
        assert_eq!(err("wss://key@h/v1"), OptionsError::CredentialsInBaseUrl);
        assert_eq!(
            err("wss://:secret@h/v1"),
            OptionsError::CredentialsInBaseUrl
        );

        let scheme = err("https://h/v1").to_string();
        assert!(
            scheme.contains("base-url") && scheme.contains("ws:// or wss://"),
            "{scheme}"
        );
        for e in [
            err("x"),
            err("wss://h?a=1"),
            err("wss://h#a"),
            err("wss://u:p@h"),
        ] {
            let text = e.to_string();
            assert!(text.contains("base-url"), "{text}");
            assert!(!text.contains("secret"), "{text}");
        }
    }

    #[test]
    fn refused_options() {
        let check = |opts: SessionOptions, property: &str| {
            let err = streaming_url(BASE, &opts).expect_err(property);
            assert!(err.to_string().contains(property), "{err}");
            err
        };
        for bad in [0.99, 29.01, -1.0, 0.0, f64::NAN, f64::INFINITY] {
            let opts = SessionOptions {
                text_timeout_seconds: bad,
                ..SessionOptions::default()
            };
            check(opts, "text-timeout-seconds");
        }
        let opts = SessionOptions {
            response_format: "json".into(),
            ..SessionOptions::default()
        };
        let err = check(opts, "response-format");
        assert!(err
            .to_string()
            .contains("the Fireworks streaming endpoint only supports verbose_json"));
        for bad in [f64::NAN, f64::NEG_INFINITY] {
            let opts = SessionOptions {
                temperature: Some(bad),
                ..SessionOptions::default()
            };
            check(opts, "temperature");
        }
    }

    #[test]
    fn range_limits_are_inclusive() {
        for ok in [1.0, 29.0] {
            let opts = SessionOptions {
                text_timeout_seconds: ok,
                ..SessionOptions::default()
            };
            assert_eq!(opts.validate(), Ok(()));
        }
    }
}

// SPDX-License-Identifier: MPL-2.0
//! The element's properties as plain values, and their translation into a client
//! configuration. Everything a user can get wrong is checked here, with a message that names
//! the property or variable to fix.

use std::path::PathBuf;

use gst::glib;
use std::time::Duration;

use url::Url;

use crate::client::{defaults, duration_to_bytes, ApiKey, ClientConfig, TlsSettings};
use crate::protocol::{
    normalize_language_code, prompt_with_keyterms, streaming_url, SessionOptions,
};

pub const API_KEY_ENV: &str = "FIREWORKS_API_KEY";
/// The endpoint when `base-url` is unset and the model is not [`V2_MODEL`]: the regional host
/// LiveKit's plugin also defaults to (docs/protocol.md#url).
pub const DEFAULT_BASE_URL: &str = "wss://audio-streaming.us-virginia-1.direct.fireworks.ai/v1";
/// The model served by the v2 endpoint, and that endpoint: clients pick the host by the model.
pub const V2_MODEL: &str = "fireworks-asr-v2";
pub const V2_BASE_URL: &str = "wss://audio-streaming-v2.api.fireworks.ai/v1";
// The network defaults are the client's (one source): here in the properties' units.
pub const DEFAULT_TEXT_TIMEOUT_SECONDS: f64 = defaults::TEXT_TIMEOUT.as_secs_f64();
pub const DEFAULT_CHUNK_DURATION_MS: u32 = ms(defaults::CHUNK_DURATION);
pub const DEFAULT_MAX_RETRIES: u32 = defaults::MAX_RETRIES;
pub const DEFAULT_RETRY_INTERVAL_MS: u32 = ms(defaults::RETRY_INTERVAL);
pub const DEFAULT_CONNECT_TIMEOUT_MS: u32 = ms(defaults::CONNECT_TIMEOUT);
pub const DEFAULT_DRAIN_TIMEOUT_MS: u32 = ms(defaults::DRAIN_TIMEOUT);
pub const DEFAULT_STALL_TIMEOUT_MS: u32 = ms(defaults::STALL_TIMEOUT);
pub const DEFAULT_LATENCY_MS: u32 = 3000;
pub const DEFAULT_LATENESS_MS: u32 = 0;
pub const DEFAULT_USAGE_INTERVAL_MS: u32 = ms(defaults::USAGE_INTERVAL);

/// A default duration in the whole milliseconds of a `u32` property (all are far below its
/// bound).
const fn ms(duration: Duration) -> u32 {
    duration.as_millis() as u32
}
pub const DEFAULT_RESPONSE_FORMAT: &str = "verbose_json";

/// How transcripts leave the src pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFireworksSttOutputMode")]
pub enum OutputMode {
    /// One buffer per final word, timed by the service's word times.
    #[default]
    #[enum_value(
        name = "One buffer per final word, timed by the service (for transcriberbin, tttocea608, textwrap)",
        nick = "words"
    )]
    Words = 0,
    /// One newline-terminated buffer per final utterance.
    #[enum_value(
        name = "One newline-terminated buffer per final utterance (for filesink, textoverlay)",
        nick = "utterances"
    )]
    Utterances = 1,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub api_key: Option<ApiKey>,
    /// `None` until set: then the model picks the endpoint ([`Settings::effective_base_url`]).
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub language_code: Option<String>,
    pub prompt: Option<String>,
    /// Folded into the prompt that is sent (docs/protocol.md#key-terms).
    pub keyterms: Vec<String>,
    /// `None` until set: only then is it sent.
    pub temperature: Option<f64>,
    /// `None` until set: only then is it sent.
    pub skip_vad: Option<bool>,
    /// Kept as given; turned into JSON when a session starts, so a bad field is reported then.
    pub vad_kwargs: Option<gst::Structure>,
    pub text_timeout_seconds: f64,
    pub word_timestamps: bool,
    pub segment_timestamps: bool,
    pub response_format: String,
    pub chunk_duration_ms: u32,
    pub max_retries: u32,
    pub retry_interval_ms: u32,
    pub connect_timeout_ms: u32,
    pub drain_timeout_ms: u32,
    pub stall_timeout_ms: u32,
    pub latency_ms: u32,
    pub lateness_ms: u32,
    pub output_mode: OutputMode,
    pub interim_results: bool,
    pub early_words: bool,
    pub usage_interval_ms: u32,
    pub tls_ca_file: Option<PathBuf>,
    pub allow_insecure_ws: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            api_key: None,
            base_url: None,
            model: None,
            language_code: None,
            prompt: None,
            keyterms: Vec::new(),
            temperature: None,
            skip_vad: None,
            vad_kwargs: None,
            text_timeout_seconds: DEFAULT_TEXT_TIMEOUT_SECONDS,
            word_timestamps: true,
            segment_timestamps: true,
            response_format: DEFAULT_RESPONSE_FORMAT.to_string(),
            chunk_duration_ms: DEFAULT_CHUNK_DURATION_MS,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_interval_ms: DEFAULT_RETRY_INTERVAL_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            drain_timeout_ms: DEFAULT_DRAIN_TIMEOUT_MS,
            stall_timeout_ms: DEFAULT_STALL_TIMEOUT_MS,
            latency_ms: DEFAULT_LATENCY_MS,
            lateness_ms: DEFAULT_LATENESS_MS,
            output_mode: OutputMode::Words,
            interim_results: true,
            early_words: true,
            usage_interval_ms: DEFAULT_USAGE_INTERVAL_MS,
            tls_ca_file: None,
            allow_insecure_ws: false,
        }
    }
}

/// Why a session could not be configured; `Display` is the text of the ERROR message.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingsError {
    MissingApiKey,
    Invalid(String),
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingsError::MissingApiKey => write!(
                f,
                "No Fireworks API key: set the api-key property or the {API_KEY_ENV} \
                 environment variable"
            ),
            SettingsError::Invalid(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for SettingsError {}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl Settings {
    /// The key from the property, else from the environment.
    pub fn resolve_api_key(&self) -> Result<ApiKey, SettingsError> {
        let key = match &self.api_key {
            Some(key) => Some(key.clone()),
            None => std::env::var(API_KEY_ENV).ok().map(ApiKey::new),
        };
        key.filter(|key| !key.is_empty())
            .ok_or(SettingsError::MissingApiKey)
    }

    /// The endpoint base: `base-url` when set, otherwise [`V2_BASE_URL`] for the model
    /// [`V2_MODEL`] and [`DEFAULT_BASE_URL`] for any other model or none.
    pub fn effective_base_url(&self) -> &str {
        match (&self.base_url, &self.model) {
            (Some(base), _) => base,
            (None, Some(model)) if model == V2_MODEL => V2_BASE_URL,
            (None, _) => DEFAULT_BASE_URL,
        }
    }

    pub fn session_options(&self) -> Result<SessionOptions, SettingsError> {
        let language = match &self.language_code {
            Some(code) => normalize_language_code(code)
                .map_err(|err| SettingsError::Invalid(err.to_string()))?,
            None => None,
        };
        Ok(SessionOptions {
            model: self.model.clone(),
            language,
            prompt: prompt_with_keyterms(self.prompt.as_deref(), &self.keyterms)
                .map_err(|err| SettingsError::Invalid(err.to_string()))?,
            temperature: self.temperature,
            skip_vad: self.skip_vad,
            vad_kwargs: self
                .vad_kwargs
                .as_ref()
                .map(|s| structure_to_json(s))
                .transpose()
                .map_err(SettingsError::Invalid)?,
            text_timeout_seconds: self.text_timeout_seconds,
            response_format: self.response_format.clone(),
            word_timestamps: self.word_timestamps,
            segment_timestamps: self.segment_timestamps,
        })
    }

    /// The streaming URL for the current options, refusing plain `ws://` to a remote host
    /// unless explicitly allowed: audio and transcripts would travel unencrypted.
    pub fn streaming_url(&self) -> Result<Url, SettingsError> {
        if !self.word_timestamps && !self.segment_timestamps {
            return Err(SettingsError::Invalid(
                "timestamp-granularities must include word or segment: without times the \
                 element cannot place text on the timeline nor replay audio after a drop"
                    .to_string(),
            ));
        }
        let options = self.session_options()?;
        let url = streaming_url(self.effective_base_url(), &options)
            .map_err(|err| SettingsError::Invalid(err.to_string()))?;
        if url.scheme() == "ws" && !is_loopback(&url) && !self.allow_insecure_ws {
            return Err(SettingsError::Invalid(format!(
                "base-url {} uses plain ws:// to a host other than this machine: the API key \
                 and audio would travel unencrypted. Use wss://, or set allow-insecure-ws=true \
                 if this is really wanted",
                self.effective_base_url()
            )));
        }
        Ok(url)
    }

    /// How long a non-live streaming thread may wait for room in the network queue: longer
    /// than the slowest reconnect (every attempt timing out, with the pauses between them, a
    /// rate limit's growing ones included), the longest write before a connection counts as
    /// stalled, and the longest hold at a full replay log, so that a file is slowed down but
    /// never loses audio to a passing outage.
    pub fn non_live_queue_wait(&self) -> Duration {
        let ms = |v: u32| u64::from(v);
        let attempts = ms(self.max_retries) + 1;
        let stall_timeouts = u64::from(crate::client::MAX_WRITE_STALL_TIMEOUTS) + 1;
        let pauses = crate::client::longest_pauses(
            Duration::from_millis(ms(self.retry_interval_ms)),
            self.max_retries,
        );
        Duration::from_millis(
            attempts * ms(self.connect_timeout_ms)
                + stall_timeouts * ms(self.stall_timeout_ms)
                + 5_000,
        )
        .saturating_add(pauses)
    }

    pub fn client_config(&self) -> Result<ClientConfig, SettingsError> {
        let url = self.streaming_url()?;
        let api_key = self.resolve_api_key()?;
        let mut cfg = ClientConfig::new(url, api_key);
        cfg.tls = TlsSettings {
            extra_ca_file: self.tls_ca_file.clone(),
        };
        cfg.chunk_bytes = duration_to_bytes(Duration::from_millis(self.chunk_duration_ms.into()));
        cfg.connect_timeout = Duration::from_millis(self.connect_timeout_ms.into());
        cfg.drain_timeout = Duration::from_millis(self.drain_timeout_ms.into());
        cfg.text_timeout = Duration::from_secs_f64(self.text_timeout_seconds);
        cfg.stall_timeout = Duration::from_millis(self.stall_timeout_ms.into());
        cfg.keepalive_interval = cfg.stall_timeout / defaults::KEEPALIVE_SHARE_OF_STALL;
        cfg.max_retries = self.max_retries;
        cfg.retry_interval = Duration::from_millis(self.retry_interval_ms.into());
        cfg.first_retry_delay = cfg.retry_interval.min(defaults::FIRST_RETRY_DELAY);
        cfg.usage_interval = Duration::from_millis(self.usage_interval_ms.into());
        Ok(cfg)
    }
}

/// Turns a `vad, threshold=0.15` structure into `{"threshold":0.15}`.
pub fn structure_to_json(
    structure: &gst::StructureRef,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut map = serde_json::Map::new();
    for (name, value) in structure.iter() {
        map.insert(name.to_string(), value_to_json(name, value)?);
    }
    Ok(map)
}

fn value_to_json(name: &str, value: &gst::glib::SendValue) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    if let Ok(v) = value.get::<bool>() {
        return Ok(Value::Bool(v));
    }
    if let Ok(v) = value.get::<i32>() {
        return Ok(Value::from(v));
    }
    if let Ok(v) = value.get::<u32>() {
        return Ok(Value::from(v));
    }
    if let Ok(v) = value.get::<i64>() {
        return Ok(Value::from(v));
    }
    if let Ok(v) = value.get::<u64>() {
        return Ok(Value::from(v));
    }
    if let Ok(v) = value.get::<f64>() {
        return serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| format!("vad-kwargs field {name}: {v} is not a finite number"));
    }
    if let Ok(v) = value.get::<f32>() {
        return serde_json::Number::from_f64(v.into())
            .map(Value::Number)
            .ok_or_else(|| format!("vad-kwargs field {name}: {v} is not a finite number"));
    }
    if let Ok(v) = value.get::<String>() {
        return Ok(Value::String(v));
    }
    Err(format!(
        "vad-kwargs field {name} has type {}; use numbers, booleans or strings",
        value.type_().name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_with_key() -> Settings {
        Settings {
            api_key: Some(ApiKey::new("k")),
            ..Settings::default()
        }
    }

    #[test]
    fn default_url_is_wss_with_both_granularities() {
        let url = settings_with_key().streaming_url().unwrap();
        assert_eq!(url.scheme(), "wss");
        assert!(url.as_str().ends_with(
            "/v1/audio/transcriptions/streaming?text_timeout_seconds=1.0&response_format=verbose_json&timestamp_granularities=word&timestamp_granularities=segment"
        ));
    }

    #[test]
    fn plain_ws_only_to_loopback_unless_allowed() {
        let mut s = settings_with_key();
        s.base_url = Some("ws://127.0.0.1:9/v1".into());
        assert!(s.streaming_url().is_ok());
        s.base_url = Some("ws://localhost:9/v1".into());
        assert!(s.streaming_url().is_ok());
        s.base_url = Some("ws://example.com/v1".into());
        let err = s.streaming_url().unwrap_err().to_string();
        assert!(err.contains("allow-insecure-ws"), "{err}");
        s.allow_insecure_ws = true;
        assert!(s.streaming_url().is_ok());
    }

    #[test]
    fn the_v2_model_picks_the_v2_host_unless_base_url_is_set() {
        let mut s = settings_with_key();
        let host = |s: &Settings| s.streaming_url().unwrap().host_str().unwrap().to_owned();
        assert_eq!(
            host(&s),
            "audio-streaming.us-virginia-1.direct.fireworks.ai"
        );
        s.model = Some("fireworks-asr-large".into());
        assert_eq!(
            host(&s),
            "audio-streaming.us-virginia-1.direct.fireworks.ai"
        );
        s.model = Some(V2_MODEL.into());
        assert_eq!(host(&s), "audio-streaming-v2.api.fireworks.ai");
        let url = s.streaming_url().unwrap();
        assert!(url
            .as_str()
            .starts_with("wss://audio-streaming-v2.api.fireworks.ai/v1/audio/transcriptions/streaming?model=fireworks-asr-v2&"));
        s.base_url = Some("wss://audio-streaming.api.fireworks.ai/v1".into());
        assert_eq!(host(&s), "audio-streaming.api.fireworks.ai");
    }

    #[test]
    fn language_codes_from_transcriberbin_are_mapped() {
        let mut s = settings_with_key();
        s.language_code = Some("en-US".into());
        assert!(s.streaming_url().unwrap().as_str().contains("language=en&"));
        s.language_code = Some("xx-YY".into());
        let err = s.streaming_url().unwrap_err().to_string();
        assert!(err.contains("language-code"), "{err}");
    }

    #[test]
    fn missing_key_names_property_and_variable() {
        let err = SettingsError::MissingApiKey.to_string();
        assert!(err.contains("api-key") && err.contains(API_KEY_ENV));
    }

    #[test]
    fn chunk_bytes_follow_chunk_duration() {
        let mut s = settings_with_key();
        s.chunk_duration_ms = 200;
        assert_eq!(s.client_config().unwrap().chunk_bytes, 6400);
    }
}

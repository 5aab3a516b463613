// SPDX-License-Identifier: MPL-2.0
//! The element's properties: their specs (what `gst-inspect-1.0 fireworksstt` shows) and how
//! they map onto [`Settings`]. Run-time statistics (`max-observed-delay`, `dropped-audio`) are
//! read in imp.rs.

use gst::glib;
use gst::prelude::*;

use crate::client::ApiKey;

use super::settings::{self, OutputMode, Settings};
use super::TimestampGranularities;

/// What `api-key` reads back as once set: never the key itself.
const API_KEY_MASK: &str = "*****";

/// Properties that change the service session: setting one in PLAYING moves the stream to a
/// new connection with the new query, without losing or repeating audio.
/// Property names the element's code uses outside this file.
pub const LANGUAGE_CODE: &str = "language-code";
pub const LATENCY: &str = "latency";
pub const MAX_OBSERVED_DELAY: &str = "max-observed-delay";
pub const DROPPED_AUDIO: &str = "dropped-audio";

pub const SESSION_OPTIONS: &[&str] = &[
    "model",
    LANGUAGE_CODE,
    "prompt",
    "keyterms",
    "temperature",
    "skip-vad",
    "vad-kwargs",
    "text-timeout-seconds",
    "timestamp-granularities",
];

pub fn specs() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("api-key")
            .nick("API key")
            .blurb(
                "Fireworks API key, sent only in the Authorization header. Unset: the \
                 FIREWORKS_API_KEY environment variable. Reads back masked",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("base-url")
            .nick("Base URL")
            .blurb(
                "Streaming endpoint base (wss://…/v1); /audio/transcriptions/streaming \
                 is appended. Unset: wss://audio-streaming-v2.api.fireworks.ai/v1 when model is \
                 fireworks-asr-v2, otherwise \
                 wss://audio-streaming.us-virginia-1.direct.fireworks.ai/v1; a value set here \
                 always wins. Plain ws:// is accepted only for this machine unless \
                 allow-insecure-ws is set",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("model")
            .nick("Model")
            .blurb("ASR model, e.g. fireworks-asr-large or fireworks-asr-v2 (which also picks the v2 endpoint while base-url is unset). Unset: the server's default")
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder(LANGUAGE_CODE)
            .nick("Language code")
            .blurb(
                "Spoken language, e.g. en or en-US (BCP-47 forms are mapped to \
                 Fireworks codes). Unset, empty or auto: auto-detect",
            )
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("prompt")
            .nick("Prompt")
            .blurb("Text that primes vocabulary or style (e.g. names, or keeping filler words)")
            .mutable_playing()
            .build(),
        gst::ParamSpecArray::builder("keyterms")
            .nick("Key terms")
            .blurb(
                "Words and names to favour (product names, jargon), as a list of strings. Sent \
                 inside the prompt as \"<prompt> Key terms: A, B, C.\"; at most 100 terms of at \
                 most 100 characters, 800 characters in all. gst-launch: \
                 keyterms=\"<GStreamer, Fireworks>\"",
            )
            .element_spec(&glib::ParamSpecString::builder("keyterm").build())
            .mutable_playing()
            .build(),
        glib::ParamSpecDouble::builder("temperature")
            .nick("Temperature")
            .blurb("Decoding temperature. Not sent until set (the server default is 0)")
            .minimum(0.0)
            .maximum(2.0)
            .default_value(0.0)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("skip-vad")
            .nick("Skip VAD")
            .blurb("Skip the server-side voice activity detection. Not sent until set")
            .default_value(false)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoxed::builder::<gst::Structure>("vad-kwargs")
            .nick("VAD arguments")
            .blurb(
                "Arguments for the server-side VAD, sent as a JSON object, e.g. \
                 \"vad, threshold=0.15\" gives {\"threshold\":0.15}",
            )
            .mutable_playing()
            .build(),
        glib::ParamSpecDouble::builder("text-timeout-seconds")
            .nick("Text timeout")
            .blurb("Seconds of silence after which the service marks an utterance final")
            .minimum(1.0)
            .maximum(29.0)
            .default_value(settings::DEFAULT_TEXT_TIMEOUT_SECONDS)
            .mutable_playing()
            .build(),
        glib::ParamSpecFlags::builder::<TimestampGranularities>("timestamp-granularities")
            .nick("Timestamp granularities")
            .blurb("Which times the service sends; output buffers need word times")
            .default_value(TimestampGranularities::WORD | TimestampGranularities::SEGMENT)
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("response-format")
            .nick("Response format")
            .blurb("Service response format; streaming supports only verbose_json")
            .default_value(Some(settings::DEFAULT_RESPONSE_FORMAT))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("chunk-duration")
            .nick("Chunk duration")
            .blurb("Milliseconds of audio in each WebSocket frame")
            .minimum(50)
            .maximum(400)
            .default_value(settings::DEFAULT_CHUNK_DURATION_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("max-retries")
            .nick("Maximum retries")
            .blurb("Reconnect attempts after a dropped connection or a transient handshake failure (reset by each final transcript)")
            .maximum(100)
            .default_value(settings::DEFAULT_MAX_RETRIES)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("retry-interval")
            .nick("Retry interval")
            .blurb("Milliseconds between reconnect attempts (the first comes after at most 100 ms)")
            .maximum(600_000)
            .default_value(settings::DEFAULT_RETRY_INTERVAL_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("connect-timeout")
            .nick("Connect timeout")
            .blurb("Milliseconds allowed for TCP connect, TLS and the WebSocket upgrade")
            .minimum(100)
            .maximum(600_000)
            .default_value(settings::DEFAULT_CONNECT_TIMEOUT_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("stall-timeout")
            .nick("Stall timeout")
            .blurb("Milliseconds without any frame from the service (a ping is sent after a third of it) before the connection counts as dead and is replaced")
            .minimum(300)
            .maximum(600_000)
            .default_value(settings::DEFAULT_STALL_TIMEOUT_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(DROPPED_AUDIO)
            .nick("Dropped audio")
            .blurb("Milliseconds of audio dropped because the network could not keep up with a live source")
            .read_only()
            .build(),
        glib::ParamSpecUInt::builder("drain-timeout")
            .nick("Drain timeout")
            .blurb("Milliseconds a service that answers may take to confirm the end of the stream (counted from the checkpoint and again from each final that arrives); then EOS goes on")
            .minimum(100)
            .maximum(600_000)
            .default_value(settings::DEFAULT_DRAIN_TIMEOUT_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(LATENCY)
            .nick("Latency")
            .blurb("Milliseconds added to upstream's latency when upstream is live: how long words may take to come back")
            .default_value(settings::DEFAULT_LATENCY_MS)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("lateness")
            .nick("Lateness")
            .blurb("Milliseconds by which the output running time is shifted (added to the segment base; a change applies from the next segment)")
            .default_value(settings::DEFAULT_LATENESS_MS)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder(MAX_OBSERVED_DELAY)
            .nick("Maximum observed delay")
            .blurb(
                "Largest delay of the words, in milliseconds. Live input: how far a word buffer \
                 lagged behind its running time when pushed. Non-live input: from sending a \
                 final's first word to receiving the final. Reset when the element starts",
            )
            .read_only()
            .build(),
        glib::ParamSpecEnum::builder_with_default("output-mode", OutputMode::Words)
            .nick("Output mode")
            .blurb("What the src pad carries: one buffer per word, or per utterance")
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("interim-results")
            .nick("Interim results")
            .blurb("Post interim (not yet final) transcripts on the bus")
            .default_value(true)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("early-words")
            .nick("Early words")
            .blurb(
                "With live input in words mode, push a word from the interim results \
                 when its deadline comes (running time + latency + lateness, less half the \
                 latency up to 1 s) instead of waiting for the final; later revisions of such \
                 a word are not reflected",
            )
            .default_value(true)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("usage-interval")
            .nick("Usage interval")
            .blurb("Milliseconds between fireworksstt/usage messages while audio flows")
            .minimum(100)
            .maximum(3_600_000)
            .default_value(settings::DEFAULT_USAGE_INTERVAL_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("tls-ca-file")
            .nick("TLS CA file")
            .blurb(
                "PEM file with extra certificates to trust for wss:// (private deployments): CA \
                 certificates, or the server's own self-signed certificate",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("allow-insecure-ws")
            .nick("Allow insecure ws://")
            .blurb("Allow a plain ws:// base-url to a host other than this machine")
            .default_value(false)
            .mutable_ready()
            .build(),
    ]
}

fn ms(value: &glib::Value) -> u32 {
    value.get().expect("type checked upstream")
}

fn flag(value: &glib::Value) -> bool {
    value.get().expect("type checked upstream")
}

fn optional_string(value: &glib::Value) -> Option<String> {
    value
        .get::<Option<String>>()
        .expect("type checked upstream")
        .filter(|s| !s.is_empty())
}

/// Stores a property value. Values are checked against their specs by GObject already; what
/// only a session can check (a language code, a URL) is checked when a session starts.
pub fn set(s: &mut Settings, name: &str, value: &glib::Value) {
    match name {
        "api-key" => s.api_key = optional_string(value).map(ApiKey::new),
        "base-url" => s.base_url = optional_string(value),
        "model" => s.model = optional_string(value),
        LANGUAGE_CODE => s.language_code = optional_string(value),
        "prompt" => s.prompt = optional_string(value),
        "keyterms" => {
            let list = value.get::<gst::Array>().expect("type checked upstream");
            s.keyterms = list
                .iter()
                .filter_map(|term| term.get::<String>().ok())
                .collect();
        }
        "temperature" => s.temperature = Some(value.get().expect("type checked upstream")),
        "skip-vad" => s.skip_vad = Some(flag(value)),
        "vad-kwargs" => {
            s.vad_kwargs = value
                .get::<Option<gst::Structure>>()
                .expect("type checked upstream")
        }
        "text-timeout-seconds" => {
            s.text_timeout_seconds = value.get().expect("type checked upstream")
        }
        "timestamp-granularities" => {
            let flags: TimestampGranularities = value.get().expect("type checked upstream");
            s.word_timestamps = flags.contains(TimestampGranularities::WORD);
            s.segment_timestamps = flags.contains(TimestampGranularities::SEGMENT);
        }
        "response-format" => {
            s.response_format = optional_string(value)
                .unwrap_or_else(|| settings::DEFAULT_RESPONSE_FORMAT.to_string())
        }
        "chunk-duration" => s.chunk_duration_ms = ms(value),
        "max-retries" => s.max_retries = ms(value),
        "retry-interval" => s.retry_interval_ms = ms(value),
        "connect-timeout" => s.connect_timeout_ms = ms(value),
        "drain-timeout" => s.drain_timeout_ms = ms(value),
        "stall-timeout" => s.stall_timeout_ms = ms(value),
        LATENCY => s.latency_ms = ms(value),
        "lateness" => s.lateness_ms = ms(value),
        "output-mode" => s.output_mode = value.get::<OutputMode>().expect("type checked upstream"),
        "interim-results" => s.interim_results = flag(value),
        "early-words" => s.early_words = flag(value),
        "usage-interval" => s.usage_interval_ms = ms(value),
        "tls-ca-file" => s.tls_ca_file = optional_string(value).map(Into::into),
        "allow-insecure-ws" => s.allow_insecure_ws = flag(value),
        other => unimplemented!("property {other}"),
    }
}

/// Reads a settings-backed property.
pub fn get(s: &Settings, name: &str) -> glib::Value {
    match name {
        // Never readable back in clear.
        "api-key" => s.api_key.as_ref().map(|_| API_KEY_MASK).to_value(),
        "base-url" => s.base_url.to_value(),
        "model" => s.model.to_value(),
        LANGUAGE_CODE => s.language_code.to_value(),
        "prompt" => s.prompt.to_value(),
        "keyterms" => gst::Array::new(&s.keyterms).to_value(),
        "temperature" => s.temperature.unwrap_or(0.0).to_value(),
        "skip-vad" => s.skip_vad.unwrap_or(false).to_value(),
        "vad-kwargs" => s.vad_kwargs.to_value(),
        "text-timeout-seconds" => s.text_timeout_seconds.to_value(),
        "timestamp-granularities" => {
            let mut flags = TimestampGranularities::empty();
            flags.set(TimestampGranularities::WORD, s.word_timestamps);
            flags.set(TimestampGranularities::SEGMENT, s.segment_timestamps);
            flags.to_value()
        }
        "response-format" => s.response_format.to_value(),
        "chunk-duration" => s.chunk_duration_ms.to_value(),
        "max-retries" => s.max_retries.to_value(),
        "retry-interval" => s.retry_interval_ms.to_value(),
        "connect-timeout" => s.connect_timeout_ms.to_value(),
        "drain-timeout" => s.drain_timeout_ms.to_value(),
        "stall-timeout" => s.stall_timeout_ms.to_value(),
        LATENCY => s.latency_ms.to_value(),
        "lateness" => s.lateness_ms.to_value(),
        "output-mode" => s.output_mode.to_value(),
        "interim-results" => s.interim_results.to_value(),
        "early-words" => s.early_words.to_value(),
        "usage-interval" => s.usage_interval_ms.to_value(),
        "tls-ca-file" => s
            .tls_ca_file
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .to_value(),
        "allow-insecure-ws" => s.allow_insecure_ws.to_value(),
        other => unimplemented!("property {other}"),
    }
}

//! The `fireworksstt` element: properties, pads, events, queries and state.
//!
//! Lock order: `output` → `state` → `settings` → a session's shared data. `output` is only
//! taken by the streaming thread (and on stop/flush, when streaming has stopped); the network
//! thread takes only `settings` and the shared data, never both at once.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_transform::GenerateOutputSuccess;
use gst_base::subclass::prelude::*;
use once_cell::sync::Lazy;

use crate::client::{ApiKey, PushError, SessionAbort, StreamClient};

use super::bridge::{new_shared, Bridge, Shared};
use super::output::{due_interim_words, items_for_final, OutputItem};
use super::settings::{self, OutputMode, Settings};
use super::TimestampGranularities;

pub static CAT: Lazy<gst::DebugCategory> = Lazy::new(|| {
    gst::DebugCategory::new(
        "fireworksstt",
        gst::DebugColorFlags::empty(),
        Some("Fireworks AI speech-to-text element"),
    )
});

const FINAL_TRANSCRIPT_EVENT: &str = "rstranscribe/final-transcript";
/// How long a live stream's streaming thread may wait for room in the network queue before
/// the frame is dropped (and counted): a live source must not be held up.
const LIVE_QUEUE_WAIT: Duration = Duration::from_millis(100);
/// The same for non-live input, where waiting is how a slow service slows the pipeline down.
const NON_LIVE_QUEUE_WAIT: Duration = Duration::from_secs(30);
const API_KEY_MASK: &str = "*****";
/// Properties that change the service session: setting one in PLAYING moves the stream to a
/// new connection with the new query, without losing or repeating audio.
const SESSION_OPTIONS: &[&str] = &[
    "model",
    "language-code",
    "prompt",
    "temperature",
    "skip-vad",
    "vad-kwargs",
    "text-timeout-seconds",
    "timestamp-granularities",
];

struct State {
    client: Option<StreamClient>,
    shared: Shared,
    /// The input segment, as received.
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// A fatal error was posted: refuse further data until flushed or restarted.
    failed: bool,
    /// `options_generation` the running session was configured with.
    options_generation: u64,
}

impl Default for State {
    fn default() -> Self {
        let segment = gst::FormattedSegment::<gst::ClockTime>::new();
        State {
            client: None,
            shared: new_shared(segment.clone()),
            segment,
            failed: false,
            options_generation: 0,
        }
    }
}

/// Where the src pad's stream has got to.
#[derive(Default)]
struct OutputState {
    position: Option<u64>,
    /// Utterance number and how many of its words went out early, from interims.
    early: (u64, usize),
}

/// Early words go out this long before their deadline (half the latency, at most a second).
fn early_margin_ms(latency_ms: u32) -> u32 {
    (latency_ms / 2).min(1000)
}

pub struct FireworksStt {
    pub(super) settings: Mutex<Settings>,
    state: Mutex<State>,
    output: Mutex<OutputState>,
    abort: Mutex<Option<SessionAbort>>,
    pub(super) max_observed_delay_ms: AtomicU32,
    pub(super) upstream_live: AtomicBool,
    dropped_audio_ms: AtomicU32,
    options_generation: AtomicU64,
}

#[glib::object_subclass]
impl ObjectSubclass for FireworksStt {
    const NAME: &'static str = "GstFireworksStt";
    type Type = super::FireworksStt;
    type ParentType = gst_base::BaseTransform;

    fn new() -> Self {
        FireworksStt {
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            output: Mutex::new(OutputState::default()),
            abort: Mutex::new(None),
            max_observed_delay_ms: AtomicU32::new(0),
            upstream_live: AtomicBool::new(false),
            dropped_audio_ms: AtomicU32::new(0),
            options_generation: AtomicU64::new(0),
        }
    }
}

fn ms(value: &glib::Value) -> u32 {
    value.get().expect("type checked upstream")
}

fn optional_string(value: &glib::Value) -> Option<String> {
    value
        .get::<Option<String>>()
        .expect("type checked upstream")
        .filter(|s| !s.is_empty())
}

impl ObjectImpl for FireworksStt {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
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
                         is appended. Plain ws:// is accepted only for this machine unless \
                         allow-insecure-ws is set",
                    )
                    .default_value(Some(settings::DEFAULT_BASE_URL))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("ASR model, e.g. fireworks-asr-large or fireworks-asr-v2. Unset: the server's default")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("language-code")
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
                glib::ParamSpecUInt::builder("dropped-audio")
                    .nick("Dropped audio")
                    .blurb("Milliseconds of audio dropped because the network could not keep up with a live source")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("drain-timeout")
                    .nick("Drain timeout")
                    .blurb("Milliseconds to wait at end of stream for the final transcript before EOS goes on")
                    .minimum(100)
                    .maximum(600_000)
                    .default_value(settings::DEFAULT_DRAIN_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Latency")
                    .blurb("Milliseconds added to upstream's latency when upstream is live: how long words may take to come back")
                    .default_value(settings::DEFAULT_LATENCY_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("lateness")
                    .nick("Lateness")
                    .blurb("Milliseconds by which the output running time is shifted (added to the segment base)")
                    .default_value(settings::DEFAULT_LATENESS_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-observed-delay")
                    .nick("Maximum observed delay")
                    .blurb("Largest delay seen between sending audio and receiving its words, in milliseconds")
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
                         when its deadline (PTS + latency) is near instead of waiting for the \
                         final; later revisions of such a word are not reflected",
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
                    .blurb("PEM file with extra CA certificates to trust for wss:// (private deployments)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("allow-insecure-ws")
                    .nick("Allow insecure ws://")
                    .blurb("Allow a plain ws:// base-url to a host other than this machine")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if SESSION_OPTIONS.contains(&pspec.name()) {
            // A running session picks the change up at its next buffer.
            self.options_generation.fetch_add(1, Ordering::Relaxed);
        }
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "api-key" => s.api_key = optional_string(value).map(ApiKey::new),
            "base-url" => {
                s.base_url =
                    optional_string(value).unwrap_or_else(|| settings::DEFAULT_BASE_URL.to_string())
            }
            "model" => s.model = optional_string(value),
            "language-code" => {
                let code = optional_string(value);
                if let Some(code) = &code {
                    if let Err(err) = crate::protocol::normalize_language_code(code) {
                        gst::warning!(CAT, imp = self, "{err}");
                    }
                }
                s.language_code = code;
            }
            "prompt" => s.prompt = optional_string(value),
            "temperature" => s.temperature = Some(value.get().expect("type checked upstream")),
            "skip-vad" => s.skip_vad = Some(value.get().expect("type checked upstream")),
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
            "latency" => {
                s.latency_ms = ms(value);
                drop(s);
                let _ = self
                    .obj()
                    .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
            }
            "lateness" => s.lateness_ms = ms(value),
            "output-mode" => s.output_mode = value.get().expect("type checked upstream"),
            "interim-results" => s.interim_results = value.get().expect("type checked upstream"),
            "early-words" => s.early_words = value.get().expect("type checked upstream"),
            "usage-interval" => s.usage_interval_ms = ms(value),
            "tls-ca-file" => s.tls_ca_file = optional_string(value).map(Into::into),
            "allow-insecure-ws" => {
                s.allow_insecure_ws = value.get().expect("type checked upstream")
            }
            other => unimplemented!("property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            // Never readable back in clear.
            "api-key" => s.api_key.as_ref().map(|_| API_KEY_MASK).to_value(),
            "base-url" => s.base_url.to_value(),
            "model" => s.model.to_value(),
            "language-code" => s.language_code.to_value(),
            "prompt" => s.prompt.to_value(),
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
            "dropped-audio" => self.dropped_audio_ms.load(Ordering::Relaxed).to_value(),
            "latency" => s.latency_ms.to_value(),
            "lateness" => s.lateness_ms.to_value(),
            "max-observed-delay" => self
                .max_observed_delay_ms
                .load(Ordering::Relaxed)
                .to_value(),
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
}

impl GstObjectImpl for FireworksStt {}

impl ElementImpl for FireworksStt {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: Lazy<gst::subclass::ElementMetadata> = Lazy::new(|| {
            gst::subclass::ElementMetadata::new(
                "Transcriber",
                "Audio/Text/Filter",
                "Speech to Text filter, using the Fireworks AI streaming speech-to-text service. \
                 Outputs timed words (or utterances) and posts fireworksstt/* bus messages; \
                 usable as transcriberbin's transcriber",
                "fireworksstt developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: Lazy<Vec<gst::PadTemplate>> = Lazy::new(|| {
            let sink_caps = gst_audio::AudioCapsBuilder::new_interleaved()
                .format(gst_audio::AudioFormat::S16le)
                .rate(16_000)
                .channels(1)
                .build();
            let src_caps = gst::Caps::builder("text/x-raw")
                .field("format", "utf8")
                .build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &sink_caps,
                )
                .expect("valid sink template"),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &src_caps,
                )
                .expect("valid src template"),
            ]
        });
        TEMPLATES.as_ref()
    }
}

fn template_caps(direction: gst::PadDirection) -> gst::Caps {
    FireworksStt::pad_templates()
        .iter()
        .find(|t| t.direction() == direction)
        .map(|t| t.caps().clone())
        .unwrap_or_else(gst::Caps::new_empty)
}

impl BaseTransformImpl for FireworksStt {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::NeverInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.reset(true);
        // Statistics describe one run; they stay readable after it stops.
        self.dropped_audio_ms.store(0, Ordering::Relaxed);
        self.max_observed_delay_ms.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.reset(true);
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        _caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        // Audio on one side always means text on the other, and back.
        let other = match direction {
            gst::PadDirection::Sink => template_caps(gst::PadDirection::Src),
            _ => template_caps(gst::PadDirection::Sink),
        };
        Some(match filter {
            Some(filter) => filter.intersect_with_mode(&other, gst::CapsIntersectMode::First),
            None => other,
        })
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Src {
            if let gst::QueryViewMut::Latency(q) = query.view_mut() {
                return self.answer_latency(q);
            }
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Eos(_) => {
                self.finish_stream();
                self.parent_sink_event(event)
            }
            gst::EventView::FlushStart(_) => {
                self.abort_session();
                self.parent_sink_event(event)
            }
            gst::EventView::FlushStop(_) => {
                self.reset(false);
                self.parent_sink_event(event)
            }
            gst::EventView::Segment(e) => {
                let Some(event) = self.on_segment(e.segment(), event.seqnum()) else {
                    return false;
                };
                self.parent_sink_event(event)
            }
            gst::EventView::Gap(_) => {
                // Silence upstream: nothing to send, but output may move on.
                let _ = self.push_pending();
                true
            }
            _ => self.parent_sink_event(event),
        }
    }

    fn submit_input_buffer(
        &self,
        is_discont: bool,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.send_audio(is_discont, &buffer)?;
        Ok(gst::FlowSuccess::Ok)
    }

    fn generate_output(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        self.push_pending()?;
        Ok(GenerateOutputSuccess::NoOutput)
    }
}

impl FireworksStt {
    /// Ends the session (if any) and forgets the stream. `full` also forgets the segment and
    /// statistics (a stop, not a flush).
    fn reset(&self, full: bool) {
        self.abort_session();
        let mut state = self.state.lock().unwrap();
        state.client = None;
        state.failed = false;
        if full {
            state.segment = gst::FormattedSegment::new();
        }
        state.shared = new_shared(state.segment.clone());
        drop(state);
        *self.output.lock().unwrap() = OutputState::default();
    }

    /// Stops the network session at once, from any thread.
    fn abort_session(&self) {
        if let Some(abort) = self.abort.lock().unwrap().take() {
            abort.abort();
        }
    }

    fn answer_latency(&self, q: &mut gst::query::Latency) -> bool {
        let mut upstream = gst::query::Latency::new();
        if !self.obj().sink_pad().peer_query(&mut upstream) {
            return false;
        }
        let (live, min, max) = upstream.result();
        self.upstream_live.store(live, Ordering::Relaxed);
        if live {
            let ours =
                gst::ClockTime::from_mseconds(self.settings.lock().unwrap().latency_ms.into());
            q.set(true, min + ours, max.map(|max| max + ours));
        } else {
            q.set(false, min, max);
        }
        gst::debug!(CAT, imp = self, "latency query answered: {q:?}");
        true
    }

    fn query_upstream_live(&self) -> bool {
        let mut q = gst::query::Latency::new();
        let live = self.obj().sink_pad().peer_query(&mut q) && q.result().0;
        self.upstream_live.store(live, Ordering::Relaxed);
        live
    }

    /// Keeps the input segment and forwards it with `lateness` added to its base.
    fn on_segment(&self, segment: &gst::Segment, seqnum: gst::Seqnum) -> Option<gst::Event> {
        let Some(segment) = segment.downcast_ref::<gst::ClockTime>() else {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Only TIME segments are supported; put audioconvert ! audioresample before fireworksstt")
            );
            return None;
        };
        {
            let mut state = self.state.lock().unwrap();
            state.segment = segment.clone();
            state.shared.lock().unwrap().segment = segment.clone();
        }
        let lateness =
            gst::ClockTime::from_mseconds(self.settings.lock().unwrap().lateness_ms.into());
        let mut shifted = segment.clone();
        shifted.set_base(segment.base().unwrap_or(gst::ClockTime::ZERO) + lateness);
        Some(
            gst::event::Segment::builder(&shifted)
                .seqnum(seqnum)
                .build(),
        )
    }

    /// Connects lazily: the first buffer starts the session.
    fn start_session(&self, state: &mut State) -> Result<(), gst::FlowError> {
        state.options_generation = self.options_generation.load(Ordering::Relaxed);
        let settings = self.settings.lock().unwrap().clone();
        let cfg = settings.client_config().map_err(|err| {
            let text = err.to_string();
            gst::element_imp_error!(self, gst::LibraryError::Settings, ("{}", text));
            gst::FlowError::Error
        })?;
        gst::info!(
            CAT,
            imp = self,
            "connecting to {}{}",
            cfg.host_for_messages(),
            cfg.url.path()
        );
        let shared = new_shared(state.segment.clone());
        let bridge = Bridge::new(&self.obj(), shared.clone());
        let client = StreamClient::start(cfg, std::sync::Arc::new(bridge)).map_err(|failure| {
            self.post_failure(&failure, true);
            gst::FlowError::Error
        })?;
        *self.abort.lock().unwrap() = Some(client.abort_handle());
        state.client = Some(client);
        state.shared = shared;
        Ok(())
    }

    fn send_audio(&self, is_discont: bool, buffer: &gst::Buffer) -> Result<(), gst::FlowError> {
        let mut state = self.state.lock().unwrap();
        if state.failed || state.shared.lock().unwrap().failed {
            state.failed = true;
            return Err(gst::FlowError::Error);
        }
        if state.client.is_none() {
            self.start_session(&mut state)?;
            self.query_upstream_live();
        }
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Could not read an input buffer")
            );
            gst::FlowError::Error
        })?;
        let samples = map.len() as u64 / crate::client::BYTES_PER_SAMPLE;
        state.shared.lock().unwrap().timeline.on_buffer(
            buffer.pts().map(gst::ClockTime::nseconds),
            samples,
            is_discont,
        );
        let wait = if self.upstream_live.load(Ordering::Relaxed) {
            LIVE_QUEUE_WAIT
        } else {
            NON_LIVE_QUEUE_WAIT
        };
        self.apply_option_changes(&mut state, wait);
        let client = state.client.as_mut().expect("session started above");
        match client.push_audio(&map, wait) {
            Ok(()) => Ok(()),
            Err(PushError::Dropped { bytes }) => {
                // 16 kHz S16 mono: 32 bytes per millisecond.
                let dropped_ms = u32::try_from(bytes / 32).unwrap_or(u32::MAX);
                let total = self
                    .dropped_audio_ms
                    .fetch_add(dropped_ms, Ordering::Relaxed)
                    .saturating_add(dropped_ms);
                self.obj().notify("dropped-audio");
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Failed,
                    (
                        "The network could not keep up with the live source: {} ms of audio dropped so far (dropped-audio)",
                        total
                    )
                );
                Ok(())
            }
            Err(PushError::Closed) => {
                // The session ended with an error, which it has posted already.
                state.failed = true;
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Session options set since the session started go to the client, which moves to a new
    /// connection between utterances. A value that cannot be used leaves the session as it is.
    fn apply_option_changes(&self, state: &mut State, wait: Duration) {
        let generation = self.options_generation.load(Ordering::Relaxed);
        if generation == state.options_generation {
            return;
        }
        state.options_generation = generation;
        let Some(client) = state.client.as_ref() else {
            return;
        };
        let cfg = self.settings.lock().unwrap().client_config();
        match cfg {
            Ok(cfg) => {
                gst::info!(
                    CAT,
                    imp = self,
                    "session options changed: reconnecting with {}",
                    cfg.url.query().unwrap_or("")
                );
                if !client.reconfigure(cfg, wait) {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "the session could not take the new options"
                    );
                }
            }
            Err(err) => gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                (
                    "New settings not applied, the session goes on with the previous ones: {}",
                    err
                )
            ),
        }
    }

    /// End of stream: drain the session (bounded), then push everything that came back.
    fn finish_stream(&self) {
        let client = {
            let mut state = self.state.lock().unwrap();
            state.client.take()
        };
        self.abort.lock().unwrap().take();
        if let Some(client) = client {
            let outcome = client.drain();
            gst::debug!(CAT, imp = self, "end of stream drained: {outcome:?}");
        }
        let _ = self.push_pending();
        let end = {
            let state = self.state.lock().unwrap();
            let shared = state.shared.lock().unwrap();
            shared.timeline.end_pts()
        };
        if let Some(end) = end {
            let mut output = self.output.lock().unwrap();
            let _ = self.push_item(OutputItem::GapUntil(end), &mut output);
        }
    }

    /// Pushes the finals that arrived since the last call; with live input, the words of the
    /// open utterance whose deadline has come; then lets the position follow the audio where
    /// nothing can be said any more.
    fn push_pending(&self) -> Result<(), gst::FlowError> {
        let mut output = self.output.lock().unwrap();
        let now = self.obj().current_running_time();
        let (items, failed, segment) = {
            let state = self.state.lock().unwrap();
            let settings = self.settings.lock().unwrap().clone();
            let live = self.upstream_live.load(Ordering::Relaxed);
            let mut shared = state.shared.lock().unwrap();
            let finals: Vec<_> = shared.finals.drain(..).collect();
            let mut items = Vec::new();
            for t in &finals {
                let (early_utterance, early_count) = output.early;
                let skip = if early_utterance == t.utterance {
                    early_count
                } else {
                    0
                };
                items.extend(items_for_final(
                    t,
                    settings.output_mode,
                    &shared.timeline,
                    skip,
                ));
                output.early = (t.utterance + 1, 0);
            }
            let early = live && settings.early_words && settings.output_mode == OutputMode::Words;
            if let (true, Some(now), Some(interim)) = (early, now, shared.open_interim.as_ref()) {
                let already = match output.early {
                    (utterance, count) if utterance == interim.utterance => count,
                    _ => 0,
                };
                let slack = gst::ClockTime::from_mseconds(
                    u64::from(settings.lateness_ms) + u64::from(settings.latency_ms)
                        - u64::from(early_margin_ms(settings.latency_ms)),
                );
                let is_due = |pts: u64| {
                    shared
                        .segment
                        .to_running_time(gst::ClockTime::from_nseconds(pts))
                        .is_some_and(|rt| rt.saturating_add(slack) <= now)
                };
                let (due, pushed) = due_interim_words(interim, &shared.timeline, already, is_due);
                items.extend(due);
                output.early = (interim.utterance, pushed);
            }
            if live {
                if let Some(until) = live_heartbeat(&shared, settings.latency_ms) {
                    items.push(OutputItem::GapUntil(until));
                }
            }
            let segment = live.then(|| shared.segment.clone());
            (items, shared.failed || state.failed, segment)
        };
        for item in items {
            if let (OutputItem::Text { pts, .. }, Some(segment)) = (&item, &segment) {
                self.observe_lag(segment, *pts);
            }
            self.push_item(item, &mut output)?;
        }
        if failed {
            return Err(gst::FlowError::Error);
        }
        Ok(())
    }

    fn push_gap(&self, from: u64, until: u64) -> Result<(), gst::FlowError> {
        let event = gst::event::Gap::builder(gst::ClockTime::from_nseconds(from))
            .duration(gst::ClockTime::from_nseconds(until - from))
            .build();
        self.obj().src_pad().push_event(event);
        Ok(())
    }

    fn push_item(&self, item: OutputItem, output: &mut OutputState) -> Result<(), gst::FlowError> {
        let srcpad = self.obj().src_pad().clone();
        match item {
            OutputItem::Text {
                text,
                pts,
                duration,
            } => {
                let position = *output.position.get_or_insert(pts);
                if pts > position {
                    self.push_gap(position, pts)?;
                }
                let mut buffer = gst::Buffer::from_mut_slice(text.into_bytes());
                {
                    let buffer = buffer.get_mut().expect("new buffer is writable");
                    buffer.set_pts(gst::ClockTime::from_nseconds(pts));
                    buffer.set_duration(gst::ClockTime::from_nseconds(duration));
                }
                output.position = Some(position.max(pts + duration));
                gst::log!(CAT, imp = self, "pushing {buffer:?}");
                srcpad.push(buffer)?;
            }
            OutputItem::FinalTranscript => {
                let structure = gst::Structure::new_empty(FINAL_TRANSCRIPT_EVENT);
                srcpad.push_event(gst::event::CustomDownstream::new(structure));
            }
            OutputItem::GapUntil(until) => {
                let position = *output.position.get_or_insert(until);
                if until > position {
                    self.push_gap(position, until)?;
                    output.position = Some(until);
                }
            }
        }
        Ok(())
    }
}

impl FireworksStt {
    /// Live: how far a word leaves behind its own running time is what downstream has to
    /// absorb, so that is the delay `max-observed-delay` reports.
    fn observe_lag(&self, segment: &gst::FormattedSegment<gst::ClockTime>, pts: u64) {
        let running = segment.to_running_time(gst::ClockTime::from_nseconds(pts));
        if let (Some(now), Some(running)) = (self.obj().current_running_time(), running) {
            if let Some(lag) = now.checked_sub(running) {
                self.observe_delay(Duration::from_nanos(lag.nseconds()));
            }
        }
    }
}

/// With live input, anything older than `latency` before the newest audio can no longer get
/// words in time, unless an utterance that began earlier is still open.
fn live_heartbeat(shared: &super::bridge::SessionShared, latency_ms: u32) -> Option<u64> {
    let end = shared.timeline.end_pts()?;
    let mut until = end.checked_sub(u64::from(latency_ms) * 1_000_000)?;
    if let Some(open) = shared
        .open_utterance_start
        .and_then(|a| shared.timeline.pts_for(a))
    {
        until = until.min(open);
    }
    Some(until)
}

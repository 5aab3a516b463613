// SPDX-License-Identifier: MPL-2.0
//! A local stand-in for the Fireworks AI streaming speech-to-text WebSocket service, for tests and
//! benchmarks (no network needed). It follows the repository's `docs/protocol.md` (Connection,
//! Client messages, Server messages, Lifecycle, What the test server does).
//!
//! It transcribes two kinds of audio, told apart per connection by the first 32 samples louder
//! than the silence threshold ([`engine::AudioKind`]): if they alternate in sign sample by sample
//! on the test code's amplitude grid (speech never does), the connection carries **tone-coded
//! test audio** ([`audio`]), whose transcripts are a deterministic function of the audio actually
//! received, with word times taken from sample positions — lost, duplicated or reordered audio
//! shows up in the text, and timestamps can be checked exactly. Anything else is **speech**,
//! recognised offline by Whisper tiny.en ([`recognizer`], [`speech`], [`mel`]). Audio before the
//! first loud samples is held (its last second) until the kind is known. Nothing in the server
//! knows about any particular client.
//!
//! # Speech
//!
//! * The model is loaded once per process, on first use (see [`recognizer`] for where it is
//!   looked for); without it speech gets no text and one line on stderr names the set-up command.
//! * Utterances are found by voice activity in sample time ([`speech::Segmenter`]), so fast
//!   input gives the same finals as live input; each is cut before Whisper's 30 s window.
//! * Voice activity comes from Silero VAD ([`vad`]), tuned by the session's `vad_kwargs`
//!   (unknown keys are named in the connection's log line); `skip_vad=true` turns the gate off.
//! * While an utterance grows, it is re-decoded after each further half second of its audio and
//!   sent as an interim (words not final; words two interims agreed on stay); when the detector
//!   sees the speech end, its final decode starts speculatively, and when
//!   `text_timeout_seconds` of audio without voice follow it (or a checkpoint arrives) it is
//!   sent final. Decodes run on one process-wide queue ([`scheduler`]) whose workers serve
//!   finals before interims and skip stale interims; per connection, finals go out in order and
//!   before anything later is sent (a checkpoint's echo comes after its final).
//! * Segment ids, the working window, trace, state-clear and every fault work as for test audio;
//!   `max_words_per_segment` and `send_string_ids` apply, the other scenario switches
//!   (`revise_partial_words`, `grow_finalized_segment`, `retract_trailing_segment`) are about the
//!   test code's letter-by-letter decoding and apply to test audio only.
//! * `language` other than `en` gets `{"error": "… supported languages: en"}` and a close (1003)
//!   once speech arrives (test audio accepts any language code).
//! * Non-speech (silence, tones, noise) gives no text.
//!
//! # The test-audio codec ([`audio`])
//!
//! Audio is S16LE, 16 kHz, mono. Text is "spoken" letter by letter:
//!
//! * Alphabet `a`–`z`, `0`–`9`, `'` → codes 1..=37. A letter is a 30 ms block (480 samples) of a
//!   square wave `+M, -M, +M, …` with `M = 2000 + 500 * code` (2500..=20500). The decoder maps each
//!   sample's magnitude to the nearest code, so chunking does not matter.
//! * A word is its letter blocks back to back. A run of one code lasting `n` samples decodes as
//!   `round(n / 480)` letters (at least one), so repeated letters ("hello") work.
//! * Silence is `|s| < 500`. The synthesizer puts 100 ms between words and, by default, 2 s after
//!   each utterance (more than the default `text_timeout_seconds` of 1 s).
//! * **Word rule:** a word ends when 60 ms (960 samples) of silence follow its last letter. Its
//!   time span is from its first non-silent sample to one past its last one.
//! * **Utterance rule:** an utterance is finalized when `text_timeout_seconds` of silence, counted
//!   in received samples (not wall time, so faster-than-real-time input works), follow its last
//!   word, i.e. at sample `last_word_end + round(timeout * 16000)`.
//!
//! ```
//! use fireworks_test_server::audio::{synthesize_utterances, synthesize, Script};
//! let audio = synthesize_utterances(&["hello world", "how are you"]).unwrap();
//! assert_eq!(audio.words[1].text, "world");
//! assert_eq!(audio.words[1].start_sample, 5 * 480 + 1600); // after "hello" and a 100 ms gap
//! let bytes = audio.to_le_bytes(); // send in binary frames of any size
//! # let _ = bytes;
//! ```
//!
//! [`audio::synthesize_speech_like`] makes long pseudo-random speech for benchmarks (an hour in well
//! under a second in release builds), [`audio::write_wav`] writes WAV files, and
//! [`audio::StreamDecoder`] is the decoder the server uses.
//!
//! # The server ([`TestServer`])
//!
//! Started inside a test on 127.0.0.1 port 0, on its own thread with its own (current-thread)
//! tokio runtime; dropping the handle closes every connection (1001) and joins the thread (bounded).
//! Every wait is bounded and nothing a client sends can make it panic.
//!
//! * **TLS** (optional, [`ServerConfig::with_tls`] or [`TestServer::start_tls`] with a
//!   [`TlsIdentity`]: PEM certificate chain and key; rustls with the ring provider, TLS 1.2 and
//!   1.3): the TLS handshake comes first, in the connection's own task, and
//!   [`TestServer::base_url`] is `wss://localhost:PORT/v1`, so the certificate must name
//!   `localhost`. A failed TLS handshake (the client refuses the certificate, a plain `ws://`
//!   client, a timeout) ends only that connection, as [`ConnectionEnd::HandshakeFailed`] with a
//!   reason starting `TLS handshake`; nothing was read from it, so its `path` is empty and its
//!   `upgrade_status` is `None`. The default is plain `ws://`.
//! * **Upgrade:** path `/v1/audio/transcriptions/streaming` (else 404). Auth: the
//!   `Authorization` header, or else the `Authorization` query parameter, raw key or
//!   `Bearer <key>`; with [`ServerConfig::api_key`] set, a missing or wrong key gets 401. Query
//!   options (docs/protocol.md#query-parameters): `model`, `language` (from the supported list, any case), `prompt`,
//!   `temperature`, `skip_vad` (`True`/`true`/`1`/…), `vad_kwargs` (a JSON object),
//!   `text_timeout_seconds` (1.0–29.0, `1` or `1.0`), `response_format` (only `verbose_json`),
//!   `timestamp_granularities` (repeated keys or comma-separated; `word` adds word `start`/`end`,
//!   `segment` adds segment `start`/`end`). Invalid values get 400 with `{"error": …}`; unknown
//!   keys are ignored and recorded. Rejection bodies are `{"error": "…"}` JSON.
//! * **Audio:** binary frames of any length (odd lengths included; the dangling byte is kept).
//! * **Transcripts:** times in seconds since the start of this connection's audio (sample / 16000),
//!   integer segment ids from 0 per connection, rising. An utterance is split into segments of
//!   [`ServerConfig::max_words_per_segment`] words (default 6). Each message carries the working
//!   window: the most recently finalized segment once more, then every segment of the open
//!   utterance. Segment `text` is its words joined by single spaces; top-level `text` joins the
//!   window's segment texts. Words carry `word`, `language`, `probability` (0.9),
//!   `hallucination_score` (0.0), `is_final`, and `start`/`end` with word granularity.
//!   * When a word ends (see the word rule) → interim, open words `is_final:false`.
//!   * With [`ServerConfig::revise_partial_words`] (default on), also when a word's second letter
//!     is decoded → interim with the two-letter prefix, which the next message revises in place.
//!   * When the utterance rule fires → final: the same window, every word `is_final:true`.
//! * **Text frames:** `{"checkpoint_id": ID}` → (with `finalize_on_checkpoint`, default on) the
//!   word in progress is ended and the open utterance finalized, then `{"checkpoint_id": ID}` is
//!   echoed, then with `close_after_echo` (default off) the server closes with 1000. Without
//!   `finalize_on_checkpoint` the checkpoint is just echoed. `stt.input.trace` →
//!   `{"event_id", "object": "stt.output.trace", "trace_id"}` (no finalization);
//!   `stt.state.clear` → the word in progress, the open utterance and the last final segment are
//!   forgotten (segment ids keep rising, times keep counting) and
//!   `{"event_id", "object": "stt.state.cleared", "reset_id"}` is sent. The `event_id` of a reply is
//!   the request's. Anything else is ignored (and recorded).
//! * **Scenarios** (docs/protocol.md#test-vectors, #what-the-test-server-does): [`ServerConfig::grow_finalized_segment`] (TV3: speech after a final
//!   continues the last final segment under the same id while it has fewer than
//!   `max_words_per_segment` words, old words still final), [`ServerConfig::retract_trailing_segment`]
//!   (TV5: whenever a segment receives its second word, the server first sends that word as a new
//!   trailing segment and then the merged window, whose highest id is lower),
//!   [`ServerConfig::send_string_ids`] (TV12: ids as strings).
//! * **Dialects** ([`Dialect`], docs/protocol.md#dialects): [`Dialect::V2`] speaks the message
//!   shapes of the v2 endpoint's clients on every connection: string segment ids, errors as
//!   `{"message", "code"}` objects (upgrade refusals and in-stream errors alike), and extra
//!   fields (`seek`, `language` on segments, `duration` on messages) that clients must ignore.
//!   [`ServerConfig::report_language`] off leaves `language` out of every message, as a service
//!   that does not say which language it heard.
//! * **Faults** ([`Fault`], per connection index, counted from 0 over accepted TCP connections,
//!   "after bytes" ones firing once that much audio has been received and processed): HTTP
//!   rejection, no upgrade answer, abrupt TCP drop (RST), close frame, `{"error"}` with or without a
//!   close, malformed JSON, a binary frame, an oversized text message, a stall (no reading, no
//!   writing, TCP kept open until shutdown), never echoing checkpoints.
//!
//! ```
//! use fireworks_test_server::{Fault, ServerConfig, TestServer};
//! use std::time::Duration;
//! let server = TestServer::start(
//!     ServerConfig::default()
//!         .with_api_key("test-key")
//!         .with_fault(0, Fault::CloseAfterBytes { bytes: 64000, code: 1011, reason: "boom".into() }),
//! )
//! .unwrap();
//! let url = server.base_url(); // "ws://127.0.0.1:PORT/v1"
//! # let _ = url;
//! // ... run the client against it, then:
//! assert!(!server.wait_for_connections(1, Duration::from_millis(10)));
//! for c in server.connections() {
//!     let _ = (&c.query, &c.authorization_header, c.audio_bytes, &c.checkpoints, &c.end);
//! }
//! ```
//!
//! # Recordings ([`ConnectionRecord`])
//!
//! Per connection, in accept order: path, raw and decoded query (repeated keys kept), headers,
//! the `Authorization` header and query values, upgrade status, audio bytes (and the bytes
//! themselves unless disabled), text frames received, checkpoints, trace and reset ids, messages
//! sent, finalized utterances with exact sample spans, faults fired, how it ended
//! ([`ConnectionEnd`]) and when. [`TestServer::wait_for`] and friends wait with a timeout.
//!
//! # Binaries
//!
//! `fireworks-test-server` ([`cli::run_from_args`]) serves until killed and prints
//! `fireworks test server listening on ws://127.0.0.1:PORT/v1` (with `--tls-cert FILE
//! --tls-key FILE`: `wss://localhost:PORT/v1`); `make-test-audio`
//! ([`cli::make_test_audio_main`]) writes a WAV for given utterances and prints the transcript.

pub mod audio;
pub mod cli;
pub mod config;
pub mod engine;
pub mod evaluate;
pub mod mel;
pub mod noise;
pub mod query;
pub mod recognizer;
pub mod record;
pub mod scheduler;
pub mod server;
pub mod speech;
pub mod vad;

pub use audio::{
    synthesize, synthesize_speech_like, synthesize_utterances, write_wav, ExpectedWord, Script,
    SynthAudio, SAMPLE_RATE,
};
pub use config::{Dialect, Fault, ServerConfig, TlsIdentity};
pub use engine::{FinalUtterance, FinalWord};
pub use query::{SessionOptions, STREAMING_PATH};
pub use record::{CheckpointRecord, ConnectionEnd, ConnectionRecord};
pub use server::TestServer;

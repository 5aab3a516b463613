// SPDX-License-Identifier: MPL-2.0
//! The Fireworks streaming speech-to-text protocol as pure code: session options → URL,
//! server message parsing, and the transcript state machine, as docs/protocol.md describes them.
//!
//! Nothing in here does I/O or knows about GStreamer or tokio, so all of it is unit tested with
//! the protocol document's test vectors.

pub mod keyterms;
pub mod language;
pub mod messages;
pub mod options;
pub mod transcript;

mod options_format;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod test_vectors;

pub use keyterms::{prompt_with_keyterms, KeytermsError};
pub use language::{normalize_language_code, LanguageError, SUPPORTED_LANGUAGES};
pub use messages::{
    checkpoint_message, parse_server_message, ParseError, Segment, SegmentId, ServerMessage,
    TranscriptionMessage, Word, END_OF_STREAM_CHECKPOINT,
};
pub use options::{
    streaming_url, OptionsError, SessionOptions, STREAMING_PATH, SUPPORTED_RESPONSE_FORMAT,
};
pub use transcript::{
    Transcript, TranscriptError, TranscriptEvent, TranscriptState, TranscriptWord,
};

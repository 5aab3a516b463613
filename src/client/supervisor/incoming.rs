// SPDX-License-Identifier: MPL-2.0
//! What the service sends: frames, parsed messages, transcripts turned into stream times,
//! checkpoint echoes, errors and closes, and how each ends a connection or not.

use std::time::Instant;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{ConnectionEnd, Supervisor, MAX_PROTOCOL_WARNINGS};
use crate::client::audio_units::{samples_to_ns, seconds_to_samples};
use crate::client::events::{
    ClientEvent, DrainOutcome, Failure, FailureKind, ServerErrorReport, Step, TimedTranscript,
    TimedWord,
};
use crate::protocol::{
    parse_server_message, ServerMessage, Transcript, TranscriptEvent, END_OF_STREAM_CHECKPOINT,
};

impl Supervisor {
    /// Handles one frame from the server. Returns how the connection ends, if it does.
    pub(super) fn on_incoming(
        &mut self,
        incoming: Option<Result<Message, WsError>>,
        base: u64,
    ) -> Option<ConnectionEnd> {
        // Only the error texts name the host: no formatting for every message.
        let host = || self.cfg.host_for_messages();
        match incoming {
            None => Some(self.ended_by_server(Failure::new(
                FailureKind::ConnectionLost,
                format!(
                    "Fireworks at {} closed the connection without a close frame",
                    host()
                ),
                "stream ended",
            ))),
            Some(Err(err)) => {
                let kind = match err {
                    WsError::Capacity(_) => FailureKind::Protocol,
                    _ => FailureKind::ConnectionLost,
                };
                Some(self.ended_by_server(Failure::new(
                    kind,
                    format!("Connection to Fireworks at {} failed: {err}", host()),
                    format!("{err:?}"),
                )))
            }
            Some(Ok(Message::Text(text))) => self.on_text(text.as_str(), base),
            Some(Ok(Message::Binary(data))) => {
                self.protocol_warning(format!(
                    "Ignored an unexpected binary message of {} bytes from Fireworks",
                    data.len()
                ));
                None
            }
            Some(Ok(Message::Close(frame))) => Some(self.ended_by_server(closed(frame, &host()))),
            Some(Ok(_)) => None,
        }
    }

    /// The server ended the connection. A normal close (1000) while we wait for the end of
    /// an utterance means the service finished it. Anything else is a drop to recover from:
    /// the service may not have heard all the audio, so it is replayed on a new connection.
    fn ended_by_server(&mut self, failure: Failure) -> ConnectionEnd {
        let normal_close = failure.close_code == Some(u16::from(CloseCode::Normal));
        // A normal close without the echo does not prove the service heard everything (it
        // may have closed for its own reasons mid-stream): the first time, replay on a new
        // connection; a second one (a service that closes instead of echoing) completes.
        if normal_close && self.drain.is_some() && self.switch.is_none() && self.drain_replayed {
            self.finish_drain(DrainOutcome::Completed);
            return ConnectionEnd::Finished;
        }
        if self.drain.is_some() {
            if normal_close && !self.drain_replayed {
                self.step(Step::DrainClosedUnconfirmed);
            }
            self.drain_replayed = true;
        }
        ConnectionEnd::Lost(failure)
    }

    fn protocol_warning(&mut self, message: String) {
        self.protocol_warnings += 1;
        if self.protocol_warnings <= MAX_PROTOCOL_WARNINGS {
            let mut text = message;
            if self.protocol_warnings == MAX_PROTOCOL_WARNINGS {
                text.push_str(" (further such warnings are only logged)");
            }
            self.emit(ClientEvent::Warning(Failure::new(
                FailureKind::Protocol,
                text.clone(),
                text,
            )));
        }
    }

    fn on_text(&mut self, text: &str, base: u64) -> Option<ConnectionEnd> {
        match parse_server_message(text) {
            Err(err) => {
                self.protocol_warning(format!("Ignored a malformed message from Fireworks: {err}"));
                None
            }
            Ok(ServerMessage::Transcription(message)) => {
                match self.transcript.handle(&message) {
                    Ok(events) => self.emit_transcript_events(events, base),
                    Err(err) => self.protocol_warning(format!(
                        "Ignored an inconsistent transcript from Fireworks: {err}"
                    )),
                }
                None
            }
            Ok(ServerMessage::CheckpointEcho { checkpoint_id })
                if self
                    .switch
                    .as_ref()
                    .is_some_and(|s| s.checkpoint_id == checkpoint_id) =>
            {
                Some(self.finish_switch())
            }
            Ok(ServerMessage::CheckpointEcho { checkpoint_id })
                if checkpoint_id == END_OF_STREAM_CHECKPOINT && self.drain.is_some() =>
            {
                self.finish_drain(DrainOutcome::Completed);
                Some(ConnectionEnd::Finished)
            }
            Ok(ServerMessage::Error { message, code }) => Some(ConnectionEnd::Fatal(
                self.server_error(text, &message, code),
            )),
            Ok(_) => None,
        }
    }

    /// An error message from the service, as a failure that names it (the key redacted).
    fn server_error(&self, text: &str, message: &str, code: Option<String>) -> Failure {
        let redact = |s: &str| self.cfg.api_key.redact(&excerpt(s));
        let message = redact(message);
        let mut failure = Failure::new(
            FailureKind::ServerError,
            format!("Fireworks reported an error: {message}"),
            format!("server message: {}", redact(text)),
        );
        failure.server_error = Some(Box::new(ServerErrorReport {
            message,
            code: code.map(|c| redact(&c)),
        }));
        failure
    }

    pub(super) fn emit_transcript_events(&mut self, events: Vec<TranscriptEvent>, base: u64) {
        for event in events {
            match event {
                TranscriptEvent::SpeechStarted { utterance } => {
                    self.emit(ClientEvent::SpeechStarted { utterance })
                }
                TranscriptEvent::SpeechEnded { utterance } => {
                    self.emit(ClientEvent::SpeechEnded { utterance })
                }
                TranscriptEvent::Interim(t) => {
                    self.last_transcript_at = Some(Instant::now());
                    self.interim_base = base;
                    let timed = self.timed(t, false, base);
                    self.extend_checkpoint_deadline();
                    self.emit(ClientEvent::Transcript(timed));
                }
                TranscriptEvent::Final(t) => {
                    self.last_transcript_at = Some(Instant::now());
                    let end = t.end;
                    let timed = self.timed(t, true, base);
                    // The words are in: a later drop need not replay this audio again.
                    if let Some(end) = end {
                        self.log.release_through(self.stream_sample(base, end));
                    }
                    self.retries = 0;
                    self.extend_checkpoint_deadline();
                    // Progress: audio is held back again (when the log is full) for at most
                    // another stall-timeout from here.
                    self.hold_lifted = None;
                    if self.held_since.is_some() {
                        self.held_since = Some(Instant::now());
                    }
                    self.emit(ClientEvent::Transcript(timed));
                }
            }
        }
    }

    /// A transcript (final or interim) while a checkpoint is awaited shows the service is
    /// still working through the audio (a service slower than the audio was sent — a file
    /// pushed faster than real time — answers the checkpoint only after its backlog):
    /// `drain-timeout` then counts again from here, so it bounds the wait for progress, not the
    /// length of the backlog. The whole drain stays bounded by [`drain_budget`].
    fn extend_checkpoint_deadline(&mut self) {
        let renewed = Some(Instant::now() + self.cfg.drain_timeout);
        if let Some(switch) = &mut self.switch {
            if switch.deadline.is_some() {
                switch.deadline = renewed;
            }
        }
        if let Some(drain) = &mut self.drain {
            if drain.deadline.is_some() {
                drain.deadline = renewed;
            }
        }
    }

    /// Where a time of the connection that began at `base` lies in the stream's audio. Times
    /// come from the network: they are clamped to the audio actually sent.
    fn stream_sample(&self, base: u64, seconds: f64) -> u64 {
        base.saturating_add(seconds_to_samples(seconds))
            .min(self.log.end_offset())
    }

    fn timed(&self, t: Transcript, is_final: bool, base: u64) -> TimedTranscript {
        let map =
            |seconds: Option<f64>| seconds.map(|s| samples_to_ns(self.stream_sample(base, s)));
        // How long the earliest word waited: that is what a downstream latency must cover.
        let start_sample = t.start.map(|s| self.stream_sample(base, s));
        let delay = start_sample
            .and_then(|sample| self.log.sent_at(sample))
            .map(|sent| sent.elapsed());
        TimedTranscript {
            utterance: t.utterance,
            is_final,
            promoted: t.promoted,
            language: t.language,
            start: map(t.start),
            end: map(t.end),
            words: t
                .words
                .into_iter()
                .map(|w| TimedWord {
                    text: w.text,
                    start: map(w.start),
                    end: map(w.end),
                    probability: w.probability,
                    hallucination_score: w.hallucination_score,
                    is_final: w.is_final,
                })
                .collect(),
            text: t.text,
            delay,
        }
    }
}

/// The service's close frame, as the failure it is unless a drain or switch expected it
/// ([`Supervisor::ended_by_server`]). No frame at all reads as code 1005, as RFC 6455 says.
fn closed(frame: Option<CloseFrame>, host: &str) -> Failure {
    let (code, reason) = frame
        .map(|f| (u16::from(f.code), f.reason.to_string()))
        .unwrap_or((1005, String::new()));
    let reason_part = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    let mut failure = Failure::new(
        FailureKind::ConnectionLost,
        format!("Fireworks at {host} closed the connection (code {code}{reason_part})"),
        format!("close code {code}, reason {reason:?}"),
    );
    failure.close_code = Some(code);
    failure
}

fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
}

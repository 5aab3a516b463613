//! The network task of one stream: connects, streams audio, turns server messages into
//! events, reconnects after a drop (replaying audio from the end of the last final word), and
//! completes end of stream. Runs on the shared runtime; the element only sees [`Command`]s
//! going in and [`ClientEvent`]s coming out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::audio_log::AudioLog;
use super::connect::{self, WsStream};
use super::events::{ClientEvent, EventSink, Failure, FailureKind, TimedTranscript, TimedWord};
use super::handle::DrainOutcome;
use super::{samples_to_ns, seconds_to_samples, ClientConfig, BYTES_PER_SAMPLE};
use crate::protocol::{
    checkpoint_message, parse_server_message, ServerMessage, Transcript, TranscriptEvent,
    TranscriptState, END_OF_STREAM_CHECKPOINT,
};

/// What the streaming thread asks of the network task.
pub enum Command {
    /// The next frame of audio, contiguous with the previous one.
    Audio(Bytes),
    /// End of stream: finish the utterance and report when the final transcript is in.
    Drain(std::sync::mpsc::SyncSender<DrainOutcome>),
    /// New session options: finish the current utterance on this connection, then carry on
    /// with a new connection (and query) from exactly where it ended.
    Reconfigure(Box<ClientConfig>),
}

/// Bound on the polite close at the end of a session.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Malformed messages reported individually before they are only counted.
const MAX_PROTOCOL_WARNINGS: u32 = 5;
/// Most audio frames written with one flush.
const MAX_FRAMES_PER_WRITE: usize = 64;

struct PendingDrain {
    reply: std::sync::mpsc::SyncSender<DrainOutcome>,
    deadline: Instant,
}

/// A change of options waiting for the old connection to finish its utterance.
struct PendingSwitch {
    cfg: Arc<ClientConfig>,
    checkpoint_id: String,
    /// Audio before this offset belongs to the old connection, the rest to the new one.
    at_sample: u64,
    deadline: Instant,
}

/// How one connection ended.
enum ConnectionEnd {
    /// The stream is over: drained, or the element went away.
    Finished,
    /// Unexpected drop; a reconnect may recover it.
    Lost(Failure),
    /// Options changed: connect again with the new ones.
    Switched,
    /// Nothing more can be done.
    Fatal(Failure),
}

struct Usage {
    since_last: u64,
    total: u64,
}

pub struct Supervisor {
    cfg: Arc<ClientConfig>,
    tls: Arc<rustls::ClientConfig>,
    sink: Arc<dyn EventSink>,
    log: AudioLog,
    transcript: TranscriptState,
    usage: Usage,
    connections: u32,
    /// Retries since the last final transcript (LiveKit's plugin resets its counter there too;
    /// docs/protocol.md#retries).
    retries: u32,
    drain: Option<PendingDrain>,
    switch: Option<PendingSwitch>,
    /// The drain already went to a new connection once after a close without an echo.
    drain_replayed: bool,
    protocol_warnings: u32,
    /// Audio offset where the connection that sent the latest interim began: a promoted final
    /// at end of stream carries that connection's times.
    interim_base: u64,
}

impl Supervisor {
    pub fn new(
        cfg: Arc<ClientConfig>,
        tls: Arc<rustls::ClientConfig>,
        sink: Arc<dyn EventSink>,
    ) -> Self {
        let limit_bytes = (cfg.replay_limit.as_secs_f64() * super::SAMPLE_RATE as f64) as usize
            * BYTES_PER_SAMPLE as usize;
        Supervisor {
            cfg,
            tls,
            sink,
            log: AudioLog::new(limit_bytes.max(1)),
            transcript: TranscriptState::new(),
            usage: Usage {
                since_last: 0,
                total: 0,
            },
            connections: 0,
            retries: 0,
            drain: None,
            switch: None,
            drain_replayed: false,
            protocol_warnings: 0,
            interim_base: 0,
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        loop {
            let Some(ws) = self.establish(&mut rx).await else {
                break;
            };
            match self.stream(ws, &mut rx).await {
                ConnectionEnd::Finished => break,
                ConnectionEnd::Switched => self.retries = 0,
                ConnectionEnd::Fatal(failure) => {
                    self.fail(failure);
                    break;
                }
                ConnectionEnd::Lost(failure) => {
                    // A switch cut short by the drop: the replay goes out with the new options.
                    if let Some(switch) = self.switch.take() {
                        self.cfg = switch.cfg;
                    }
                    if !self.note_retry(failure) {
                        break;
                    }
                }
            }
        }
        self.report_usage();
        if let Some(drain) = self.drain.take() {
            let _ = drain.reply.send(DrainOutcome::Failed);
        }
    }

    fn emit(&self, event: ClientEvent) {
        self.sink.on_event(event);
    }

    fn fail(&mut self, failure: Failure) {
        self.emit(ClientEvent::Error(failure));
    }

    /// Counts a retry for `cause`. Posts the reconnect warning, or the final error when the
    /// retries are used up (returns false then).
    fn note_retry(&mut self, cause: Failure) -> bool {
        if self.retries >= self.cfg.max_retries {
            let mut failure = cause.clone();
            failure.message = format!(
                "Giving up after {} retries (max-retries): {}",
                self.retries, cause.message
            );
            failure.attempt = Some(self.retries);
            self.fail(failure);
            return false;
        }
        self.retries += 1;
        let mut warning = cause.clone();
        warning.message = format!(
            "Reconnecting to Fireworks (retry {} of {}): {}",
            self.retries, self.cfg.max_retries, cause.message
        );
        warning.attempt = Some(self.retries);
        self.emit(ClientEvent::Warning(warning));
        true
    }

    fn retry_delay(&self) -> Duration {
        match self.retries {
            0 => Duration::ZERO,
            1 => self.cfg.first_retry_delay,
            _ => self.cfg.retry_interval,
        }
    }

    /// Commands that arrive while there is no connection: audio is kept for the next one.
    /// Returns false when the element has gone away.
    fn take_offline_command(&mut self, cmd: Option<Command>) -> bool {
        match cmd {
            Some(Command::Audio(data)) => {
                self.log.append(data);
                true
            }
            Some(Command::Drain(reply)) => {
                self.start_drain(reply);
                true
            }
            Some(Command::Reconfigure(cfg)) => {
                self.cfg = Arc::new(*cfg);
                true
            }
            None => false,
        }
    }

    /// Asks the current connection to finish what it heard; audio from here on waits for
    /// the next connection.
    async fn start_switch(
        &mut self,
        out: &mut WsStream,
        cfg: ClientConfig,
    ) -> Result<(), ConnectionEnd> {
        // The id the service is known to finalize on; only one checkpoint is ever in flight.
        let checkpoint_id = END_OF_STREAM_CHECKPOINT.to_string();
        self.switch = Some(PendingSwitch {
            cfg: Arc::new(cfg),
            checkpoint_id: checkpoint_id.clone(),
            at_sample: self.log.end_offset(),
            deadline: Instant::now() + self.cfg.drain_timeout,
        });
        self.send(out, Message::text(checkpoint_message(&checkpoint_id)))
            .await
    }

    /// The old connection is done (echo, close or time-out): its pending text is final, its
    /// audio need never be replayed, and the next connection uses the new options.
    fn finish_switch(&mut self) -> ConnectionEnd {
        let Some(switch) = self.switch.take() else {
            return ConnectionEnd::Switched;
        };
        let events = self.transcript.end_of_stream();
        self.emit_transcript_events(events, self.interim_base);
        self.log.release_through(switch.at_sample);
        self.cfg = switch.cfg;
        self.report_usage();
        ConnectionEnd::Switched
    }

    fn start_drain(&mut self, reply: std::sync::mpsc::SyncSender<DrainOutcome>) {
        self.drain = Some(PendingDrain {
            reply,
            deadline: Instant::now() + self.cfg.drain_timeout,
        });
    }

    fn drain_deadline(&self) -> Option<tokio::time::Instant> {
        self.drain.as_ref().map(|d| d.deadline.into())
    }

    /// Ends the stream: promotes pending text, reports usage and answers the drain request.
    fn finish_drain(&mut self, outcome: DrainOutcome) {
        let events = self.transcript.end_of_stream();
        self.emit_transcript_events(events, self.interim_base);
        if outcome == DrainOutcome::TimedOut {
            self.emit(ClientEvent::Warning(Failure::new(
                FailureKind::DrainTimeout,
                format!(
                    "Fireworks did not confirm the end of the stream within {} ms \
                     (drain-timeout); pending text was delivered as final",
                    self.cfg.drain_timeout.as_millis()
                ),
                "no checkpoint echo or close before the drain deadline",
            )));
        }
        self.report_usage();
        if let Some(drain) = self.drain.take() {
            let _ = drain.reply.send(outcome);
        }
    }

    /// Gets a connection, retrying transient failures, while still taking in audio.
    async fn establish(&mut self, rx: &mut mpsc::Receiver<Command>) -> Option<WsStream> {
        loop {
            let wake = tokio::time::Instant::now() + self.retry_delay();
            let cfg = self.cfg.clone();
            let tls = self.tls.clone();
            let attempt = async move {
                sleep_until(wake).await;
                connect::connect(&cfg, &tls).await
            };
            tokio::pin!(attempt);
            let result = loop {
                let drain_deadline = self.drain_deadline();
                // A full replay buffer stops intake instead of forgetting audio never sent:
                // the queue then fills and the streaming thread waits (or, live, drops and
                // says so).
                let room = !self.log.is_full();
                tokio::select! {
                    result = &mut attempt => break Some(result),
                    cmd = rx.recv(), if room => match cmd {
                        Some(Command::Reconfigure(cfg)) => {
                            // The attempt under way carries the old options: start again.
                            self.cfg = Arc::new(*cfg);
                            break None;
                        }
                        other => {
                            if !self.take_offline_command(other) {
                                return None;
                            }
                        }
                    },
                    _ = sleep_until_opt(drain_deadline) => {
                        self.finish_drain(DrainOutcome::TimedOut);
                        return None;
                    }
                }
            };
            match result {
                None => continue,
                Some(Ok(ws)) => return Some(ws),
                Some(Err(err)) => {
                    let failure = err.to_failure(&self.cfg.host_for_messages());
                    if !err.is_retryable() {
                        self.fail(failure);
                        return None;
                    }
                    if !self.note_retry(failure) {
                        return None;
                    }
                }
            }
        }
    }

    /// Streams over one connection until it ends.
    async fn stream(&mut self, ws: WsStream, rx: &mut mpsc::Receiver<Command>) -> ConnectionEnd {
        self.transcript.begin_connection();
        let base = self.log.replay_start();
        let unreplayable = self.log.unreplayable_samples();
        if unreplayable > 0 {
            self.emit(ClientEvent::Warning(Failure::new(
                FailureKind::AudioDropped,
                format!(
                    "{:.1} s of audio before the reconnect were older than the replay limit \
                     and could not be sent again",
                    unreplayable as f64 / super::SAMPLE_RATE as f64
                ),
                "replay buffer limit exceeded",
            )));
        }
        self.emit(ClientEvent::Connected {
            attempt: self.connections,
        });
        self.connections += 1;

        // Not split into halves: select! drops the read future before any branch writes, so
        // one owner does, without the lock a split stream takes on every poll.
        let mut out = ws;
        let replay = self.log.frames_from(base);
        if !replay.is_empty() {
            if let Err(end) = self.send_frames(&mut out, replay).await {
                return end;
            }
        }
        if self.drain.is_some() {
            if let Err(end) = self.send_checkpoint(&mut out).await {
                return end;
            }
        }

        let mut last_heard = Instant::now();
        let mut ping_outstanding = false;
        // One timer for keepalive and stall, moved only when it fires: re-arming it for every
        // message would touch the timer wheel thousands of times a second at scale.
        let keepalive = sleep_until((last_heard + self.cfg.keepalive_interval).into());
        tokio::pin!(keepalive);
        let mut usage_tick = tokio::time::interval(self.cfg.usage_interval);
        usage_tick.tick().await;
        loop {
            let drain_deadline = self.drain_deadline();
            let switch_deadline = self.switch.as_ref().map(|s| s.deadline.into());
            tokio::select! {
                incoming = out.next() => {
                    last_heard = Instant::now();
                    ping_outstanding = false;
                    if let Some(end) = self.on_incoming(incoming, base) {
                        return self.close(out, end).await;
                    }
                }
                cmd = rx.recv() => {
                    let mut next = cmd;
                    // Audio already queued behind this frame goes out in the same write; a
                    // command met on the way is handled right after it.
                    if let Some(Command::Audio(data)) = next {
                        next = match self.send_queued_audio(&mut out, rx, data).await {
                            Ok(command) => command,
                            Err(end) => return end,
                        };
                        if next.is_none() {
                            continue;
                        }
                    }
                    match next {
                        Some(Command::Audio(_)) => unreachable!("audio is sent above"),
                        Some(Command::Drain(reply)) => {
                            self.start_drain(reply);
                            // While switching, the next connection sends the end-of-stream
                            // checkpoint.
                            if self.switch.is_none() {
                                if let Err(end) = self.send_checkpoint(&mut out).await {
                                    return end;
                                }
                            }
                        }
                        Some(Command::Reconfigure(cfg)) => {
                            if self.switch.is_some() || self.drain.is_some() {
                                // Already leaving this connection: the newest options win.
                                match &mut self.switch {
                                    Some(switch) => switch.cfg = Arc::new(*cfg),
                                    None => self.cfg = Arc::new(*cfg),
                                }
                            } else if let Err(end) = self.start_switch(&mut out, *cfg).await {
                                return end;
                            }
                        }
                        None => return self.close(out, ConnectionEnd::Finished).await,
                    }
                }
                () = &mut keepalive => {
                    // Quiet for keepalive_interval: ping. Still nothing by stall_timeout: stalled.
                    let quiet_bound = if ping_outstanding {
                        self.cfg.stall_timeout
                    } else {
                        self.cfg.keepalive_interval
                    };
                    let due = last_heard + quiet_bound;
                    if Instant::now() < due {
                        keepalive.as_mut().reset(due.into());
                        continue;
                    }
                    if ping_outstanding {
                        return ConnectionEnd::Lost(self.stalled());
                    }
                    if let Err(end) = self.send(&mut out, Message::Ping(Bytes::new())).await {
                        return end;
                    }
                    ping_outstanding = true;
                    keepalive
                        .as_mut()
                        .reset((last_heard + self.cfg.stall_timeout).into());
                }
                _ = sleep_until_opt(switch_deadline) => {
                    let end = self.finish_switch();
                    return self.close(out, end).await;
                }
                _ = sleep_until_opt(drain_deadline) => {
                    self.finish_drain(DrainOutcome::TimedOut);
                    return self.close(out, ConnectionEnd::Finished).await;
                }
                _ = usage_tick.tick() => self.report_usage(),
            }
        }
    }

    fn stalled(&self) -> Failure {
        Failure::new(
            FailureKind::Stalled,
            format!(
                "Fireworks at {} stopped answering for {} s",
                self.cfg.host_for_messages(),
                self.cfg.stall_timeout.as_secs()
            ),
            "no frame (not even a pong) received within the stall bound",
        )
    }

    async fn send(&mut self, out: &mut WsStream, message: Message) -> Result<(), ConnectionEnd> {
        self.bounded(out.send(message)).await
    }

    /// Runs a write, bounded by the stall timeout; a failure or time-out loses the connection.
    async fn bounded(
        &self,
        write: impl std::future::Future<Output = Result<(), WsError>>,
    ) -> Result<(), ConnectionEnd> {
        let result = tokio::time::timeout(self.cfg.stall_timeout, write).await;
        self.write_outcome(result)
    }

    fn write_outcome(
        &self,
        result: Result<Result<(), WsError>, tokio::time::error::Elapsed>,
    ) -> Result<(), ConnectionEnd> {
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(ConnectionEnd::Lost(Failure::new(
                FailureKind::ConnectionLost,
                format!(
                    "Lost the connection to {}: {err}",
                    self.cfg.host_for_messages()
                ),
                format!("{err:?}"),
            ))),
            Err(_) => Err(ConnectionEnd::Lost(self.stalled())),
        }
    }

    /// Logs `first` and every audio frame already queued behind it (up to a bound) and, unless
    /// a switch holds audio back, sends them with one flush: one write and one timer for the
    /// lot instead of one per frame. Returns the first other command taken from the queue.
    async fn send_queued_audio(
        &mut self,
        out: &mut WsStream,
        rx: &mut mpsc::Receiver<Command>,
        first: Bytes,
    ) -> Result<Option<Command>, ConnectionEnd> {
        if self.switch.is_some() {
            // Held back for the next connection; the loop takes the rest one by one.
            self.log.append(first);
            return Ok(None);
        }
        let log = &mut self.log;
        let mut first_offset = None;
        let mut samples = 0;
        let mut other = None;
        let write = async {
            let mut next = Some(first);
            let mut frames = 0;
            while let Some(data) = next.take() {
                let offset = log.append(data.clone());
                first_offset.get_or_insert(offset);
                samples += data.len() as u64 / BYTES_PER_SAMPLE;
                out.feed(Message::Binary(data)).await?;
                frames += 1;
                if frames == MAX_FRAMES_PER_WRITE {
                    break;
                }
                match rx.try_recv() {
                    Ok(Command::Audio(data)) => next = Some(data),
                    Ok(command) => other = Some(command),
                    Err(_) => {}
                }
            }
            out.flush().await
        };
        let result = tokio::time::timeout(self.cfg.stall_timeout, write).await;
        self.write_outcome(result)?;
        if let Some(offset) = first_offset {
            self.log.mark_sent_from(offset, Instant::now());
        }
        self.usage.since_last += samples;
        self.usage.total += samples;
        Ok(other)
    }

    /// Sends logged frames, in order, with a single flush at the end.
    async fn send_frames(
        &mut self,
        out: &mut WsStream,
        frames: Vec<(u64, Bytes)>,
    ) -> Result<(), ConnectionEnd> {
        let Some(&(first_offset, _)) = frames.first() else {
            return Ok(());
        };
        let mut samples = 0;
        let write = async {
            for (_, data) in frames {
                samples += data.len() as u64 / BYTES_PER_SAMPLE;
                out.feed(Message::Binary(data)).await?;
            }
            out.flush().await
        };
        self.bounded(write).await?;
        self.log.mark_sent_from(first_offset, Instant::now());
        self.usage.since_last += samples;
        self.usage.total += samples;
        Ok(())
    }

    async fn send_checkpoint(&mut self, out: &mut WsStream) -> Result<(), ConnectionEnd> {
        let text = checkpoint_message(END_OF_STREAM_CHECKPOINT);
        self.send(out, Message::text(text)).await
    }

    /// Handles one frame from the server. Returns how the connection ends, if it does.
    fn on_incoming(
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
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                let mut failure = Failure::new(
                    FailureKind::ConnectionLost,
                    format!(
                        "Fireworks at {} closed the connection (code {code}{})",
                        host(),
                        if reason.is_empty() {
                            String::new()
                        } else {
                            format!(": {reason}")
                        }
                    ),
                    format!("close code {code}, reason {reason:?}"),
                );
                failure.close_code = Some(code);
                Some(self.ended_by_server(failure))
            }
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
            Ok(ServerMessage::Error { message }) => {
                let message = self.cfg.api_key.redact(&excerpt(&message));
                let mut failure = Failure::new(
                    FailureKind::ServerError,
                    format!("Fireworks reported an error: {message}"),
                    format!(
                        "server message: {}",
                        self.cfg.api_key.redact(&excerpt(text))
                    ),
                );
                failure.server_error = Some(message);
                Some(ConnectionEnd::Fatal(failure))
            }
            Ok(_) => None,
        }
    }

    fn emit_transcript_events(&mut self, events: Vec<TranscriptEvent>, base: u64) {
        for event in events {
            match event {
                TranscriptEvent::SpeechStarted { utterance } => {
                    self.emit(ClientEvent::SpeechStarted { utterance })
                }
                TranscriptEvent::SpeechEnded { utterance } => {
                    self.emit(ClientEvent::SpeechEnded { utterance })
                }
                TranscriptEvent::Interim(t) => {
                    self.interim_base = base;
                    let timed = self.timed(t, false, base);
                    self.emit(ClientEvent::Transcript(timed));
                }
                TranscriptEvent::Final(t) => {
                    let end = t.end;
                    let timed = self.timed(t, true, base);
                    // The words are in: a later drop need not replay this audio again.
                    if let Some(end) = end {
                        self.log.release_through(self.stream_sample(base, end));
                    }
                    self.retries = 0;
                    self.emit(ClientEvent::Transcript(timed));
                }
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
                    is_final: w.is_final,
                })
                .collect(),
            text: t.text,
            delay,
        }
    }

    fn report_usage(&mut self) {
        if self.usage.since_last == 0 {
            return;
        }
        let since_last = Duration::from_nanos(samples_to_ns(self.usage.since_last));
        let total = Duration::from_nanos(samples_to_ns(self.usage.total));
        self.usage.since_last = 0;
        self.emit(ClientEvent::Usage { since_last, total });
    }

    /// Closes politely (bounded), then returns `end`.
    async fn close(&mut self, mut out: WsStream, end: ConnectionEnd) -> ConnectionEnd {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, out.send(Message::Close(Some(frame)))).await;
        end
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
}

// SPDX-License-Identifier: MPL-2.0
//! The network task of one stream: connects, streams audio, turns server messages into
//! events, reconnects after a drop (replaying audio from the end of the last final word), and
//! completes end of stream. Runs on the shared runtime; the element only sees [`Command`]s
//! going in and [`ClientEvent`]s coming out.

use std::collections::VecDeque;
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
use super::backoff;
use super::connect::{self, WsStream};
use super::connection::Connection;
use super::duplex::{PendingWrite, WriteProgress};
use super::events::{
    ClientEvent, DrainOutcome, EventSink, Failure, FailureKind, ServerErrorReport, Step,
    TimedTranscript, TimedWord,
};
use super::liveness::{checkpoint_quiet, Due};
use super::{samples_to_ns, seconds_to_samples, ClientConfig, BYTES_PER_SAMPLE, SAMPLE_RATE};
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
/// How long what already arrived on a connection whose write failed is still read.
const READ_AFTER_WRITE_FAILURE: Duration = Duration::from_millis(200);

/// Most audio frames written with one flush.
const MAX_FRAMES_PER_WRITE: usize = 64;
/// A write during which frames keep arriving (so it never counts as stalled) still ends after
/// this many `stall-timeout`s: a service that talks but never reads is as stuck as a silent one.
pub const MAX_WRITE_STALL_TIMEOUTS: u32 = 4;
/// Non-live audio held back at the full replay log flows again when no transcript at all
/// (interim or final) has come for this long: the service is not working through speech
/// (the audio is silence, or it waits for more before it finalises).
const HOLD_QUIET: Duration = Duration::from_secs(2);
/// Bound on a whole end-of-stream drain, reconnects and replays included: per attempt the
/// pause before it, the connect, the replay write and the wait for the echo. The retries
/// (`max-retries`) end a failing drain long before this in practice; the bound is what makes
/// a drain finite even when every reconnect makes some progress and resets the count.
pub fn drain_budget(cfg: &ClientConfig) -> Duration {
    let attempt =
        cfg.connect_timeout + cfg.stall_timeout + cfg.drain_timeout.max(checkpoint_quiet(cfg));
    attempt
        .saturating_mul(cfg.max_retries.saturating_add(1))
        .saturating_add(backoff::longest_retry_pauses(cfg))
}

struct PendingDrain {
    reply: std::sync::mpsc::SyncSender<DrainOutcome>,
    /// Bound on the whole drain, reconnects included ([`drain_budget`]).
    give_up_at: Instant,
    /// When the current connection must have confirmed the end of the stream: set when its
    /// checkpoint goes out, cleared when the connection ends.
    deadline: Option<Instant>,
}

/// A change of options waiting for the old connection to finish its utterance.
struct PendingSwitch {
    cfg: Arc<ClientConfig>,
    checkpoint_id: String,
    /// Audio before this offset belongs to the old options, the rest to the new ones.
    at_sample: u64,
    /// When the connection with the old options must have finished (set when its checkpoint
    /// goes out, cleared when the connection ends).
    deadline: Option<Instant>,
}

/// Why audio held back at the full replay log flows again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldLift {
    /// No transcript at all for [`HOLD_QUIET`]: as far as the service says, silence.
    Quiet,
    /// Transcripts but no final for `stall-timeout`: speech the service finalises only later.
    NoFinal,
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

/// Why the select loop leaves a connection, and what is owed to the socket on the way out.
enum Leave {
    /// Close politely (bounded), then end this way.
    Close(ConnectionEnd),
    /// A write ended it: a lost connection may still have delivered transcripts
    /// ([`Supervisor::read_what_arrived`]); any other end closes politely.
    AfterWrite(ConnectionEnd),
    /// Dead: nothing more is said to it.
    Abandon(ConnectionEnd),
}

/// What a handler of the select loop returns: carry on with this connection, or leave it.
type Handled = Result<(), Leave>;

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
    /// Connection attempts made, successful or not (for the log).
    attempts: u32,
    /// Retries since the last final transcript (LiveKit's plugin resets its counter there too;
    /// docs/protocol.md#retries).
    retries: u32,
    drain: Option<PendingDrain>,
    switch: Option<PendingSwitch>,
    /// The drain already went to a new connection once after a close without an echo.
    drain_replayed: bool,
    protocol_warnings: u32,
    /// The last retry was for HTTP 429: the next pause grows ([`backoff::retry_delay`]).
    rate_limited: bool,
    /// Audio offset where the connection that sent the latest interim began: a promoted final
    /// at end of stream carries that connection's times.
    interim_base: u64,
    /// The input is live: audio is never held back for the replay log (see
    /// [`Supervisor::takes_audio`]).
    live: bool,
    /// Since when non-live audio has been held back because the replay log is full, renewed by
    /// every final that arrives meanwhile.
    held_since: Option<Instant>,
    /// When the last transcript (interim or final) arrived.
    last_transcript_at: Option<Instant>,
    /// Why held-back audio flows again (the log forgetting its oldest) until the next final;
    /// `None` while the hold applies.
    hold_lifted: Option<HoldLift>,
    /// Non-live audio a reconnect could not resend (older than the replay log): reported in
    /// an ERROR when the stream ends.
    unreplayed: u64,
    /// A command taken from the queue behind audio whose write has not completed: handled
    /// after that write, or by the next connection if the write fails.
    deferred: Option<Command>,
}

impl Supervisor {
    /// `live`: the audio comes from a live source (see [`Supervisor::takes_audio`]).
    pub fn new(
        cfg: Arc<ClientConfig>,
        tls: Arc<rustls::ClientConfig>,
        sink: Arc<dyn EventSink>,
        live: bool,
    ) -> Self {
        let limit_bytes = super::duration_to_bytes(cfg.replay_limit);
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
            attempts: 0,
            retries: 0,
            drain: None,
            switch: None,
            drain_replayed: false,
            protocol_warnings: 0,
            rate_limited: false,
            interim_base: 0,
            live,
            held_since: None,
            last_transcript_at: None,
            hold_lifted: None,
            unreplayed: 0,
            deferred: None,
        }
    }

    /// Whether more audio may be taken from the streaming thread. Non-live input never has
    /// more audio sent but not yet confirmed by a final than the replay log can hold: when the
    /// log is full, the audio waits in the queue (and the streaming thread behind it, which
    /// is backpressure up the pipeline) until a final releases some, so a reconnect can always
    /// resend everything the service had not finalised (docs/protocol.md, "Flow control", F2).
    /// Live input cannot wait: the log forgets its oldest audio instead, and a reconnect says
    /// how much it could not resend.
    /// A service that sends no transcript for [`HOLD_QUIET`], or no final for `stall-timeout`,
    /// while audio is held back is not finalising what it has (silence, or it waits for more
    /// audio): then the hold is lifted until the next final.
    fn takes_audio(&self) -> bool {
        self.live || self.hold_lifted.is_some() || !self.log.is_full()
    }

    /// When held-back audio is let go, and why (see `hold_lifted`): [`HOLD_QUIET`] after the
    /// last transcript, at most `stall-timeout` after the hold began or the last final.
    /// Updates `held_since`.
    fn held_deadline(&mut self) -> Option<(tokio::time::Instant, HoldLift)> {
        if self.takes_audio() {
            self.held_since = None;
            return None;
        }
        let since = *self.held_since.get_or_insert_with(Instant::now);
        let quiet_from = self.last_transcript_at.map_or(since, |at| at.max(since));
        let quiet = quiet_from + HOLD_QUIET;
        let no_final = since + self.cfg.stall_timeout;
        Some(if quiet <= no_final {
            (quiet.into(), HoldLift::Quiet)
        } else {
            (no_final.into(), HoldLift::NoFinal)
        })
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        loop {
            // A drain or an option change that came behind audio whose write failed.
            if let Some(command) = self.deferred.take() {
                self.take_offline_command(Some(command));
            }
            self.settle_switch_offline();
            let Some(ws) = self.establish(&mut rx).await else {
                break;
            };
            let end = self.stream(ws, &mut rx).await;
            // Deadlines belong to the connection that ended: the next one sets its own.
            if let Some(drain) = &mut self.drain {
                drain.deadline = None;
            }
            if let Some(switch) = &mut self.switch {
                switch.deadline = None;
            }
            match end {
                ConnectionEnd::Finished => break,
                ConnectionEnd::Switched => self.retries = 0,
                ConnectionEnd::Fatal(failure) => {
                    self.fail(failure);
                    break;
                }
                // A switch cut short by the drop stays pending: the next connection replays
                // the audio before the switch point with the old options and finishes it.
                ConnectionEnd::Lost(failure) => {
                    if !self.note_retry(failure) {
                        break;
                    }
                }
            }
        }
        self.answer_drain(DrainOutcome::Failed);
    }

    fn emit(&self, event: ClientEvent) {
        self.sink.on_event(event);
    }

    fn step(&self, step: Step) {
        self.emit(ClientEvent::Step(step));
    }

    /// Reports the end of the session, saying how much of the audio received no final
    /// transcript covers: that audio was never transcribed.
    fn fail(&mut self, mut failure: Failure) {
        let lost = self.log.unconfirmed_samples();
        if lost > 0 {
            let seconds = |samples: u64| samples as f64 / SAMPLE_RATE as f64;
            let from = self.log.confirmed_through();
            failure.untranscribed = Some(Duration::from_nanos(samples_to_ns(lost)));
            failure.message = format!(
                "{}. {:.1} s of audio were never transcribed (from {:.1} s to {:.1} s of the \
                 audio received)",
                failure.message,
                seconds(lost),
                seconds(from),
                seconds(from + lost)
            );
        }
        self.emit(ClientEvent::Error(failure));
    }

    /// Counts a retry for `cause`. Posts the retry warning, or the final error when the
    /// retries are used up (returns false then).
    fn note_retry(&mut self, cause: Failure) -> bool {
        // Only a stream that had a connection is re-connecting.
        let ever_connected = self.connections > 0;
        if self.retries >= self.cfg.max_retries {
            let mut failure = cause.clone();
            failure.message = format!(
                "Giving up after {} retries (max-retries){}: {}",
                self.retries,
                if ever_connected {
                    ""
                } else {
                    ", no connection ever succeeded"
                },
                cause.message
            );
            failure.attempt = Some(self.retries);
            self.fail(failure);
            return false;
        }
        self.retries += 1;
        self.rate_limited = cause.kind == FailureKind::RateLimited;
        let mut warning = cause.clone();
        warning.message = format!(
            "{} (retry {} of {}): {}",
            if ever_connected {
                "Reconnecting to Fireworks"
            } else {
                "Connecting to Fireworks failed, trying again"
            },
            self.retries,
            self.cfg.max_retries,
            cause.message
        );
        warning.attempt = Some(self.retries);
        self.emit(ClientEvent::Warning(warning));
        self.step(Step::RetryIn {
            delay: self.retry_delay(),
        });
        true
    }

    fn retry_delay(&self) -> Duration {
        backoff::retry_delay(&self.cfg, self.retries, self.rate_limited)
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
                self.reconfigure_offline(*cfg);
                true
            }
            None => false,
        }
    }

    /// New options while there is no connection. Audio no final covers yet was meant for the
    /// old options: it still goes to a connection with them (which then finishes with a
    /// checkpoint), and only the audio from here on goes to the new ones. Returns true when
    /// the options apply at once (nothing was waiting for the old ones).
    fn reconfigure_offline(&mut self, cfg: ClientConfig) -> bool {
        match &mut self.switch {
            Some(switch) => {
                switch.cfg = Arc::new(cfg);
                false
            }
            None if self.log.unconfirmed_samples() > 0 => {
                self.switch = Some(PendingSwitch {
                    cfg: Arc::new(cfg),
                    checkpoint_id: END_OF_STREAM_CHECKPOINT.to_string(),
                    at_sample: self.log.end_offset(),
                    deadline: None,
                });
                false
            }
            None => {
                self.cfg = Arc::new(cfg);
                true
            }
        }
    }

    /// A pending switch whose old-options audio is all confirmed needs no connection with the
    /// old options: the new ones apply at once.
    fn settle_switch_offline(&mut self) {
        if self
            .switch
            .as_ref()
            .is_some_and(|s| self.log.replay_start() >= s.at_sample)
        {
            self.finish_switch();
        }
    }

    /// Asks the current connection to finish what it heard; audio from here on waits for
    /// the next connection.
    fn start_switch(&mut self, cfg: ClientConfig) {
        // The id the service is known to finalize on; only one checkpoint is ever in flight.
        self.switch = Some(PendingSwitch {
            cfg: Arc::new(cfg),
            checkpoint_id: END_OF_STREAM_CHECKPOINT.to_string(),
            at_sample: self.log.end_offset(),
            deadline: None,
        });
    }

    /// Sends a checkpoint followed by a ping (one flush): the ping's answer shows the service
    /// read everything before it, even when it has nothing to say.
    async fn send_checkpoint(
        &mut self,
        conn: &mut Connection,
        checkpoint_id: &str,
    ) -> Result<(), ConnectionEnd> {
        let text = checkpoint_message(checkpoint_id);
        let messages = VecDeque::from([Message::text(text), Message::Ping(Bytes::new())]);
        self.write_reading(conn, messages).await?;
        let now = Instant::now();
        conn.liveness.checkpoint_at = Some(now);
        conn.liveness.pinged(now);
        Ok(())
    }

    /// Sends the checkpoint the pending switch or drain waits for, and starts its deadline.
    /// A switch goes first: the drain's checkpoint goes to the connection with the new options.
    async fn send_pending_checkpoint(
        &mut self,
        conn: &mut Connection,
    ) -> Result<(), ConnectionEnd> {
        if let Some(switch) = &self.switch {
            let id = switch.checkpoint_id.clone();
            let at = Duration::from_nanos(samples_to_ns(switch.at_sample));
            self.send_checkpoint(conn, &id).await?;
            let deadline = conn.liveness.checkpoint_deadline(self.cfg.drain_timeout);
            if let Some(switch) = &mut self.switch {
                switch.deadline = deadline;
            }
            self.step(Step::SwitchCheckpointSent { at });
        } else if self.drain.is_some() {
            self.send_checkpoint(conn, END_OF_STREAM_CHECKPOINT).await?;
            let deadline = conn.liveness.checkpoint_deadline(self.cfg.drain_timeout);
            if let Some(drain) = &mut self.drain {
                drain.deadline = deadline;
            }
            self.step(Step::DrainCheckpointSent {
                quiet: checkpoint_quiet(&self.cfg),
            });
        }
        Ok(())
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
        self.step(Step::SwitchDone);
        ConnectionEnd::Switched
    }

    fn start_drain(&mut self, reply: std::sync::mpsc::SyncSender<DrainOutcome>) {
        self.drain = Some(PendingDrain {
            reply,
            give_up_at: Instant::now() + drain_budget(&self.cfg),
            deadline: None,
        });
    }

    fn drain_give_up(&self) -> Option<tokio::time::Instant> {
        self.drain.as_ref().map(|d| d.give_up_at.into())
    }

    /// The whole drain took longer than its budget: reconnects kept failing or kept being
    /// needed.
    fn drain_exhausted(&self) -> Failure {
        Failure::new(
            FailureKind::DrainTimeout,
            format!(
                "Fireworks at {} did not finish the end of the stream within {} s, reconnects \
                 included",
                self.cfg.host_for_messages(),
                drain_budget(&self.cfg).as_secs()
            ),
            "drain budget: (max-retries + 1) x (retry-interval + connect-timeout + \
             stall-timeout + drain-timeout)",
        )
    }

    /// Ends the stream: promotes pending text, reports usage and answers the drain request.
    /// `TimedOut` is only used for a connection that was answering (a dead one is replaced):
    /// the service heard everything but did not finish in `drain-timeout`.
    fn finish_drain(&mut self, outcome: DrainOutcome) {
        let without_final = self
            .log
            .end_offset()
            .saturating_sub(self.log.replay_start());
        let events = self.transcript.end_of_stream();
        let promoted = events
            .iter()
            .any(|e| matches!(e, TranscriptEvent::Final(t) if t.promoted));
        self.emit_transcript_events(events, self.interim_base);
        if !self.live && self.unreplayed > 0 {
            self.emit(ClientEvent::Error(self.unreplayed_failure()));
            self.answer_drain(DrainOutcome::Failed);
            return;
        }
        let untranscribed = Duration::from_nanos(samples_to_ns(without_final));
        if outcome == DrainOutcome::TimedOut
            && !self.live
            && !promoted
            && untranscribed > self.cfg.text_timeout
        {
            // A file whose end got no text at all, more of it than the silence that ends an
            // utterance: it may have been speech, and nothing will ever transcribe it.
            self.fail(self.untranscribed_end_failure());
            self.answer_drain(DrainOutcome::Failed);
            return;
        }
        if outcome == DrainOutcome::TimedOut {
            let warning = self.drain_timed_out_warning(promoted, without_final);
            self.emit(ClientEvent::Warning(warning));
        } else if outcome == DrainOutcome::Completed {
            self.step(Step::DrainConfirmed);
        }
        self.answer_drain(outcome);
    }

    /// Non-live audio a reconnect could not resend (older than the replay log): an ERROR at
    /// the end of the stream, naming the seconds.
    fn unreplayed_failure(&self) -> Failure {
        let lost = Duration::from_nanos(samples_to_ns(self.unreplayed));
        let mut failure = Failure::new(
            FailureKind::AudioDropped,
            format!(
                "{:.1} s of audio were never transcribed: after a reconnect they could not \
                 be sent again (older than the {} s of audio kept for a replay)",
                lost.as_secs_f64(),
                self.cfg.replay_limit.as_secs()
            ),
            "audio older than the replay limit when a connection was replaced",
        );
        failure.untranscribed = Some(lost);
        failure
    }

    /// A file whose end got no text at all by the drain deadline.
    fn untranscribed_end_failure(&self) -> Failure {
        Failure::new(
            FailureKind::DrainTimeout,
            format!(
                "Fireworks was answering but did not finish the end of the stream within \
                 {} ms (drain-timeout) of its last transcript, and had given no text at all \
                 for the audio after its last final, speech or silence (raise drain-timeout \
                 to wait longer)",
                self.cfg.drain_timeout.as_millis()
            ),
            "no checkpoint echo or close before the drain deadline",
        )
    }

    /// A drain that timed out on an answering service, with nothing or only a promoted
    /// utterance left unfinished: a WARNING naming the audio without a final.
    fn drain_timed_out_warning(&self, promoted: bool, without_final: u64) -> Failure {
        let what = if promoted {
            "its unfinished last utterance was delivered as final (promoted=true)"
        } else {
            "no unfinished text was pending"
        };
        Failure::new(
            FailureKind::DrainTimeout,
            format!(
                "Fireworks was answering but did not confirm the end of the stream within \
                 {} ms (drain-timeout) of its last transcript; {what}. The last {:.1} s of \
                 audio had no final transcript (silence, or speech the service had not \
                 finished: raise drain-timeout to wait longer)",
                self.cfg.drain_timeout.as_millis(),
                without_final as f64 / SAMPLE_RATE as f64
            ),
            "no checkpoint echo or close before the drain deadline",
        )
    }

    /// Reports the usage not yet reported and answers the drain request, if one is pending.
    fn answer_drain(&mut self, outcome: DrainOutcome) {
        self.report_usage();
        if let Some(drain) = self.drain.take() {
            let _ = drain.reply.send(outcome);
        }
    }

    /// Gets a connection, retrying transient failures, while still taking in audio.
    async fn establish(&mut self, rx: &mut mpsc::Receiver<Command>) -> Option<WsStream> {
        loop {
            let attempt = self.connect_attempt();
            tokio::pin!(attempt);
            let result = loop {
                // Only the drain's overall bound applies here: each attempt is bounded by
                // connect-timeout and the retries are counted.
                let give_up = self.drain_give_up();
                // A full replay buffer stops intake instead of forgetting audio never sent:
                // the queue then fills and the streaming thread waits (or, live, drops and
                // says so).
                let room = !self.log.is_full();
                tokio::select! {
                    result = &mut attempt => break Some(result),
                    cmd = rx.recv(), if room => match cmd {
                        Some(Command::Reconfigure(cfg)) => {
                            // The attempt under way carries the old options: when nothing
                            // waits for them, start again with the new ones.
                            if self.reconfigure_offline(*cfg) {
                                break None;
                            }
                        }
                        other => {
                            if !self.take_offline_command(other) {
                                return None;
                            }
                        }
                    },
                    _ = sleep_until_opt(give_up) => {
                        let failure = self.drain_exhausted();
                        self.fail(failure);
                        return None;
                    }
                }
            };
            match result {
                None => continue,
                Some(Ok(ws)) => return Some(ws),
                Some(Err(err)) => {
                    if !self.connect_failed(err) {
                        return None;
                    }
                }
            }
        }
    }

    /// The next connection attempt, after the pause a retry is due (none for the first).
    fn connect_attempt(
        &mut self,
    ) -> impl std::future::Future<Output = Result<WsStream, connect::ConnectError>> {
        let wake = tokio::time::Instant::now() + self.retry_delay();
        let cfg = self.cfg.clone();
        let tls = self.tls.clone();
        let sink = self.sink.clone();
        let number = self.attempts;
        self.attempts += 1;
        async move {
            sleep_until(wake).await;
            sink.on_event(ClientEvent::Step(Step::Connecting {
                attempt: number,
                host: cfg.host_for_messages(),
            }));
            connect::connect(&cfg, &tls).await
        }
    }

    /// A connection attempt failed: reports it, and says whether another may be made.
    fn connect_failed(&mut self, err: connect::ConnectError) -> bool {
        let failure = err.to_failure(&self.cfg.host_for_messages(), self.cfg.url.path());
        self.step(Step::ConnectFailed {
            attempt: self.attempts - 1,
            reason: failure.message.clone(),
        });
        if !err.is_retryable() {
            self.fail(failure);
            return false;
        }
        self.note_retry(failure)
    }

    /// Streams over one connection until it ends: resumes where the last one stopped, then
    /// hands whatever comes first (a frame, a command, a timer) to its handler.
    async fn stream(&mut self, ws: WsStream, rx: &mut mpsc::Receiver<Command>) -> ConnectionEnd {
        let (mut conn, replay) = self.open_connection(ws);
        let leave = match self.resume(&mut conn, replay).await {
            Ok(()) => self.serve(&mut conn, rx).await,
            Err(leave) => leave,
        };
        match leave {
            Leave::Close(end) => self.close(conn, end).await,
            Leave::AfterWrite(end @ ConnectionEnd::Lost(_)) => {
                self.read_what_arrived(conn, end).await
            }
            Leave::AfterWrite(end) => self.close(conn, end).await,
            Leave::Abandon(end) => end,
        }
    }

    /// The bookkeeping of a new connection: what it will replay (returned) and what the
    /// replay log could no longer keep (reported).
    fn open_connection(&mut self, ws: WsStream) -> (Connection, Vec<(u64, Bytes)>) {
        self.transcript.begin_connection();
        let base = self.log.replay_start();
        self.report_unreplayable();
        // While a switch is pending, this connection carries the old options: it gets the
        // audio before the switch point only.
        let replay_end = self.switch.as_ref().map_or(u64::MAX, |s| s.at_sample);
        let replay = self.log.frames_between(base, replay_end);
        let replay_samples: u64 = replay
            .iter()
            .map(|(_, data)| data.len() as u64 / BYTES_PER_SAMPLE)
            .sum();
        self.emit(ClientEvent::Connected {
            attempt: self.connections,
        });
        self.step(Step::Connected {
            attempt: self.attempts.saturating_sub(1),
            replay: Duration::from_nanos(samples_to_ns(replay_samples)),
        });
        self.connections += 1;
        (Connection::new(ws, base, &self.cfg), replay)
    }

    /// Audio the replay log forgot before this reconnect: a WARNING, and for non-live input
    /// part of the ERROR at the end when it was speech. The hold starts afresh on the new
    /// connection: the replay fills the log again, and the service gets its full time to
    /// finalise it.
    fn report_unreplayable(&mut self) {
        let unreplayable = self.log.take_unreplayable();
        if !self.live && self.hold_lifted == Some(HoldLift::NoFinal) {
            // Forgotten while the service kept sending transcripts but no final: speech. (Audio
            // forgotten after a quiet lift was silence as far as the service said.)
            self.unreplayed += unreplayable;
        }
        self.held_since = None;
        self.hold_lifted = None;
        if unreplayable > 0 {
            self.emit(ClientEvent::Warning(Failure::new(
                FailureKind::AudioDropped,
                format!(
                    "{:.1} s of audio before the reconnect were older than the replay limit \
                     and could not be sent again",
                    unreplayable as f64 / SAMPLE_RATE as f64
                ),
                "replay buffer limit exceeded",
            )));
        }
    }

    /// Sends what the service has not finalised (the replay) and the checkpoint a pending
    /// switch or drain waits for.
    async fn resume(&mut self, conn: &mut Connection, replay: Vec<(u64, Bytes)>) -> Handled {
        self.send_frames(conn, replay)
            .await
            .map_err(Leave::AfterWrite)?;
        self.send_pending_checkpoint(conn)
            .await
            .map_err(Leave::AfterWrite)?;
        conn.rearm_keepalive(&self.cfg);
        Ok(())
    }

    /// The select loop of one connection: each turn waits for the first of a frame, a
    /// command (while audio may be taken, see [`Supervisor::takes_audio`]) and the timers,
    /// and hands it to its handler.
    async fn serve(&mut self, conn: &mut Connection, rx: &mut mpsc::Receiver<Command>) -> Leave {
        loop {
            let takes_audio = self.takes_audio();
            let checkpoint_deadline = self.checkpoint_deadline();
            let give_up = self.drain_give_up();
            let held = self.held_deadline();
            let handled = tokio::select! {
                incoming = conn.ws.next() => self.on_frame(conn, incoming),
                cmd = rx.recv(), if takes_audio => self.on_command(conn, rx, cmd).await,
                () = conn.keepalive.as_mut() => self.on_keepalive_timer(conn).await,
                _ = sleep_until_opt(checkpoint_deadline) => self.on_checkpoint_deadline(conn),
                _ = sleep_until_opt(give_up) => {
                    Err(Leave::Close(ConnectionEnd::Fatal(self.drain_exhausted())))
                }
                _ = sleep_until_opt(held.map(|(at, _)| at)) => {
                    self.hold_lifted = held.map(|(_, why)| why);
                    self.step(Step::HoldLifted);
                    Ok(())
                }
                _ = conn.usage_tick.tick() => {
                    self.report_usage();
                    Ok(())
                }
            };
            if let Err(leave) = handled {
                return leave;
            }
        }
    }

    /// A frame from the service, or the end of the socket.
    fn on_frame(
        &mut self,
        conn: &mut Connection,
        incoming: Option<Result<Message, WsError>>,
    ) -> Handled {
        conn.heard();
        if let Some(end) = self.on_incoming(incoming, conn.base) {
            return Err(Leave::Close(end));
        }
        if conn.overdue {
            // The checkpoint's time is up and the connection has now shown it is alive: the
            // service heard everything but did not finish in time.
            return Err(Leave::Close(self.checkpoint_timed_out()));
        }
        Ok(())
    }

    /// A command from the streaming thread; `None`: the element went away.
    async fn on_command(
        &mut self,
        conn: &mut Connection,
        rx: &mut mpsc::Receiver<Command>,
        cmd: Option<Command>,
    ) -> Handled {
        let command = match cmd {
            // Audio already queued behind this frame goes out in the same write; a command
            // met on the way is handled right after it.
            Some(Command::Audio(data)) => {
                let sent = self.send_queued_audio(conn, rx, data).await;
                match sent.map_err(Leave::AfterWrite)? {
                    Some(command) => command,
                    None => return Ok(()),
                }
            }
            Some(command) => command,
            None => return Err(Leave::Close(ConnectionEnd::Finished)),
        };
        let send_checkpoint = match command {
            Command::Audio(_) => unreachable!("audio is sent above"),
            Command::Drain(reply) => {
                self.start_drain(reply);
                // While switching, the next connection sends the end-of-stream checkpoint.
                self.switch.is_none()
            }
            Command::Reconfigure(cfg) => self.reconfigure_online(*cfg),
        };
        if send_checkpoint {
            self.send_pending_checkpoint(conn)
                .await
                .map_err(Leave::AfterWrite)?;
            conn.rearm_keepalive(&self.cfg);
        }
        Ok(())
    }

    /// New options while connected: starts a switch (true: its checkpoint is to be sent), or,
    /// when this connection is already being left, makes them the ones the next one uses.
    fn reconfigure_online(&mut self, cfg: ClientConfig) -> bool {
        if self.switch.is_none() && self.drain.is_none() {
            self.start_switch(cfg);
            return true;
        }
        // Already leaving this connection: the newest options win.
        match &mut self.switch {
            Some(switch) => switch.cfg = Arc::new(cfg),
            None => self.cfg = Arc::new(cfg),
        }
        false
    }

    /// The keepalive timer fired: wait longer, ping, or give the connection up as dead.
    async fn on_keepalive_timer(&mut self, conn: &mut Connection) -> Handled {
        let now = Instant::now();
        match conn.liveness.check(now, &self.cfg) {
            Due::Wait(at) => conn.keepalive.as_mut().reset(at.into()),
            Due::Ping => {
                let ping = VecDeque::from([Message::Ping(Bytes::new())]);
                self.write_reading(conn, ping)
                    .await
                    .map_err(Leave::AfterWrite)?;
                self.step(Step::PingSent);
                conn.liveness.pinged(now);
                conn.rearm_keepalive(&self.cfg);
            }
            Due::Dead(after) => {
                self.step(Step::Silent { after });
                let failure = self.silent(after, conn.liveness.checkpoint_at.is_some());
                return Err(Leave::Abandon(ConnectionEnd::Lost(failure)));
            }
        }
        Ok(())
    }

    /// When the checkpoint of the pending switch or drain must have been answered (at most
    /// one of them has a checkpoint out: a switch cannot start during a drain, and a drain's
    /// checkpoint waits for the connection after a switch).
    fn checkpoint_deadline(&self) -> Option<tokio::time::Instant> {
        let switch = self.switch.as_ref().and_then(|s| s.deadline);
        let drain = self.drain.as_ref().and_then(|d| d.deadline);
        switch.or(drain).map(Into::into)
    }

    /// The checkpoint's time is up. A connection that has answered since it went out is alive
    /// but slow: the switch or drain ends now. One that has been silent is not "answering but
    /// slow" (yet): the keepalive watch replaces it when the quiet bound passes, and a first
    /// frame before that ends the wait ([`Connection::overdue`]).
    fn on_checkpoint_deadline(&mut self, conn: &mut Connection) -> Handled {
        if conn.liveness.heard_since_checkpoint() {
            return Err(Leave::Close(self.checkpoint_timed_out()));
        }
        conn.overdue = true;
        if let Some(switch) = &mut self.switch {
            switch.deadline = None;
        }
        if let Some(drain) = &mut self.drain {
            drain.deadline = None;
        }
        Ok(())
    }

    /// A checkpoint went unanswered on a connection that is alive: a switch finishes (the old
    /// connection's unfinished text is final), a drain ends as timed out.
    fn checkpoint_timed_out(&mut self) -> ConnectionEnd {
        if self.switch.is_some() {
            self.finish_switch()
        } else {
            self.finish_drain(DrainOutcome::TimedOut);
            ConnectionEnd::Finished
        }
    }

    /// A write failed, but the service may have sent transcripts before it went away (a
    /// server that closes abruptly resets the connection while our audio is still in flight,
    /// and the write notices first). What has already arrived is still read and processed —
    /// for at most [`READ_AFTER_WRITE_FAILURE`] — so a final that arrived is delivered and
    /// replay starts after it instead of asking the service for it again. The write's failure
    /// stays the reason, unless the connection ended in a way that says more (a close frame).
    async fn read_what_arrived(
        &mut self,
        mut conn: Connection,
        end: ConnectionEnd,
    ) -> ConnectionEnd {
        let until = tokio::time::Instant::now() + READ_AFTER_WRITE_FAILURE;
        while let Ok(incoming) = tokio::time::timeout_at(until, conn.ws.next()).await {
            if incoming.as_ref().is_none_or(|r| r.is_err()) {
                // The read side has met the same failure: keep the write's description.
                break;
            }
            if let Some(read_end) = self.on_incoming(incoming, conn.base) {
                return read_end;
            }
        }
        end
    }

    /// The connection sent nothing for `after`: `at_checkpoint` while it owed an answer to a
    /// checkpoint (the short bound), otherwise mid-stream (`stall-timeout`).
    fn silent(&self, after: Duration, at_checkpoint: bool) -> Failure {
        if !at_checkpoint {
            return self.stalled();
        }
        Failure::new(
            FailureKind::Stalled,
            format!(
                "Fireworks at {} stopped answering: nothing for {} ms after a checkpoint (not \
                 even a pong)",
                self.cfg.host_for_messages(),
                after.as_millis()
            ),
            "no frame received within the checkpoint bound (3 s, or stall-timeout if shorter)",
        )
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

    /// Writes `messages` with one flush, taking in and processing whatever the service sends
    /// meanwhile (see [`super::duplex`]): this task never blocks on a write without reading.
    /// The write counts as stalled when it neither completes nor hears anything for
    /// `stall-timeout`, and ends after [`MAX_WRITE_STALL_TIMEOUTS`] of them whatever arrives.
    /// `Err` is how the connection ended: the write failed, or a frame that arrived ended it.
    async fn write_reading(
        &mut self,
        conn: &mut Connection,
        messages: VecDeque<Message>,
    ) -> Result<(), ConnectionEnd> {
        let mut write = PendingWrite::new(messages);
        let started = Instant::now();
        let give_up = started + self.cfg.stall_timeout * MAX_WRITE_STALL_TIMEOUTS;
        loop {
            let stalled_at =
                (conn.liveness.last_heard.max(started) + self.cfg.stall_timeout).min(give_up);
            let progress =
                tokio::time::timeout_at(stalled_at.into(), write.advance(&mut conn.ws)).await;
            match progress {
                Err(_) => return Err(ConnectionEnd::Lost(self.stalled())),
                Ok(WriteProgress::Written(Ok(()))) => return Ok(()),
                Ok(WriteProgress::Written(Err(err))) => return Err(self.write_failed(err)),
                Ok(WriteProgress::Incoming(incoming)) => {
                    conn.heard();
                    if let Some(end) = self.on_incoming(incoming, conn.base) {
                        return Err(end);
                    }
                }
            }
        }
    }

    fn write_failed(&self, err: WsError) -> ConnectionEnd {
        ConnectionEnd::Lost(Failure::new(
            FailureKind::ConnectionLost,
            format!(
                "Lost the connection to {}: {err}",
                self.cfg.host_for_messages()
            ),
            format!("{err:?}"),
        ))
    }

    /// Logs `first` and every audio frame already queued behind it (up to a bound, and for
    /// non-live input only while the replay log has room) and, unless a switch holds audio
    /// back, sends them with one flush: one write and one timer for the lot instead of one per
    /// frame. Returns the first other command taken from the queue.
    async fn send_queued_audio(
        &mut self,
        conn: &mut Connection,
        rx: &mut mpsc::Receiver<Command>,
        first: Bytes,
    ) -> Result<Option<Command>, ConnectionEnd> {
        if self.switch.is_some() {
            // Held back for the next connection; the loop takes the rest one by one.
            self.log.append(first);
            return Ok(None);
        }
        let mut messages = VecDeque::new();
        let mut first_offset = None;
        let mut samples = 0;
        let mut next = Some(first);
        while let Some(data) = next.take() {
            let offset = self.log.append(data.clone());
            first_offset.get_or_insert(offset);
            samples += data.len() as u64 / BYTES_PER_SAMPLE;
            messages.push_back(Message::Binary(data));
            if messages.len() == MAX_FRAMES_PER_WRITE || !self.takes_audio() {
                break;
            }
            match rx.try_recv() {
                Ok(Command::Audio(data)) => next = Some(data),
                // Kept where a failed write cannot lose it (see `deferred`).
                Ok(command) => self.deferred = Some(command),
                Err(_) => {}
            }
        }
        self.write_reading(conn, messages).await?;
        if let Some(offset) = first_offset {
            self.log.mark_sent_from(offset, Instant::now());
        }
        self.usage.since_last += samples;
        self.usage.total += samples;
        Ok(self.deferred.take())
    }

    /// Sends logged frames, in order, with a single flush at the end.
    async fn send_frames(
        &mut self,
        conn: &mut Connection,
        frames: Vec<(u64, Bytes)>,
    ) -> Result<(), ConnectionEnd> {
        let Some(&(first_offset, _)) = frames.first() else {
            return Ok(());
        };
        let samples = frames
            .iter()
            .map(|(_, data)| data.len() as u64 / BYTES_PER_SAMPLE)
            .sum::<u64>();
        let messages = frames
            .into_iter()
            .map(|(_, data)| Message::Binary(data))
            .collect();
        self.write_reading(conn, messages).await?;
        self.log.mark_sent_from(first_offset, Instant::now());
        self.usage.since_last += samples;
        self.usage.total += samples;
        Ok(())
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
    async fn close(&mut self, mut conn: Connection, end: ConnectionEnd) -> ConnectionEnd {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let close = conn.ws.send(Message::Close(Some(frame)));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
        self.step(Step::Closed);
        end
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

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ClientConfig {
        let url = url::Url::parse("wss://example.com/v1/audio/transcriptions/streaming").unwrap();
        ClientConfig::new(url, super::super::ApiKey::new("k"))
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn the_drain_budget_covers_every_attempt() {
        // (3 + 1) x (10 + 15 + 5) s with the defaults, plus the longest pauses between the
        // attempts: a rate limit's 2, 4 and 8 s.
        assert_eq!(drain_budget(&cfg()), secs(120.0 + 14.0));
        let mut short = cfg();
        short.drain_timeout = secs(0.5);
        short.max_retries = 0;
        assert_eq!(drain_budget(&short), secs(10.0 + 15.0 + 3.0));
    }
}

// SPDX-License-Identifier: MPL-2.0
//! The network task of one stream: connects, streams audio, turns server messages into
//! events, reconnects after a drop (replaying audio from the end of the last final word), and
//! completes end of stream. Runs on the shared runtime; the element only sees [`Command`]s
//! going in and [`ClientEvent`]s coming out.

mod connection_loop;
mod end_of_stream;
mod flow_control;
mod incoming;
mod sending;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::sleep_until;

use super::audio_log::AudioLog;
use super::audio_units::{duration_to_bytes, samples_to_ns, SAMPLE_RATE};
use super::backoff;
use super::config::ClientConfig;
use super::connect::{self, WsStream};
use super::events::{ClientEvent, DrainOutcome, EventSink, Failure, FailureKind, Step};
use super::liveness::checkpoint_quiet;
use crate::protocol::TranscriptState;

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
        let limit_bytes = duration_to_bytes(cfg.replay_limit);
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

    fn report_usage(&mut self) {
        if self.usage.since_last == 0 {
            return;
        }
        let since_last = Duration::from_nanos(samples_to_ns(self.usage.since_last));
        let total = Duration::from_nanos(samples_to_ns(self.usage.total));
        self.usage.since_last = 0;
        self.emit(ClientEvent::Usage { since_last, total });
    }
}

/// Sleeps until `deadline`, or forever without one (a select branch that never fires).
async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::client::config::test_support::{cfg, secs};

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

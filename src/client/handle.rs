// SPDX-License-Identifier: MPL-2.0
//! The element's side of the client: cuts audio into frames and hands them to the network
//! task without ever waiting longer than a bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;

use super::config::ClientConfig;
use super::events::{ClientEvent, DrainOutcome, EventSink, Failure, FailureKind};
use super::runtime::runtime;
use super::supervisor::{drain_budget, Command, Supervisor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The session has ended (after an error); nothing more can be sent.
    Closed,
    /// The network task did not take audio within the bound: this many bytes at the end of
    /// the audio pushed so far were dropped.
    Dropped { bytes: usize },
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Closed => f.write_str("the Fireworks session has ended"),
            PushError::Dropped { bytes } => {
                write!(
                    f,
                    "{bytes} bytes of audio dropped: the network did not take them"
                )
            }
        }
    }
}

impl std::error::Error for PushError {}

/// What `push_audio` waits for when the queue to the network task is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refill {
    /// One free slot: live audio goes out as soon as there is any room.
    OneFrame,
    /// Room for a quarter of the queue (or all the frames at hand): input that runs ahead of
    /// the network (a file) then moves many frames per wake-up instead of one.
    Batch,
}

/// Why a command did not reach the network task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendError {
    Closed,
    Timeout,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::Closed => "the network task has ended",
            SendError::Timeout => "the network task's queue stayed full",
        })
    }
}

impl std::error::Error for SendError {}

/// Stops a session from any thread, even while its streaming thread is blocked in
/// [`StreamClient::push_audio`] (which then returns [`PushError::Closed`]).
#[derive(Debug, Clone)]
pub struct SessionAbort(tokio::task::AbortHandle);

impl SessionAbort {
    pub fn abort(&self) {
        self.0.abort();
    }
}

/// Handle on one streaming session. Dropping it stops the session at once.
pub struct StreamClient {
    tx: mpsc::Sender<Command>,
    task: JoinHandle<()>,
    pending: BytesMut,
    chunk_bytes: usize,
    /// Bound on the network task's whole drain, reconnects included.
    drain_budget: Duration,
    /// Longest the network task holds back the queue (audio at a full replay log).
    hold_bound: Duration,
    sink: Arc<dyn EventSink>,
}

/// Margin on top of the drain budget for the network task to answer (its polite close and
/// the final events).
const DRAIN_REPLY_MARGIN: Duration = Duration::from_secs(3);

impl StreamClient {
    /// Starts the session task. The connection is opened right away, in the background.
    /// `live`: the audio comes from a live source, which cannot be held back when the replay
    /// log is full (non-live audio is).
    pub fn start(cfg: ClientConfig, sink: Arc<dyn EventSink>, live: bool) -> Result<Self, Failure> {
        let tls = cfg
            .tls
            .client_config()
            .map_err(|err| Failure::new(FailureKind::Config, err.clone(), err))?;
        let (tx, rx) = mpsc::channel(cfg.queue_frames.max(1));
        let chunk_bytes = cfg.chunk_bytes.max(2) & !1;
        let drain_budget = drain_budget(&cfg);
        let hold_bound = cfg.stall_timeout;
        let supervisor = Supervisor::new(Arc::new(cfg), tls, sink.clone(), live);
        let task = runtime().spawn(supervisor.run(rx));
        Ok(StreamClient {
            tx,
            task,
            pending: BytesMut::with_capacity(chunk_bytes * 2),
            chunk_bytes,
            drain_budget,
            hold_bound,
            sink,
        })
    }

    pub fn abort_handle(&self) -> SessionAbort {
        SessionAbort(self.task.abort_handle())
    }

    /// Queues audio; whole frames go to the network task. When the queue is full this waits
    /// at most `wait` in all; then the rest of the audio held here (the frames that did not
    /// fit and the partial frame after them) is dropped, so that what the service hears stays
    /// a prefix of the input followed by later input, and the caller learns how many bytes of
    /// the end of `data` and before it were lost.
    pub fn push_audio(
        &mut self,
        data: &[u8],
        wait: Duration,
        refill: Refill,
    ) -> Result<(), PushError> {
        self.pending.extend_from_slice(data);
        let deadline = Instant::now() + wait;
        while self.pending.len() >= self.chunk_bytes {
            // An exact-size copy: a frame cut with split_to().freeze() would keep the whole
            // shared allocation alive for as long as the replay log holds the frame.
            let frame = Bytes::copy_from_slice(&self.pending[..self.chunk_bytes]);
            self.pending.advance(self.chunk_bytes);
            let left = deadline.saturating_duration_since(Instant::now());
            let room = match refill {
                Refill::OneFrame => 1,
                Refill::Batch => {
                    (1 + self.pending.len() / self.chunk_bytes).max(self.tx.max_capacity() / 4)
                }
            };
            match self.send(Command::Audio(frame), left, room) {
                Ok(()) => {}
                Err(SendError::Closed) => return Err(PushError::Closed),
                Err(SendError::Timeout) => {
                    let bytes = self.chunk_bytes + self.pending.len();
                    self.pending.clear();
                    return Err(PushError::Dropped { bytes });
                }
            }
        }
        Ok(())
    }

    /// Queues a command, waiting at most `wait` when the queue is full. Then it waits until
    /// there is room for `room` commands (at least one, at most the whole queue), or failing
    /// that in time, for any room at all.
    fn send(&self, command: Command, wait: Duration, room: usize) -> Result<(), SendError> {
        match self.tx.try_send(command) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(SendError::Closed),
            Err(TrySendError::Full(_)) if wait.is_zero() => Err(SendError::Timeout),
            Err(TrySendError::Full(command)) => {
                let room = room.clamp(1, self.tx.max_capacity());
                let tx = self.tx.clone();
                // Called from a GStreamer streaming thread, never from the runtime itself.
                runtime().block_on(async move {
                    match tokio::time::timeout(wait, tx.reserve_many(room)).await {
                        Ok(Ok(mut permits)) => match permits.next() {
                            Some(permit) => {
                                permit.send(command);
                                Ok(())
                            }
                            None => Err(SendError::Closed),
                        },
                        Ok(Err(_)) => Err(SendError::Closed),
                        // Not that much room in time: a single free slot will do.
                        Err(_) => match tx.try_send(command) {
                            Ok(()) => Ok(()),
                            Err(TrySendError::Closed(_)) => Err(SendError::Closed),
                            Err(TrySendError::Full(_)) => Err(SendError::Timeout),
                        },
                    }
                })
            }
        }
    }

    /// New session options (a changed language, model, prompt…): the current utterance is
    /// finished on the old connection and the audio goes on, without loss or repetition, on a
    /// new one.
    /// Returns false when the request could not be queued (the session has ended, or the
    /// queue stayed full for `wait`).
    pub fn reconfigure(&self, cfg: ClientConfig, wait: Duration) -> bool {
        self.send(Command::Reconfigure(Box::new(cfg)), wait, 1)
            .is_ok()
    }

    /// End of stream: sends the last partial frame and the end-of-stream checkpoint, then
    /// waits until the final transcript is in. A connection that is dead or dies meanwhile is
    /// replaced and the unconfirmed audio replayed; the network task bounds the whole drain
    /// by its budget ((`max-retries` + 1) × (`retry-interval` + `connect-timeout` +
    /// `stall-timeout` + `drain-timeout`)), and this wait by that plus a small margin.
    pub fn drain(mut self) -> DrainOutcome {
        // One deadline for the whole exchange, however the time is spent. The network task
        // starts its budget when it takes the request, which audio held back at a full replay
        // log can delay by up to `stall-timeout`.
        let deadline = Instant::now() + self.drain_budget + self.hold_bound + DRAIN_REPLY_MARGIN;
        let left = || deadline.saturating_duration_since(Instant::now());
        if !self.pending.is_empty() {
            let rest = self.pending.split().freeze();
            if self.send(Command::Audio(rest), left(), 1) == Err(SendError::Closed) {
                return DrainOutcome::Failed;
            }
        }
        let (reply_tx, reply_rx) = std::sync::mpsc::sync_channel(1);
        if self.send(Command::Drain(reply_tx), left(), 1).is_err() {
            return DrainOutcome::Failed;
        }
        match reply_rx.recv_timeout(left()) {
            Ok(outcome) => outcome,
            // The session was stopped (flush, state change) while draining.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => DrainOutcome::Failed,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // The network task bounds its drain itself; this is the last resort if it
                // could not (the session is stopped when `self` drops).
                let failure = Failure::new(
                    FailureKind::DrainTimeout,
                    format!(
                        "The end of the stream did not complete within {} s; the audio not \
                         yet confirmed by a final transcript was never transcribed",
                        (self.drain_budget + self.hold_bound + DRAIN_REPLY_MARGIN).as_secs()
                    ),
                    "the network task did not answer the drain request",
                );
                self.sink.on_event(ClientEvent::Error(failure));
                DrainOutcome::Failed
            }
        }
    }
}

impl Drop for StreamClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// SPDX-License-Identifier: MPL-2.0
//! Everything the supervisor writes to the socket: audio (batched, one flush per batch),
//! replays, checkpoints and pings, each through `write_reading`, which keeps reading while
//! it waits for the socket (docs/protocol.md, "Flow control", F1).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{Command, ConnectionEnd, Supervisor, MAX_FRAMES_PER_WRITE, MAX_WRITE_STALL_TIMEOUTS};
use crate::client::audio_units::{samples_to_ns, BYTES_PER_SAMPLE};
use crate::client::connection::Connection;
use crate::client::duplex::{PendingWrite, WriteProgress};
use crate::client::events::{Failure, FailureKind, Step};
use crate::client::liveness::checkpoint_quiet;
use crate::protocol::{checkpoint_message, END_OF_STREAM_CHECKPOINT};

impl Supervisor {
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
    pub(super) async fn send_pending_checkpoint(
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

    /// Writes `messages` with one flush, taking in and processing whatever the service sends
    /// meanwhile (see [`super::duplex`]): this task never blocks on a write without reading.
    /// The write counts as stalled when it neither completes nor hears anything for
    /// `stall-timeout`, and ends after [`MAX_WRITE_STALL_TIMEOUTS`] of them whatever arrives.
    /// `Err` is how the connection ended: the write failed, or a frame that arrived ended it.
    pub(super) async fn write_reading(
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
    pub(super) async fn send_queued_audio(
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
    pub(super) async fn send_frames(
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
}

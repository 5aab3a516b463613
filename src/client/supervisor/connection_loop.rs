// SPDX-License-Identifier: MPL-2.0
//! One connection's life: open it (replay what the service had not finalised, resend a
//! pending checkpoint), then the select loop that hands each frame, command and timer to a
//! handler, and the way out (a polite close, a read of what arrived after a failed write, or
//! nothing for a dead connection).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{
    sleep_until_opt, Command, ConnectionEnd, HoldLift, Supervisor, CLOSE_TIMEOUT,
    READ_AFTER_WRITE_FAILURE,
};
use crate::client::audio_units::{samples_to_ns, BYTES_PER_SAMPLE, SAMPLE_RATE};
use crate::client::config::ClientConfig;
use crate::client::connect::WsStream;
use crate::client::connection::Connection;
use crate::client::events::{ClientEvent, Failure, FailureKind, Step};
use crate::client::liveness::Due;

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

impl Supervisor {
    /// Streams over one connection until it ends: resumes where the last one stopped, then
    /// hands whatever comes first (a frame, a command, a timer) to its handler.
    pub(super) async fn stream(
        &mut self,
        ws: WsStream,
        rx: &mut mpsc::Receiver<Command>,
    ) -> ConnectionEnd {
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

    pub(super) fn stalled(&self) -> Failure {
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

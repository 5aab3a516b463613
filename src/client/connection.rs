// SPDX-License-Identifier: MPL-2.0
//! One WebSocket connection to the service, as the supervisor's select loop sees it: the
//! socket, where its audio begins in the stream, whether it is alive, and its two timers.
//!
//! The socket is not split into halves: the loop drops its read future before any handler
//! writes, and a write reads too (`super::duplex`), so one owner does both without a lock.

use std::pin::Pin;
use std::time::Instant;

use tokio::time::{Interval, Sleep};

use super::config::ClientConfig;
use super::connect::WsStream;
use super::liveness::Liveness;

pub(super) struct Connection {
    pub ws: WsStream,
    /// Sample offset in the stream where this connection's audio begins: the service's times
    /// on it count from here.
    pub base: u64,
    pub liveness: Liveness,
    /// One timer for keepalive, stall and the checkpoint watch, moved only when it fires or a
    /// checkpoint goes out: re-arming it for every message would touch the timer wheel
    /// thousands of times a second at scale.
    pub keepalive: Pin<Box<Sleep>>,
    /// When the next `usage` report is due (`ClientConfig::usage_interval`).
    pub usage_tick: Interval,
    /// The checkpoint's deadline passed before the connection answered anything: the next
    /// frame that arrives ends the wait (the service is alive but did not finish in time).
    pub overdue: bool,
}

impl Connection {
    pub fn new(ws: WsStream, base: u64, cfg: &ClientConfig) -> Self {
        let now = Instant::now();
        let liveness = Liveness::new(now);
        let keepalive = Box::pin(tokio::time::sleep_until(
            liveness.next_wake(now, cfg).into(),
        ));
        let start = tokio::time::Instant::now() + cfg.usage_interval;
        let usage_tick = tokio::time::interval_at(start, cfg.usage_interval);
        Connection {
            ws,
            base,
            liveness,
            keepalive,
            usage_tick,
            overdue: false,
        }
    }

    /// Something arrived: the connection is alive.
    pub fn heard(&mut self) {
        self.liveness.heard(Instant::now());
    }

    /// Moves the keepalive timer to what [`Liveness`] says is due next (after a ping or a
    /// checkpoint changed it).
    pub fn rearm_keepalive(&mut self, cfg: &ClientConfig) {
        let at = self.liveness.next_wake(Instant::now(), cfg);
        self.keepalive.as_mut().reset(at.into());
    }
}

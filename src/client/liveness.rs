// SPDX-License-Identifier: MPL-2.0
//! Whether one connection is alive: when it was last heard from, when a ping is due, and when
//! silence means it is dead (README, `stall-timeout` and "End of stream"). Pure bookkeeping over
//! `Instant`s; the connection's timer asks [`Liveness::check`] what is due.

use std::time::{Duration, Instant};

use super::config::ClientConfig;

/// After a checkpoint (end of stream, or a change of options) the service has to show that it
/// is alive: a ping goes out with the checkpoint and every `CHECKPOINT_PING_INTERVAL` after it,
/// and a connection from which nothing at all arrives (no transcript, no pong) for
/// `CHECKPOINT_QUIET` (or `stall-timeout`, if shorter) counts as dead and is replaced. A live
/// service answers a ping within a round trip plus the time to read the few frames still in
/// flight; waiting for the full `stall-timeout` here would let the drain run out first.
pub(super) const CHECKPOINT_QUIET: Duration = Duration::from_secs(3);
const CHECKPOINT_PING_INTERVAL: Duration = Duration::from_secs(1);

/// How long a connection may stay silent after a checkpoint before it counts as dead.
pub(super) fn checkpoint_quiet(cfg: &ClientConfig) -> Duration {
    cfg.stall_timeout.min(CHECKPOINT_QUIET)
}

/// What the keepalive timer found.
pub(super) enum Due {
    Wait(Instant),
    Ping,
    /// Nothing received for this long: the connection is dead.
    Dead(Duration),
}

/// Whether one connection is alive: when it was last heard from and what was asked of it.
pub(super) struct Liveness {
    pub last_heard: Instant,
    last_ping: Instant,
    ping_outstanding: bool,
    /// When a checkpoint (end of stream or switch) went out on this connection.
    pub checkpoint_at: Option<Instant>,
}

impl Liveness {
    pub fn new(now: Instant) -> Self {
        Liveness {
            last_heard: now,
            last_ping: now,
            ping_outstanding: false,
            checkpoint_at: None,
        }
    }

    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.ping_outstanding = false;
    }

    /// Silent since: the later of the last frame and the checkpoint.
    pub fn silent_since(&self) -> Instant {
        self.checkpoint_at
            .map_or(self.last_heard, |at| at.max(self.last_heard))
    }

    pub fn check(&self, now: Instant, cfg: &ClientConfig) -> Due {
        if self.checkpoint_at.is_some() {
            let quiet = checkpoint_quiet(cfg);
            let dead_at = self.silent_since() + quiet;
            if now >= dead_at {
                return Due::Dead(quiet);
            }
            let ping_at = self.last_ping + CHECKPOINT_PING_INTERVAL;
            if now >= ping_at {
                return Due::Ping;
            }
            return Due::Wait(dead_at.min(ping_at));
        }
        // Quiet for keepalive_interval: ping. Still nothing by stall_timeout: stalled.
        let bound = if self.ping_outstanding {
            cfg.stall_timeout
        } else {
            cfg.keepalive_interval
        };
        let due = self.last_heard + bound;
        if now < due {
            Due::Wait(due)
        } else if self.ping_outstanding {
            Due::Dead(cfg.stall_timeout)
        } else {
            Due::Ping
        }
    }

    pub fn pinged(&mut self, now: Instant) {
        self.last_ping = now;
        self.ping_outstanding = true;
    }

    /// When the timer must look again after a ping or a checkpoint at `now`.
    pub fn next_wake(&self, now: Instant, cfg: &ClientConfig) -> Instant {
        match self.check(now, cfg) {
            Due::Wait(at) => at,
            // Due already: look again at once.
            Due::Ping | Due::Dead(_) => now,
        }
    }

    pub fn checkpoint_deadline(&self, wait: Duration) -> Option<Instant> {
        self.checkpoint_at.map(|at| at + wait)
    }

    /// Something arrived after the checkpoint went out: the connection is answering.
    pub fn heard_since_checkpoint(&self) -> bool {
        self.checkpoint_at.is_some_and(|at| self.last_heard > at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::client::config::test_support::{cfg, secs};

    #[test]
    fn mid_stream_a_connection_is_pinged_then_stalled() {
        let cfg = cfg();
        let t0 = Instant::now();
        let mut live = Liveness::new(t0);
        assert!(
            matches!(live.check(t0 + secs(1.0), &cfg), Due::Wait(at) if at == t0 + cfg.keepalive_interval)
        );
        assert!(matches!(
            live.check(t0 + cfg.keepalive_interval, &cfg),
            Due::Ping
        ));
        live.pinged(t0 + cfg.keepalive_interval);
        assert!(matches!(live.check(t0 + secs(14.9), &cfg), Due::Wait(_)));
        assert!(
            matches!(live.check(t0 + cfg.stall_timeout, &cfg), Due::Dead(d) if d == cfg.stall_timeout)
        );
    }

    #[test]
    fn after_a_checkpoint_three_silent_seconds_mean_dead() {
        let cfg = cfg();
        let t0 = Instant::now();
        let mut live = Liveness::new(t0);
        let cp = t0 + secs(10.0);
        live.checkpoint_at = Some(cp);
        live.pinged(cp);
        assert!(!live.heard_since_checkpoint());
        assert!(matches!(live.check(cp + secs(0.5), &cfg), Due::Wait(at) if at == cp + secs(1.0)));
        assert!(matches!(live.check(cp + secs(1.0), &cfg), Due::Ping));
        live.pinged(cp + secs(1.0));
        assert!(matches!(live.check(cp + secs(2.9), &cfg), Due::Ping));
        assert!(matches!(live.check(cp + secs(3.0), &cfg), Due::Dead(d) if d == CHECKPOINT_QUIET));
        // A pong moves the bound: quiet counts from the last frame.
        live.heard(cp + secs(2.0));
        assert!(live.heard_since_checkpoint());
        assert!(matches!(live.check(cp + secs(4.9), &cfg), Due::Ping));
        assert!(matches!(live.check(cp + secs(5.0), &cfg), Due::Dead(_)));
    }

    #[test]
    fn a_short_stall_timeout_shortens_the_checkpoint_bound() {
        let mut cfg = cfg();
        cfg.stall_timeout = secs(0.9);
        assert_eq!(checkpoint_quiet(&cfg), secs(0.9));
        let t0 = Instant::now();
        let mut live = Liveness::new(t0);
        live.checkpoint_at = Some(t0);
        live.pinged(t0);
        assert!(matches!(live.check(t0 + secs(0.9), &cfg), Due::Dead(_)));
    }
}

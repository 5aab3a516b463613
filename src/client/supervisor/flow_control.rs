// SPDX-License-Identifier: MPL-2.0
//! Whether the supervisor takes more audio from the streaming thread: the replay hold for
//! non-live input (docs/protocol.md, "Flow control", F2).

use std::time::Instant;

use super::{HoldLift, Supervisor, HOLD_QUIET};

impl Supervisor {
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
    pub(super) fn takes_audio(&self) -> bool {
        self.live || self.hold_lifted.is_some() || !self.log.is_full()
    }

    /// When held-back audio is let go, and why (see `hold_lifted`): [`HOLD_QUIET`] after the
    /// last transcript, at most `stall-timeout` after the hold began or the last final.
    /// Updates `held_since`.
    pub(super) fn held_deadline(&mut self) -> Option<(tokio::time::Instant, HoldLift)> {
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
}

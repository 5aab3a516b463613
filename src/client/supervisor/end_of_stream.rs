// SPDX-License-Identifier: MPL-2.0
//! The two ways a connection is left on purpose: a drain (end of stream: the final
//! transcript of the last utterance, then done) and a switch (new options: the old connection
//! finishes its utterance, the next carries on from exactly there), online and between
//! connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{drain_budget, Command, ConnectionEnd, PendingDrain, PendingSwitch, Supervisor};
use crate::client::audio_units::{samples_to_ns, SAMPLE_RATE};
use crate::client::config::ClientConfig;
use crate::client::events::{ClientEvent, DrainOutcome, Failure, FailureKind, Step};
use crate::protocol::{TranscriptEvent, END_OF_STREAM_CHECKPOINT};

impl Supervisor {
    /// Commands that arrive while there is no connection: audio is kept for the next one.
    /// Returns false when the element has gone away.
    pub(super) fn take_offline_command(&mut self, cmd: Option<Command>) -> bool {
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
    pub(super) fn reconfigure_offline(&mut self, cfg: ClientConfig) -> bool {
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
    pub(super) fn settle_switch_offline(&mut self) {
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
    pub(super) fn start_switch(&mut self, cfg: ClientConfig) {
        // The id the service is known to finalize on; only one checkpoint is ever in flight.
        self.switch = Some(PendingSwitch {
            cfg: Arc::new(cfg),
            checkpoint_id: END_OF_STREAM_CHECKPOINT.to_string(),
            at_sample: self.log.end_offset(),
            deadline: None,
        });
    }

    /// The old connection is done (echo, close or time-out): its pending text is final, its
    /// audio need never be replayed, and the next connection uses the new options.
    pub(super) fn finish_switch(&mut self) -> ConnectionEnd {
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

    pub(super) fn start_drain(&mut self, reply: std::sync::mpsc::SyncSender<DrainOutcome>) {
        self.drain = Some(PendingDrain {
            reply,
            give_up_at: Instant::now() + drain_budget(&self.cfg),
            deadline: None,
        });
    }

    pub(super) fn drain_give_up(&self) -> Option<tokio::time::Instant> {
        self.drain.as_ref().map(|d| d.give_up_at.into())
    }

    /// The whole drain took longer than its budget: reconnects kept failing or kept being
    /// needed.
    pub(super) fn drain_exhausted(&self) -> Failure {
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
    pub(super) fn finish_drain(&mut self, outcome: DrainOutcome) {
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
    pub(super) fn answer_drain(&mut self, outcome: DrainOutcome) {
        self.report_usage();
        if let Some(drain) = self.drain.take() {
            let _ = drain.reply.send(outcome);
        }
    }

    /// When the checkpoint of the pending switch or drain must have been answered (at most
    /// one of them has a checkpoint out: a switch cannot start during a drain, and a drain's
    /// checkpoint waits for the connection after a switch).
    pub(super) fn checkpoint_deadline(&self) -> Option<tokio::time::Instant> {
        let switch = self.switch.as_ref().and_then(|s| s.deadline);
        let drain = self.drain.as_ref().and_then(|d| d.deadline);
        switch.or(drain).map(Into::into)
    }

    /// A checkpoint went unanswered on a connection that is alive: a switch finishes (the old
    /// connection's unfinished text is final), a drain ends as timed out.
    pub(super) fn checkpoint_timed_out(&mut self) -> ConnectionEnd {
        if self.switch.is_some() {
            self.finish_switch()
        } else {
            self.finish_drain(DrainOutcome::TimedOut);
            ConnectionEnd::Finished
        }
    }
}

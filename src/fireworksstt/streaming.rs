// SPDX-License-Identifier: MPL-2.0
//! The streaming thread's side of the element: starting the Fireworks session on the first
//! buffer, feeding it audio, applying option changes, draining it at EOS or a new segment,
//! holding back in PAUSED, and stopping on flush or stop.

use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use crate::client::{
    bytes_to_ns, duration_to_bytes, Failure, FailureKind, PushError, Refill, StreamClient,
};

use super::imp::FireworksStt;
use super::network_events::Bridge;
use super::properties;
use super::state::{FireworksSession, Reset, State};
use super::CAT;

/// How long a live stream's streaming thread may wait for room in the network queue before
/// audio is dropped (and counted): a live source must not be held up.
const LIVE_QUEUE_WAIT: Duration = Duration::from_millis(100);
/// Silence sent for one upstream GAP event at most; a longer gap is a hole in the audio.
const MAX_GAP_SILENCE: gst::ClockTime = gst::ClockTime::from_seconds(10);
/// Non-live audio the service may hear before the element reaches PLAYING: enough for the
/// connection to start, little enough that a pipeline left in PAUSED spends (and is billed
/// for) next to nothing.
pub(super) const PAUSED_AUDIO_BUDGET: gst::ClockTime = gst::ClockTime::from_seconds(1);
/// How often a wait that only ends on another thread's signal looks again anyway.
const WAIT_SLICE: Duration = Duration::from_millis(200);

impl FireworksStt {
    /// Ends the network session (if any) and forgets the stream, keeping what `reset` says.
    pub(super) fn reset(&self, reset: Reset) {
        let client = {
            let mut state = self.state.lock().unwrap();
            state.fireworks_session.abort();
            let client = state.fireworks_session.take_client();
            state.clear(reset);
            client
        };
        // Dropped outside the lock: dropping stops the network task.
        drop(client);
        self.state_cond.notify_all();
    }

    /// Flushing stops every wait at once (the network session is aborted); clearing it lets
    /// data flow again.
    pub(super) fn set_flushing(&self, flushing: bool) {
        let mut state = self.state.lock().unwrap();
        state.flushing = flushing;
        if flushing {
            state.fireworks_session.abort();
        }
        drop(state);
        self.state_cond.notify_all();
    }

    pub(super) fn set_playing(&self, playing: bool) {
        let mut state = self.state.lock().unwrap();
        state.playing = playing;
        state.sent_while_paused = gst::ClockTime::ZERO;
        drop(state);
        self.state_cond.notify_all();
    }

    pub(super) fn answer_latency(&self, q: &mut gst::query::Latency) -> bool {
        let mut upstream = gst::query::Latency::new();
        if !self.obj().sink_pad().peer_query(&mut upstream) {
            return false;
        }
        let (live, min, max) = upstream.result();
        let changed = std::mem::replace(&mut self.state.lock().unwrap().live, live) != live;
        if changed {
            // The src pad task's deadlines depend on it.
            self.state_cond.notify_all();
        }
        if live {
            let ours =
                gst::ClockTime::from_mseconds(self.settings.lock().unwrap().latency_ms.into());
            q.set(
                true,
                min.saturating_add(ours),
                max.map(|max| max.saturating_add(ours)),
            );
        } else {
            q.set(false, min, max);
        }
        gst::debug!(CAT, imp = self, "latency query answered: {q:?}");
        true
    }

    fn query_upstream_live(&self) -> bool {
        let mut q = gst::query::Latency::new();
        self.obj().sink_pad().peer_query(&mut q) && q.result().0
    }

    /// Keeps the input segment and returns it to forward with `lateness` added to its base.
    /// A segment that changes more than the position ends the session first (its words
    /// belong to the old segment).
    pub(super) fn on_segment(
        &self,
        segment: &gst::Segment,
        seqnum: gst::Seqnum,
    ) -> Option<gst::Event> {
        let Some(segment) = segment.downcast_ref::<gst::ClockTime>() else {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Only TIME segments are supported: the audio must come from a parser or decoder (e.g. wavparse, decodebin) that timestamps it")
            );
            return None;
        };
        if segment.rate() < 0.0 {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Reverse playback cannot be transcribed: play forward (rate > 0)")
            );
            return None;
        }
        let changed = {
            let state = self.state.lock().unwrap();
            let mut same = segment.clone();
            same.set_position(state.segment.position());
            state.fireworks_session.is_active() && same != state.segment
        };
        if changed {
            gst::debug!(CAT, imp = self, "new segment: finishing the session first");
            self.drain_session();
            self.reset(Reset::NewSegment);
        }
        self.state.lock().unwrap().segment = segment.clone();
        let lateness =
            gst::ClockTime::from_mseconds(self.settings.lock().unwrap().lateness_ms.into());
        let mut shifted = segment.clone();
        shifted.set_base(
            segment
                .base()
                .unwrap_or(gst::ClockTime::ZERO)
                .saturating_add(lateness),
        );
        Some(
            gst::event::Segment::builder(&shifted)
                .seqnum(seqnum)
                .build(),
        )
    }

    /// Upstream says nothing is there: for the service that is silence (which also lets it
    /// finish an utterance), sent like audio up to a bound.
    pub(super) fn on_gap(&self, pts: gst::ClockTime, duration: Option<gst::ClockTime>) {
        let in_session = {
            let state = self.state.lock().unwrap();
            state.fireworks_session.is_active() && !state.failed
        };
        if let (true, Some(duration)) = (in_session, duration) {
            let silence = vec![0u8; duration_to_bytes(duration.min(MAX_GAP_SILENCE).into())];
            let mut buffer = gst::Buffer::from_mut_slice(silence);
            buffer.get_mut().expect("new buffer").set_pts(pts);
            let _ = self.send_audio(false, &buffer);
        }
    }

    /// Connects lazily: the first buffer starts the session.
    fn start_session(&self) -> Result<StreamClient, gst::FlowError> {
        let live = self.query_upstream_live();
        let settings = self.settings.lock().unwrap().clone();
        let cfg = settings.client_config().map_err(|err| {
            let failure = Failure::new(FailureKind::Config, err.to_string(), "checked at connect");
            self.post_failure(&failure, true);
            gst::FlowError::Error
        })?;
        gst::info!(
            CAT,
            imp = self,
            "connecting to {}{}",
            cfg.host_for_messages(),
            cfg.url.path()
        );
        let serial = {
            let mut state = self.state.lock().unwrap();
            state.serial = state.serial.wrapping_add(1);
            state.live = live;
            state.fireworks_session = FireworksSession::Starting;
            state.options_generation = state.settings_generation;
            state.serial
        };
        let bridge = Bridge::new(&self.obj(), serial);
        let client = StreamClient::start(cfg, Arc::new(bridge), live).map_err(|failure| {
            self.state.lock().unwrap().fireworks_session = FireworksSession::Idle;
            self.post_failure(&failure, true);
            gst::FlowError::Error
        })?;
        let mut state = self.state.lock().unwrap();
        // Unless a flush or a stop reset the stream meanwhile (the push then sees the serial
        // change and ends this session).
        if state.serial == serial {
            state.fireworks_session = FireworksSession::Running {
                client: None,
                abort: client.abort_handle(),
            };
        }
        drop(state);
        // A live src pad task now has deadlines of its own (src_task.rs).
        self.state_cond.notify_all();
        Ok(client)
    }

    /// Non-live input outside PLAYING: after `PAUSED_AUDIO_BUDGET` of audio the streaming
    /// thread waits here (downstream has prerolled on the GAP queued with the first buffer)
    /// until PLAYING, a flush or a stop. Returns the guard, or `Flushing`.
    fn hold_while_paused<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
    ) -> Result<MutexGuard<'a, State>, gst::FlowError> {
        let mut logged = false;
        while !state.live
            && !state.playing
            && !state.flushing
            && state.sent_while_paused >= PAUSED_AUDIO_BUDGET
        {
            if !logged {
                gst::debug!(CAT, imp = self, "PAUSED: holding the audio until PLAYING");
                logged = true;
            }
            // Waiting for the application is unbounded by nature; every slice looks again.
            state = self.state_cond.wait_timeout(state, WAIT_SLICE).unwrap().0;
        }
        if state.flushing {
            return Err(gst::FlowError::Flushing);
        }
        Ok(state)
    }

    pub(super) fn send_audio(
        &self,
        is_discont: bool,
        buffer: &gst::Buffer,
    ) -> Result<(), gst::FlowError> {
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Could not read an input buffer")
            );
            gst::FlowError::Error
        })?;
        {
            let state = self.state.lock().unwrap();
            if state.failed {
                return Err(gst::FlowError::Error);
            }
            state.output.flow?;
            let state = self.hold_while_paused(state)?;
            let state = self.wait_for_output_room(state)?;
            drop(state);
        }
        // Read before the state is locked: `settings` is never locked under `state`.
        let non_live_wait = self.settings.lock().unwrap().non_live_queue_wait();
        let running = self.state.lock().unwrap().fireworks_session.take_client();
        let mut client = match running {
            Some(client) => client,
            None => self.start_session()?,
        };
        let (serial, wait, refill) = {
            let mut state = self.state.lock().unwrap();
            let segment_start = state.segment.start().unwrap_or(gst::ClockTime::ZERO);
            state
                .timeline
                .on_buffer(buffer.pts(), map.len() as u64, is_discont, segment_start);
            if !state.live && !state.output.prerolled {
                // Lets downstream preroll at once: PAUSED is reached after one buffer.
                state.output.queue_preroll(buffer.pts());
                self.state_cond.notify_all();
            }
            if !state.live && !state.playing {
                let heard = gst::ClockTime::from_nseconds(bytes_to_ns(map.len() as u64));
                state.sent_while_paused = state.sent_while_paused.saturating_add(heard);
            }
            let (wait, refill) = if state.live {
                (LIVE_QUEUE_WAIT, Refill::OneFrame)
            } else {
                // Waiting is how a slow service slows a file down; the bound only has to
                // outlast the slowest reconnect.
                (non_live_wait, Refill::Batch)
            };
            (state.serial, wait, refill)
        };
        self.apply_option_changes(&client);
        // No lock held: this may wait for the network.
        let result = client.push_audio(&map, wait, refill);
        let mut state = self.state.lock().unwrap();
        if state.serial == serial && !state.flushing {
            state.fireworks_session.put_client_back(client);
        } else {
            // Reset meanwhile: this session is over.
            drop(state);
            drop(client);
            return Err(gst::FlowError::Flushing);
        }
        match result {
            Ok(()) => Ok(()),
            Err(PushError::Dropped { bytes }) => {
                state.timeline.on_dropped(bytes as u64);
                let dropped = gst::ClockTime::from_nseconds(bytes_to_ns(bytes as u64));
                state.stats.dropped_audio = state.stats.dropped_audio.saturating_add(dropped);
                state.dropped_since_flush = state.dropped_since_flush.saturating_add(dropped);
                let total = state.stats.dropped_audio;
                drop(state);
                self.report_dropped(total);
                Ok(())
            }
            Err(PushError::Closed) => Err(self.session_closed(state)),
        }
    }

    /// The session's queue closed under the streaming thread.
    fn session_closed(&self, mut state: MutexGuard<'_, State>) -> gst::FlowError {
        if state.flushing {
            // Stopped on purpose by a flush or a state change.
            return gst::FlowError::Flushing;
        }
        let already_posted = state.failed;
        state.failed = true;
        drop(state);
        if !already_posted {
            gst::element_imp_error!(
                self,
                gst::LibraryError::Failed,
                ("The Fireworks session stopped unexpectedly"),
                ["the network task ended without reporting an error"]
            );
        }
        gst::FlowError::Error
    }

    fn report_dropped(&self, total: gst::ClockTime) {
        self.obj().notify(properties::DROPPED_AUDIO);
        let text = format!(
            "The network could not keep up: {} ms of audio dropped so far (dropped-audio)",
            total.mseconds()
        );
        self.post_repeated_warning(text, |stats| &mut stats.dropped_audio_warnings);
    }

    /// Session options set since the session started go to the client, which moves to a new
    /// connection. A value that cannot be used leaves the session as it is; a full queue
    /// leaves the change for the next buffer.
    fn apply_option_changes(&self, client: &StreamClient) {
        let generation = {
            let state = self.state.lock().unwrap();
            if state.settings_generation == state.options_generation {
                return;
            }
            state.settings_generation
        };
        let cfg = self.settings.lock().unwrap().client_config();
        match cfg {
            Ok(cfg) => {
                let query = cfg.url.query().unwrap_or("").to_string();
                if client.reconfigure(cfg, Duration::ZERO) {
                    gst::info!(CAT, imp = self, "session options changed: {query}");
                    self.state.lock().unwrap().options_generation = generation;
                }
            }
            Err(err) => {
                self.state.lock().unwrap().options_generation = generation;
                let failure = Failure::new(
                    FailureKind::Config,
                    format!(
                        "New settings not applied, the session goes on with the previous ones: \
                         {err}"
                    ),
                    "checked when set in PLAYING",
                );
                self.post_failure(&failure, false);
            }
        }
    }

    /// End of stream: finish the session (bounded by drain-timeout); what comes back is queued
    /// for the src pad, then a GAP to the end of the audio.
    pub(super) fn drain_session(&self) {
        let client = self.state.lock().unwrap().fireworks_session.take_client();
        if let Some(client) = client {
            // The abort handle stays in place meanwhile: a flush or a stop cuts the wait short.
            let started = Instant::now();
            let outcome = client.drain();
            gst::debug!(
                CAT,
                imp = self,
                "session drained in {:?}: {outcome:?}",
                started.elapsed()
            );
        }
        let mut state = self.state.lock().unwrap();
        state.fireworks_session = FireworksSession::Idle;
        if let Some(end) = state.timeline.end_pts() {
            state.output.queue_gap_until(end);
        }
        drop(state);
        self.state_cond.notify_all();
    }

    /// End of stream of non-live input: audio dropped on the way to the service ends the
    /// stream with an ERROR (live input has had its WARNINGs as it happened).
    pub(super) fn report_dropped_at_eos(&self) {
        let dropped = {
            let state = self.state.lock().unwrap();
            (!state.live && !state.failed).then_some(state.dropped_since_flush)
        };
        if let Some(dropped) = dropped.filter(|d| !d.is_zero()) {
            // A file waits for the network rather than drop audio; audio dropped all the same
            // (the network stayed blocked past the queue's bound) was never transcribed.
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                (
                    "{:.1} s of audio were dropped because the network did not take them in time, \
                     and were never transcribed (dropped-audio)",
                    dropped.nseconds() as f64 / 1e9
                )
            );
        }
    }
}

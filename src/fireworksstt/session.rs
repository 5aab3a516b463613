// SPDX-License-Identifier: MPL-2.0
//! The stream's state, owned in one place, and the streaming thread's side of it: starting
//! the network session on the first buffer, feeding it audio, applying option changes,
//! draining it at EOS or a new segment, holding back in PAUSED, and stopping on flush or stop.

use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use crate::client::{
    samples_to_ns, PushError, Refill, SessionAbort, StreamClient, TimedTranscript,
    BYTES_PER_SAMPLE, SAMPLE_RATE,
};

use super::bridge::Bridge;
use super::downstream::Output;
use super::imp::{FireworksStt, CAT};
use super::timeline::Timeline;

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

/// Run-time statistics, read through the `max-observed-delay` and `dropped-audio` properties.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Stats {
    pub max_observed_delay: gst::ClockTime,
    pub dropped_audio: gst::ClockTime,
}

/// Everything one stream's state is made of. One mutex guards it (`FireworksStt::session`);
/// the network side hands its events in through [`Bridge`], the src pad task takes its output
/// from `output`.
#[derive(Default)]
pub(super) struct Session {
    /// Bumped whenever a network session starts or the stream is reset: events of an older
    /// network session are recognised and dropped.
    pub serial: u64,
    /// The running network session. The streaming thread takes it out while it waits on it,
    /// so the mutex is never held across that wait; `active` says a session exists meanwhile.
    pub client: Option<StreamClient>,
    pub active: bool,
    /// Stops the running network session from any thread, even while it is taken out.
    pub abort: Option<SessionAbort>,
    /// The input segment, as received.
    pub segment: gst::FormattedSegment<gst::ClockTime>,
    pub timeline: Timeline,
    /// Audio position where the open utterance's text starts, while one is open.
    pub open_utterance_start: Option<gst::ClockTime>,
    /// The open utterance's latest interim: its words may have to go out before the final.
    pub open_interim: Option<TimedTranscript>,
    /// Changes with every new interim, so the output side knows when to look again.
    pub interim_serial: u64,
    /// A fatal error was posted: refuse further data until flushed or restarted.
    pub failed: bool,
    /// Set between FLUSH_START (or the way down to READY) and FLUSH_STOP (or the next start):
    /// a session ended on purpose is not an error, and every wait ends.
    pub flushing: bool,
    /// Upstream is live (from the LATENCY query).
    pub live: bool,
    /// The element is in PLAYING.
    pub playing: bool,
    /// Non-live audio sent since the element last left PLAYING (or started).
    pub sent_while_paused: gst::ClockTime,
    /// Bumped whenever a session property is set; `options_generation` is the value the
    /// running session was configured with.
    pub settings_generation: u64,
    pub options_generation: u64,
    pub stats: Stats,
    /// Audio dropped on its way to the service since the last flush or start (a flush makes
    /// earlier drops moot: that audio is not played any more).
    pub dropped_since_flush: gst::ClockTime,
    /// What waits for the src pad, and where its stream has got to.
    pub output: Output,
}

/// What a reset of the stream keeps of what waits for the src pad (and of the audio it
/// dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reset {
    /// A stop: nothing; the segment is forgotten too.
    Stop,
    /// A flush: the sticky events upstream will not send again (see `Output::after_flush`).
    Flush,
    /// A new segment after a drain: everything, since all of it was produced for the old
    /// segment and must go out before the new one (which is queued behind it).
    NewSegment,
}

impl Session {
    /// Forgets the stream's network session and timeline, keeping the counters and flags
    /// that outlive it and, as `reset` says, the segment and the output.
    fn clear(&mut self, reset: Reset) {
        let segment = match reset {
            Reset::Stop => gst::FormattedSegment::new(),
            Reset::Flush | Reset::NewSegment => self.segment.clone(),
        };
        let dropped_since_flush = match reset {
            Reset::Stop | Reset::Flush => gst::ClockTime::ZERO,
            Reset::NewSegment => self.dropped_since_flush,
        };
        let output = match reset {
            Reset::Stop => Output::default(),
            Reset::Flush => self.output.after_flush(),
            Reset::NewSegment => self.output.for_new_segment(),
        };
        *self = Session {
            serial: self.serial.wrapping_add(1),
            output,
            segment,
            flushing: self.flushing,
            live: self.live,
            playing: self.playing,
            settings_generation: self.settings_generation,
            stats: self.stats,
            dropped_since_flush,
            ..Session::default()
        };
    }
}

impl FireworksStt {
    /// Ends the network session (if any) and forgets the stream, keeping what `reset` says.
    pub(super) fn reset(&self, reset: Reset) {
        let client = {
            let mut session = self.session.lock().unwrap();
            if let Some(abort) = session.abort.take() {
                abort.abort();
            }
            let client = session.client.take();
            session.clear(reset);
            client
        };
        // Dropped outside the lock: dropping stops the network task.
        drop(client);
        self.changed.notify_all();
    }

    /// Flushing stops every wait at once (the network session is aborted); clearing it lets
    /// data flow again.
    pub(super) fn set_flushing(&self, flushing: bool) {
        let mut session = self.session.lock().unwrap();
        session.flushing = flushing;
        if flushing {
            if let Some(abort) = session.abort.take() {
                abort.abort();
            }
        }
        drop(session);
        self.changed.notify_all();
    }

    pub(super) fn set_playing(&self, playing: bool) {
        let mut session = self.session.lock().unwrap();
        session.playing = playing;
        session.sent_while_paused = gst::ClockTime::ZERO;
        drop(session);
        self.changed.notify_all();
    }

    pub(super) fn answer_latency(&self, q: &mut gst::query::Latency) -> bool {
        let mut upstream = gst::query::Latency::new();
        if !self.obj().sink_pad().peer_query(&mut upstream) {
            return false;
        }
        let (live, min, max) = upstream.result();
        self.session.lock().unwrap().live = live;
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
            let session = self.session.lock().unwrap();
            let mut same = segment.clone();
            same.set_position(session.segment.position());
            session.active && same != session.segment
        };
        if changed {
            gst::debug!(CAT, imp = self, "new segment: finishing the session first");
            self.drain_session();
            self.reset(Reset::NewSegment);
        }
        self.session.lock().unwrap().segment = segment.clone();
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
            let session = self.session.lock().unwrap();
            session.active && !session.failed
        };
        if let (true, Some(duration)) = (in_session, duration) {
            let samples = duration.min(MAX_GAP_SILENCE).nseconds() * SAMPLE_RATE / 1_000_000_000;
            let silence = vec![0u8; (samples * BYTES_PER_SAMPLE) as usize];
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
            let text = err.to_string();
            gst::element_imp_error!(self, gst::LibraryError::Settings, ("{}", text));
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
            let mut session = self.session.lock().unwrap();
            session.serial = session.serial.wrapping_add(1);
            session.live = live;
            session.active = true;
            session.options_generation = session.settings_generation;
            session.serial
        };
        let bridge = Bridge::new(&self.obj(), serial);
        let client = StreamClient::start(cfg, Arc::new(bridge), live).map_err(|failure| {
            self.session.lock().unwrap().active = false;
            self.post_failure(&failure, true);
            gst::FlowError::Error
        })?;
        self.session.lock().unwrap().abort = Some(client.abort_handle());
        Ok(client)
    }

    /// Non-live input outside PLAYING: after `PAUSED_AUDIO_BUDGET` of audio the streaming
    /// thread waits here (downstream has prerolled on the GAP queued with the first buffer)
    /// until PLAYING, a flush or a stop. Returns the guard, or `Flushing`.
    fn hold_while_paused<'a>(
        &'a self,
        mut session: MutexGuard<'a, Session>,
    ) -> Result<MutexGuard<'a, Session>, gst::FlowError> {
        let mut logged = false;
        while !session.live
            && !session.playing
            && !session.flushing
            && session.sent_while_paused >= PAUSED_AUDIO_BUDGET
        {
            if !logged {
                gst::debug!(CAT, imp = self, "PAUSED: holding the audio until PLAYING");
                logged = true;
            }
            // Waiting for the application is unbounded by nature; every slice looks again.
            session = self.changed.wait_timeout(session, WAIT_SLICE).unwrap().0;
        }
        if session.flushing {
            return Err(gst::FlowError::Flushing);
        }
        Ok(session)
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
            let session = self.session.lock().unwrap();
            if session.failed {
                return Err(gst::FlowError::Error);
            }
            session.output.flow?;
            let session = self.hold_while_paused(session)?;
            let session = self.wait_for_output_room(session)?;
            drop(session);
        }
        // Read before the session is locked: `settings` is never locked under `session`.
        let non_live_wait = self.settings.lock().unwrap().non_live_queue_wait();
        let running = self.session.lock().unwrap().client.take();
        let mut client = match running {
            Some(client) => client,
            None => self.start_session()?,
        };
        let (serial, wait, refill) = {
            let mut session = self.session.lock().unwrap();
            let segment_start = session.segment.start().unwrap_or(gst::ClockTime::ZERO);
            session
                .timeline
                .on_buffer(buffer.pts(), map.len() as u64, is_discont, segment_start);
            if !session.live && !session.output.prerolled {
                // Lets downstream preroll at once: PAUSED is reached after one buffer.
                session.output.queue_preroll(buffer.pts());
                self.changed.notify_all();
            }
            if !session.live && !session.playing {
                let heard = gst::ClockTime::from_nseconds(samples_to_ns(
                    map.len() as u64 / BYTES_PER_SAMPLE,
                ));
                session.sent_while_paused = session.sent_while_paused.saturating_add(heard);
            }
            let (wait, refill) = if session.live {
                (LIVE_QUEUE_WAIT, Refill::OneFrame)
            } else {
                // Waiting is how a slow service slows a file down; the bound only has to
                // outlast the slowest reconnect.
                (non_live_wait, Refill::Batch)
            };
            (session.serial, wait, refill)
        };
        self.apply_option_changes(&client);
        // No lock held: this may wait for the network.
        let result = client.push_audio(&map, wait, refill);
        let mut session = self.session.lock().unwrap();
        if session.serial == serial && !session.flushing {
            session.client = Some(client);
        } else {
            // Reset meanwhile: this session is over.
            drop(session);
            drop(client);
            return Err(gst::FlowError::Flushing);
        }
        match result {
            Ok(()) => Ok(()),
            Err(PushError::Dropped { bytes }) => {
                session.timeline.on_dropped(bytes as u64);
                let dropped =
                    gst::ClockTime::from_nseconds(samples_to_ns(bytes as u64 / BYTES_PER_SAMPLE));
                session.stats.dropped_audio = session.stats.dropped_audio.saturating_add(dropped);
                session.dropped_since_flush = session.dropped_since_flush.saturating_add(dropped);
                let total = session.stats.dropped_audio;
                drop(session);
                self.report_dropped(total);
                Ok(())
            }
            Err(PushError::Closed) => Err(self.session_closed(session)),
        }
    }

    /// The session's queue closed under the streaming thread.
    fn session_closed(&self, mut session: MutexGuard<'_, Session>) -> gst::FlowError {
        if session.flushing {
            // Stopped on purpose by a flush or a state change.
            return gst::FlowError::Flushing;
        }
        let already_posted = session.failed;
        session.failed = true;
        drop(session);
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
        self.obj().notify("dropped-audio");
        gst::element_imp_warning!(
            self,
            gst::StreamError::Failed,
            (
                "The network could not keep up: {} ms of audio dropped so far (dropped-audio)",
                total.mseconds()
            )
        );
    }

    /// Session options set since the session started go to the client, which moves to a new
    /// connection. A value that cannot be used leaves the session as it is; a full queue
    /// leaves the change for the next buffer.
    fn apply_option_changes(&self, client: &StreamClient) {
        let generation = {
            let session = self.session.lock().unwrap();
            if session.settings_generation == session.options_generation {
                return;
            }
            session.settings_generation
        };
        let cfg = self.settings.lock().unwrap().client_config();
        match cfg {
            Ok(cfg) => {
                let query = cfg.url.query().unwrap_or("").to_string();
                if client.reconfigure(cfg, Duration::ZERO) {
                    gst::info!(CAT, imp = self, "session options changed: {query}");
                    self.session.lock().unwrap().options_generation = generation;
                }
            }
            Err(err) => {
                self.session.lock().unwrap().options_generation = generation;
                gst::element_imp_warning!(
                    self,
                    gst::LibraryError::Settings,
                    (
                        "New settings not applied, the session goes on with the previous ones: {}",
                        err
                    )
                );
            }
        }
    }

    /// End of stream: finish the session (bounded by drain-timeout); what comes back is queued
    /// for the src pad, then a GAP to the end of the audio.
    pub(super) fn drain_session(&self) {
        let client = self.session.lock().unwrap().client.take();
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
        let mut session = self.session.lock().unwrap();
        session.abort = None;
        session.active = false;
        if let Some(end) = session.timeline.end_pts() {
            session.output.queue_gap_until(end);
        }
        drop(session);
        self.changed.notify_all();
    }

    /// End of stream of non-live input: audio dropped on the way to the service ends the
    /// stream with an ERROR (live input has had its WARNINGs as it happened).
    pub(super) fn report_dropped_at_eos(&self) {
        let dropped = {
            let session = self.session.lock().unwrap();
            (!session.live && !session.failed).then_some(session.dropped_since_flush)
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

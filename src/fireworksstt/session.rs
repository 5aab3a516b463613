//! Audio in and the network session: starting it on the first buffer, feeding it, applying
//! option changes, draining it at EOS or a new segment, and stopping it on flush or stop.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use crate::client::{PushError, Refill, StreamClient, BYTES_PER_SAMPLE, SAMPLE_RATE};

use super::bridge::{new_shared, Bridge};
use super::imp::{FireworksStt, OutputState, State, CAT};
use super::output::OutputItem;

/// How long a live stream's streaming thread may wait for room in the network queue before
/// audio is dropped (and counted): a live source must not be held up.
const LIVE_QUEUE_WAIT: Duration = Duration::from_millis(100);
/// Silence sent for one upstream GAP event at most; a longer gap is a hole in the audio.
const MAX_GAP_SILENCE: gst::ClockTime = gst::ClockTime::from_seconds(10);

impl FireworksStt {
    /// Ends the session (if any) and forgets the stream. `full` also forgets the segment (a
    /// stop, not a flush).
    pub(super) fn reset(&self, full: bool) {
        self.abort_session();
        let mut state = self.state.lock().unwrap();
        state.client = None;
        state.failed = false;
        if full {
            state.segment = gst::FormattedSegment::new();
        }
        state.shared = new_shared(state.segment.clone());
        drop(state);
        *self.output.lock().unwrap() = OutputState::default();
    }

    /// Stops the network session at once, from any thread.
    pub(super) fn abort_session(&self) {
        if let Some(abort) = self.abort.lock().unwrap().take() {
            abort.abort();
        }
    }

    pub(super) fn answer_latency(&self, q: &mut gst::query::Latency) -> bool {
        let mut upstream = gst::query::Latency::new();
        if !self.obj().sink_pad().peer_query(&mut upstream) {
            return false;
        }
        let (live, min, max) = upstream.result();
        self.upstream_live.store(live, Ordering::Relaxed);
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

    fn query_upstream_live(&self) {
        let mut q = gst::query::Latency::new();
        let live = self.obj().sink_pad().peer_query(&mut q) && q.result().0;
        self.upstream_live.store(live, Ordering::Relaxed);
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
                ("Only TIME segments are supported; put audioconvert ! audioresample before fireworksstt")
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
            state.client.is_some() && same != state.segment
        };
        if changed {
            gst::debug!(CAT, imp = self, "new segment: finishing the session first");
            self.drain_session();
            *self.output.lock().unwrap() = OutputState::default();
        }
        {
            let mut state = self.state.lock().unwrap();
            state.segment = segment.clone();
            state.shared.lock().unwrap().segment = segment.clone();
        }
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
    /// finish an utterance), sent like audio up to a bound; downstream gets our own GAPs.
    pub(super) fn on_gap(&self, pts: gst::ClockTime, duration: Option<gst::ClockTime>) {
        let in_session = {
            let state = self.state.lock().unwrap();
            state.client.is_some() && !state.failed
        };
        if let (true, Some(duration)) = (in_session, duration) {
            let samples = duration.min(MAX_GAP_SILENCE).nseconds() * SAMPLE_RATE / 1_000_000_000;
            let silence = vec![0u8; (samples * BYTES_PER_SAMPLE) as usize];
            let mut buffer = gst::Buffer::from_mut_slice(silence);
            buffer.get_mut().expect("new buffer").set_pts(pts);
            let _ = self.send_audio(false, &buffer);
        }
        let _ = self.push_pending();
    }

    /// Connects lazily: the first buffer starts the session.
    fn start_session(&self, state: &mut State) -> Result<(), gst::FlowError> {
        state.options_generation = self.options_generation.load(Ordering::SeqCst);
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
        let shared = new_shared(state.segment.clone());
        let bridge = Bridge::new(&self.obj(), shared.clone());
        let client = StreamClient::start(cfg, Arc::new(bridge)).map_err(|failure| {
            self.post_failure(&failure, true);
            gst::FlowError::Error
        })?;
        *self.abort.lock().unwrap() = Some(client.abort_handle());
        state.client = Some(client);
        state.shared = shared;
        self.query_upstream_live();
        Ok(())
    }

    pub(super) fn send_audio(
        &self,
        is_discont: bool,
        buffer: &gst::Buffer,
    ) -> Result<(), gst::FlowError> {
        let mut state = self.state.lock().unwrap();
        if state.failed || state.shared.lock().unwrap().failed {
            state.failed = true;
            return Err(gst::FlowError::Error);
        }
        if state.client.is_none() {
            self.start_session(&mut state)?;
        }
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Could not read an input buffer")
            );
            gst::FlowError::Error
        })?;
        let segment_start = state.segment.start().map_or(0, gst::ClockTime::nseconds);
        state.shared.lock().unwrap().timeline.on_buffer(
            buffer.pts().map(gst::ClockTime::nseconds),
            map.len() as u64,
            is_discont,
            segment_start,
        );
        self.apply_option_changes(&mut state);
        let (wait, refill) = if self.upstream_live.load(Ordering::Relaxed) {
            (LIVE_QUEUE_WAIT, Refill::OneFrame)
        } else {
            // Waiting is how a slow service slows a file down; the bound only has to outlast
            // the slowest reconnect.
            let wait = self.settings.lock().unwrap().non_live_queue_wait();
            (wait, Refill::Batch)
        };
        let client = state.client.as_mut().expect("session started above");
        match client.push_audio(&map, wait, refill) {
            Ok(()) => Ok(()),
            Err(PushError::Dropped { bytes }) => {
                state
                    .shared
                    .lock()
                    .unwrap()
                    .timeline
                    .on_dropped(bytes as u64);
                drop(state);
                self.report_dropped(bytes);
                Ok(())
            }
            Err(PushError::Closed) => Err(self.session_closed(&mut state)),
        }
    }

    /// The session's queue closed under the streaming thread.
    fn session_closed(&self, state: &mut State) -> gst::FlowError {
        if self.flushing.load(Ordering::SeqCst) {
            // Stopped on purpose by a flush or a state change.
            return gst::FlowError::Flushing;
        }
        state.failed = true;
        if !state.shared.lock().unwrap().failed {
            gst::element_imp_error!(
                self,
                gst::LibraryError::Failed,
                ("The Fireworks session stopped unexpectedly"),
                ["the network task ended without reporting an error"]
            );
        }
        gst::FlowError::Error
    }

    fn report_dropped(&self, bytes: usize) {
        // 16 kHz S16 mono: 32 bytes per millisecond.
        let dropped_ms = u32::try_from(bytes / 32).unwrap_or(u32::MAX);
        let total = self
            .dropped_audio_ms
            .fetch_add(dropped_ms, Ordering::Relaxed)
            .saturating_add(dropped_ms);
        self.obj().notify("dropped-audio");
        gst::element_imp_warning!(
            self,
            gst::StreamError::Failed,
            (
                "The network could not keep up: {} ms of audio dropped so far (dropped-audio)",
                total
            )
        );
    }

    /// Session options set since the session started go to the client, which moves to a new
    /// connection. A value that cannot be used leaves the session as it is; a full queue
    /// leaves the change for the next buffer.
    fn apply_option_changes(&self, state: &mut State) {
        let generation = self.options_generation.load(Ordering::SeqCst);
        if generation == state.options_generation {
            return;
        }
        let Some(client) = state.client.as_ref() else {
            return;
        };
        let cfg = self.settings.lock().unwrap().client_config();
        match cfg {
            Ok(cfg) => {
                let query = cfg.url.query().unwrap_or("").to_string();
                if client.reconfigure(cfg, Duration::ZERO) {
                    gst::info!(CAT, imp = self, "session options changed: {query}");
                    state.options_generation = generation;
                }
            }
            Err(err) => {
                state.options_generation = generation;
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

    /// End of stream: finish the session (bounded by drain-timeout), push everything that came
    /// back, and a GAP to the end of the audio.
    pub(super) fn drain_session(&self) {
        let client = self.state.lock().unwrap().client.take();
        if let Some(client) = client {
            // The abort handle stays in place meanwhile: a flush or a stop cuts the wait short.
            let outcome = client.drain();
            gst::debug!(CAT, imp = self, "session drained: {outcome:?}");
        }
        self.abort.lock().unwrap().take();
        let _ = self.push_pending();
        let end = {
            let state = self.state.lock().unwrap();
            let shared = state.shared.lock().unwrap();
            shared.timeline.end_pts()
        };
        if let Some(end) = end {
            let mut output = self.output.lock().unwrap();
            let _ = self.push_item(OutputItem::GapUntil(end), &mut output);
        }
    }
}

//! Where client events enter GStreamer: bus messages go out at once (on the network thread),
//! final transcripts wait in the session's queue for the streaming thread.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::client::{ClientEvent, EventSink, Failure, TimedTranscript};

use super::bus;
use super::imp::{self, CAT};
use super::timeline::Timeline;

/// What one session shares between the network thread and the streaming thread.
#[derive(Debug)]
pub struct SessionShared {
    pub timeline: Timeline,
    pub segment: gst::FormattedSegment<gst::ClockTime>,
    /// Final transcripts not yet pushed downstream.
    pub finals: VecDeque<TimedTranscript>,
    /// Audio position where the open utterance's text starts, while one is open.
    pub open_utterance_start: Option<u64>,
    /// The open utterance's latest interim: its words may have to go out before the final.
    pub open_interim: Option<TimedTranscript>,
    /// Changes with every new interim, so the streaming thread knows when to look again.
    pub interim_serial: u64,
    /// The session failed; its error was posted.
    pub failed: bool,
}

pub type Shared = Arc<Mutex<SessionShared>>;

pub fn new_shared(segment: gst::FormattedSegment<gst::ClockTime>) -> Shared {
    Arc::new(Mutex::new(SessionShared {
        timeline: Timeline::default(),
        segment,
        finals: VecDeque::new(),
        open_utterance_start: None,
        open_interim: None,
        interim_serial: 0,
        failed: false,
    }))
}

/// The client's [`EventSink`] for one session. Holds the element weakly: a session that
/// outlives its element just drops its events.
pub struct Bridge {
    element: glib::WeakRef<super::FireworksStt>,
    shared: Shared,
}

impl Bridge {
    pub fn new(element: &super::FireworksStt, shared: Shared) -> Self {
        Bridge {
            element: element.downgrade(),
            shared,
        }
    }
}

impl EventSink for Bridge {
    fn on_event(&self, event: ClientEvent) {
        if let Some(element) = self.element.upgrade() {
            element.imp().on_client_event(&self.shared, event);
        }
    }
}

impl imp::FireworksStt {
    fn post_structure(&self, structure: gst::Structure) {
        let element = self.obj();
        let _ = element.post_message(
            gst::message::Element::builder(structure)
                .src(&*element)
                .build(),
        );
    }

    pub(super) fn post_failure(&self, failure: &Failure, fatal: bool) {
        let element = self.obj();
        let error = bus::failure_error(failure);
        let details = bus::failure_details(failure);
        let message = if fatal {
            gst::error!(CAT, imp = self, "{}", failure.message);
            gst::message::Error::builder_from_error(error)
                .debug(&failure.debug)
                .details(details)
                .src(&*element)
                .build()
        } else {
            gst::warning!(CAT, imp = self, "{}", failure.message);
            gst::message::Warning::builder_from_error(error)
                .debug(&failure.debug)
                .details(details)
                .src(&*element)
                .build()
        };
        let _ = element.post_message(message);
    }

    pub(super) fn on_client_event(&self, shared: &Shared, event: ClientEvent) {
        let arrival = self.obj().current_running_time();
        match event {
            ClientEvent::Connected { attempt } => {
                gst::info!(
                    CAT,
                    imp = self,
                    "connected to Fireworks (connection {attempt})"
                );
            }
            ClientEvent::SpeechStarted { utterance } => {
                self.post_structure(bus::speech_boundary(
                    bus::SPEECH_STARTED,
                    utterance,
                    arrival,
                ));
            }
            ClientEvent::SpeechEnded { utterance } => {
                let mut inner = shared.lock().unwrap();
                inner.open_utterance_start = None;
                inner.open_interim = None;
                self.interim_open.store(false, Ordering::Relaxed);
                drop(inner);
                self.post_structure(bus::speech_boundary(bus::SPEECH_ENDED, utterance, arrival));
            }
            ClientEvent::Transcript(transcript) => self.on_transcript(shared, transcript, arrival),
            ClientEvent::Usage { since_last, total } => {
                self.post_structure(bus::usage(since_last, total));
            }
            ClientEvent::Step(step) if step.is_routine() => gst::log!(CAT, imp = self, "{step}"),
            ClientEvent::Step(step) => gst::debug!(CAT, imp = self, "{step}"),
            ClientEvent::Warning(failure) => self.post_failure(&failure, false),
            ClientEvent::Error(failure) => {
                // Post before flagging the failure: the streaming thread then returns a flow
                // error, and upstream's generic "Internal data stream error" must come second.
                self.post_failure(&failure, true);
                shared.lock().unwrap().failed = true;
            }
        }
    }

    fn on_transcript(
        &self,
        shared: &Shared,
        transcript: TimedTranscript,
        arrival: Option<gst::ClockTime>,
    ) {
        gst::log!(
            CAT,
            imp = self,
            "{} transcript of utterance {}: {:?}",
            if transcript.is_final {
                "final"
            } else {
                "interim"
            },
            transcript.utterance,
            transcript.text
        );
        // Non-live: the service's delay for the words of a final (live streams measure the lag
        // of each buffer as it is pushed instead, which covers early words too).
        let live = self.upstream_live.load(Ordering::Relaxed);
        if let Some(delay) = transcript.delay.filter(|_| transcript.is_final && !live) {
            self.observe_delay(delay);
        }
        let interim_results = self.settings.lock().unwrap().interim_results;
        let structure = {
            let mut inner = shared.lock().unwrap();
            let structure = (transcript.is_final || interim_results).then(|| {
                let to_stream_time = |audio: u64| {
                    let pts = gst::ClockTime::from_nseconds(inner.timeline.pts_for(audio)?);
                    inner.segment.to_stream_time(pts)
                };
                bus::transcript(&transcript, to_stream_time, arrival)
            });
            if transcript.is_final {
                inner.open_utterance_start = None;
                inner.open_interim = None;
                self.interim_open.store(false, Ordering::Relaxed);
                inner.finals.push_back(transcript);
            } else {
                if inner.open_utterance_start.is_none() {
                    inner.open_utterance_start = transcript.start;
                }
                inner.open_interim = Some(transcript);
                self.interim_open.store(true, Ordering::Relaxed);
                inner.interim_serial = inner.interim_serial.wrapping_add(1);
            }
            structure
        };
        if let Some(structure) = structure {
            self.post_structure(structure);
        }
    }

    /// Keeps `max-observed-delay` and warns when words come later than the pipeline allows.
    pub(super) fn observe_delay(&self, delay: std::time::Duration) {
        let delay_ms = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
        let previous = self
            .max_observed_delay_ms
            .fetch_max(delay_ms, Ordering::Relaxed);
        if delay_ms <= previous {
            return;
        }
        self.obj().notify("max-observed-delay");
        let budget_ms = {
            let settings = self.settings.lock().unwrap();
            settings.latency_ms.saturating_add(settings.lateness_ms)
        };
        if self.upstream_live.load(Ordering::Relaxed) && delay_ms > budget_ms {
            let element = self.obj();
            let details = gst::Structure::builder(bus::EXCESSIVE_DELAY)
                .field(
                    "new-observed-max-delay",
                    gst::ClockTime::from_mseconds(delay_ms.into()),
                )
                .build();
            let text = format!(
                "Transcripts arrive {delay_ms} ms after the audio, more than latency + lateness \
                 ({budget_ms} ms): captions will be late; raise the latency property"
            );
            let _ = element.post_message(
                gst::message::Warning::builder(gst::CoreError::Clock, &text)
                    .details(details)
                    .src(&*element)
                    .build(),
            );
        }
    }
}

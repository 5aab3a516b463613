// SPDX-License-Identifier: MPL-2.0
//! The network task's side of the element, where client events enter GStreamer: bus messages
//! go out at once (on the network thread), transcripts go to the output queue for the src pad
//! task.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::client::{ClientEvent, EventSink, TimedTranscript};

use super::bus;
use super::imp;
use super::src_task::{early_deadline_moved, OutputSettings};
use super::timeline::audio_time;
use super::CAT;

/// The client's [`EventSink`] for one network session. Holds the element weakly: a session
/// that outlives its element just drops its events.
pub struct Bridge {
    element: glib::WeakRef<super::FireworksStt>,
    /// Which network session this is (`State::serial`): events of a session the element has
    /// moved on from are dropped.
    serial: u64,
}

impl Bridge {
    pub fn new(element: &super::FireworksStt, serial: u64) -> Self {
        Bridge {
            element: element.downgrade(),
            serial,
        }
    }
}

impl EventSink for Bridge {
    fn on_event(&self, event: ClientEvent) {
        if let Some(element) = self.element.upgrade() {
            element.imp().on_client_event(self.serial, event);
        }
    }
}

impl imp::FireworksStt {
    pub(super) fn on_client_event(&self, serial: u64, event: ClientEvent) {
        if self.state.lock().unwrap().serial != serial {
            gst::debug!(
                CAT,
                imp = self,
                "dropping an event of a finished session: {event:?}"
            );
            return;
        }
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
                let mut state = self.state.lock().unwrap();
                state.open_utterance = None;
                drop(state);
                self.post_structure(bus::speech_boundary(bus::SPEECH_ENDED, utterance, arrival));
            }
            ClientEvent::Transcript(transcript) => self.on_transcript(serial, transcript, arrival),
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
                let mut state = self.state.lock().unwrap();
                if state.serial == serial {
                    state.failed = true;
                }
                drop(state);
                self.state_cond.notify_all();
            }
        }
    }

    fn on_transcript(
        &self,
        serial: u64,
        mut transcript: TimedTranscript,
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
        let (interim_results, mode, configured_language, output_settings) = {
            let settings = self.settings.lock().unwrap();
            let configured_language = settings.language_code.as_deref().and_then(|code| {
                crate::protocol::normalize_language_code(code)
                    .ok()
                    .flatten()
            });
            (
                settings.interim_results,
                settings.output_mode,
                configured_language,
                OutputSettings::from(&*settings),
            )
        };
        let (structure, live, dropped, wake_output_task) = {
            let mut guard = self.state.lock().unwrap();
            if guard.serial != serial {
                return;
            }
            let state = &mut *guard;
            let structure = (transcript.is_final || interim_results).then(|| {
                let to_stream_time = |audio: u64| {
                    let pts = state.timeline.pts_for(audio_time(audio))?;
                    state.segment.to_stream_time(pts)
                };
                let mut structure = bus::transcript(&transcript, to_stream_time, arrival);
                // End of speech to final: from the running time of the last word's end to the
                // final's arrival.
                let end_running_time = transcript
                    .end
                    .and_then(|audio| state.timeline.pts_for(audio_time(audio)))
                    .and_then(|pts| state.segment.to_running_time(pts));
                if let (true, Some(end), Some(arrival)) =
                    (transcript.is_final, end_running_time, arrival)
                {
                    bus::set_end_to_final(&mut structure, end, arrival);
                }
                structure
            });
            // The output's language (meta, tag): the service's, else the configured one.
            if transcript.language.is_none() {
                transcript.language = configured_language;
            }
            let mut dropped = None;
            // A final has text to push; an interim only when its words fall due before the
            // time the src pad task sleeps until.
            let wake_output_task = if transcript.is_final {
                state.open_utterance = None;
                dropped = state
                    .output
                    .queue_final(&transcript, mode, &state.timeline, state.live);
                true
            } else {
                state.on_interim(transcript.clone(), transcript.start.map(audio_time));
                early_deadline_moved(state, &output_settings)
            };
            (structure, state.live, dropped, wake_output_task)
        };
        if wake_output_task {
            self.state_cond.notify_all();
        }
        // Non-live: the service's delay for the words of a final (live streams measure the lag
        // of each buffer as it is pushed instead, which covers early words too).
        if let Some(delay) = transcript.delay.filter(|_| transcript.is_final && !live) {
            self.observe_delay(gst::ClockTime::from_nseconds(delay.as_nanos() as u64));
        }
        if let Some(structure) = structure {
            self.post_structure(structure);
        }
        if let Some(total) = dropped {
            self.report_dropped_text(total);
        }
    }

    /// The output queue was full (live input, downstream not taking text): the oldest waiting
    /// text went, and the user is told how much so far.
    fn report_dropped_text(&self, total: u64) {
        let text = format!(
            "Downstream is not taking the text: {} text buffers dropped so far (at most {} wait)",
            total,
            super::output_queue::MAX_WAITING_TEXT
        );
        self.post_repeated_warning(text, |stats| &mut stats.dropped_text_warnings);
    }
}

// SPDX-License-Identifier: MPL-2.0
//! Bus posts that every thread makes (the streaming thread, the network task, the src pad
//! task): element messages, failures as ERROR or WARNING, and the observed delay.

use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::client::Failure;

use super::bus;
use super::imp::FireworksStt;
use super::properties;
use super::state::{next_warning, Stats};
use super::CAT;

impl FireworksStt {
    pub(super) fn post_structure(&self, structure: gst::Structure) {
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

    /// Keeps `max-observed-delay` and warns when words come later than the pipeline allows.
    pub(super) fn observe_delay(&self, delay: gst::ClockTime) {
        let live = {
            let mut state = self.state.lock().unwrap();
            if delay <= state.stats.max_observed_delay {
                return;
            }
            state.stats.max_observed_delay = delay;
            state.live
        };
        self.obj().notify(properties::MAX_OBSERVED_DELAY);
        let budget = {
            let settings = self.settings.lock().unwrap();
            gst::ClockTime::from_mseconds(
                u64::from(settings.latency_ms) + u64::from(settings.lateness_ms),
            )
        };
        let delay_ms = delay.mseconds();
        let budget_ms = budget.mseconds();
        if live && delay > budget {
            let element = self.obj();
            let details = gst::Structure::builder(bus::EXCESSIVE_DELAY)
                .field("new-observed-max-delay", delay)
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

    /// A WARNING that can repeat (a drop of audio or text): posted at most
    /// [`MAX_REPEATED_WARNINGS`](super::state::MAX_REPEATED_WARNINGS) times, counted in the
    /// `Stats` field `counter` picks; later ones only go to the log.
    pub(super) fn post_repeated_warning(
        &self,
        text: String,
        counter: impl FnOnce(&mut Stats) -> &mut u32,
    ) {
        let post = next_warning(counter(&mut self.state.lock().unwrap().stats));
        match post {
            None => gst::warning!(CAT, imp = self, "{text}"),
            Some(last) => {
                let more = if last {
                    "; further drops are only logged"
                } else {
                    ""
                };
                gst::element_imp_warning!(self, gst::StreamError::Failed, ("{}{}", text, more));
            }
        }
    }
}

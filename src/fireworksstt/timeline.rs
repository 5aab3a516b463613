// SPDX-License-Identifier: MPL-2.0
//! Maps positions in the audio the service heard to PTS in the input stream.
//!
//! The service counts only the audio it received. Input can have holes (a leaky queue in
//! front of us drops buffers, a live source skips), so "first PTS + word time" drifts after
//! the first hole. Instead every jump in the input timestamps starts a new anchor, and a
//! position is mapped through the anchor that covers it.

use std::collections::VecDeque;

use gst::ClockTime;

use crate::client::bytes_to_ns;

/// Timestamps this close to the expected one count as contiguous (rounding, jitter).
const CONTIGUITY_TOLERANCE: ClockTime = ClockTime::from_mseconds(10);

/// A position in the audio the service heard (the client counts it in nanoseconds of audio
/// since the first sample), as a time.
pub fn audio_time(ns: u64) -> ClockTime {
    ClockTime::from_nseconds(ns)
}
/// Anchors kept; older ones are only needed for words far in the past.
const MAX_ANCHORS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    /// Audio position (audio received before this point).
    audio: ClockTime,
    pts: ClockTime,
}

#[derive(Debug, Default)]
pub struct Timeline {
    anchors: VecDeque<Anchor>,
    /// Bytes the service will have heard (odd bytes are completed by the next buffer).
    bytes: u64,
    expected_pts: Option<ClockTime>,
    /// Audio was dropped before reaching the service: the next buffer starts a new anchor.
    broken: bool,
}

impl Timeline {
    /// Records an input buffer of `bytes` bytes of S16 audio with timestamp `pts` (None: it
    /// follows the previous one, or starts at `start` if it is the first). `discont` forces a
    /// new anchor.
    pub fn on_buffer(
        &mut self,
        pts: Option<ClockTime>,
        bytes: u64,
        discont: bool,
        start: ClockTime,
    ) {
        let discont = discont || std::mem::take(&mut self.broken);
        let audio = self.heard();
        let pts = match (pts, self.expected_pts) {
            (Some(pts), Some(expected)) => {
                if discont || pts.absdiff(expected) > CONTIGUITY_TOLERANCE {
                    Some(pts)
                } else {
                    None
                }
            }
            (Some(pts), None) => Some(pts),
            (None, None) => Some(start),
            (None, Some(expected)) => discont.then_some(expected),
        };
        if let Some(pts) = pts {
            self.anchors.push_back(Anchor { audio, pts });
            if self.anchors.len() > MAX_ANCHORS {
                self.anchors.pop_front();
            }
        }
        self.bytes = self.bytes.saturating_add(bytes);
        self.expected_pts = self.pts_for(self.heard());
    }

    /// How much audio the service will have heard.
    fn heard(&self) -> ClockTime {
        audio_time(bytes_to_ns(self.bytes))
    }

    /// The last `bytes` bytes recorded never reached the service: later audio maps as if
    /// they had not been there, from the next buffer's own timestamp.
    pub fn on_dropped(&mut self, bytes: u64) {
        self.bytes = self.bytes.saturating_sub(bytes);
        self.broken = true;
    }

    /// PTS of the first audio received.
    pub fn first_pts(&self) -> Option<ClockTime> {
        self.anchors.front().map(|a| a.pts)
    }

    /// The PTS of audio position `audio` (audio since the stream began).
    pub fn pts_for(&self, audio: ClockTime) -> Option<ClockTime> {
        let anchor = self
            .anchors
            .iter()
            .rev()
            .find(|a| a.audio <= audio)
            .or_else(|| self.anchors.front())?;
        Some(if audio >= anchor.audio {
            // Upstream may stamp buffers anywhere, even next to u64::MAX.
            anchor.pts.saturating_add(audio - anchor.audio)
        } else {
            anchor.pts.saturating_sub(anchor.audio - audio)
        })
    }

    /// PTS just after the last sample received.
    pub fn end_pts(&self) -> Option<ClockTime> {
        self.expected_pts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: ClockTime = ClockTime::MSECOND;
    const ZERO: ClockTime = ClockTime::ZERO;

    #[test]
    fn contiguous_stream_maps_from_first_pts() {
        let mut t = Timeline::default();
        t.on_buffer(Some(5_000 * MS), 1600 * 2, false, ZERO);
        t.on_buffer(Some(5_100 * MS), 1600 * 2, false, ZERO);
        assert_eq!(t.pts_for(ZERO), Some(5_000 * MS));
        assert_eq!(t.pts_for(150 * MS), Some(5_150 * MS));
        assert_eq!(t.end_pts(), Some(5_200 * MS));
    }

    #[test]
    fn hole_in_input_starts_a_new_anchor() {
        let mut t = Timeline::default();
        t.on_buffer(Some(ZERO), 1600 * 2, false, ZERO); // 0..100 ms
        t.on_buffer(Some(1_000 * MS), 1600 * 2, false, ZERO); // dropped 900 ms before this
                                                              // Audio position 150 ms is 50 ms into the second buffer.
        assert_eq!(t.pts_for(150 * MS), Some(1_050 * MS));
        assert_eq!(t.pts_for(50 * MS), Some(50 * MS));
    }

    #[test]
    fn jitter_within_tolerance_is_ignored() {
        let mut t = Timeline::default();
        t.on_buffer(Some(ZERO), 1600 * 2, false, ZERO);
        t.on_buffer(Some(100 * MS + 3 * MS), 1600 * 2, false, ZERO);
        assert_eq!(t.pts_for(150 * MS), Some(150 * MS));
    }

    #[test]
    fn missing_timestamps_follow_on() {
        let mut t = Timeline::default();
        t.on_buffer(None, 1600 * 2, false, ZERO);
        t.on_buffer(None, 1600 * 2, false, ZERO);
        assert_eq!(t.pts_for(150 * MS), Some(150 * MS));
        assert_eq!(t.pts_for(ZERO), Some(ZERO));
    }

    #[test]
    fn dropped_audio_does_not_shift_later_words() {
        let mut t = Timeline::default();
        t.on_buffer(Some(ZERO), 1600 * 2, false, ZERO); // 0..100 ms, heard
        t.on_buffer(Some(100 * MS), 1600 * 2, false, ZERO); // 100..200 ms, dropped
        t.on_dropped(1600 * 2);
        t.on_buffer(Some(200 * MS), 1600 * 2, false, ZERO); // heard right after the first
                                                            // Audio position 150 ms is 50 ms into the third buffer.
        assert_eq!(t.pts_for(150 * MS), Some(250 * MS));
    }

    #[test]
    fn odd_buffers_do_not_drift() {
        let mut t = Timeline::default();
        for i in 0..1000u64 {
            t.on_buffer(None, if i % 2 == 0 { 3201 } else { 3199 }, false, ZERO);
        }
        assert_eq!(t.end_pts(), Some(100_000 * MS));
    }

    #[test]
    fn untimed_first_buffer_starts_at_the_segment_start() {
        let mut t = Timeline::default();
        t.on_buffer(None, 3200, false, 7 * MS);
        assert_eq!(t.pts_for(ZERO), Some(7 * MS));
    }

    #[test]
    fn empty_timeline_maps_nothing() {
        assert_eq!(Timeline::default().pts_for(ZERO), None);
    }

    #[test]
    fn timestamps_near_the_end_of_time_saturate_instead_of_overflowing() {
        let mut t = Timeline::default();
        t.on_buffer(Some(ClockTime::MAX - MS), 1600 * 2, false, ZERO);
        t.on_buffer(None, 1600 * 2, false, ZERO);
        assert_eq!(t.pts_for(ZERO), Some(ClockTime::MAX - MS));
        assert_eq!(t.pts_for(150 * MS), Some(ClockTime::MAX));
        assert_eq!(t.end_pts(), Some(ClockTime::MAX));
    }
}

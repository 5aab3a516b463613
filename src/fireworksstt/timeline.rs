//! Maps positions in the audio the service heard to PTS in the input stream.
//!
//! The service counts only the audio it received. Input can have holes (a leaky queue in
//! front of us drops buffers, a live source skips), so "first PTS + word time" drifts after
//! the first hole. Instead every jump in the input timestamps starts a new anchor, and a
//! position is mapped through the anchor that covers it.

use std::collections::VecDeque;

use crate::client::samples_to_ns;

/// Timestamps this close to the expected one count as contiguous (rounding, jitter).
const CONTIGUITY_TOLERANCE_NS: u64 = 10_000_000;
/// Anchors kept; older ones are only needed for words far in the past.
const MAX_ANCHORS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    /// Audio position (ns of audio received before this point).
    audio: u64,
    pts: u64,
}

#[derive(Debug, Default)]
pub struct Timeline {
    anchors: VecDeque<Anchor>,
    samples: u64,
    expected_pts: Option<u64>,
}

impl Timeline {
    /// Records an input buffer of `samples` samples with timestamp `pts` (None: assume it
    /// follows the previous one). `discont` forces a new anchor.
    pub fn on_buffer(&mut self, pts: Option<u64>, samples: u64, discont: bool) {
        let audio = samples_to_ns(self.samples);
        let pts = match (pts, self.expected_pts) {
            (Some(pts), Some(expected)) => {
                if discont || pts.abs_diff(expected) > CONTIGUITY_TOLERANCE_NS {
                    Some(pts)
                } else {
                    None
                }
            }
            (Some(pts), None) => Some(pts),
            (None, None) => Some(0),
            (None, Some(_)) => None,
        };
        if let Some(pts) = pts {
            self.anchors.push_back(Anchor { audio, pts });
            if self.anchors.len() > MAX_ANCHORS {
                self.anchors.pop_front();
            }
        }
        self.samples += samples;
        let end_audio = samples_to_ns(self.samples);
        self.expected_pts = self.pts_for(end_audio);
    }

    /// The PTS of audio position `audio` (ns of audio since the stream began).
    pub fn pts_for(&self, audio: u64) -> Option<u64> {
        let anchor = self
            .anchors
            .iter()
            .rev()
            .find(|a| a.audio <= audio)
            .or_else(|| self.anchors.front())?;
        Some(if audio >= anchor.audio {
            anchor.pts + (audio - anchor.audio)
        } else {
            anchor.pts.saturating_sub(anchor.audio - audio)
        })
    }

    /// PTS just after the last sample received.
    pub fn end_pts(&self) -> Option<u64> {
        self.expected_pts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn contiguous_stream_maps_from_first_pts() {
        let mut t = Timeline::default();
        t.on_buffer(Some(5_000 * MS), 1600, false);
        t.on_buffer(Some(5_100 * MS), 1600, false);
        assert_eq!(t.pts_for(0), Some(5_000 * MS));
        assert_eq!(t.pts_for(150 * MS), Some(5_150 * MS));
        assert_eq!(t.end_pts(), Some(5_200 * MS));
    }

    #[test]
    fn hole_in_input_starts_a_new_anchor() {
        let mut t = Timeline::default();
        t.on_buffer(Some(0), 1600, false); // 0..100 ms
        t.on_buffer(Some(1_000 * MS), 1600, false); // dropped 900 ms before this
                                                    // Audio position 150 ms is 50 ms into the second buffer.
        assert_eq!(t.pts_for(150 * MS), Some(1_050 * MS));
        assert_eq!(t.pts_for(50 * MS), Some(50 * MS));
    }

    #[test]
    fn jitter_within_tolerance_is_ignored() {
        let mut t = Timeline::default();
        t.on_buffer(Some(0), 1600, false);
        t.on_buffer(Some(100 * MS + 3 * MS), 1600, false);
        assert_eq!(t.pts_for(150 * MS), Some(150 * MS));
    }

    #[test]
    fn missing_timestamps_follow_on() {
        let mut t = Timeline::default();
        t.on_buffer(None, 1600, false);
        t.on_buffer(None, 1600, false);
        assert_eq!(t.pts_for(150 * MS), Some(150 * MS));
        assert_eq!(t.pts_for(0), Some(0));
    }

    #[test]
    fn empty_timeline_maps_nothing() {
        assert_eq!(Timeline::default().pts_for(0), None);
    }
}

// SPDX-License-Identifier: MPL-2.0
//! The audio kept for replay after a dropped connection.
//!
//! Every frame sent to the service stays here until a final transcript covers it, so that a
//! new connection can be fed the interrupted utterance again. Offsets are in samples counted
//! from the first sample of the stream.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::audio_units::BYTES_PER_SAMPLE;

#[derive(Debug)]
struct LoggedFrame {
    offset: u64,
    data: Bytes,
    sent_at: Option<Instant>,
}

impl LoggedFrame {
    fn samples(&self) -> u64 {
        self.data.len() as u64 / BYTES_PER_SAMPLE
    }

    fn end(&self) -> u64 {
        self.offset + self.samples()
    }
}

#[derive(Debug)]
pub struct AudioLog {
    frames: VecDeque<LoggedFrame>,
    bytes: usize,
    limit_bytes: usize,
    /// Offset the next appended frame gets.
    end: u64,
    /// Everything before this is covered by a final transcript and need never be replayed.
    released_through: u64,
    /// Everything before this was dropped from memory (released, or trimmed by the limit).
    kept_from: u64,
    /// Unreplayable audio up to here has been reported by [`AudioLog::take_unreplayable`].
    reported_through: u64,
    /// The largest frame appended: the log is full when another would not fit.
    largest_frame: usize,
}

impl AudioLog {
    pub fn new(limit_bytes: usize) -> Self {
        AudioLog {
            frames: VecDeque::new(),
            bytes: 0,
            limit_bytes,
            end: 0,
            released_through: 0,
            kept_from: 0,
            reported_through: 0,
            largest_frame: 0,
        }
    }

    /// Keeps a frame and returns its offset. When the log is over its limit the oldest audio
    /// goes, even if no final covered it yet.
    pub fn append(&mut self, data: Bytes) -> u64 {
        let offset = self.end;
        let frame = LoggedFrame {
            offset,
            data,
            sent_at: None,
        };
        self.end = frame.end();
        self.bytes += frame.data.len();
        self.largest_frame = self.largest_frame.max(frame.data.len());
        self.frames.push_back(frame);
        while self.bytes > self.limit_bytes && self.frames.len() > 1 {
            self.pop_front();
        }
        offset
    }

    fn pop_front(&mut self) {
        if let Some(frame) = self.frames.pop_front() {
            self.bytes -= frame.data.len();
            self.kept_from = frame.end();
        }
    }

    /// The frames from `offset` to the end went out (in one write) at `at`.
    pub fn mark_sent_from(&mut self, offset: u64, at: Instant) {
        // Frames are sent in order: the ones we look for are at the back.
        for frame in self.frames.iter_mut().rev() {
            if frame.end() <= offset {
                break;
            }
            frame.sent_at = Some(at);
        }
    }

    /// A final transcript covers the audio up to `sample`.
    pub fn release_through(&mut self, sample: u64) {
        let sample = sample.min(self.end);
        if sample <= self.released_through {
            return;
        }
        self.released_through = sample;
        while self.frames.front().is_some_and(|f| f.end() <= sample) {
            self.pop_front();
        }
    }

    /// Where a new connection starts: the end of the last final, or the oldest audio still
    /// kept if the limit forced older audio out.
    pub fn replay_start(&self) -> u64 {
        self.released_through.max(self.kept_from)
    }

    /// Samples after the last final that the limit forced out (a replay cannot cover them)
    /// and that no earlier call reported: each is counted once, however many reconnects find
    /// it missing.
    pub fn take_unreplayable(&mut self) -> u64 {
        let from = self.released_through.max(self.reported_through);
        self.reported_through = self.reported_through.max(self.kept_from);
        self.kept_from.saturating_sub(from)
    }

    /// Another frame (as large as the largest so far) would not fit without forgetting some
    /// audio, whatever the frame size divides the limit into.
    pub fn is_full(&self) -> bool {
        self.bytes + self.largest_frame.max(1) > self.limit_bytes
    }

    /// Offset just past the newest audio.
    pub fn end_offset(&self) -> u64 {
        self.end
    }

    /// The kept audio from `start` up to (not including) `end`, as (offset, bytes); the first
    /// and last frames are cut to those bounds.
    pub fn frames_between(&self, start: u64, end: u64) -> Vec<(u64, Bytes)> {
        let byte = |samples: u64| (samples * BYTES_PER_SAMPLE) as usize;
        if start >= end {
            return Vec::new();
        }
        self.frames
            .iter()
            .filter(|f| f.end() > start && f.offset < end)
            .map(|f| {
                let from = start.max(f.offset);
                let to = end.min(f.end());
                let data = f.data.slice(byte(from - f.offset)..byte(to - f.offset));
                (from, data)
            })
            .collect()
    }

    /// Samples from the end of the last final to the newest audio: what no final confirmed.
    pub fn unconfirmed_samples(&self) -> u64 {
        self.end.saturating_sub(self.released_through)
    }

    /// Offset where the audio no final confirmed begins.
    pub fn confirmed_through(&self) -> u64 {
        self.released_through
    }

    /// When the frame holding `sample` was last sent.
    pub fn sent_at(&self, sample: u64) -> Option<Instant> {
        // Frames are in offset order: a binary search, not a walk through up to a minute of them.
        let index = self.frames.partition_point(|f| f.end() <= sample);
        self.frames
            .get(index)
            .filter(|f| f.offset <= sample)
            .and_then(|f| f.sent_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(samples: usize, value: u8) -> Bytes {
        Bytes::from(vec![value; samples * 2])
    }

    #[test]
    fn offsets_and_replay_from_last_final() {
        let mut log = AudioLog::new(1 << 20);
        assert_eq!(log.append(frame(800, 1)), 0);
        assert_eq!(log.append(frame(800, 2)), 800);
        assert_eq!(log.append(frame(800, 3)), 1600);
        assert_eq!(log.replay_start(), 0);
        log.release_through(1000);
        assert_eq!(log.replay_start(), 1000);
        let frames = log.frames_between(1000, u64::MAX);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].0, 1000);
        assert_eq!(frames[0].1.len(), 600 * 2);
        assert_eq!(frames[1].0, 1600);
        assert_eq!(log.take_unreplayable(), 0);
    }

    #[test]
    fn full_means_the_next_frame_would_not_fit_whatever_the_frame_size() {
        // 2240-byte frames (70 ms) do not divide a 1,920,000-byte limit.
        let mut log = AudioLog::new(1_920_000);
        let mut appended = 0;
        while !log.is_full() {
            log.append(frame(1120, 1));
            appended += 1;
        }
        assert_eq!(appended, 857);
        assert_eq!(log.take_unreplayable(), 0, "nothing was forgotten");
        log.append(frame(1120, 1));
        assert_eq!(log.take_unreplayable(), 1120, "one more forgets the oldest");
    }

    #[test]
    fn limit_trims_oldest_and_reports_it() {
        let mut log = AudioLog::new(800 * 2 * 2);
        log.append(frame(800, 1));
        log.append(frame(800, 2));
        log.append(frame(800, 3));
        assert_eq!(log.replay_start(), 800);
        assert_eq!(log.take_unreplayable(), 800);
        // Reported once, however many reconnects ask.
        assert_eq!(log.take_unreplayable(), 0);
        log.append(frame(800, 4));
        assert_eq!(log.take_unreplayable(), 800);
        log.release_through(3000);
        assert_eq!(log.take_unreplayable(), 0);
        assert_eq!(log.replay_start(), 3000);
    }

    #[test]
    fn sent_times_follow_frames() {
        let mut log = AudioLog::new(1 << 20);
        let now = Instant::now();
        log.append(frame(800, 1));
        log.append(frame(800, 2));
        log.mark_sent_from(800, now);
        assert_eq!(log.sent_at(900), Some(now));
        assert_eq!(log.sent_at(10), None);
        log.append(frame(800, 3));
        log.append(frame(800, 4));
        let later = now + std::time::Duration::from_millis(5);
        log.mark_sent_from(1600, later);
        assert_eq!(log.sent_at(900), Some(now));
        assert_eq!(log.sent_at(1700), Some(later));
        assert_eq!(log.sent_at(3000), Some(later));
        assert_eq!(log.sent_at(5000), None);
    }

    #[test]
    fn frames_between_cuts_both_ends() {
        let mut log = AudioLog::new(1 << 20);
        log.append(frame(800, 1));
        log.append(frame(800, 2));
        log.append(frame(800, 3));
        let frames = log.frames_between(400, 1700);
        let spans: Vec<(u64, usize)> = frames.iter().map(|(o, d)| (*o, d.len() / 2)).collect();
        assert_eq!(spans, [(400, 400), (800, 800), (1600, 100)]);
        assert!(log.frames_between(1000, 1000).is_empty());
        assert_eq!(log.unconfirmed_samples(), 2400);
        log.release_through(900);
        assert_eq!(log.unconfirmed_samples(), 1500);
        assert_eq!(log.confirmed_through(), 900);
    }

    #[test]
    fn release_never_goes_past_the_end() {
        let mut log = AudioLog::new(1 << 20);
        log.append(frame(100, 1));
        log.release_through(10_000);
        assert_eq!(log.replay_start(), 100);
        assert!(log.frames_between(log.replay_start(), u64::MAX).is_empty());
    }
}

// SPDX-License-Identifier: MPL-2.0
//! The one audio format the service takes (docs/protocol.md, "Audio") and the unit
//! conversions every other module uses instead of writing `* 32` or `/ 2` by hand.

/// The only audio format the service accepts: S16LE, 16 kHz, mono.
pub const SAMPLE_RATE: u64 = 16_000;
pub const BYTES_PER_SAMPLE: u64 = 2;

/// Nanoseconds of audio covered by `samples` samples.
pub fn samples_to_ns(samples: u64) -> u64 {
    samples.saturating_mul(1_000_000_000) / SAMPLE_RATE
}

/// Nanoseconds of audio in `bytes` bytes of it.
pub fn bytes_to_ns(bytes: u64) -> u64 {
    samples_to_ns(bytes / BYTES_PER_SAMPLE)
}

/// Whole samples in `duration` of audio.
pub fn duration_to_samples(duration: std::time::Duration) -> u64 {
    (duration.as_nanos().saturating_mul(u128::from(SAMPLE_RATE)) / 1_000_000_000)
        .try_into()
        .unwrap_or(u64::MAX)
}

/// Bytes of audio in `duration` of it (whole samples).
pub fn duration_to_bytes(duration: std::time::Duration) -> usize {
    usize::try_from(duration_to_samples(duration).saturating_mul(BYTES_PER_SAMPLE))
        .unwrap_or(usize::MAX)
}

/// Samples covered by `seconds` of audio (negative or non-finite → 0).
pub fn seconds_to_samples(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * SAMPLE_RATE as f64).round() as u64
    } else {
        0
    }
}

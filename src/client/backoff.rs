// SPDX-License-Identifier: MPL-2.0
//! How long to wait before each retry (docs/protocol.md#retries).
//!
//! After a drop the first retry comes quickly (`first_retry_delay`, at most 100 ms) and the
//! others after `retry-interval`, as in LiveKit's plugin. A refusal for the account's rate limit
//! (HTTP 429) is different: retrying at once only spends the next request of the limit, so those
//! retries wait `retry-interval`, then twice, four times… as long, up to
//! [`MAX_RATE_LIMIT_FACTOR`] times it. `max-retries` bounds the number of attempts either way.

use std::time::Duration;

use super::config::ClientConfig;

/// The longest rate-limit pause is this many `retry-interval`s (2 s → 32 s by default).
pub const MAX_RATE_LIMIT_FACTOR: u32 = 16;

/// The pause before retry number `retry` (1 for the first retry; 0 is the first attempt, which
/// does not wait). `rate_limited` says the attempt before it was refused with HTTP 429.
pub fn retry_delay(cfg: &ClientConfig, retry: u32, rate_limited: bool) -> Duration {
    match retry {
        0 => Duration::ZERO,
        _ if rate_limited => {
            let factor = 1u32
                .checked_shl(retry - 1)
                .unwrap_or(u32::MAX)
                .min(MAX_RATE_LIMIT_FACTOR);
            cfg.retry_interval.saturating_mul(factor)
        }
        1 => cfg.first_retry_delay,
        _ => cfg.retry_interval,
    }
}

/// The sum of the longest pauses `max-retries` retries can take: what a bound on a whole
/// reconnect sequence must allow for. The rate-limit pauses are the longest: each is at least
/// `retry-interval`, which is at least `first_retry_delay`.
pub fn longest_retry_pauses(cfg: &ClientConfig) -> Duration {
    longest_pauses(cfg.retry_interval, cfg.max_retries)
}

/// [`longest_retry_pauses`] from the two settings it depends on.
pub fn longest_pauses(retry_interval: Duration, max_retries: u32) -> Duration {
    (1..=max_retries).fold(Duration::ZERO, |sum, retry| {
        let factor = 1u32
            .checked_shl(retry - 1)
            .unwrap_or(u32::MAX)
            .min(MAX_RATE_LIMIT_FACTOR);
        sum.saturating_add(retry_interval.saturating_mul(factor))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ClientConfig {
        let mut cfg = ClientConfig::new(
            "wss://example.com/v1".parse().unwrap(),
            crate::client::ApiKey::new("k"),
        );
        cfg.retry_interval = Duration::from_secs(2);
        cfg.first_retry_delay = Duration::from_millis(100);
        cfg
    }

    #[test]
    fn drops_retry_quickly_then_at_the_interval() {
        let delays: Vec<u64> = (0..4)
            .map(|r| retry_delay(&cfg(), r, false).as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 100, 2000, 2000]);
    }

    #[test]
    fn rate_limits_back_off_doubling_up_to_a_cap() {
        let delays: Vec<u64> = (1..8)
            .map(|r| retry_delay(&cfg(), r, true).as_secs())
            .collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 32, 32]);
        assert_eq!(retry_delay(&cfg(), u32::MAX, true), Duration::from_secs(32));
    }

    #[test]
    fn the_longest_pauses_add_up_the_backoff() {
        let mut c = cfg();
        c.max_retries = 3;
        assert_eq!(longest_retry_pauses(&c), Duration::from_secs(2 + 4 + 8));
        c.max_retries = 0;
        assert_eq!(longest_retry_pauses(&c), Duration::ZERO);
    }
}

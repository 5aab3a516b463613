// SPDX-License-Identifier: MPL-2.0
use std::time::Duration;

use url::Url;

use super::audio_units::duration_to_bytes;
use super::secret::ApiKey;
use super::tls::TlsSettings;

/// The defaults of the client's settings: the one place they are written down (the element's
/// property defaults are these).
pub mod defaults {
    use std::time::Duration;

    pub const CHUNK_DURATION: Duration = Duration::from_millis(50);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
    pub const TEXT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const MAX_RETRIES: u32 = 3;
    pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);
    /// The first retry comes after this, or `retry_interval` if shorter (as LiveKit's plugin).
    pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
    pub const USAGE_INTERVAL: Duration = Duration::from_secs(10);
    pub const STALL_TIMEOUT: Duration = Duration::from_secs(15);
    /// A ping goes out after a third of `stall_timeout` without traffic.
    pub const KEEPALIVE_SHARE_OF_STALL: u32 = 3;
    pub const REPLAY_LIMIT: Duration = Duration::from_secs(60);
}

/// Everything one streaming session needs, resolved from the element's properties when the
/// first buffer arrives.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Full streaming URL including the query. Never holds the key.
    pub url: Url,
    pub api_key: ApiKey,
    pub tls: TlsSettings,
    /// Size of each binary audio frame sent to the service.
    pub chunk_bytes: usize,
    /// Bound on TCP connect + TLS + WebSocket upgrade.
    pub connect_timeout: Duration,
    /// Bound on waiting for the final transcript at end of stream.
    pub drain_timeout: Duration,
    /// The `text_timeout_seconds` sent to the service: the silence after which it finalises
    /// an utterance. Audio after the last final that is longer than this cannot all be the
    /// silence that ends it.
    pub text_timeout: Duration,
    /// Reconnect attempts after an unexpected drop or a transient handshake failure.
    pub max_retries: u32,
    /// Delay before the second and later retries; the first comes after `first_retry_delay`.
    pub retry_interval: Duration,
    pub first_retry_delay: Duration,
    /// Period of usage events.
    pub usage_interval: Duration,
    /// A WebSocket ping goes out after this long without traffic from the server...
    pub keepalive_interval: Duration,
    /// ...and the connection counts as stalled when nothing at all arrives for this long.
    pub stall_timeout: Duration,
    /// Longest stretch of audio kept for replay after a drop (from the end of the last final
    /// word). Older audio is released; a drop past it loses that part of the utterance.
    pub replay_limit: Duration,
    /// Largest server message accepted; a larger one is a protocol error on that connection.
    pub max_message_bytes: usize,
    /// Frames that may wait between the streaming thread and the network task.
    pub queue_frames: usize,
}

impl ClientConfig {
    pub fn new(url: Url, api_key: ApiKey) -> Self {
        ClientConfig {
            url,
            api_key,
            tls: TlsSettings::default(),
            chunk_bytes: duration_to_bytes(defaults::CHUNK_DURATION),
            connect_timeout: defaults::CONNECT_TIMEOUT,
            drain_timeout: defaults::DRAIN_TIMEOUT,
            text_timeout: defaults::TEXT_TIMEOUT,
            max_retries: defaults::MAX_RETRIES,
            retry_interval: defaults::RETRY_INTERVAL,
            first_retry_delay: defaults::FIRST_RETRY_DELAY,
            usage_interval: defaults::USAGE_INTERVAL,
            keepalive_interval: defaults::STALL_TIMEOUT / defaults::KEEPALIVE_SHARE_OF_STALL,
            stall_timeout: defaults::STALL_TIMEOUT,
            replay_limit: defaults::REPLAY_LIMIT,
            // Real messages are a few KB; a bound keeps a hostile one from costing much memory
            // while it is parsed.
            max_message_bytes: 1024 * 1024,
            queue_frames: 64,
        }
    }

    /// The host (and port) to name in error messages: never the path or query.
    pub fn host_for_messages(&self) -> String {
        match (self.url.host_str(), self.url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            _ => "<no host>".to_string(),
        }
    }
}

/// Unit-test helpers of the client's modules.
#[cfg(test)]
pub(crate) mod test_support {
    use std::time::Duration;

    use crate::client::config::ClientConfig;
    use crate::client::secret::ApiKey;

    /// A configuration with every default, for a `wss://` URL that is never dialled.
    pub fn cfg() -> ClientConfig {
        let url = url::Url::parse("wss://example.com/v1/audio/transcriptions/streaming").unwrap();
        ClientConfig::new(url, ApiKey::new("k"))
    }

    pub fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }
}

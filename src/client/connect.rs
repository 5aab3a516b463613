// SPDX-License-Identifier: MPL-2.0
//! Opening one WebSocket session: request, headers, TLS, and a classified failure.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::TlsError;
use tokio_tungstenite::tungstenite::http::header::{AUTHORIZATION, USER_AGENT};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::config::ClientConfig;
use super::events::{Failure, FailureKind};

pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A base-url of the right shape, for messages.
const EXAMPLE_BASE_URL: &str = "wss://audio-streaming.us-virginia-1.direct.fireworks.ai/v1";

const USER_AGENT_VALUE: &str = concat!("gst-plugin-fireworks/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, PartialEq)]
pub enum ConnectError {
    /// The server answered the upgrade with an HTTP status.
    Rejected {
        status: u16,
        body: String,
    },
    Timeout(Duration),
    Network(String),
    Tls(String),
    /// The request itself is unusable; retrying cannot help.
    Invalid(String),
}

impl std::fmt::Display for ConnectError {
    /// A short description; [`ConnectError::to_failure`] gives the text a user reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Rejected { status, .. } => {
                write!(f, "upgrade refused with HTTP {status}")
            }
            ConnectError::Timeout(after) => write!(f, "no upgrade within {} ms", after.as_millis()),
            ConnectError::Network(text) | ConnectError::Tls(text) | ConnectError::Invalid(text) => {
                f.write_str(text)
            }
        }
    }
}

impl std::error::Error for ConnectError {}

impl ConnectError {
    /// Time-outs, refused connections, 429 and 5xx may pass; a rejected key, a spend cap
    /// reached (402) or a bad request will not, so retrying those only makes a storm.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Rejected { status, .. } => *status == 429 || *status >= 500,
            ConnectError::Timeout(_) | ConnectError::Network(_) => true,
            ConnectError::Tls(_) | ConnectError::Invalid(_) => false,
        }
    }

    /// `path` is the request path (never the query): a 404 names it.
    pub fn to_failure(&self, host: &str, path: &str) -> Failure {
        match self {
            ConnectError::Rejected { status, body } => {
                let (kind, message) = if *status == 401 || *status == 403 {
                    (
                        FailureKind::AuthRejected,
                        format!(
                            "Fireworks at {host} rejected the API key (HTTP {status}): check the \
                             api-key property or the FIREWORKS_API_KEY environment variable"
                        ),
                    )
                } else if *status == 402 {
                    (
                        FailureKind::BudgetExceeded,
                        format!(
                            "Fireworks at {host} refused the stream because the account has \
                             reached its budget or spend cap (HTTP 402 Payment Required): raise \
                             the spend limit or add credits in the Fireworks account's billing \
                             settings, then start again"
                        ),
                    )
                } else if *status == 429 {
                    (
                        FailureKind::RateLimited,
                        format!(
                            "Fireworks at {host} refused the stream because the account's rate \
                             limit is reached (HTTP 429 Too Many Requests: too many requests or \
                             concurrent streams); wait, close other streams, or ask Fireworks for \
                             a higher limit"
                        ),
                    )
                } else if *status == 404 {
                    // The usual cause is a base-url without the API version.
                    let version_hint = if path.starts_with("/v1/") {
                        ""
                    } else {
                        " — it has no /v1"
                    };
                    (
                        FailureKind::HandshakeRejected,
                        format!(
                            "Fireworks at {host} has no streaming endpoint at {path} (HTTP 404): \
                             check base-url{version_hint}; it must name the API version, as in \
                             {EXAMPLE_BASE_URL}"
                        ),
                    )
                } else {
                    (
                        FailureKind::HandshakeRejected,
                        format!(
                            "Fireworks at {host} refused the WebSocket upgrade with HTTP {status}"
                        ),
                    )
                };
                let mut failure = Failure::new(kind, message, format!("response body: {body}"));
                failure.http_status = Some(*status);
                failure
            }
            ConnectError::Timeout(after) => Failure::new(
                FailureKind::ConnectTimeout,
                format!(
                    "Could not connect to {host} within {} ms (connect-timeout)",
                    after.as_millis()
                ),
                "TCP connect, TLS or WebSocket upgrade did not finish in time",
            ),
            ConnectError::Network(err) => Failure::new(
                FailureKind::Network,
                format!("Could not connect to {host}: {err}"),
                err.clone(),
            ),
            ConnectError::Tls(err) => Failure::new(
                FailureKind::Tls,
                format!("TLS with {host} failed: {err}"),
                err.clone(),
            ),
            ConnectError::Invalid(err) => {
                Failure::new(FailureKind::Config, err.clone(), err.clone())
            }
        }
    }
}

fn classify(err: WsError) -> ConnectError {
    match err {
        WsError::Http(response) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .map(|bytes| {
                    let text = String::from_utf8_lossy(bytes);
                    text.chars().take(300).collect::<String>()
                })
                .unwrap_or_default();
            ConnectError::Rejected { status, body }
        }
        WsError::Tls(TlsError::Rustls(err)) => ConnectError::Tls(super::tls::explain(&err)),
        WsError::Tls(err) => ConnectError::Tls(err.to_string()),
        WsError::Io(err) => {
            // rustls reports certificate problems as io errors wrapping a rustls error.
            match err
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(tls) => ConnectError::Tls(super::tls::explain(tls)),
                None => ConnectError::Network(
                    super::tls::explain_io(&err).unwrap_or_else(|| err.to_string()),
                ),
            }
        }
        WsError::Url(err) => ConnectError::Invalid(format!("invalid base-url: {err}")),
        WsError::HttpFormat(err) => ConnectError::Invalid(format!("invalid request: {err}")),
        other => ConnectError::Network(other.to_string()),
    }
}

/// Initial size of a connection's read buffer (tungstenite's default is 128 KiB).
const READ_BUFFER_BYTES: usize = 4 * 1024;

pub fn websocket_config(cfg: &ClientConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        // tungstenite zero-fills the whole read buffer before every read attempt and keeps it
        // resident per connection; messages are ~1.4 KB, and bigger ones still grow it.
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(cfg.max_message_bytes))
        .max_frame_size(Some(cfg.max_message_bytes))
}

/// Connects, authenticating with the `Authorization` header (the raw key, as the service
/// expects). The whole handshake is bounded by `connect_timeout`.
pub async fn connect(
    cfg: &ClientConfig,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<WsStream, ConnectError> {
    let mut request = cfg
        .url
        .as_str()
        .into_client_request()
        .map_err(|err| ConnectError::Invalid(format!("invalid base-url: {err}")))?;
    let mut key = HeaderValue::from_str(cfg.api_key.expose()).map_err(|_| {
        ConnectError::Invalid(
            "the API key contains characters that cannot be sent in an HTTP header".to_string(),
        )
    })?;
    key.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, key);
    request
        .headers_mut()
        .insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));

    let handshake = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(websocket_config(cfg)),
        true,
        Some(Connector::Rustls(tls.clone())),
    );
    match tokio::time::timeout(cfg.connect_timeout, handshake).await {
        Err(_) => Err(ConnectError::Timeout(cfg.connect_timeout)),
        Ok(Err(err)) => Err(match classify(err) {
            ConnectError::Rejected { status, body } => ConnectError::Rejected {
                status,
                body: cfg.api_key.redact(&body),
            },
            other => other,
        }),
        Ok(Ok((stream, _response))) => Ok(stream),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy_by_status() {
        let rejected = |status| ConnectError::Rejected {
            status,
            body: String::new(),
        };
        assert!(!rejected(401).is_retryable());
        assert!(!rejected(403).is_retryable());
        assert!(!rejected(400).is_retryable());
        assert!(rejected(429).is_retryable());
        assert!(rejected(500).is_retryable());
        assert!(rejected(503).is_retryable());
        assert!(ConnectError::Timeout(Duration::from_secs(1)).is_retryable());
        assert!(ConnectError::Network("refused".into()).is_retryable());
        assert!(!ConnectError::Tls("bad cert".into()).is_retryable());
    }

    #[test]
    fn certificate_errors_are_explained() {
        use rustls::CertificateError;
        let io =
            |e: rustls::Error| WsError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        let unknown = classify(io(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        )));
        let ConnectError::Tls(text) = &unknown else {
            panic!("{unknown:?}")
        };
        assert!(text.contains("not signed by a trusted") && text.contains("tls-ca-file"));
        let wrong_name = classify(io(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        )));
        let ConnectError::Tls(text) = &wrong_name else {
            panic!("{wrong_name:?}")
        };
        assert!(text.contains("does not match the host") && !text.contains("tls-ca-file"));
        assert!(!wrong_name.is_retryable());
        let plain = classify(WsError::Io(std::io::ErrorKind::ConnectionRefused.into()));
        assert!(matches!(plain, ConnectError::Network(_)) && plain.is_retryable());
    }

    #[test]
    fn account_limits_are_named() {
        let rejected = |status| ConnectError::Rejected {
            status,
            body: String::new(),
        };
        assert!(!rejected(402).is_retryable());
        let budget = rejected(402).to_failure("example.com", "/v1/x");
        assert_eq!(budget.kind, FailureKind::BudgetExceeded);
        assert!(budget.message.contains("spend cap"), "{}", budget.message);
        let rate = rejected(429).to_failure("example.com", "/v1/x");
        assert_eq!(rate.kind, FailureKind::RateLimited);
        assert!(rate.message.contains("rate limit"), "{}", rate.message);
        assert_eq!(rate.http_status, Some(429));
    }

    #[test]
    fn auth_failure_names_the_key_settings() {
        let failure = ConnectError::Rejected {
            status: 401,
            body: "nope".into(),
        }
        .to_failure("example.com", "/v1/audio/transcriptions/streaming");
        assert_eq!(failure.kind, FailureKind::AuthRejected);
        assert!(failure.message.contains("FIREWORKS_API_KEY"));
        assert!(failure.message.contains("api-key"));
        assert_eq!(failure.http_status, Some(401));
    }

    #[test]
    fn not_found_names_the_path_and_the_missing_version() {
        let not_found = ConnectError::Rejected {
            status: 404,
            body: String::new(),
        };
        let failure = not_found.to_failure("example.com", "/audio/transcriptions/streaming");
        assert!(
            failure.message.contains("/audio/transcriptions/streaming")
                && failure.message.contains("base-url")
                && failure.message.contains("no /v1"),
            "{}",
            failure.message
        );
        assert!(!not_found.is_retryable());
        let with_version =
            not_found.to_failure("example.com", "/v1/audio/transcriptions/streaming");
        assert!(!with_version.message.contains("no /v1"));
        assert!(with_version.message.contains("check base-url"));
    }
}

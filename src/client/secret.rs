// SPDX-License-Identifier: MPL-2.0
use std::fmt;

/// The Fireworks API key. Its `Debug` and `Display` never show the key, so it cannot leak into
/// a log line by accident; only [`ApiKey::expose`] gives it out, for the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }

    /// `text` with every occurrence of the key blanked out: for texts that come back from the
    /// network (an error body from a proxy that echoes request headers, a server message).
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "<redacted>")
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_never_formats_in_clear() {
        let key = ApiKey::new("fw_secret_123");
        assert!(!format!("{key:?}").contains("fw_secret_123"));
        assert!(!format!("{key}").contains("fw_secret_123"));
        assert_eq!(key.expose(), "fw_secret_123");
    }

    #[test]
    fn echoed_keys_are_blanked() {
        let key = ApiKey::new("fw_secret_123");
        assert_eq!(
            key.redact("bad header Authorization: fw_secret_123"),
            "bad header Authorization: <redacted>"
        );
    }
}

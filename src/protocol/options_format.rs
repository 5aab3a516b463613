// SPDX-License-Identifier: MPL-2.0
//! Renders query values exactly as LiveKit's plugin's Python does (`str()` and
//! `urllib.parse.quote_plus`), so our URLs match its URLs byte for byte
//! (docs/protocol.md#query-parameters).

use std::fmt::Write;

/// Python `str(bool)`.
pub(super) fn python_bool(value: bool) -> &'static str {
    if value {
        "True"
    } else {
        "False"
    }
}

/// Python `str(float)`: shortest round-trip digits, always with a decimal point or exponent,
/// switching to `1e-05` / `1e+16` notation outside 1e-4 <= |x| < 1e16.
pub(super) fn python_float(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // Rust's `{:e}` gives the same shortest digits, e.g. "1.5e16"; only the layout differs.
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let plain = value.to_string();
        if plain.contains('.') {
            plain
        } else {
            plain + ".0"
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    }
}

/// Python `urllib.parse.quote_plus(text, safe="")`: UTF-8 bytes percent-encoded except
/// `A-Za-z0-9_.-~`, and spaces as `+`.
pub(super) fn quote_plus(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(byte))
            }
            // Writing to a String cannot fail.
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_match_python_str() {
        // Expected values are Python 3's str() of the same float.
        for (value, python) in [
            (1.0, "1.0"),
            (2.5, "2.5"),
            (0.15, "0.15"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (29.0, "29.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (100.0, "100.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000015, "1.5e-05"),
            (1e15, "1000000000000000.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e100, "1e+100"),
            (-2.5e-300, "-2.5e-300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(python_float(value), python, "{value:?}");
        }
    }

    #[test]
    fn bools_match_python_str() {
        assert_eq!(python_bool(true), "True");
        assert_eq!(python_bool(false), "False");
    }

    #[test]
    fn quoting_matches_python_quote_plus() {
        for (text, python) in [
            ("", ""),
            ("plain-text_1.0~", "plain-text_1.0~"),
            ("a b", "a+b"),
            ("a+b", "a%2Bb"),
            ("Um, here's", "Um%2C+here%27s"),
            ("{\"threshold\":0.15}", "%7B%22threshold%22%3A0.15%7D"),
            ("*/?#&=%", "%2A%2F%3F%23%26%3D%25"),
            ("é日", "%C3%A9%E6%97%A5"),
            ("\n\t\u{0}", "%0A%09%00"),
        ] {
            assert_eq!(quote_plus(text), python, "{text:?}");
        }
    }
}

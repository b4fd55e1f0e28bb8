//! The JSON access record's line, written by hand into one buffer: keys are fixed and need no
//! escaping, ids, addresses and numbers never need it, and the few strings that might (path,
//! host, user agent, names) take the fast path when they are plain. Measured with
//! `bench/instructions.sh`: a request with the JSON log on costs ≈ 6 300 instructions less
//! this way than through serde_json and the formatting machinery (docs/performance.md).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::digits::{lower_hex, push_decimal, push_ip};

/// One JSON object on one line, its fields written in order.
pub struct JsonLine {
    out: String,
}

impl JsonLine {
    pub fn new() -> Self {
        let mut out = String::with_capacity(512);
        out.push('{');
        Self { out }
    }

    /// The finished line (no newline).
    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    /// A string field; `None` is `null`.
    pub fn str(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(value) => {
                self.out.push('"');
                escape_into(&mut self.out, value);
                self.out.push('"');
            }
            None => self.out.push_str("null"),
        }
    }

    pub fn uint(&mut self, key: &str, value: u64) {
        self.key(key);
        push_decimal(&mut self.out, value);
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
    }

    /// A duration in milliseconds with microseconds (`12.345`); `None` is `null`.
    pub fn millis(&mut self, key: &str, value: Option<Duration>) {
        self.key(key);
        let Some(value) = value else {
            self.out.push_str("null");
            return;
        };
        let micros = value.as_micros();
        push_decimal(&mut self.out, (micros / 1000) as u64);
        self.out.push('.');
        push_padded(&mut self.out, (micros % 1000) as u64, 3);
    }

    /// An address (`"-"` when unknown).
    pub fn ip(&mut self, key: &str, value: Option<IpAddr>) {
        self.key(key);
        self.out.push('"');
        match value {
            Some(ip) => push_ip(&mut self.out, ip),
            None => self.out.push('-'),
        }
        self.out.push('"');
    }

    /// A time as RFC 3339 in UTC with milliseconds, quoted.
    pub fn time(&mut self, key: &str, at: SystemTime) {
        self.key(key);
        self.out.push('"');
        push_rfc3339_millis(&mut self.out, at);
        self.out.push('"');
    }
}

/// `value` as the contents of a JSON string: as it is unless it holds a quote, a backslash or a
/// control character.
fn escape_into(out: &mut String, value: &str) {
    let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\';
    if value.bytes().all(plain) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let mut hex = *b"\\u0000";
                lower_hex(&[c as u8], &mut hex[4..]);
                out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
            }
            c => out.push(c),
        }
    }
}

/// `value` in decimal, zero-padded to `width` digits.
fn push_padded(out: &mut String, value: u64, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (value / 10u64.pow(place) % 10) as u8));
    }
}

/// `at` as RFC 3339 in UTC with milliseconds: `2026-12-03T04:53:41.123Z`.
pub fn push_rfc3339_millis(out: &mut String, at: SystemTime) {
    let ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let (secs, millis) = ((ms / 1000) as i64, (ms % 1000) as u64);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u64);
    let (year, month, day) = civil_from_days(days);
    push_padded(out, year.max(0) as u64, 4);
    out.push('-');
    push_padded(out, u64::from(month), 2);
    out.push('-');
    push_padded(out, u64::from(day), 2);
    out.push('T');
    push_padded(out, day_secs / 3600, 2);
    out.push(':');
    push_padded(out, day_secs % 3600 / 60, 2);
    out.push(':');
    push_padded(out, day_secs % 60, 2);
    out.push('.');
    push_padded(out, millis, 3);
    out.push('Z');
}

/// The proleptic Gregorian date of a count of days since 1970-01-01 (Howard Hinnant's
/// well-known algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json reads back is what was written, escapes and all.
    #[test]
    fn lines_are_json_with_the_values_written() {
        let mut line = JsonLine::new();
        line.str("plain", Some("/api/items"));
        line.str("odd", Some("a\"b\\c\nd\te\u{1}f é"));
        line.str("none", None);
        line.uint("zero", 0);
        line.uint("big", u64::MAX);
        line.bool("yes", true);
        line.millis("ms", Some(Duration::from_micros(12_345)));
        line.millis("small", Some(Duration::from_micros(7)));
        line.millis("absent", None);
        line.ip("v4", Some(IpAddr::from([10, 0, 200, 7])));
        line.ip("v6", Some("2001:db8::1".parse().expect("v6")));
        line.ip("unknown", None);
        let text = line.finish();
        let value: serde_json::Value = serde_json::from_str(&text).expect(&text);
        assert_eq!(value["plain"], "/api/items");
        assert_eq!(value["odd"], "a\"b\\c\nd\te\u{1}f é");
        assert!(value["none"].is_null());
        assert_eq!(value["zero"], 0);
        assert_eq!(value["big"], u64::MAX);
        assert_eq!(value["yes"], true);
        assert_eq!(value["ms"], 12.345);
        assert_eq!(value["small"], 0.007);
        assert!(value["absent"].is_null());
        assert_eq!(value["v4"], "10.0.200.7");
        assert_eq!(value["v6"], "2001:db8::1");
        assert_eq!(value["unknown"], "-");
        assert_eq!(value.as_object().expect("object").len(), 12);
    }

    /// Dates across leap days, month ends and years, against values worked out by hand.
    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        let at = |secs: u64, ms: u64| {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms);
            let mut out = String::new();
            push_rfc3339_millis(&mut out, at);
            out
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(1_798_761_599, 0), "2026-12-31T23:59:59.000Z");
        assert_eq!(at(1_798_761_600, 0), "2027-01-01T00:00:00.000Z");
    }
}

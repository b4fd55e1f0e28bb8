//! One request's access record: what is noted when it arrives ([`Arrival`]), what the proxy
//! noted ([`Served`]), and what the response was; written as the contract's JSON object or as
//! the text line.

use std::fmt::{self, Display};
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, Uri, Version};
use serde::Serialize;

use super::note::Served;
use crate::http::tls::ViaTls;
use crate::net::canonical;

/// What is noted of a request before it is handled (only while access lines are written):
/// shared handles on the request's own bytes (the URI and header values count references),
/// turned into text only when the record is written.
pub struct Arrival {
    pub started: Instant,
    at: SystemTime,
    peer: Option<IpAddr>,
    method: Method,
    uri: Uri,
    /// HTTP/2's `:authority`, else the `Host` header.
    host: Option<HeaderValue>,
    version: Version,
    tls: bool,
    user_agent: Option<HeaderValue>,
}

impl Arrival {
    pub fn capture(req: &ServiceRequest) -> Self {
        let uri = req.uri();
        let authority = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        Self {
            started: Instant::now(),
            at: SystemTime::now(),
            peer: req.peer_addr().map(|a| canonical(a.ip())),
            method: req.method().clone(),
            uri: uri.clone(),
            host: authority.or_else(|| req.headers().get(header::HOST).cloned()),
            version: req.version(),
            tls: req.conn_data::<ViaTls>().is_some(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
        }
    }

    /// The client's address as the record shows it (`-` when unknown).
    fn peer(&self) -> Shown<'_> {
        Shown(self.peer.as_ref().map_or(&"-" as &dyn Display, |ip| ip as &dyn Display))
    }
}

/// A value written into the record through its `Display` (no string made first).
struct Shown<'a>(&'a dyn Display);

impl Serialize for Shown<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

impl Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A header value as text, if it is.
fn text_of(value: Option<&HeaderValue>) -> Option<&str> {
    value.and_then(|v| v.to_str().ok())
}

/// The protocol as the record names it.
fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The JSON access record, exactly the contract's keys.
#[derive(Serialize)]
struct Record<'a> {
    ts: String,
    request_id: &'a str,
    trace_id: Option<&'a str>,
    client: Option<&'a str>,
    client_ip: Shown<'a>,
    method: &'a str,
    host: Option<&'a str>,
    path: &'a str,
    protocol: &'static str,
    tls: bool,
    status: u16,
    route: Option<&'a str>,
    pool: Option<&'a str>,
    backend: Option<&'a str>,
    attempts: u32,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    bytes_in: u64,
    bytes_out: u64,
    limited: bool,
    user_agent: Option<&'a str>,
}

/// The response's side of a record.
pub struct Outcome<'a> {
    pub request_id: &'a str,
    pub trace_id: Option<&'a str>,
    pub status: u16,
    pub served: &'a Served,
    pub bytes_out: u64,
}

/// The JSON object of one request, on one line.
pub fn json(arrival: &Arrival, outcome: &Outcome<'_>) -> String {
    let served = outcome.served;
    let millis = |d: std::time::Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let record = Record {
        ts: rfc3339_millis(arrival.at),
        request_id: outcome.request_id,
        trace_id: outcome.trace_id,
        client: served.client.as_deref(),
        client_ip: arrival.peer(),
        method: arrival.method.as_str(),
        host: text_of(arrival.host.as_ref()),
        path: arrival.uri.path(),
        protocol: protocol(arrival.version),
        tls: arrival.tls,
        status: outcome.status,
        route: served.route.as_deref(),
        pool: served.pool.as_deref(),
        backend: served.backend.as_deref().map(|b| b.name.as_str()),
        attempts: served.attempts.max(u32::from(served.backend.is_some())),
        duration_ms: millis(arrival.started.elapsed()),
        upstream_ms: served.upstream.map(millis),
        bytes_in: served.bytes_in,
        bytes_out: outcome.bytes_out,
        limited: served.limited,
        user_agent: text_of(arrival.user_agent.as_ref()),
    };
    serde_json::to_string(&record).unwrap_or_default()
}

/// The text line (after the process log's own prefix, or after a timestamp in a file):
/// `127.0.0.1 "GET /path" 200 backend-2 route=api 1.4ms id=<id>`.
pub fn text(arrival: &Arrival, status: u16, served: Option<&Served>, request_id: &str) -> String {
    let backend = served
        .and_then(|s| s.backend.as_deref())
        .map_or("-", |b| b.name.as_str());
    let route = served
        .and_then(|s| s.route.as_deref())
        .map(|r| format!(" route={r}"))
        .unwrap_or_default();
    format!(
        "{} \"{} {}\" {status} {backend}{route} {:.1}ms id={request_id}",
        arrival.peer(),
        arrival.method,
        arrival.uri.path(),
        arrival.started.elapsed().as_secs_f64() * 1000.0,
    )
}

/// `at` as RFC 3339 in UTC with milliseconds: `2026-12-03T04:53:41.123Z`.
pub fn rfc3339_millis(at: SystemTime) -> String {
    let ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let (secs, millis) = ((ms / 1000) as i64, ms % 1000);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60
    )
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
    use std::time::Duration;

    /// Dates across leap days, month ends and years, against values worked out by hand.
    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        let at = |secs: u64, ms: u64| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms)
        };
        assert_eq!(rfc3339_millis(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(at(951_782_400, 5)),
            "2000-02-29T00:00:00.005Z"
        );
        assert_eq!(
            rfc3339_millis(at(1_709_251_199, 999)),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_millis(at(1_798_761_599, 0)),
            "2026-12-31T23:59:59.000Z"
        );
        assert_eq!(
            rfc3339_millis(at(1_798_761_600, 0)),
            "2027-01-01T00:00:00.000Z"
        );
    }
}

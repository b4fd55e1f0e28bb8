//! One request's access record: what is noted when it arrives ([`Arrival`]), what the proxy
//! noted ([`Served`]), and what the response was; written as the contract's JSON object or as
//! the text line.

use std::fmt::{self, Display};
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, Uri, Version};

use super::json::{push_rfc3339_millis, JsonLine};
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

    /// The client's address as the text line shows it (`-` when unknown).
    fn peer(&self) -> Shown<'_> {
        Shown(
            self.peer
                .as_ref()
                .map_or(&"-" as &dyn Display, |ip| ip as &dyn Display),
        )
    }
}

/// A value written into the text line through its `Display` (no string made first).
struct Shown<'a>(&'a dyn Display);

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

/// The response's side of a record.
pub struct Outcome<'a> {
    pub request_id: &'a str,
    pub trace_id: Option<&'a str>,
    pub status: u16,
    pub served: &'a Served,
    pub bytes_out: u64,
}

/// The JSON object of one request, on one line: exactly the contract's keys, in its order.
pub fn json(arrival: &Arrival, outcome: &Outcome<'_>) -> String {
    let served = outcome.served;
    let mut line = JsonLine::new();
    line.time("ts", arrival.at);
    line.str("request_id", Some(outcome.request_id));
    line.str("trace_id", outcome.trace_id);
    line.str("client", served.client.as_deref());
    line.ip("client_ip", arrival.peer);
    line.str("method", Some(arrival.method.as_str()));
    line.str("host", text_of(arrival.host.as_ref()));
    line.str("path", Some(arrival.uri.path()));
    line.str("protocol", Some(protocol(arrival.version)));
    line.bool("tls", arrival.tls);
    line.uint("status", u64::from(outcome.status));
    line.str("route", served.route.as_deref());
    line.str("pool", served.pool.as_deref());
    line.str(
        "backend",
        served.backend.as_deref().map(|b| b.name.as_str()),
    );
    let attempts = served.attempts.max(u32::from(served.backend.is_some()));
    line.uint("attempts", u64::from(attempts));
    line.millis("duration_ms", Some(arrival.started.elapsed()));
    line.millis("upstream_ms", served.upstream);
    line.uint("bytes_in", served.bytes_in);
    line.uint("bytes_out", outcome.bytes_out);
    line.bool("limited", served.limited);
    line.str("user_agent", text_of(arrival.user_agent.as_ref()));
    line.finish()
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
    let mut out = String::with_capacity(24);
    push_rfc3339_millis(&mut out, at);
    out
}

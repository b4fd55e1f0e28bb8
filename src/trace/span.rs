//! The two kinds of span the balancer records: a SERVER span per proxied request, begun when
//! the request arrives ([`SpanStart`]) and ended when its response body has gone out; and a
//! CLIENT span per backend attempt ([`AttemptSpan`]), whose id goes to the backend in
//! `traceparent`. Spans of unsampled traces are never built; their ids still travel, with the
//! sampled flag off.

use std::time::SystemTime;

use actix_web::http::Method;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId};

use super::record::{Attribute, FinishedSpan, Kind};
use crate::backend::Backend;
use crate::digits::lower_hex;

/// A request's place in its trace, from its arrival: the SERVER span's context and its remote
/// parent (the client's span), if any.
pub struct SpanStart {
    context: SpanContext,
    parent: Option<SpanId>,
    started: SystemTime,
}

/// What the SERVER span says of the request, known once it is answered.
pub struct ServedRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub route: Option<&'a str>,
    pub pool: Option<&'a str>,
    pub status: u16,
    pub client_address: Option<&'a str>,
    /// A registered client's id.
    pub client: Option<&'a str>,
    pub rate_limited: bool,
}

impl SpanStart {
    pub(super) fn new(context: SpanContext, parent: Option<SpanId>) -> Self {
        Self {
            context,
            parent,
            started: SystemTime::now(),
        }
    }

    /// The trace id's 16 bytes (a made request id is their hex).
    pub fn trace_id(&self) -> [u8; 16] {
        self.context.trace_id().to_bytes()
    }

    /// Whether the trace is recorded (else no span is built for it).
    pub fn sampled(&self) -> bool {
        self.context.is_sampled()
    }

    /// What the proxy needs to place its attempts under this request's span.
    pub fn server(&self) -> ServerSpan {
        ServerSpan {
            trace_id: self.context.trace_id(),
            span_id: self.context.span_id(),
            flags: self.context.trace_flags(),
        }
    }

    /// The SERVER span of a proxied request (its end time to be set); `None` when the trace
    /// is not sampled.
    pub(super) fn served(self, served: &ServedRequest<'_>) -> Option<FinishedSpan> {
        if !self.context.is_sampled() {
            return None;
        }
        let name = span_name(served.method, served.route.or(served.pool));
        let mut attributes = vec![
            ("http.request.method", text(served.method.as_str())),
            ("url.path", text(served.path)),
            ("http.response.status_code", status_code(served.status)),
            ("lb.rate_limited", Attribute::Bool(served.rate_limited)),
        ];
        let strings = [
            ("http.route", served.route),
            ("client.address", served.client_address),
            ("lb.client", served.client),
        ];
        for (key, value) in strings {
            if let Some(value) = value {
                attributes.push((key, text(value)));
            }
        }
        let error = (served.status >= 500).then(|| format!("status {}", served.status));
        let parent = self.parent.map(|parent| (parent.to_bytes(), true));
        Some(finished(
            &self.context,
            parent,
            Kind::Server,
            name,
            self.started,
            attributes,
            error,
        ))
    }
}

/// A request's SERVER span as the proxy sees it: enough to start its attempts' spans.
#[derive(Debug, Clone, Copy)]
pub struct ServerSpan {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
}

/// A `traceparent` header's value, ASCII hex digits and dashes.
pub type Traceparent = [u8; 55];

/// One backend attempt's CLIENT span.
pub struct AttemptSpan {
    context: SpanContext,
    parent: SpanId,
    started: SystemTime,
}

impl AttemptSpan {
    /// A new attempt under `server`, as span `span_id`.
    pub(super) fn new(server: ServerSpan, span_id: SpanId) -> Self {
        Self {
            context: SpanContext::new(
                server.trace_id,
                span_id,
                server.flags,
                false,
                Default::default(),
            ),
            parent: server.span_id,
            started: SystemTime::now(),
        }
    }

    /// The `traceparent` the backend receives: this attempt's span as its parent.
    pub fn traceparent(&self) -> Traceparent {
        // `00-{trace id}-{span id}-{flags}`, written digit by digit: the formatting machinery
        // cost more than the rest of an unsampled trace together.
        let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let context = &self.context;
        lower_hex(&context.trace_id().to_bytes(), &mut value[3..35]);
        lower_hex(&context.span_id().to_bytes(), &mut value[36..52]);
        lower_hex(&[context.trace_flags().to_u8()], &mut value[53..55]);
        value
    }

    /// The attempt's span, ending now: `Ok(status)` when `backend` answered, else the
    /// failure's kind (`error.type`); `None` when the trace is not sampled.
    pub(super) fn finish(
        self,
        method: &Method,
        backend: &Backend,
        result: Result<u16, &str>,
    ) -> Option<FinishedSpan> {
        if !self.context.is_sampled() {
            return None;
        }
        let mut attributes = vec![("server.address", text(backend.authority.host()))];
        if let Some(port) = backend.authority.port_u16() {
            attributes.push(("server.port", Attribute::Int(i64::from(port))));
        }
        let error = match result {
            Ok(code) => {
                attributes.push(("http.response.status_code", status_code(code)));
                (code >= 400).then(|| format!("status {code}"))
            }
            Err(kind) => {
                attributes.push(("error.type", text(kind)));
                Some(kind.to_owned())
            }
        };
        let name = span_name(method, Some(&backend.name));
        let parent = Some((self.parent.to_bytes(), false));
        Some(finished(
            &self.context,
            parent,
            Kind::Client,
            name,
            self.started,
            attributes,
            error,
        ))
    }
}

/// `"{METHOD} {target}"`, or the method alone.
fn span_name(method: &Method, target: Option<&str>) -> String {
    let method = method.as_str();
    let mut name = String::with_capacity(method.len() + 1 + target.map_or(0, str::len));
    name.push_str(method);
    if let Some(target) = target {
        name.push(' ');
        name.push_str(target);
    }
    name
}

fn text(value: &str) -> Attribute {
    Attribute::Text(value.to_owned())
}

fn status_code(code: u16) -> Attribute {
    Attribute::Int(i64::from(code))
}

/// The span of `context`, ending now.
fn finished(
    context: &SpanContext,
    parent: Option<([u8; 8], bool)>,
    kind: Kind,
    name: String,
    started: SystemTime,
    attributes: Vec<(&'static str, Attribute)>,
    error: Option<String>,
) -> FinishedSpan {
    FinishedSpan {
        trace_id: context.trace_id().to_bytes(),
        span_id: context.span_id().to_bytes(),
        parent,
        flags: context.trace_flags().to_u8(),
        kind,
        name,
        started,
        ended: SystemTime::now(),
        attributes,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceState;

    fn start(sampled: bool) -> SpanStart {
        let context = SpanContext::new(
            TraceId::from(0x0af7651916cd43dd8448eb211c80319c),
            SpanId::from(0xb7ad6b7169203331),
            TraceFlags::default().with_sampled(sampled),
            false,
            TraceState::default(),
        );
        SpanStart::new(context, None)
    }

    /// The W3C form exactly: version, the trace id, the attempt's own span id, the flags.
    #[test]
    fn traceparent_names_the_attempt() {
        let attempt = AttemptSpan::new(start(true).server(), SpanId::from(0x00f067aa0ba902b7));
        assert_eq!(
            &attempt.traceparent(),
            b"00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
        );
        let unsampled = AttemptSpan::new(start(false).server(), SpanId::from(0xff));
        assert_eq!(
            &unsampled.traceparent(),
            b"00-0af7651916cd43dd8448eb211c80319c-00000000000000ff-00"
        );
    }
}

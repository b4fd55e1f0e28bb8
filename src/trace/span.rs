//! The two kinds of span the balancer records: a SERVER span per proxied request, begun when
//! the request arrives ([`SpanStart`]) and ended when its response body has gone out; and a
//! CLIENT span per backend attempt ([`AttemptSpan`]), whose id goes to the backend in
//! `traceparent`. Spans of unsampled traces are never built; their ids still travel, with the
//! sampled flag off.

use std::borrow::Cow;
use std::time::SystemTime;

use actix_web::http::header::HeaderValue;
use actix_web::http::Method;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::backend::Backend;

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
    pub(super) fn served(
        self,
        served: &ServedRequest<'_>,
        scope: InstrumentationScope,
    ) -> Option<SpanData> {
        if !self.context.is_sampled() {
            return None;
        }
        let target = served.route.or(served.pool);
        let name = match target {
            Some(target) => format!("{} {target}", served.method),
            None => served.method.to_string(),
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", served.method.to_string()),
            KeyValue::new("url.path", served.path.to_owned()),
            KeyValue::new("http.response.status_code", i64::from(served.status)),
            KeyValue::new("lb.rate_limited", served.rate_limited),
        ];
        let strings = [
            ("http.route", served.route),
            ("lb.pool", served.pool),
            ("client.address", served.client_address),
            ("lb.client", served.client),
        ];
        for (key, value) in strings {
            if let Some(value) = value {
                attributes.push(KeyValue::new(key, value.to_owned()));
            }
        }
        let status = if served.status >= 500 {
            Status::error(format!("status {}", served.status))
        } else {
            Status::Unset
        };
        let span = span_data(scope, self.context, SpanKind::Server, name, self.started);
        Some(SpanData {
            parent_span_id: self.parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: self.parent.is_some(),
            attributes,
            status,
            ..span
        })
    }
}

/// A request's SERVER span as the proxy sees it: enough to start its attempts' spans.
#[derive(Debug, Clone, Copy)]
pub struct ServerSpan {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
}

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
    pub fn traceparent(&self) -> HeaderValue {
        let value = format!(
            "00-{}-{}-{:02x}",
            self.context.trace_id(),
            self.context.span_id(),
            self.context.trace_flags()
        );
        HeaderValue::from_str(&value).expect("hex digits and dashes are a valid header value")
    }

    /// The attempt's span, ending now: `Ok(status)` when `backend` answered, else the
    /// failure's kind (`error.type`); `None` when the trace is not sampled.
    pub(super) fn finish(
        self,
        method: &Method,
        backend: &Backend,
        result: Result<u16, &str>,
        scope: InstrumentationScope,
    ) -> Option<SpanData> {
        if !self.context.is_sampled() {
            return None;
        }
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("server.address", backend.authority.host().to_owned()),
            KeyValue::new("lb.backend", backend.name.clone()),
        ];
        if let Some(port) = backend.authority.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        let status = match result {
            Ok(code) => {
                attributes.push(KeyValue::new("http.response.status_code", i64::from(code)));
                if code >= 400 {
                    Status::error(format!("status {code}"))
                } else {
                    Status::Unset
                }
            }
            Err(kind) => {
                attributes.push(KeyValue::new("error.type", kind.to_owned()));
                Status::error(kind.to_owned())
            }
        };
        let name = format!("{method} {}", backend.name);
        let span = span_data(scope, self.context, SpanKind::Client, name, self.started);
        Some(SpanData {
            parent_span_id: self.parent,
            attributes,
            status,
            ..span
        })
    }
}

/// A span's data with no attributes yet, ending now.
fn span_data(
    scope: InstrumentationScope,
    context: SpanContext,
    kind: SpanKind,
    name: String,
    started: SystemTime,
) -> SpanData {
    SpanData {
        span_context: context,
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: kind,
        name: Cow::Owned(name),
        start_time: started,
        end_time: SystemTime::now(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope,
    }
}

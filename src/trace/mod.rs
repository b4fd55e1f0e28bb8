//! OpenTelemetry traces (W3C Trace Context, exported over OTLP/HTTP). With
//! `tracing.otlp_endpoint` set, each request gets a trace position when it arrives
//! ([`Tracing::begin`]): the client's `traceparent` continued, or a new trace sampled at
//! `tracing.sample_ratio` (parent-based: a client's sampled flag decides for its own trace). A
//! proxied request becomes a SERVER span ([`ServerSpan`]), each backend attempt a CLIENT span
//! under it ([`AttemptSpan`]) whose id goes to the backend in `traceparent`. Finished spans go
//! through a bounded queue to the exporting thread ([`export`]), so a slow or absent collector
//! never holds a request. Without an endpoint there is no [`Tracing`] and no span work at all.

mod encode;
mod export;
mod record;
mod span;
mod transport;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::http::header::{HeaderMap, HeaderName};
use actix_web::http::Method;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt, TraceFlags, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};
use prometheus_client::metrics::counter::Counter;
use rustls::ClientConfig;

use crate::backend::Backend;
use crate::settings::TracingSettings;
pub use export::TraceError;
use record::FinishedSpan;
pub use span::{AttemptSpan, ServedRequest, ServerSpan, SpanStart, Traceparent};

/// The W3C header naming a request's trace and parent span.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Tracing, on: the sampler and the queue to the exporter. Cheap to clone.
#[derive(Clone)]
pub struct Tracing {
    inner: Arc<Inner>,
}

struct Inner {
    sampler: Sampler,
    propagator: TraceContextPropagator,
    ids: RandomIdGenerator,
    queue: export::Queue,
}

impl Tracing {
    /// Starts the exporting thread (posting through awc, with `tls` for `https://`
    /// collectors); spans the queue cannot take are counted in `dropped`.
    pub fn start(
        settings: &TracingSettings,
        tls: &Arc<ClientConfig>,
        dropped: Counter,
    ) -> Result<Self, TraceError> {
        let queue = export::start(settings, tls, dropped)?;
        let sampler =
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
        Ok(Self {
            inner: Arc::new(Inner {
                sampler,
                propagator: TraceContextPropagator::new(),
                ids: RandomIdGenerator::default(),
                queue,
            }),
        })
    }

    /// Where a request arriving with `headers` stands: its trace (the client's, or a new one),
    /// its SERVER span's id and whether the trace is recorded.
    pub fn begin(&self, headers: &HeaderMap) -> SpanStart {
        let inner = &*self.inner;
        // The propagator's context is only made when there is something to read.
        let parent_cx = headers
            .contains_key(TRACEPARENT)
            .then(|| inner.propagator.extract(&Headers(headers)));
        let parent = parent_cx
            .as_ref()
            .map(|cx| cx.span().span_context().clone())
            .filter(SpanContext::is_valid);
        let (parent_cx, trace_id) = match &parent {
            Some(parent) => (parent_cx.as_ref(), parent.trace_id()),
            None => (None, inner.ids.new_trace_id()),
        };
        let sampled = matches!(
            inner
                .sampler
                .should_sample(parent_cx, trace_id, "", &SpanKind::Server, &[], &[])
                .decision,
            SamplingDecision::RecordAndSample
        );
        let context = SpanContext::new(
            trace_id,
            inner.ids.new_span_id(),
            TraceFlags::default().with_sampled(sampled),
            false,
            TraceState::default(),
        );
        SpanStart::new(context, parent.map(|parent| parent.span_id()))
    }

    /// The SERVER span of a proxied request, to be ended when its body has gone out; `None`
    /// when the trace is not sampled.
    pub fn served(&self, start: SpanStart, served: &ServedRequest<'_>) -> Option<PendingSpan> {
        let span = start.served(served)?;
        Some(PendingSpan {
            span,
            tracing: self.clone(),
        })
    }

    /// A new backend attempt's CLIENT span under `server`.
    pub fn attempt(&self, server: ServerSpan) -> AttemptSpan {
        AttemptSpan::new(server, self.inner.ids.new_span_id())
    }

    /// Ends an attempt: `Ok(status)` when `backend` answered, else the failure's kind.
    pub fn end_attempt(
        &self,
        span: AttemptSpan,
        method: &Method,
        backend: &Backend,
        result: Result<u16, &str>,
    ) {
        if let Some(span) = span.finish(method, backend, result) {
            self.inner.queue.push(span);
        }
    }

    /// Waits, at most `within`, until every span queued so far has been offered to the
    /// collector (at shutdown).
    pub fn flush(&self, within: Duration) {
        self.inner.queue.flush(within);
    }
}

/// A recorded SERVER span waiting for its end.
pub struct PendingSpan {
    span: FinishedSpan,
    tracing: Tracing,
}

impl PendingSpan {
    /// Ends the span now and queues it for export.
    pub fn end(mut self) {
        self.span.ended = SystemTime::now();
        self.tracing.inner.queue.push(self.span);
    }
}

/// A request's headers, as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

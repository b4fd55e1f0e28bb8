//! OpenTelemetry traces (W3C Trace Context, exported over OTLP/HTTP). With
//! `tracing.otlp_endpoint` set, each request gets a trace position when it arrives
//! ([`Tracing::begin`]): the client's `traceparent` continued, or a new trace sampled at
//! `tracing.sample_ratio` (parent-based: a client's sampled flag decides for its own trace). A
//! proxied request becomes a SERVER span ([`ServerSpan`]), each backend attempt a CLIENT span
//! under it ([`AttemptSpan`]) whose id goes to the backend in `traceparent`. Finished spans go
//! through a bounded queue to the exporting thread ([`export`]), so a slow or absent collector
//! never holds a request. Without an endpoint there is no [`Tracing`] and no span work at all.

mod export;
mod span;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt, TraceFlags, TraceState};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};
use prometheus_client::metrics::counter::Counter;
use rustls::ClientConfig;

use crate::settings::TracingSettings;
pub use span::{AttemptSpan, PendingSpan, ServedRequest, ServerSpan, SpanStart};

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
    scope: InstrumentationScope,
    queue: export::Queue,
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("tracing.otlp_endpoint: {0}")]
    Exporter(String),
    #[error("cannot start the trace exporter's thread: {0}")]
    Thread(#[from] std::io::Error),
}

impl Tracing {
    /// Builds the OTLP exporter (posting through awc with `tls` for `https://` collectors) and
    /// starts its thread; spans the queue cannot take are counted in `dropped`.
    pub fn start(
        settings: &TracingSettings,
        tls: &Arc<ClientConfig>,
        dropped: Counter,
    ) -> Result<Self, TraceError> {
        let queue = export::start(settings, tls, dropped)?;
        let scope = InstrumentationScope::builder("loadbalancer")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let sampler =
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
        Ok(Self {
            inner: Arc::new(Inner {
                sampler,
                propagator: TraceContextPropagator::new(),
                ids: RandomIdGenerator::default(),
                scope,
                queue,
            }),
        })
    }

    /// Where a request arriving with `headers` stands: its trace (the client's, or a new one),
    /// its SERVER span's id and whether the trace is recorded.
    pub fn begin(&self, headers: &HeaderMap) -> SpanStart {
        let inner = &*self.inner;
        let parent_cx = inner.propagator.extract(&Headers(headers));
        let parent = parent_cx.span().span_context().clone();
        let (parent_cx, trace_id) = if parent.is_valid() {
            (Some(&parent_cx), parent.trace_id())
        } else {
            (None, inner.ids.new_trace_id())
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
        SpanStart::new(context, parent.is_valid().then(|| parent.span_id()))
    }

    /// A new span id (an attempt's).
    fn span_id(&self) -> opentelemetry::trace::SpanId {
        self.inner.ids.new_span_id()
    }

    fn scope(&self) -> InstrumentationScope {
        self.inner.scope.clone()
    }

    /// Queues a finished span for export, or drops and counts it when the queue is full.
    fn record(&self, span: opentelemetry_sdk::trace::SpanData) {
        self.inner.queue.push(span);
    }

    /// Waits, at most `within`, until every span queued so far has been offered to the
    /// collector (at shutdown).
    pub fn flush(&self, within: Duration) {
        self.inner.queue.flush(within);
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

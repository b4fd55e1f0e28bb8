//! The attempts of one request: which backends were tried, what failed, whether another may
//! be tried, and the answer when none is left. Plain requests and WebSocket handshakes share it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{HttpMessage, HttpRequest, ResponseError};

use super::body::{self, RequestBody};
use super::error::ProxyError;
use super::state::ProxyState;
use crate::backend::{Backend, BackendId};
use crate::events::LbEvent;
use crate::http::request_id::X_REQUEST_ID;
use crate::registry::{FailureKind, Lease, NoBackend, Outcome, Rotation};
use crate::strategy::Strategy;
use crate::trace::{AttemptSpan, ServerSpan, Traceparent, Tracing};
use crate::upstream::UpstreamError;

/// The backends one request has tried, and its last failure.
pub struct Attempts<'a> {
    state: &'a ProxyState,
    req: &'a HttpRequest,
    /// The pool the request's route chose.
    pool: &'a Rotation,
    /// `consistent_hash`: the client's place on the ring.
    affinity: Option<u64>,
    /// Backends that failed this request; empty (and unallocated) until one does.
    tried: Vec<BackendId>,
    last_failure: Option<(Arc<Backend>, AttemptError)>,
    /// With tracing on: the request's SERVER span, and the current attempt's CLIENT span.
    trace: Option<(&'a Tracing, ServerSpan)>,
    span: Option<AttemptSpan>,
}

impl<'a> Attempts<'a> {
    /// The attempts of `req` on `pool`.
    pub fn new(state: &'a ProxyState, req: &'a HttpRequest, pool: &'a Rotation) -> Self {
        // consistent_hash: the client's place on the ring (computed only for that strategy).
        let affinity =
            (pool.strategy() == Strategy::ConsistentHash).then(|| state.identity.affinity(req));
        let trace = state.tracing.as_ref().and_then(|tracing| {
            let server = req.extensions().get::<ServerSpan>().copied();
            server.map(|server| (tracing, server))
        });
        Self {
            state,
            req,
            pool,
            affinity,
            tried: Vec::new(),
            last_failure: None,
            trace,
            span: None,
        }
    }

    /// The next backend to try (a failover is logged and published), or the answer when none
    /// is left. The first attempt may wait in the pool's line for a backend under its limit;
    /// a retry never waits, and one after a failure that may have reached the backend is taken
    /// only within the pool's retry budget.
    pub async fn next(&mut self) -> Result<Lease, ProxyError> {
        let picked = if self.last_failure.is_none() {
            let waited = self.pool.pick_or_wait(self.affinity).await;
            if let Some(waited) = waited.waited {
                self.state
                    .metrics
                    .record_queue_wait(self.pool.name(), waited);
            }
            waited.result
        } else if self
            .last_failure
            .as_ref()
            .is_some_and(|(_, f)| f.delivered())
        {
            self.pool.pick_retry(&self.tried, self.affinity)
        } else {
            // A refused connect delivered nothing: moving it on adds no load, so it is not
            // counted against the retry budget.
            self.pool.pick(&self.tried, self.affinity)
        };
        let lease = match picked {
            Ok(lease) => lease,
            Err(why) => return Err(self.give_up(why)),
        };
        self.span = self.trace.map(|(tracing, server)| tracing.attempt(server));
        if let Some((failed, why)) = &self.last_failure {
            let id = self.request_id();
            log::warn!(
                "backend {failed} failed ({why}); retrying on {} (request {id})",
                lease.backend
            );
            let (from, to) = (failed.name.clone(), lease.backend.name.clone());
            let event = LbEvent::Failover {
                from,
                to,
                reason: why.to_string(),
                request_id: id.to_owned(),
            };
            once_a_second(&self.state.last_failover_event_ms, || {
                self.state.events.publish(event)
            });
        }
        Ok(lease)
    }

    /// With tracing on, the `traceparent` for the current attempt's backend.
    pub fn traceparent(&self) -> Option<Traceparent> {
        self.span.as_ref().map(AttemptSpan::traceparent)
    }

    /// The current attempt got `status` from its backend.
    pub fn answered(&mut self, backend: &Backend, status: u16) {
        self.end_span(backend, Ok(status));
    }

    fn end_span(&mut self, backend: &Backend, result: Result<u16, &str>) {
        if let (Some(span), Some((tracing, _))) = (self.span.take(), self.trace) {
            tracing.end_attempt(span, self.req.method(), backend, result);
        }
    }

    /// Counts a failed attempt against its backend. `Ok` when another backend may be tried
    /// (`retryable` and retries left), else the client's answer.
    pub fn failed(
        &mut self,
        lease: Lease,
        failure: AttemptError,
        retryable: bool,
    ) -> Result<(), ProxyError> {
        let kind = failure.kind();
        let error_type = kind.map_or("client_body", FailureKind::as_str);
        self.end_span(&lease.backend, Err(error_type));
        let Some(kind) = kind else {
            // The client's own upload failed: not the backend's fault, nothing to retry.
            lease.record(Outcome::Responded);
            return Err(failure.client_error());
        };
        let backend = Arc::clone(&lease.backend);
        self.tried.push(backend.id);
        let consecutive = lease.record(Outcome::Failed(kind));
        drop(lease);
        let state = self.state;
        state
            .metrics
            .record_upstream_failure(&backend.pool, &backend.name, kind.as_str());
        state.registry.report_failure(backend.id, kind, consecutive);
        let retries_left = self.tried.len() <= state.retries as usize;
        if !(retries_left && retryable) {
            let id = self.request_id();
            log::error!("backend {backend} failed ({failure}); not retried (request {id})");
            self.publish_failure(&backend, &failure);
            return Err(failure.status_error());
        }
        self.last_failure = Some((backend, failure));
        Ok(())
    }

    /// No backend (left) to try, for `why`: 503 when none was tried (busy when each was at its
    /// limit), else the last failure's status.
    fn give_up(&mut self, why: NoBackend) -> ProxyError {
        let Some((backend, failure)) = self.last_failure.take() else {
            return match why {
                NoBackend::Busy => ProxyError::Busy,
                NoBackend::Unavailable | NoBackend::OverBudget => ProxyError::NoHealthyBackend,
            };
        };
        let id = self.request_id();
        let left = match why {
            NoBackend::Unavailable => "no other healthy backend to try",
            NoBackend::Busy => "every other backend is at its connection limit",
            NoBackend::OverBudget => {
                self.state
                    .metrics
                    .record_retry_budget_exhausted(self.pool.name());
                "the pool's retry budget is spent"
            }
        };
        log::error!("backend {backend} failed ({failure}); {left} (request {id})");
        self.publish_failure(&backend, &failure);
        failure.status_error()
    }

    /// The request's id, as the access log middleware settled it in the request's headers.
    fn request_id(&self) -> &'a str {
        let id = self.req.headers().get(X_REQUEST_ID);
        id.and_then(|id| id.to_str().ok()).unwrap_or("-")
    }

    fn publish_failure(&self, backend: &Backend, failure: &AttemptError) {
        let event = LbEvent::RequestFailed {
            status: failure.status_error().status_code().as_u16(),
            backend: backend.name.clone(),
            reason: failure.to_string(),
            request_id: self.request_id().to_owned(),
        };
        once_a_second(&self.state.last_failure_event_ms, || {
            self.state.events.publish(event)
        });
    }
}

/// Runs `publish` unless it ran less than a second ago (by the time in `last`, Unix ms).
fn once_a_second(last: &AtomicU64, publish: impl FnOnce()) {
    let now_ms = crate::clock::now_ms();
    let before = last.load(Ordering::Relaxed);
    let due = now_ms.saturating_sub(before) >= 1000
        && last
            .compare_exchange(before, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
    if due {
        publish();
    }
}

/// One failed attempt, classified.
#[derive(Debug)]
pub enum AttemptError {
    /// Never connected: the request did not reach the backend.
    Connect(String),
    /// Connected, but broke before a response head.
    Reset(String),
    /// No response head in time.
    Timeout,
    /// The client's upload failed, or outgrew `max_request_body_bytes`, while being sent.
    ClientBody { reason: String, too_large: bool },
}

impl From<UpstreamError> for AttemptError {
    fn from(err: UpstreamError) -> Self {
        match err {
            UpstreamError::Connect(reason) => Self::Connect(reason),
            UpstreamError::Reset(reason) => Self::Reset(reason),
            UpstreamError::Timeout => Self::Timeout,
            UpstreamError::RequestBody(err) => Self::ClientBody {
                too_large: err.downcast_ref::<body::BodyTooLarge>().is_some(),
                reason: err.to_string(),
            },
        }
    }
}

impl AttemptError {
    /// Whether the request may have reached the backend (anything but a refused connect).
    pub fn delivered(&self) -> bool {
        !matches!(self, Self::Connect(_))
    }

    /// The failure as the registry counts it; `None` when the client was at fault.
    pub fn kind(&self) -> Option<FailureKind> {
        match self {
            Self::Connect(_) => Some(FailureKind::Connect),
            Self::Reset(_) => Some(FailureKind::Reset),
            Self::Timeout => Some(FailureKind::Timeout),
            Self::ClientBody { .. } => None,
        }
    }

    /// A refused connect never delivered anything, so any method may move on as long as the body
    /// is intact. A reset after sending is retried only for idempotent methods (RFC 9110 §9.2.2)
    /// whose body was held in memory. A timeout is not retried: the backend may still be working,
    /// and a second wait would double the client's.
    pub fn retryable(&self, method: &Method, body: &RequestBody) -> bool {
        match self {
            Self::Connect(_) => body.replayable(),
            Self::Reset(_) => is_idempotent(method) && body.in_memory(),
            Self::Timeout | Self::ClientBody { .. } => false,
        }
    }

    pub fn status_error(&self) -> ProxyError {
        match self {
            Self::Timeout => ProxyError::GatewayTimeout,
            Self::ClientBody { .. } => self.client_error(),
            Self::Connect(_) | Self::Reset(_) => ProxyError::BadGateway,
        }
    }

    pub fn client_error(&self) -> ProxyError {
        match self {
            Self::ClientBody {
                too_large: true, ..
            } => ProxyError::PayloadTooLarge,
            _ => ProxyError::BodyRead,
        }
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(reason) => write!(f, "connect: {reason}"),
            Self::Reset(reason) => write!(f, "broke before responding: {reason}"),
            Self::Timeout => f.write_str("no response within the response timeout"),
            Self::ClientBody { reason, .. } => write!(f, "client upload failed: {reason}"),
        }
    }
}

pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

//! The proxy: every request outside `/clients` and `/lb/` is sent to the next backend of the
//! shared [`Rotation`], through this worker's awc `Client`, with bodies streamed both ways.
//! Failures that are safe to retry move the request to the next healthy backend; the rest
//! become JSON errors (see [`ProxyError`]). Failures are reported through the registry's [`Membership`] handle.

mod body;
mod error;
pub mod headers;
mod stall;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::time::{Duration, Instant};

use actix_web::body::{self as body_types, BodyStream, BoxBody, MessageBody, SizedStream};
use actix_web::http::uri::{self, PathAndQuery};
use actix_web::http::{header, Method, StatusCode, Uri};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use awc::error::SendRequestError;
use awc::{Client, ClientResponse};
use futures_util::Stream;

use crate::backend::{Backend, BackendId, Strategy};
use crate::client::Admission;
use crate::events::{Events, LbEvent};
use crate::http::access_log::{self, ServedBy};
use crate::http::client_id::ClientIdentity;
use crate::http::tls::ViaTls;
use crate::limiter::{AdmitError, Limiter};
use crate::metrics::Metrics;
use crate::registry::{FailureKind, Lease, Membership, Outcome, Rotation};
use crate::settings::Settings;
use body::RequestBody;
pub use error::ProxyError;

/// What every worker's proxy handler shares.
pub struct ProxyState {
    /// Admission per client; `None` when `rate_limit.enabled` is off.
    pub limiter: Option<Arc<Limiter>>,
    /// Counted on every request.
    pub metrics: Arc<Metrics>,
    /// Where failovers are published.
    pub events: Events,
    /// When the last failover event went out (ms since `UNIX_EPOCH`); one a second at most.
    pub last_failover_event_ms: AtomicU64,
    /// Where backends are picked and counted.
    pub rotation: Arc<Rotation>,
    /// Told about failures.
    pub registry: Membership,
    /// Tells clients apart for the limiter and for `consistent_hash`.
    pub identity: ClientIdentity,
    /// `backends.strategy = "consistent_hash"`: picks need the client's hash.
    pub hash_clients: bool,
    /// Other backends tried after a retryable failure (`backends.retries`).
    pub retries: u32,
    /// Request bodies up to this size are buffered so they can be retried.
    pub retry_body_limit_bytes: u64,
    /// `backends.max_request_body_bytes`.
    pub max_request_body_bytes: Option<u64>,
    /// `server.send_timeout_ms`: a stalled reader is cut off after this.
    pub send_timeout: Duration,
}

impl ProxyState {
    /// The proxy's state from the settings and the domain's handles.
    pub fn new(
        settings: &Settings,
        limiter: &Arc<Limiter>,
        metrics: Arc<Metrics>,
        events: Events,
        rotation: Arc<Rotation>,
        registry: Membership,
    ) -> Self {
        Self {
            limiter: settings.rate_limit.enabled.then(|| Arc::clone(limiter)),
            metrics,
            events,
            last_failover_event_ms: AtomicU64::new(0),
            rotation,
            registry,
            identity: ClientIdentity::new(&settings.rate_limit),
            hash_clients: settings.backends.strategy == Strategy::ConsistentHash,
            retries: settings.backends.retries,
            retry_body_limit_bytes: settings.backends.retry_body_limit_bytes,
            max_request_body_bytes: settings.backends.max_request_body_bytes,
            send_timeout: settings.server.send_timeout,
        }
    }

    /// Publishes a failover event unless one went out less than a second ago.
    fn publish_failover(&self, from: &Backend, to: &Backend, why: &AttemptError) {
        let now_ms = crate::clock::now_ms();
        let last = self.last_failover_event_ms.load(Ordering::Relaxed);
        let due = now_ms.saturating_sub(last) >= 1000
            && self
                .last_failover_event_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if due {
            self.events.publish(LbEvent::Failover {
                from: from.name.clone(),
                to: to.name.clone(),
                reason: why.to_string(),
            });
        }
    }
}

/// The default service: forwards the request and streams the answer back, and counts it.
pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ProxyState>,
    client: web::Data<Client>,
) -> Result<HttpResponse, ProxyError> {
    let started = Instant::now();
    match admit_and_forward(req, payload, &state, &client).await {
        Ok((mut response, backend)) => {
            state.metrics.record_request(
                Some(&backend.name),
                response.status().as_u16(),
                started.elapsed(),
            );
            // Only the access log reads it; an extension costs two allocations per response.
            if access_log::enabled() {
                response.extensions_mut().insert(ServedBy(backend));
            }
            Ok(response)
        }
        Err(err) => {
            let code = err.status_code().as_u16();
            state.metrics.record_request(None, code, started.elapsed());
            Err(err)
        }
    }
}

/// The response and the backend that gave it.
type Forwarded = (HttpResponse, Arc<Backend>);

async fn admit_and_forward(
    req: HttpRequest,
    payload: web::Payload,
    state: &ProxyState,
    client: &Client,
) -> Result<Forwarded, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    let admission = match &state.limiter {
        Some(limiter) => Some(admit(limiter, &state.identity, &req, &state.metrics).await?),
        None => None,
    };
    let (mut response, backend) = forward_admitted(&req, payload, state, client).await?;
    if let Some(admission) = admission {
        response
            .headers_mut()
            .insert(error::RATELIMIT, error::ratelimit_header(&admission));
    }
    Ok((response, backend))
}

/// Takes a token for the request's client; a refusal is the 429 answer.
async fn admit(
    limiter: &Limiter,
    identity: &ClientIdentity,
    req: &HttpRequest,
    metrics: &Metrics,
) -> Result<Admission, ProxyError> {
    let key = identity.identify(req, limiter);
    let admission = limiter.admit(key.clone()).await.map_err(|err| match err {
        AdmitError::Stopped => ProxyError::LimiterStopped,
        AdmitError::SharedLimitsDown => ProxyError::SharedLimitsDown,
    })?;
    if admission.decision.allowed {
        return Ok(admission);
    }
    metrics.record_rate_limited();
    if admission.report {
        log::warn!(
            "{key} is rate limited (capacity {}, {}/s); further rejections within a second are not logged",
            admission.limits.capacity,
            admission.limits.rate_per_sec
        );
    }
    Err(ProxyError::RateLimited(admission))
}

/// Picks backends until one answers or nothing safe is left to try.
async fn forward_admitted(
    req: &HttpRequest,
    payload: web::Payload,
    state: &ProxyState,
    client: &Client,
) -> Result<Forwarded, ProxyError> {
    let peer = req.peer_addr().map(|addr| addr.ip());
    let body = RequestBody::prepare(
        req.headers(),
        payload,
        state.retry_body_limit_bytes,
        state.max_request_body_bytes,
    )
    .await?;
    // Only the path and query go upstream: an absolute-form target never chooses the host.
    let target = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));

    let via_tls = req.conn_data::<ViaTls>().is_some();
    // consistent_hash: the client's place on the ring (computed only for that strategy).
    let affinity = state.hash_clients.then(|| state.identity.affinity(req));
    // Backends that failed this request; empty (and unallocated) until one does.
    let mut tried: Vec<BackendId> = Vec::new();
    let mut last_failure: Option<(Arc<Backend>, AttemptError)> = None;
    loop {
        let Some(lease) = state.rotation.pick(&tried, affinity) else {
            return Err(give_up(last_failure));
        };
        let backend = Arc::clone(&lease.backend);
        if let Some((failed, why)) = &last_failure {
            log::warn!("backend {failed} failed ({why}); retrying on {backend}");
            state.publish_failover(failed, &backend, why);
        }

        let mut upstream = client.request(req.method().clone(), upstream_uri(&backend, &target));
        // Built for each attempt rather than cloned: awc consumes the request, and nearly every
        // request makes one attempt only.
        *upstream.headers_mut() = headers::to_backend(req.headers(), peer, via_tls);
        let failure = match upstream.send_body(body.for_attempt()).await {
            Ok(response) => {
                lease.record(Outcome::Responded);
                let response = to_client(req.method(), response, lease, state.send_timeout);
                return Ok((response, backend));
            }
            Err(err) => AttemptError::from(err),
        };
        let Some(kind) = failure.kind() else {
            // The client's own upload failed: not the backend's fault, nothing to retry.
            lease.record(Outcome::Responded);
            return Err(failure.client_error());
        };
        tried.push(backend.id);
        let consecutive = lease.record(Outcome::Failed(kind));
        state
            .metrics
            .record_upstream_failure(&backend.name, kind.as_str());
        state.registry.report_failure(backend.id, kind, consecutive);
        let retries_left = tried.len() <= state.retries as usize;
        if !(retries_left && failure.retryable(req.method(), &body)) {
            log::error!("backend {backend} failed ({failure}); not retried");
            return Err(failure.status_error());
        }
        last_failure = Some((backend, failure));
    }
}

/// `http://` (or `https://`) + the backend's authority + the client's path and query, put together from parts
/// already parsed (both are shared buffers; nothing is formatted or parsed again).
fn upstream_uri(backend: &Backend, target: &PathAndQuery) -> Uri {
    let mut parts = uri::Parts::default();
    parts.scheme = Some(if backend.tls {
        uri::Scheme::HTTPS
    } else {
        uri::Scheme::HTTP
    });
    parts.authority = Some(backend.authority.clone());
    parts.path_and_query = Some(target.clone());
    // Scheme, authority and path all present: `from_parts` has nothing to refuse.
    Uri::from_parts(parts).unwrap_or_default()
}

/// No backend (left) to try: 503 when none was tried, else the last failure's status.
fn give_up(last_failure: Option<(Arc<Backend>, AttemptError)>) -> ProxyError {
    match last_failure {
        None => ProxyError::NoHealthyBackend,
        Some((backend, failure)) => {
            log::error!("backend {backend} failed ({failure}); no other healthy backend to try");
            failure.status_error()
        }
    }
}

/// One failed attempt, classified.
#[derive(Debug)]
enum AttemptError {
    /// Never connected: the request did not reach the backend.
    Connect(String),
    /// Connected, but broke before a response head.
    Reset(String),
    /// No response head in time.
    Timeout,
    /// The client's upload failed, or outgrew `max_request_body_bytes`, while being sent.
    ClientBody { reason: String, too_large: bool },
}

impl From<SendRequestError> for AttemptError {
    fn from(err: SendRequestError) -> Self {
        match err {
            SendRequestError::Connect(e) => Self::Connect(e.to_string()),
            SendRequestError::Timeout => Self::Timeout,
            SendRequestError::Body(e) => Self::ClientBody {
                too_large: e.downcast_ref::<body::BodyTooLarge>().is_some(),
                reason: e.to_string(),
            },
            other => Self::Reset(other.to_string()),
        }
    }
}

impl AttemptError {
    /// The failure as the registry counts it; `None` when the client was at fault.
    fn kind(&self) -> Option<FailureKind> {
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
    fn retryable(&self, method: &Method, body: &RequestBody) -> bool {
        match self {
            Self::Connect(_) => body.replayable(),
            Self::Reset(_) => is_idempotent(method) && body.in_memory(),
            Self::Timeout | Self::ClientBody { .. } => false,
        }
    }

    fn status_error(&self) -> ProxyError {
        match self {
            Self::Timeout => ProxyError::GatewayTimeout,
            Self::ClientBody { .. } => self.client_error(),
            Self::Connect(_) | Self::Reset(_) => ProxyError::BadGateway,
        }
    }

    fn client_error(&self) -> ProxyError {
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

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The backend's response for the client: status and end-to-end headers as they came, the body
/// streamed with the same framing (a Content-Length stays a Content-Length). Statuses that
/// carry no body get none, so nothing stray is left on a kept-alive connection.
/// The lease travels with the body, so the attempt stays in flight until the body is sent; the
/// body is watched for a client that stops reading ([`stall`]).
fn to_client<S>(
    method: &Method,
    mut upstream: ClientResponse<S>,
    lease: Lease,
    send_timeout: Duration,
) -> HttpResponse
where
    S: Stream<Item = Result<web::Bytes, awc::error::PayloadError>> + Unpin + 'static,
{
    let status = upstream.status();
    let length = upstream
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    // Only a body that is sent is watched; for the others the lease ends here.
    let upstream_body = upstream.take_payload();
    let expected = length.filter(|_| method != Method::HEAD);
    let watched = move || stall::Watched::new(upstream_body, lease, expected, send_timeout);
    let body: BoxBody = match (no_body, length) {
        (true, _) => body_types::None::new().boxed(),
        (false, Some(len)) => SizedStream::new(len, watched()).boxed(),
        (false, None) if method == Method::HEAD => body_types::None::new().boxed(),
        (false, None) => BodyStream::new(watched()).boxed(),
    };
    let mut response = HttpResponse::with_body(status, body);
    *response.headers_mut() = headers::to_client(upstream.headers());
    response
}

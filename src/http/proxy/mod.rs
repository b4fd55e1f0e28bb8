//! The proxy: every request outside `/clients` and `/lb/` is sent to the next backend of the
//! shared [`crate::registry::Rotation`], with bodies streamed both ways: plain backends over
//! this worker's own kept-alive connections ([`origin`]), HTTPS ones through its awc `Client`.
//! Failures that are safe to retry move the request to the next healthy backend
//! ([`attempt`]); the rest become JSON errors (see [`ProxyError`]). WebSocket handshakes become
//! byte tunnels instead ([`tunnel`]).

mod attempt;
mod body;
mod error;
pub mod headers;
mod origin;
mod response;
mod stall;
mod state;
mod tunnel;
mod tunnels;

use std::sync::Arc;

use std::time::Instant;

use actix_web::http::uri::{self, PathAndQuery};
use actix_web::http::{Method, Uri};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};

use crate::backend::Backend;
use crate::client::Admission;
use crate::http::access_log::{self, ServedBy};
use crate::http::client_id::ClientIdentity;
use crate::http::tls::ViaTls;
use crate::limiter::{AdmitError, Limiter};
use crate::metrics::Metrics;
use crate::registry::Outcome;
use attempt::{AttemptError, Attempts};
use body::RequestBody;
pub use error::ProxyError;
pub use origin::WorkerClients;
use response::{to_client, Forwarded};
pub use state::ProxyState;
pub use tunnels::Tunnels;

/// The default service: forwards the request and streams the answer back, and counts it.
pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ProxyState>,
    clients: web::Data<WorkerClients>,
) -> Result<HttpResponse, ProxyError> {
    let started = Instant::now();
    match admit_and_forward(req, payload, &state, &clients).await {
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

async fn admit_and_forward(
    req: HttpRequest,
    payload: web::Payload,
    state: &ProxyState,
    clients: &WorkerClients,
) -> Result<Forwarded, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    let websocket = tunnel::requested(&req)?;
    let admission = match &state.limiter {
        Some(limiter) => Some(admit(limiter, &state.identity, &req, &state.metrics).await?),
        None => None,
    };
    let (mut response, backend) = if websocket {
        // Boxed: the handshake's state (codec, buffers, connect) would otherwise make every
        // request's future larger.
        Box::pin(tunnel::open(&req, payload, state)).await?
    } else {
        forward_admitted(&req, payload, state, clients).await?
    };
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
    clients: &WorkerClients,
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
    let mut attempts = Attempts::new(state, affinity);
    loop {
        let lease = attempts.next()?;
        let backend = Arc::clone(&lease.backend);
        if !backend.tls {
            let replayable = attempt::is_idempotent(req.method()) && body.in_memory();
            let host = backend.authority.as_str();
            let sent = clients
                .origins
                .send(
                    &backend,
                    req.method(),
                    &target,
                    |out| headers::write_to_backend(req.headers(), peer, via_tls, host, out),
                    || body.for_attempt(),
                    replayable,
                )
                .await;
            let failure = match sent {
                Ok(answer) => {
                    lease.record(Outcome::Responded);
                    let response = to_client(
                        req.method(),
                        answer.head.status,
                        &answer.head.headers,
                        answer.body,
                        lease,
                        state.send_timeout,
                    );
                    return Ok((response, backend));
                }
                Err(failure) => failure,
            };
            let retryable = failure.retryable(req.method(), &body);
            attempts.failed(lease, failure, retryable)?;
            continue;
        }
        let mut upstream = clients
            .awc
            .request(req.method().clone(), upstream_uri(&backend, &target));
        // Built for each attempt rather than cloned: awc consumes the request, and nearly every
        // request makes one attempt only.
        *upstream.headers_mut() = headers::to_backend(req.headers(), peer, via_tls);
        let failure = match upstream.send_body(body.for_attempt()).await {
            Ok(mut response) => {
                lease.record(Outcome::Responded);
                let upstream_body = response.take_payload();
                let response = to_client(
                    req.method(),
                    response.status(),
                    response.headers(),
                    upstream_body,
                    lease,
                    state.send_timeout,
                );
                return Ok((response, backend));
            }
            Err(err) => AttemptError::from(err),
        };
        let retryable = failure.retryable(req.method(), &body);
        attempts.failed(lease, failure, retryable)?;
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

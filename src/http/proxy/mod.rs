//! The proxy: every request outside `/clients` and `/lb/` takes the route that matches it (or
//! goes to the `default` pool) and is sent to the next backend of that pool's
//! [`crate::registry::Rotation`], with bodies streamed both ways, over this worker's
//! kept-alive connections ([`crate::upstream::Connections`], plain and TLS backends alike).
//! Failures that are safe to retry move the request to the next healthy backend
//! ([`attempt`]); the rest become JSON errors (see [`ProxyError`]). WebSocket handshakes become
//! byte tunnels instead ([`tunnel`]).

mod attempt;
mod body;
mod error;
pub mod headers;
mod pump;
mod response;
mod stall;
mod state;
mod tunnel;
mod tunnels;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::{ConnectionType, Method};
use actix_web::web::BytesMut;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::backend::HostHeader;
use crate::client::{Admission, Bucket, Charge, ClientKey};
use crate::http::access_log::note;
use crate::http::client_id::ClientIdentity;
use crate::http::tls::ViaTls;
use crate::limiter::{AdmitError, Limiter};
use crate::metrics::Metrics;
use crate::registry::{Destination, Lease, Outcome, PoolsView};
use crate::routing;
use crate::upstream::{Answer, Connections, Request};
use attempt::{AttemptError, Attempts};
use body::RequestBody;
pub use error::ProxyError;
use response::{to_client, Forwarded};
pub use state::ProxyState;
pub use tunnels::Tunnels;

/// The default service: forwards the request and streams the answer back, and counts it.
pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ProxyState>,
    connections: web::Data<Connections>,
) -> Result<HttpResponse, ProxyError> {
    let started = Instant::now();
    let view = state.view();
    let routed = destination(&req, &view);
    let route = routed
        .as_ref()
        .ok()
        .and_then(|d| d.route)
        .map(|r| &r.bucket.route);
    note(&req, |served| {
        served.proxied = true;
        if let Ok(destination) = &routed {
            served.route = route.cloned();
            served.pool = Some(Arc::clone(&destination.pool.info().name));
        }
    });
    let forwarded = match routed {
        Ok(destination) => {
            admit_and_forward(&req, payload, &state, &connections, &destination).await
        }
        Err(err) => Err(err),
    };
    match forwarded {
        Ok((response, backend)) => {
            state.metrics.record_request(
                Some((&backend.pool, &backend.name)),
                route,
                response.status().as_u16(),
                started.elapsed(),
            );
            note(&req, |served| served.backend = Some(backend));
            Ok(response)
        }
        Err(err) => {
            let code = err.status_code().as_u16();
            state
                .metrics
                .record_request(None, route, code, started.elapsed());
            Err(err)
        }
    }
}

async fn admit_and_forward(
    req: &HttpRequest,
    payload: web::Payload,
    state: &ProxyState,
    connections: &Connections,
    destination: &Destination<'_>,
) -> Result<Forwarded, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    let websocket = tunnel::requested(req)?;
    if let Some(route) = destination.route {
        route.counters.requests.fetch_add(1, Ordering::Relaxed);
    }
    let admission = match &state.limiter {
        Some(limiter) => {
            Some(admit(limiter, &state.identity, req, &state.metrics, destination).await?)
        }
        None => None,
    };
    let (mut response, backend) = if websocket {
        // Boxed: the handshake's state (codec, buffers, connect) would otherwise make every
        // request's future larger.
        Box::pin(tunnel::open(req, payload, state, connections, destination)).await?
    } else {
        forward_admitted(req, payload, state, connections, destination).await?
    };
    if let Some(admission) = admission {
        response
            .headers_mut()
            .insert(error::RATELIMIT, error::ratelimit_header(&admission));
    }
    Ok((response, backend))
}

/// The route and pool for the request; without a match and a `default` pool, the 404 answer.
fn destination<'v>(req: &HttpRequest, view: &'v PoolsView) -> Result<Destination<'v>, ProxyError> {
    // The host is only looked at when there are routes to compare it with.
    let host = (!view.routes().is_empty())
        .then(|| routing::host::of_request(req))
        .flatten();
    view.destination(
        host.as_deref(),
        req.path(),
        req.method().as_str(),
        req.headers(),
    )
    .ok_or_else(|| {
        let host = host.as_deref().unwrap_or_default();
        ProxyError::NoRoute(format!("{} {host}{}", req.method(), req.path()))
    })
}

/// Takes a token for the request's client; a refusal is the 429 answer.
async fn admit(
    limiter: &Limiter,
    identity: &ClientIdentity,
    req: &HttpRequest,
    metrics: &Metrics,
    destination: &Destination<'_>,
) -> Result<Admission, ProxyError> {
    let key = identity.identify(req, limiter);
    if let ClientKey::Registered(id) = &key {
        note(req, |served| served.client = Some(id.clone()));
    }
    let charge = Charge {
        key: key.clone(),
        cost: destination.route.map_or(1, |r| r.spec.cost),
        route: destination.route.map(|r| r.bucket.clone()),
    };
    let admission = limiter.admit(charge).await.map_err(|err| match err {
        AdmitError::Stopped => ProxyError::LimiterStopped,
        AdmitError::SharedLimitsDown => ProxyError::SharedLimitsDown,
    })?;
    if let ClientKey::Registered(id) = &key {
        metrics.record_client(id, admission.allowed());
    }
    if admission.allowed() {
        return Ok(admission);
    }
    metrics.record_rate_limited();
    limiter.count_rejection(&key, destination.route.map(|r| &r.bucket.route));
    note(req, |served| served.limited = true);
    if let Some(route) = destination.route {
        route.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
    }
    if admission.report {
        let (bucket, _, limits) = admission.tighter();
        let on = match bucket {
            Bucket::Client => String::new(),
            Bucket::Route(route) => format!(" on route {route}"),
        };
        log::warn!(
            "{key} is rate limited{on} (capacity {}, {}/s); further rejections within a second are not logged",
            limits.capacity,
            limits.rate_per_sec
        );
    }
    Err(ProxyError::RateLimited(admission))
}

/// Picks backends until one answers or nothing safe is left to try.
async fn forward_admitted(
    req: &HttpRequest,
    payload: web::Payload,
    state: &ProxyState,
    connections: &Connections,
    destination: &Destination<'_>,
) -> Result<Forwarded, ProxyError> {
    let peer = req.peer_addr().map(|addr| addr.ip());
    let body = RequestBody::prepare(
        req.headers(),
        payload,
        state.retry_body_limit_bytes,
        state.max_request_body_bytes,
    )
    .await?;
    let target = headers::target(req, destination.route);
    let via_tls = req.conn_data::<ViaTls>().is_some();
    let replayable = attempt::is_idempotent(req.method()) && body.in_memory();
    let pool = destination.pool;
    let client_host = pool.info().host_header == HostHeader::Client;
    let mut attempts = Attempts::new(state, req, pool);
    loop {
        let lease = attempts.next().await?;
        note(req, |served| served.attempts += 1);
        let attempt_started = Instant::now();
        let backend = Arc::clone(&lease.backend);
        let host = backend.authority.as_str();
        let traceparent = attempts.traceparent();
        let headers = |out: &mut BytesMut| {
            let to = (host, client_host);
            headers::write_to_backend(req.headers(), peer, via_tls, to, traceparent.as_ref(), out);
        };
        let request = Request {
            method: req.method(),
            target: &target,
            headers: &headers,
            upgrade: None,
        };
        let sent = connections
            .send(&backend, &request, || body.for_attempt(), replayable)
            .await;
        let failure = match sent {
            Ok(answer) => {
                attempts.answered(&backend, answer.head.status.as_u16());
                note(req, |served| {
                    served.upstream = Some(attempt_started.elapsed());
                    served.bytes_in = body.bytes_read();
                });
                return Ok((answered(req, state, lease, answer), backend));
            }
            Err(err) => AttemptError::from(err),
        };
        let retryable = failure.retryable(req.method(), &body);
        attempts.failed(lease, failure, retryable)?;
    }
}

/// The client's response from a backend's answer to `lease`'s attempt; with outlier ejection
/// on, a run of 5xx answers is reported to the registry.
fn answered(req: &HttpRequest, state: &ProxyState, lease: Lease, answer: Answer) -> HttpResponse {
    lease.record(Outcome::Responded);
    if let Some(after) = state.eject_after_5xx {
        let run = lease.record_status(answer.head.status.as_u16());
        if run > 0 && run % after.get() == 0 {
            state.registry.report_outlier(lease.backend.id, run);
        }
    }
    let mut response = to_client(
        req.method(),
        answer.head.status,
        &answer.head.headers,
        answer.body,
        lease,
        state.send_timeout,
    );
    if answer.early {
        // The rest of the client's body is never read: its connection ends with this answer.
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    response
}

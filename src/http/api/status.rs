//! `GET /lb/api/status`: a snapshot of everything, from typed structs; `GET /lb/metrics`: the
//! Prometheus exposition; `GET /lb/health`: the balancer's own liveness.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::state::{ApiError, ApiState};
use crate::backend::{BackendCounters, HostHeader, ProbeReport};
use crate::cluster::{self, ClusterStatus};
use crate::http::admin;
use crate::http::error::json_response;
use crate::registry::{MemberStatus, PoolsView, Rotation};
use crate::route::RouteEntry;
use crate::strategy::Strategy;

/// The body of `/lb/api/status`.
#[derive(Debug, Serialize)]
struct Status {
    version: &'static str,
    uptime_secs: f64,
    listen: String,
    draining: bool,
    /// `backends.strategy`.
    strategy: Strategy,
    totals: Totals,
    /// Every pool's, pool after pool.
    backends: Vec<BackendStatus>,
    pools: Vec<PoolStatus>,
    routes: Vec<RouteStatus>,
    clients: ClientsSummary,
    cluster: ClusterStatus,
}

#[derive(Debug, Serialize)]
struct Totals {
    requests: u64,
    /// Over the last ten seconds.
    requests_per_sec: f64,
    rate_limited: u64,
    /// 5xx answers the balancer gave itself.
    errors: u64,
}

/// One pool: its settings in effect and how many of its backends take requests.
#[derive(Debug, Serialize)]
pub struct PoolStatus {
    name: String,
    strategy: Strategy,
    health_path: String,
    host_header: HostHeader,
    backends: usize,
    healthy: usize,
    /// Requests in flight per backend at most where an entry sets none; 0 = no limit.
    max_connections: u32,
    /// Requests waiting for a backend under its limit now.
    queued: usize,
    /// Removed from the pool file; its backends drain out.
    retired: bool,
}

/// One route as written, with its counters.
#[derive(Debug, Serialize)]
pub struct RouteStatus {
    #[serde(flatten)]
    entry: RouteEntry,
    requests: u64,
    rate_limited: u64,
}

/// One backend: the `stats` event's counters and what only the status shows.
#[derive(Debug, Serialize)]
pub struct BackendStatus {
    pool: String,
    name: String,
    url: String,
    #[serde(flatten)]
    counters: BackendCounters,
    /// Requests in flight at most (its own, else its pool's); 0 = no limit.
    max_connections: u32,
    /// Removed (API or reload): drains, then leaves the pool.
    leaving: bool,
    /// Where a member DNS found is (`ip:port`); `null` for the other backends.
    address: Option<String>,
    simulated: bool,
    /// `up` or the failure mode, when simulated.
    simulation: Option<&'static str>,
    last_probe: Option<ProbeReport>,
    /// Unix ms of the last health change, if any since start.
    last_change_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ClientsSummary {
    registered: usize,
    tracked_buckets: usize,
    top_rejected: Vec<Rejected>,
}

#[derive(Debug, Serialize)]
struct Rejected {
    /// A client id or an IP address.
    client: String,
    /// The route the refused requests took (`null`: none matched).
    route: Option<String>,
    /// Refusals in the current minute.
    rejected: u64,
}

/// Every member of `pool` as the status and the backends API show it, in pool order.
pub fn backend_statuses(state: &ApiState, pool: &Rotation) -> Vec<BackendStatus> {
    pool.snapshot()
        .into_iter()
        .map(|m| backend_status(state, m))
        .collect()
}

/// A pool as the status and the pools API show it.
pub fn pool_status(pool: &Rotation, retired: bool) -> PoolStatus {
    let info = pool.info();
    PoolStatus {
        name: info.name.to_string(),
        strategy: info.strategy,
        health_path: info.health_path.to_string(),
        host_header: info.host_header,
        backends: pool.len(),
        healthy: pool.healthy_count(),
        max_connections: info.max_connections,
        queued: pool.queue_len(),
        retired,
    }
}

/// The routes in file order, with their counters.
pub fn route_statuses(view: &PoolsView) -> Vec<RouteStatus> {
    view.routes()
        .routes()
        .iter()
        .map(|route| RouteStatus {
            entry: route.spec.entry.clone(),
            requests: route.counters.requests(),
            rate_limited: route.counters.rate_limited(),
        })
        .collect()
}

/// One member as the status and the backends API show it.
pub fn backend_status(state: &ApiState, m: MemberStatus) -> BackendStatus {
    let simulation = state
        .simulation
        .as_ref()
        .and_then(|sim| sim.label(m.backend.id));
    BackendStatus {
        pool: m.backend.pool.to_string(),
        name: m.backend.name.clone(),
        url: m.backend.url.clone(),
        counters: m.counters(),
        max_connections: m.max_connections,
        leaving: m.leaving,
        address: m.backend.address.map(|a| a.to_string()),
        simulated: simulation.is_some(),
        simulation,
        last_change_ms: (m.changed_at_ms > 0).then_some(m.changed_at_ms),
        last_probe: m.last_probe,
    }
}

/// `GET /lb/api/status`.
pub async fn status(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let view = state.pools.load();
    let backends = view
        .snapshot()
        .into_iter()
        .map(|m| backend_status(&state, m))
        .collect();
    let pools = view
        .pools()
        .iter()
        .map(|p| pool_status(p, false))
        .chain(view.retired().iter().map(|p| pool_status(p, true)))
        .collect();
    let totals = state.metrics.totals();
    let tracked = state.limiter.tracked().await;
    let top_rejected = state
        .limiter
        .top_rejected(5)
        .into_iter()
        .map(|rejected| Rejected {
            client: rejected.key.id(),
            route: rejected.route.map(|route| route.to_string()),
            rejected: rejected.count,
        })
        .collect();
    Ok(HttpResponse::Ok().json(Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: state.started.elapsed().as_secs_f64(),
        listen: state.listen.to_string(),
        draining: state.draining.is_draining(),
        strategy: state.strategy,
        totals: Totals {
            requests: totals.requests,
            requests_per_sec: state.window.lock().map_or(0.0, |w| w.requests_per_sec()),
            rate_limited: totals.rate_limited,
            errors: totals.own_errors,
        },
        backends,
        pools,
        routes: route_statuses(&view),
        clients: ClientsSummary {
            registered: tracked.registered,
            tracked_buckets: tracked.registered + tracked.addresses,
            top_rejected,
        },
        cluster: state.cluster.as_ref().map_or_else(
            || cluster::single_status(state.listen.to_string()),
            cluster::Cluster::status,
        ),
    }))
}

/// `GET /lb/metrics`: Prometheus text exposition (open, like `/lb/health`, for scrapers).
pub async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    let tracked = state.limiter.tracked().await;
    let view = state.pools.load();
    let limited: Vec<(String, u64)> = view
        .routes()
        .routes()
        .iter()
        .map(|r| (r.spec.name.clone(), r.counters.rate_limited()))
        .collect();
    let queues: Vec<(String, usize)> = view
        .pools()
        .iter()
        .map(|pool| (pool.name().to_owned(), pool.queue_len()))
        .collect();
    let text = state.metrics.render(
        &view.snapshot(),
        &queues,
        &limited,
        tracked.registered,
        tracked.registered + tracked.addresses,
        state.cluster.as_ref().map(cluster::Cluster::counters),
    );
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text)
}

#[derive(Serialize)]
struct Liveness {
    status: &'static str,
}

/// `GET /lb/health`: the balancer's own liveness, 503 while draining (open).
pub async fn health(state: web::Data<ApiState>) -> HttpResponse {
    if state.draining.is_draining() {
        json_response(StatusCode::SERVICE_UNAVAILABLE, "Service is shutting down")
    } else {
        HttpResponse::Ok().json(Liveness { status: "ok" })
    }
}

//! The balancer's own API under `/lb/api/`: `status` (a snapshot of everything), `events`
//! (server-sent events) and the simulation controls. Every route goes through
//! [`crate::http::admin::authorize`] first (`events` also takes the token as `?access_token=`, since
//! a browser's EventSource cannot send headers).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::Addr;
use actix_web::http::{header, StatusCode};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::events::{EventBus, SubscribeChannel};
use crate::health::ProbeView;
use crate::http::admin::{self, AdminError};
use crate::http::error::json_response;
use crate::http::shutdown::Draining;
use crate::limiter::{ClientKey, Limiter};
use crate::metrics::Metrics;
use crate::registry::Rotation;
use crate::settings::AdminSettings;
use crate::simulation::schedule::FaultMode;
use crate::simulation::{Fail, Recover, SimulationView, Simulator};
use crate::stats::StatsWindow;

/// What the API handlers share.
pub struct ApiState {
    pub rotation: Arc<Rotation>,
    pub admin: AdminSettings,
    pub draining: Draining,
    pub started: Instant,
    /// Present when the simulation runs.
    pub simulation: Option<(Addr<Simulator>, SimulationView)>,
    pub listen: std::net::SocketAddr,
    pub metrics: Arc<Metrics>,
    /// Request rates over the last ten seconds.
    pub window: Arc<Mutex<StatsWindow>>,
    /// Last probe per backend.
    pub probes: ProbeView,
    pub limiter: Arc<Limiter>,
    pub events: Addr<EventBus>,
}

/// Registers the routes under `/lb/api`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/status")
            .route(web::get().to(status))
            .default_service(web::to(crate::http::error::method_not_allowed)),
    )
    .service(
        web::resource("/events")
            .route(web::get().to(events))
            .default_service(web::to(crate::http::error::method_not_allowed)),
    )
    .service(
        web::resource("/simulation/{backend}/{action}")
            .route(web::post().to(simulation))
            .default_service(web::to(crate::http::error::method_not_allowed)),
    );
}

/// `GET /lb/api/status`.
async fn status(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, AdminError> {
    admin::authorize(&req, &state.admin)?;
    let sim_states = state.simulation.as_ref().map(|(_, view)| &view.0);
    let backends: Vec<_> = state
        .rotation
        .snapshot()
        .into_iter()
        .map(|m| {
            let simulated = sim_states.and_then(|states| states.get(m.backend.id));
            let probe = state
                .probes
                .get(m.backend.id)
                .and_then(|slot| slot.lock().ok().and_then(|p| p.clone()));
            serde_json::json!({
                "name": m.backend.name,
                "url": m.backend.url,
                "state": if m.healthy { "up" } else { "down" },
                "simulated": simulated.is_some(),
                "simulation": simulated.map(|s| s.label()),
                "requests": m.requests,
                "failures": m.failures,
                "in_flight": m.in_flight,
                "last_probe": probe,
                "last_change_ms": (m.changed_at_ms > 0).then_some(m.changed_at_ms),
            })
        })
        .collect();
    let totals = state.metrics.totals();
    let rate = state.window.lock().map_or(0.0, |w| w.requests_per_sec());
    let (registered, tracked) = state.limiter.tracked().await;
    let top: Vec<_> = state
        .limiter
        .top_rejected(5)
        .await
        .into_iter()
        .map(|(key, rejected)| serde_json::json!({"client": describe(&key), "rejected": rejected}))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs_f64(),
        "listen": state.listen.to_string(),
        "draining": state.draining.is_draining(),
        "totals": {
            "requests": totals.requests,
            "requests_per_sec": rate,
            "rate_limited": totals.rate_limited,
            "errors": totals.own_errors,
        },
        "backends": backends,
        "clients": {
            "registered": registered,
            "tracked_buckets": registered + tracked,
            "top_rejected": top,
        },
    })))
}

/// `GET /lb/metrics`: Prometheus text exposition (open, like `/lb/health`, for scrapers).
pub async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    let (registered, tracked) = state.limiter.tracked().await;
    let text = state
        .metrics
        .render(&state.rotation.snapshot(), registered, registered + tracked);
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text)
}

fn describe(key: &ClientKey) -> String {
    match key {
        ClientKey::Registered(id) => id.clone(),
        ClientKey::Ip(ip) => ip.to_string(),
    }
}

/// Events a browser has not read yet before it counts as too slow and is dropped.
const SUBSCRIBER_BUFFER: usize = 256;

/// `GET /lb/api/events`: server-sent events, one `data:` JSON line per event. The stream ends
/// when the balancer drains, so open status pages never hold up a shutdown.
async fn events(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, AdminError> {
    admin::authorize(&req, &state.admin).or_else(|err| {
        let token = web::Query::<TokenQuery>::from_query(req.query_string()).ok();
        match (token, &state.admin.token) {
            (Some(query), Some(expected))
                if admin::token_matches(&query.access_token, expected) =>
            {
                Ok(())
            }
            _ => Err(err),
        }
    })?;
    let (sender, receiver) = mpsc::channel(SUBSCRIBER_BUFFER);
    state.events.do_send(SubscribeChannel(sender));
    let draining = state.draining.clone();
    let hello = futures_util::stream::once(async {
        Ok::<_, Infallible>(Bytes::from_static(b"retry: 2000\n: connected\n\n"))
    });
    let updates = futures_util::stream::unfold(receiver, move |mut receiver| {
        let draining = draining.clone();
        async move {
            let event = receiver.recv().await?;
            if draining.is_draining() {
                return None;
            }
            let json = serde_json::to_string(&event).unwrap_or_default();
            Some((
                Ok::<_, Infallible>(Bytes::from(format!("data: {json}\n\n"))),
                receiver,
            ))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(hello.chain(updates)))
}

#[derive(Deserialize)]
struct TokenQuery {
    access_token: String,
}

/// Optional body of `.../fail`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailBody {
    mode: Option<String>,
}

/// `POST /lb/api/simulation/{backend}/fail` (body `{"mode": "refuse"}`, optional) and
/// `POST /lb/api/simulation/{backend}/recover`.
async fn simulation(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, actix_web::Error> {
    admin::authorize(&req, &state.admin)?;
    let (target, action) = path.into_inner();
    let Some((simulator, _)) = &state.simulation else {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            "The simulation is not running",
        ));
    };
    let result = match action.as_str() {
        "fail" => {
            let mode = match fail_mode(&body) {
                Ok(mode) => mode,
                Err(message) => return Ok(json_response(StatusCode::BAD_REQUEST, &message)),
            };
            simulator.send(Fail { target, mode }).await
        }
        "recover" => simulator.send(Recover { target }).await,
        _ => return Ok(json_response(StatusCode::NOT_FOUND, "Not found")),
    };
    Ok(match result {
        Ok(Ok(status)) => HttpResponse::Ok().json(status),
        Ok(Err(err)) => json_response(StatusCode::NOT_FOUND, &err.to_string()),
        Err(_) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "The simulation has stopped",
        ),
    })
}

/// The mode from an optional JSON body; `refuse` when there is none.
fn fail_mode(body: &[u8]) -> Result<FaultMode, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(FaultMode::Refuse);
    }
    let parsed: FailBody = serde_json::from_slice(body).map_err(|e| {
        format!("Invalid JSON body: {e}; expected {{\"mode\": \"refuse\" | \"error\" | \"hang\"}}")
    })?;
    parsed.mode.map_or(Ok(FaultMode::Refuse), |m| {
        m.parse().map_err(|e: String| format!("Invalid mode: {e}"))
    })
}

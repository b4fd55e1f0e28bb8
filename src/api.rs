//! The balancer's own JSON API under `/lb/api/`: `status` (a snapshot of the pool) and the
//! simulation controls. Every route goes through [`crate::admin::authorize`] first.

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::admin::{self, AdminError};
use crate::error::json_response;
use crate::registry::Rotation;
use crate::settings::AdminSettings;
use crate::shutdown::Draining;
use crate::simulation::schedule::FaultMode;
use crate::simulation::{Fail, Recover, SimulationView, Simulator};

/// What the API handlers share.
pub struct ApiState {
    pub rotation: Arc<Rotation>,
    pub admin: AdminSettings,
    pub draining: Draining,
    pub started: Instant,
    /// Present when the simulation runs.
    pub simulation: Option<(Addr<Simulator>, SimulationView)>,
}

/// Registers the routes under `/lb/api`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/status")
            .route(web::get().to(status))
            .default_service(web::to(crate::error::method_not_allowed)),
    )
    .service(
        web::resource("/simulation/{backend}/{action}")
            .route(web::post().to(simulation))
            .default_service(web::to(crate::error::method_not_allowed)),
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
            serde_json::json!({
                "name": m.backend.name,
                "url": m.backend.url,
                "state": if m.healthy { "up" } else { "down" },
                "simulated": simulated.is_some(),
                "simulation": simulated.map(|s| s.label()),
                "requests": m.requests,
                "failures": m.failures,
                "in_flight": m.in_flight,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs_f64(),
        "draining": state.draining.is_draining(),
        "backends": backends,
    })))
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

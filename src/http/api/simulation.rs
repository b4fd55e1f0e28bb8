//! `POST /lb/api/simulation/{backend}/fail` (body `{"mode": "refuse" | "error" | "hang"}`,
//! optional) and `POST /lb/api/simulation/{backend}/recover`; `?pool=NAME` says which pool's
//! backend a name means (needed when several pools have one of that name).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::state::{ApiError, ApiState};
use crate::fault::FaultMode;
use crate::http::admin;
use crate::simulation::{SimError, SimTarget};

/// Optional body of `.../fail`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailBody {
    mode: Option<String>,
}

/// The query of a simulation command.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimQuery {
    pool: Option<String>,
}

/// `POST /lb/api/simulation/{backend}/{fail|recover}`.
pub async fn control(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let (backend, action) = path.into_inner();
    let query = web::Query::<SimQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("Invalid query: {e}; expected ?pool=NAME")))?;
    let target = SimTarget {
        backend,
        pool: query.into_inner().pool,
    };
    let Some(simulation) = &state.simulation else {
        return Err(ApiError::NotFound("The simulation is not running".into()));
    };
    let result = match action.as_str() {
        "fail" => {
            let mode = fail_mode(&body).map_err(ApiError::BadRequest)?;
            simulation.fail(target, mode).await
        }
        "recover" => simulation.recover(target).await,
        _ => return Err(ApiError::NotFound("Not found".into())),
    };
    match result {
        Ok(Ok(status)) => Ok(HttpResponse::Ok().json(status)),
        Ok(Err(err @ SimError::UnknownBackend(_))) => Err(ApiError::NotFound(err.to_string())),
        Ok(Err(err @ SimError::Ambiguous { .. })) => Err(ApiError::BadRequest(err.to_string())),
        Err(_) => Err(ApiError::Unavailable("The simulation has stopped".into())),
    }
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

//! The pools API (admin-protected like all of `/lb/api/`): `GET /lb/api/pools` lists every
//! pool with its backends; `POST` adds `{"name", "backends", "strategy"?, "health_path"?,
//! "host_header"?}` (201); `GET`/`PATCH`/`DELETE /lb/api/pools/{pool}` show one, change its
//! settings (200) or remove it (202: its backends drain; 409 while a route names it). The
//! routes API: `GET /lb/api/routes` lists them in file order with their counters; `PUT`
//! replaces the whole list (200). Every change goes through the registry, which writes the
//! pool file.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::Value;

use super::state::{json_value, pool_in_path, ApiError, ApiState};
use super::status::{backend_statuses, pool_status, route_statuses, BackendStatus, PoolStatus};
use crate::discovery::{parse_pool, parse_pool_settings};
use crate::http::admin;
use crate::http::json_body::read_json;
use crate::registry::Rotation;
use crate::route::RouteEntry;

/// A pool as the pools API shows it.
#[derive(Serialize)]
struct PoolBody {
    #[serde(flatten)]
    status: PoolStatus,
    backends: Vec<BackendStatus>,
}

fn body(state: &ApiState, pool: &Rotation) -> PoolBody {
    PoolBody {
        status: pool_status(pool, false),
        backends: backend_statuses(state, pool),
    }
}

/// `GET /lb/api/pools`.
pub async fn list(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let view = state.pools.load();
    let pools: Vec<PoolBody> = view.pools().iter().map(|p| body(&state, p)).collect();
    Ok(HttpResponse::Ok().json(pools))
}

/// `POST /lb/api/pools`.
pub async fn add(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let value = json_value(&read_json(&req, payload).await?)?;
    let spec = parse_pool(&value)
        .map_err(|(field, problem)| ApiError::BadRequest(format!("{field}: {problem}")))?;
    let pool = state.membership.add_pool(spec).await?;
    Ok(HttpResponse::Created().json(body(&state, &pool)))
}

/// `GET /lb/api/pools/{pool}`.
pub async fn show(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let pool = pool_in_path(&req, &state)?;
    Ok(HttpResponse::Ok().json(body(&state, &pool)))
}

/// `PATCH /lb/api/pools/{pool}`.
pub async fn update(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let pool = pool_in_path(&req, &state)?;
    let value = json_value(&read_json(&req, payload).await?)?;
    let settings = parse_pool_settings(&pool.info().written, &value)
        .map_err(|(field, problem)| ApiError::BadRequest(format!("{field}: {problem}")))?;
    let name = pool.name().to_owned();
    let pool = state.membership.update_pool(name, settings).await?;
    Ok(HttpResponse::Ok().json(body(&state, &pool)))
}

/// `DELETE /lb/api/pools/{pool}`: 202, its backends drain and then it is gone.
pub async fn remove(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let name = req.match_info().query("pool").to_owned();
    let pool = state.membership.remove_pool(name).await?;
    Ok(HttpResponse::Accepted().json(PoolBody {
        status: pool_status(&pool, true),
        backends: backend_statuses(&state, &pool),
    }))
}

/// `GET /lb/api/routes`.
pub async fn routes(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    Ok(HttpResponse::Ok().json(route_statuses(&state.pools.load())))
}

/// `PUT /lb/api/routes`: the whole list, validated like the file's.
pub async fn replace_routes(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let value = json_value(&read_json(&req, payload).await?)?;
    let Value::Array(items) = value else {
        return Err(ApiError::BadRequest(
            "body: must be a JSON array of routes".into(),
        ));
    };
    let entries = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value::<RouteEntry>(item)
                .map_err(|e| ApiError::BadRequest(format!("routes[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    state.membership.replace_routes(entries).await?;
    Ok(HttpResponse::Ok().json(route_statuses(&state.pools.load())))
}

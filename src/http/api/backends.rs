//! The backends API (admin-protected like all of `/lb/api/`), for the pool in the path
//! (`/lb/api/pools/{pool}/backends…`) or the `default` pool (`/lb/api/backends…`; 404 without
//! one): `GET …/backends` lists the pool; `POST` adds `{"url", "weight"?, "name"?,
//! "max_connections"?}` (201);
//! `GET`/`PATCH`/`DELETE …/backends/{name}` show one, change `{"weight"?, "draining"?}` (200) or
//! drain it out of the pool (202); `POST /lb/api/reload` reads the pool file again (200 with
//! what changed, 400 with the file's problem). Every change goes through the registry, which
//! writes the pool file.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::state::{json_value, pool_in_path, pool_of, ApiError, ApiState};
use super::status::{backend_status, backend_statuses};
use crate::backend::{check_weight, BackendSpec};
use crate::http::admin;
use crate::http::json_body::read_json;
use crate::registry::ReloadTrigger;

/// The backend the path names.
fn name_of(req: &HttpRequest) -> String {
    req.match_info().query("name").to_owned()
}

/// `GET …/backends`.
pub async fn list(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let pool = pool_in_path(&req, &state)?;
    Ok(HttpResponse::Ok().json(backend_statuses(&state, &pool)))
}

/// `GET …/backends/{name}`.
pub async fn show(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let name = name_of(&req);
    let member = pool_in_path(&req, &state)?
        .snapshot()
        .into_iter()
        .find(|m| m.backend.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("No backend named {name:?}")))?;
    Ok(HttpResponse::Ok().json(backend_status(&state, member)))
}

/// `POST …/backends`.
pub async fn add(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let fields = object(&read_json(&req, payload).await?)?;
    let mut url = None;
    let mut weight = None;
    let mut name = None;
    let mut max_connections = None;
    for (key, value) in &fields {
        match key.as_str() {
            "url" => url = Some(text(key, value)?),
            "weight" => weight = Some(whole(key, value)?),
            "name" => name = Some(text(key, value)?),
            "max_connections" => max_connections = Some(whole(key, value)?),
            "discovery" => {
                return Err(ApiError::BadRequest(
                    "discovery: entries found by DNS are listed in the pool file (then reload it)"
                        .into(),
                ))
            }
            other => return Err(unknown(other)),
        }
    }
    let url = url.ok_or_else(|| ApiError::BadRequest("url: missing".into()))?;
    let spec = BackendSpec::parse(url, weight, name)
        .and_then(|spec| spec.with_max_connections(max_connections))
        .map_err(|(field, problem)| ApiError::BadRequest(format!("{field}: {problem}")))?;
    let added = state.membership.add(pool_of(&req), spec).await?;
    Ok(HttpResponse::Created().json(backend_status(&state, added)))
}

/// `PATCH …/backends/{name}`.
pub async fn update(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let fields = object(&read_json(&req, payload).await?)?;
    let mut weight = None;
    let mut draining = None;
    for (key, value) in &fields {
        match key.as_str() {
            "weight" => {
                let given = whole(key, value)?;
                weight = Some(
                    check_weight(given)
                        .map_err(|p| ApiError::BadRequest(format!("weight: {p}")))?,
                );
            }
            "draining" => {
                draining = Some(value.as_bool().ok_or_else(|| {
                    ApiError::BadRequest("draining: must be true or false".into())
                })?);
            }
            other => return Err(unknown(other)),
        }
    }
    if weight.is_none() && draining.is_none() {
        return Err(ApiError::BadRequest(
            "body: give \"weight\" and/or \"draining\"".into(),
        ));
    }
    let updated = state
        .membership
        .update(pool_of(&req), name_of(&req), weight, draining)
        .await?;
    Ok(HttpResponse::Ok().json(backend_status(&state, updated)))
}

/// `DELETE …/backends/{name}`: 202, the backend drains and then leaves.
pub async fn remove(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let leaving = state
        .membership
        .remove(pool_of(&req), name_of(&req))
        .await?;
    Ok(HttpResponse::Accepted().json(backend_status(&state, leaving)))
}

/// `POST /lb/api/reload`.
pub async fn reload(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let report = state.membership.reload(ReloadTrigger::Api).await?;
    Ok(HttpResponse::Ok().json(report))
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match json_value(body)? {
        Value::Object(fields) => Ok(fields),
        _ => Err(ApiError::BadRequest("body: must be a JSON object".into())),
    }
}

fn text<'v>(key: &str, value: &'v Value) -> Result<&'v str, ApiError> {
    value
        .as_str()
        .ok_or_else(|| ApiError::BadRequest(format!("{key}: must be a string")))
}

fn whole(key: &str, value: &Value) -> Result<u64, ApiError> {
    value.as_u64().ok_or_else(|| {
        ApiError::BadRequest(format!("{key}: must be a whole number from 1 to 1000"))
    })
}

fn unknown(key: &str) -> ApiError {
    let shown: String = key.chars().take(40).collect();
    ApiError::BadRequest(format!("{shown}: unknown field"))
}

//! What the `/lb/` handlers share, and the one error type of `/lb/api/*` with its mapping to
//! JSON answers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde_json::Value;

use crate::backend::DEFAULT_POOL;
use crate::cluster::Cluster;
use crate::draining::Draining;
use crate::events::Events;
use crate::http::admin::AdminError;
use crate::http::error::json_response;
use crate::http::json_body::{body_status, BodyError};
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::registry::{Membership, PoolError, Pools, Rotation};
use crate::settings::AdminSettings;
use crate::simulation::Simulation;
use crate::stats::StatsWindow;
use crate::strategy::Strategy;

/// What the `/lb/` handlers share.
pub struct ApiState {
    pub pools: Arc<Pools>,
    /// `backends.strategy`: of pools that set none.
    pub strategy: Strategy,
    pub admin: AdminSettings,
    pub draining: Draining,
    pub started: Instant,
    /// Present when the simulation runs.
    pub simulation: Option<Simulation>,
    /// The address the plain listener is bound to.
    pub listen: SocketAddr,
    pub metrics: Arc<Metrics>,
    /// Request rates over the last ten seconds.
    pub window: Arc<Mutex<StatsWindow>>,
    /// Pool changes go through it.
    pub membership: Membership,
    pub limiter: Arc<Limiter>,
    /// Present in cluster mode.
    pub cluster: Option<Cluster>,
    pub events: Events,
}

/// Everything `/lb/api/*` can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Body(#[from] BodyError),
}

impl From<PoolError> for ApiError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Invalid { .. } | PoolError::Config(_) => Self::BadRequest(err.to_string()),
            PoolError::Duplicate(_) => Self::Conflict(err.to_string()),
            PoolError::NotFound(_) => Self::NotFound(err.to_string()),
            PoolError::Storage(_) | PoolError::Stopped => Self::Unavailable(err.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Admin(err) => err.status_code(),
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Body(err) => body_status(err),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Admin(err) => err.error_response(),
            other => json_response(other.status_code(), &other.to_string()),
        }
    }
}

/// The pool the path names: `{pool}`, else `default` (`/lb/api/backends…`).
pub fn pool_of(req: &HttpRequest) -> String {
    req.match_info()
        .get("pool")
        .unwrap_or(DEFAULT_POOL)
        .to_owned()
}

/// The pool in service the path names, or 404.
pub fn pool_in_path(req: &HttpRequest, state: &ApiState) -> Result<Arc<Rotation>, ApiError> {
    let name = pool_of(req);
    state
        .pools
        .load()
        .named(&name)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("No pool named {name:?}")))
}

/// A body as JSON, or 400 saying why not.
pub fn json_value(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("body: malformed JSON ({e})")))
}

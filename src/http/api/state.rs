//! What the `/lb/` handlers share, and the one error type of `/lb/api/*` with its mapping to
//! JSON answers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::cluster::Cluster;
use crate::draining::Draining;
use crate::events::Events;
use crate::health::ProbeView;
use crate::http::admin::AdminError;
use crate::http::error::json_response;
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::registry::Rotation;
use crate::settings::AdminSettings;
use crate::simulation::Simulation;
use crate::stats::StatsWindow;

/// What the `/lb/` handlers share.
pub struct ApiState {
    pub rotation: Arc<Rotation>,
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
    /// Last probe per backend.
    pub probes: ProbeView,
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
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Admin(err) => err.status_code(),
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Admin(err) => err.error_response(),
            other => json_response(other.status_code(), &other.to_string()),
        }
    }
}

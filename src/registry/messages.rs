//! Messages the [`super::Registry`] answers, what pool changes answer, and the one error type
//! of pool changes.

use std::sync::Arc;

use actix::Message;
use serde::Serialize;

use super::member::{FailureKind, MemberStatus};
use super::rotation::Rotation;
use crate::backend::{Backend, BackendId, BackendSpec};
use crate::discovery::dns::Lookup;
use crate::discovery::{PoolSettings, PoolSpec};
use crate::route::RouteEntry;

/// From the proxy, fire-and-forget: an attempt on `backend` failed (it was already counted in
/// the member; `consecutive` is its run of failures so far). Drives passive ejection.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReportFailure {
    pub backend: BackendId,
    pub kind: FailureKind,
    pub consecutive: u32,
}

/// From the proxy: a backend answered `run` 5xx in a row (sent each time the run reaches a
/// multiple of `health.eject_consecutive_5xx`). Drives outlier ejection.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReportOutlier {
    pub backend: BackendId,
    pub run: u32,
}

/// From the DNS lookups: what a `"discovery": "dns"` entry's host resolved to, or why not.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Resolved(pub Lookup);

/// From the health checker (and tests): put a backend in or out of rotation.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct SetHealth {
    pub backend: BackendId,
    pub healthy: bool,
    /// Why, for the log line (`3 failed probes: connection refused`).
    pub reason: String,
}

/// From `POST /lb/api/backends`: a new backend, probed at once, joining on its first good probe.
#[derive(Debug, Message)]
#[rtype(result = "Result<MemberStatus, PoolError>")]
pub struct AddBackend {
    pub pool: String,
    pub spec: BackendSpec,
}

/// From `PATCH /lb/api/backends/{name}`: a new weight, or draining on or off.
#[derive(Debug, Message)]
#[rtype(result = "Result<MemberStatus, PoolError>")]
pub struct UpdateBackend {
    pub pool: String,
    pub name: String,
    pub weight: Option<u32>,
    pub draining: Option<bool>,
}

/// From `DELETE /lb/api/backends/{name}`: drain the backend, then drop it from the pool.
#[derive(Debug, Message)]
#[rtype(result = "Result<MemberStatus, PoolError>")]
pub struct RemoveBackend {
    pub pool: String,
    pub name: String,
}

/// From `POST /lb/api/pools`: a new pool, its backends in rotation at once.
#[derive(Debug, Message)]
#[rtype(result = "Result<Arc<Rotation>, PoolError>")]
pub struct AddPool {
    pub spec: PoolSpec,
}

/// From `PATCH /lb/api/pools/{pool}`: its strategy, probe path or host header.
#[derive(Debug, Message)]
#[rtype(result = "Result<Arc<Rotation>, PoolError>")]
pub struct UpdatePool {
    pub name: String,
    pub settings: PoolSettings,
}

/// From `DELETE /lb/api/pools/{pool}`: its backends drain, then it is gone.
#[derive(Debug, Message)]
#[rtype(result = "Result<Arc<Rotation>, PoolError>")]
pub struct RemovePool {
    pub name: String,
}

/// From `PUT /lb/api/routes`: the whole list, in order.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), PoolError>")]
pub struct ReplaceRoutes {
    pub entries: Vec<RouteEntry>,
}

/// From SIGHUP, `POST /lb/api/reload` or the file watch: read the pool file again and apply
/// the difference.
#[derive(Debug, Message)]
#[rtype(result = "Result<ReloadReport, PoolError>")]
pub struct Reload {
    pub trigger: ReloadTrigger,
}

/// From the file watch's thread: something changed in the pool file's folder that concerns it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PoolFileTouched;

/// To whoever follows the pool (the simulation): backends that joined or left it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PoolChanged {
    pub added: Vec<Arc<Backend>>,
    pub removed: Vec<Arc<Backend>>,
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadTrigger {
    Signal,
    Api,
    Watch,
    /// Another instance's configuration, from the cluster (`cluster.share_config`).
    Cluster,
}

impl ReloadTrigger {
    /// As the `reload` event names it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Signal => "signal",
            Self::Api => "api",
            Self::Watch => "watch",
            Self::Cluster => "cluster",
        }
    }

    /// As the log line says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signal => "SIGHUP",
            Self::Api => "the API",
            Self::Watch => "a change of the file",
            Self::Cluster => "the cluster's configuration",
        }
    }
}

/// What a reload did: `POST /lb/api/reload`'s answer. Backends by name (`pool/name` outside
/// the `default` pool); the pool and route fields appear only when they changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Weight changed, or a leaving backend listed again.
    pub changed: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pools_added: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pools_removed: Vec<String>,
    /// Strategy, health path or host header changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pools_changed: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub routes_changed: bool,
}

/// Why a pool change was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// A field of the request is invalid (400).
    #[error("Invalid {field}: {problem}")]
    Invalid { field: String, problem: String },
    /// The URL or name is taken, or a route still names the pool (409).
    #[error("{0}")]
    Duplicate(String),
    /// No such backend (404).
    #[error("{0}")]
    NotFound(String),
    /// The pool file could not be written (503).
    #[error("Storage unavailable, nothing was changed: {0}")]
    Storage(String),
    /// The pool file is unreadable or invalid (400 to `POST /lb/api/reload`).
    #[error("{0}")]
    Config(String),
    /// The registry has stopped (503).
    #[error("The pool registry has stopped")]
    Stopped,
}

/// Told the pool file's text, and whether it changed here (not applied from the cluster).
#[derive(Clone)]
pub struct PoolFileNews(pub Arc<dyn Fn(String, bool) + Send + Sync>);

impl std::fmt::Debug for PoolFileNews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolFileNews")
    }
}

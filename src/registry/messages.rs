//! Messages the [`super::Registry`] answers.

use std::sync::Arc;

use actix::Message;

use super::pool::{Member, Outcome};
use crate::backend::{Backend, BackendId};

/// From the proxy: the next healthy backend, not one of `exclude`; `None` when none is left.
#[derive(Debug, Message)]
#[rtype(result = "Option<Arc<Backend>>")]
pub struct Pick {
    /// Backends this request has already tried.
    pub exclude: Vec<BackendId>,
}

/// From the proxy: how an attempt on a picked backend ended.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReportOutcome {
    pub backend: BackendId,
    pub outcome: Outcome,
}

/// From the health checker (and tests): put a backend in or out of rotation.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct SetHealth {
    pub backend: BackendId,
    pub healthy: bool,
    /// Why, for the log line (`3 failed probes: connection refused`).
    pub reason: String,
}

/// From the status API: every member with its health and counters.
#[derive(Debug, Message)]
#[rtype(result = "Vec<Member>")]
pub struct Snapshot;

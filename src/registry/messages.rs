//! Messages the [`super::Registry`] answers.

use actix::Message;

use super::rotation::FailureKind;
use crate::backend::BackendId;

/// From the proxy, fire-and-forget: an attempt on `backend` failed (it was already counted in
/// the rotation; `consecutive` is its run of failures so far). Drives passive ejection.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReportFailure {
    pub backend: BackendId,
    pub kind: FailureKind,
    pub consecutive: u32,
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

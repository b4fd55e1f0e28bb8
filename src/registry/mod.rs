//! The `Registry` actor owns the backend pool's membership: it alone puts backends in and out
//! of rotation ([`SetHealth`] from the health checker, [`ReportFailure`] from the proxy) and
//! logs each transition once. Workers pick backends and count requests directly in the shared
//! [`Rotation`] it publishes, so the request path makes no actor round trip.

mod messages;
pub mod rotation;

use std::sync::Arc;

use actix::{Actor, Context, Handler, MessageResult};

use crate::backend::Backend;
pub use messages::{ReportFailure, SetHealth, Snapshot};
pub use rotation::{FailureKind, Lease, MemberStatus, Outcome, Rotation};

/// Actor that owns the health of the members of a [`Rotation`].
pub struct Registry {
    rotation: Arc<Rotation>,
}

impl Registry {
    pub fn new(backends: Vec<Backend>) -> Self {
        Self {
            rotation: Arc::new(Rotation::new(backends)),
        }
    }

    /// The shared rotation, for the proxy's picks.
    pub fn rotation(&self) -> Arc<Rotation> {
        Arc::clone(&self.rotation)
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<ReportFailure> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ReportFailure, _: &mut Context<Self>) {
        if let Some(backend) = self.rotation.backend(msg.backend) {
            log::debug!(
                "backend {backend}: {} failure, {} in a row",
                msg.kind.as_str(),
                msg.consecutive
            );
        }
    }
}

impl Handler<SetHealth> for Registry {
    type Result = bool;

    /// Only the transition is logged, once; repeating the current state is silent.
    fn handle(&mut self, msg: SetHealth, _: &mut Context<Self>) -> bool {
        let changed = self.rotation.set_health(msg.backend, msg.healthy);
        if let (true, Some(backend)) = (changed, self.rotation.backend(msg.backend)) {
            let healthy = self.rotation.healthy_count();
            let total = self.rotation.len();
            match msg.healthy {
                true => log::info!(
                    "backend {backend} is UP again ({}); {healthy}/{total} backends in rotation",
                    msg.reason
                ),
                false => log::warn!(
                    "backend {backend} is DOWN ({}); traffic goes to the other {healthy}/{total}",
                    msg.reason
                ),
            }
        }
        changed
    }
}

impl Handler<Snapshot> for Registry {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.rotation.snapshot())
    }
}

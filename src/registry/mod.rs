//! The `Registry` actor owns the backend pool's membership: it alone puts backends in and out
//! of rotation — [`SetHealth`] from the health checker, and passive ejection after
//! `health.passive_failures` consecutive [`ReportFailure`]s from the proxy — and logs and
//! publishes each transition once. Workers pick backends and count requests directly in the
//! shared [`Rotation`] it publishes, so the request path makes no actor round trip.

mod messages;
pub mod rotation;

use std::num::NonZeroU32;
use std::sync::Arc;

use actix::{Actor, Addr, Context, Handler, MessageResult};

use crate::backend::BackendId;
use crate::events::{EventBus, LbEvent, Publish};
pub use messages::{ReportFailure, SetHealth, Snapshot};
pub use rotation::{FailureKind, Lease, MemberStatus, Outcome, Rotation};

/// Actor that owns the health of the members of a [`Rotation`].
pub struct Registry {
    rotation: Arc<Rotation>,
    /// Where transitions are published.
    events: Addr<EventBus>,
    /// Consecutive proxy failures that take a backend out at once.
    passive_failures: NonZeroU32,
}

impl Registry {
    pub fn new(
        rotation: Arc<Rotation>,
        events: Addr<EventBus>,
        passive_failures: NonZeroU32,
    ) -> Self {
        Self {
            rotation,
            events,
            passive_failures,
        }
    }

    /// Flips a backend's health; logs and publishes only a real change.
    fn set_health(&mut self, id: BackendId, healthy: bool, reason: &str) -> bool {
        let changed = self.rotation.set_health(id, healthy);
        let Some(backend) = self.rotation.backend(id).filter(|_| changed) else {
            return false;
        };
        let in_rotation = self.rotation.healthy_count();
        let total = self.rotation.len();
        let (backend_name, url, reason_text) =
            (backend.name.clone(), backend.url.clone(), reason.to_owned());
        let event = match healthy {
            true => {
                log::info!("backend {backend} is UP again ({reason}); {in_rotation}/{total} backends in rotation");
                LbEvent::BackendUp {
                    backend: backend_name,
                    url,
                    reason: reason_text,
                }
            }
            false => {
                match in_rotation {
                    0 => log::error!("backend {backend} is DOWN ({reason}); no backend is left in rotation"),
                    n => log::warn!("backend {backend} is DOWN ({reason}); traffic switches to the other {n}/{total}"),
                }
                LbEvent::BackendDown {
                    backend: backend_name,
                    url,
                    reason: reason_text,
                }
            }
        };
        self.events.do_send(Publish(event));
        true
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<ReportFailure> for Registry {
    type Result = ();

    /// Passive health: enough failures in a row take the backend out without waiting for probes.
    fn handle(&mut self, msg: ReportFailure, _: &mut Context<Self>) {
        if msg.consecutive >= self.passive_failures.get() {
            let reason = format!(
                "{} consecutive proxy failures, last: {}",
                msg.consecutive,
                msg.kind.as_str()
            );
            self.set_health(msg.backend, false, &reason);
        }
    }
}

impl Handler<SetHealth> for Registry {
    type Result = bool;

    fn handle(&mut self, msg: SetHealth, _: &mut Context<Self>) -> bool {
        self.set_health(msg.backend, msg.healthy, &msg.reason)
    }
}

impl Handler<Snapshot> for Registry {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.rotation.snapshot())
    }
}

//! The `Registry` actor owns the backend pool's membership: it alone puts backends in and out
//! of rotation — health flips from the health checker, and passive ejection after
//! `health.passive_failures` consecutive failures reported by the proxy — and logs and
//! publishes each transition once. Everyone else holds the [`Membership`] handle. Workers pick backends and count requests directly in the
//! shared [`Rotation`] it publishes, so the request path makes no actor round trip.

mod messages;
pub mod rotation;

use std::num::NonZeroU32;
use std::sync::Arc;

use actix::{Actor, Addr, Context, Handler};

use crate::backend::BackendId;
use crate::events::{Events, LbEvent};
use messages::{ReportFailure, SetHealth};
pub use rotation::{FailureKind, Lease, MemberStatus, Outcome, Rotation};

/// The handle everyone else holds: reads go straight to the shared [`Rotation`], changes go
/// to the actor, which alone flips health and says so.
#[derive(Clone)]
pub struct Membership {
    actor: Addr<Registry>,
    rotation: Arc<Rotation>,
}

impl Membership {
    /// Starts the actor for `rotation`.
    pub fn start(rotation: Arc<Rotation>, events: Events, passive_failures: NonZeroU32) -> Self {
        let actor = Registry {
            rotation: Arc::clone(&rotation),
            events,
            passive_failures,
        }
        .start();
        Self { actor, rotation }
    }

    /// Every member with its health and counters, in pool order.
    pub fn members(&self) -> Vec<MemberStatus> {
        self.rotation.snapshot()
    }

    /// Puts a backend in or out of rotation (`reason` goes into the log line and the event);
    /// answers whether its state changed. Tests use it; the health checker tells instead.
    #[cfg(any(test, feature = "test-util"))]
    pub async fn set_health(&self, backend: BackendId, healthy: bool, reason: String) -> bool {
        let msg = SetHealth {
            backend,
            healthy,
            reason,
        };
        self.actor.send(msg).await.unwrap_or(false)
    }

    /// The same, without waiting for the answer (the health checker's way).
    pub fn tell_health(&self, backend: BackendId, healthy: bool, reason: String) {
        self.actor.do_send(SetHealth {
            backend,
            healthy,
            reason,
        });
    }

    /// An attempt on `backend` failed; `consecutive` is its run of failures so far. Enough in a
    /// row take it out of rotation (passive health).
    pub fn report_failure(&self, backend: BackendId, kind: FailureKind, consecutive: u32) {
        self.actor.do_send(ReportFailure {
            backend,
            kind,
            consecutive,
        });
    }
}

/// Actor that owns the health of the members of a [`Rotation`].
pub struct Registry {
    rotation: Arc<Rotation>,
    /// Where transitions are published.
    events: Events,
    /// Consecutive proxy failures that take a backend out at once.
    passive_failures: NonZeroU32,
}

impl Registry {
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
        let event = if healthy {
            log::info!(
                "backend {backend} is UP again ({reason}); {in_rotation}/{total} backends in rotation"
            );
            LbEvent::BackendUp {
                backend: backend_name,
                url,
                reason: reason_text,
            }
        } else {
            if in_rotation == 0 {
                log::error!("backend {backend} is DOWN ({reason}); no backend is left in rotation");
            } else {
                log::warn!(
                    "backend {backend} is DOWN ({reason}); traffic switches to the other {in_rotation}/{total}"
                );
            }
            LbEvent::BackendDown {
                backend: backend_name,
                url,
                reason: reason_text,
            }
        };
        self.events.publish(event);
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

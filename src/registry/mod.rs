//! The backend pool at run time. The [`Registry`] actor is its only writer: health flips from
//! the health checker and passive ejection, the backends API, reloads (SIGHUP, the API, the file
//! watch), drains; it logs and publishes each change once and writes API changes back to the
//! pool file. Everyone else holds the [`Membership`] handle. Workers pick and count directly in
//! the shared [`Rotation`], whose view the registry swaps whole, so the request path takes no
//! lock and makes no actor round trip.

mod actor;
mod api;
mod changes;
mod member;
mod messages;
mod plan;
mod reload;
pub mod rotation;
mod selection;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use actix::{Actor, Addr, AsyncContext};

use crate::backend::{BackendId, BackendSpec};
use crate::events::Events;
pub use actor::{PoolOptions, Registry};
pub use member::{FailureKind, Lease, Member, MemberStatus, Outcome};
use messages::{AddBackend, Reload, RemoveBackend, ReportFailure, SetHealth, UpdateBackend};
pub use messages::{PoolChanged, PoolError, ReloadReport, ReloadTrigger};
pub use rotation::Rotation;
pub use selection::consistent_hash::hash_bytes;

/// The handle everyone else holds: reads go straight to the shared [`Rotation`], changes go
/// to the actor, which alone makes them and says so.
#[derive(Clone)]
pub struct Membership {
    actor: Addr<Registry>,
    rotation: Arc<Rotation>,
}

impl Membership {
    /// Starts the actor for `rotation`.
    pub fn start(
        rotation: Arc<Rotation>,
        events: Events,
        passive_failures: NonZeroU32,
        options: PoolOptions,
    ) -> Self {
        let next_id = rotation
            .members()
            .iter()
            .map(|m| m.id() + 1)
            .max()
            .unwrap_or(0);
        let shared = Arc::clone(&rotation);
        // Created in place so the watch is on before this returns: an edit right after start
        // is not missed.
        let actor = Registry::create(move |ctx| Registry {
            _watch: Registry::watch(&options, ctx.address().recipient()),
            rotation: shared,
            events,
            passive_failures,
            options,
            next_id,
            leaving: HashMap::new(),
            pending_reload: None,
        });
        Self { actor, rotation }
    }

    /// Every member with its state and counters, in pool order (leaving ones last).
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

    /// Adds a backend (written to the pool file first); it joins on its first good probe.
    pub async fn add(&self, spec: BackendSpec) -> Result<MemberStatus, PoolError> {
        self.ask(AddBackend { spec }).await
    }

    /// Changes a backend's weight (written to the pool file) or its draining flag.
    pub async fn update(
        &self,
        name: String,
        weight: Option<u32>,
        draining: Option<bool>,
    ) -> Result<MemberStatus, PoolError> {
        self.ask(UpdateBackend {
            name,
            weight,
            draining,
        })
        .await
    }

    /// Drains a backend out of the pool (and out of the pool file).
    pub async fn remove(&self, name: String) -> Result<MemberStatus, PoolError> {
        self.ask(RemoveBackend { name }).await
    }

    /// Reads the pool file again and applies the difference; an invalid file changes nothing.
    pub async fn reload(&self, trigger: ReloadTrigger) -> Result<ReloadReport, PoolError> {
        self.ask(Reload { trigger }).await
    }

    async fn ask<M, T>(&self, msg: M) -> Result<T, PoolError>
    where
        M: actix::Message<Result = Result<T, PoolError>> + Send + 'static,
        T: Send + 'static,
        Registry: actix::Handler<M>,
    {
        self.actor
            .send(msg)
            .await
            .unwrap_or(Err(PoolError::Stopped))
    }
}

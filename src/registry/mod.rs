//! The pools and routes at run time. The [`Registry`] actor is their only writer: health flips
//! from the health checker and passive ejection, the backends API, reloads (SIGHUP, the API, the
//! file watch), drains; it logs and publishes each change once and writes API changes back to
//! the pool file. Everyone else holds the [`Membership`] handle. Workers choose a route and pool
//! from the shared [`Pools`] and pick and count directly in that pool's [`Rotation`]; the
//! registry swaps views whole, so the request path takes no lock and makes no actor round trip.

mod actor;
mod api;
mod capacity;
mod changes;
mod discovered;
mod member;
mod messages;
mod outcome;
mod outlier;
mod plan;
mod pools;
mod queue;
mod recovery;
mod reload;
pub mod rotation;
mod selection;
mod shared;
mod topology;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;

use actix::{Actor, Addr, AsyncContext};

use crate::backend::{BackendId, BackendSpec};
use crate::discovery::dns::Lookup;
use crate::discovery::{PoolSettings, PoolSpec};
use crate::events::Events;
use crate::route::RouteEntry;
pub use actor::{PoolOptions, Registry};
pub use capacity::NoBackend;
#[cfg(test)]
pub use member::Member;
pub use member::{FailureKind, Lease, MemberStatus, Outcome};
pub use messages::PoolFileNews;
use messages::{
    AddBackend, AddPool, Reload, RemoveBackend, RemovePool, ReplaceRoutes, ReportFailure,
    ReportOutlier, Resolved, SetHealth, UpdateBackend, UpdatePool,
};
pub use messages::{PoolChanged, PoolError, ReloadReport, ReloadTrigger};
pub use outlier::Ejection;
pub use pools::{Destination, Pools, PoolsView};
pub use rotation::{PoolDefaults, Rotation};
pub use selection::consistent_hash::hash_bytes;

/// The handle everyone else holds: reads go straight to the shared [`Pools`], changes go to
/// the actor, which alone makes them and says so.
#[derive(Clone)]
pub struct Membership {
    actor: Addr<Registry>,
    pools: Arc<Pools>,
}

impl Membership {
    /// Starts the actor for `pools`.
    pub fn start(
        pools: Arc<Pools>,
        events: Events,
        passive_failures: NonZeroU32,
        options: PoolOptions,
    ) -> Self {
        let view = pools.load();
        let entries = view
            .pools()
            .iter()
            .flat_map(|p| p.info().dns.iter().map(|e| e.id));
        let next_id = (view.snapshot().iter().map(|m| m.backend.id))
            .chain(entries)
            .map(|id| id + 1)
            .max()
            .unwrap_or(0);
        let shared = Arc::clone(&pools);
        let outliers = options.ejection.map(outlier::Outliers::new);
        // Created in place so the watch is on before this returns: an edit right after start
        // is not missed.
        let actor = Registry::create(move |ctx| Registry {
            _watch: Registry::watch(&options, ctx.address().recipient()),
            pools: shared,
            events,
            passive_failures,
            options,
            next_id,
            leaving: HashMap::new(),
            retiring: Vec::new(),
            pending_reload: None,
            outliers,
            ramping: HashMap::new(),
            dns_failing: HashSet::new(),
        });
        Self { actor, pools }
    }

    /// Every member with its state and counters, pool after pool, each in pool order (leaving
    /// ones last).
    pub fn members(&self) -> Vec<MemberStatus> {
        self.pools.snapshot()
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

    /// `backend` answered `run` 5xx in a row.
    pub fn report_outlier(&self, backend: BackendId, run: u32) {
        self.actor.do_send(ReportOutlier { backend, run });
    }

    /// The cluster's pool file text (`cluster.share_config`): written to the pool file, then
    /// reloaded from it.
    pub fn apply_shared(&self, text: String) {
        self.actor.do_send(shared::ApplyShared(text));
    }

    /// A DNS lookup's outcome, for the entry it was for.
    pub fn tell_lookup(&self, lookup: Lookup) {
        self.actor.do_send(Resolved(lookup));
    }

    /// Adds a backend to `pool` (written to the pool file first); it joins on its first good
    /// probe.
    pub async fn add(&self, pool: String, spec: BackendSpec) -> Result<MemberStatus, PoolError> {
        self.ask(AddBackend { pool, spec }).await
    }

    /// Changes a backend's weight (written to the pool file) or its draining flag.
    pub async fn update(
        &self,
        pool: String,
        name: String,
        weight: Option<u32>,
        draining: Option<bool>,
    ) -> Result<MemberStatus, PoolError> {
        self.ask(UpdateBackend {
            pool,
            name,
            weight,
            draining,
        })
        .await
    }

    /// Drains a backend out of `pool` (and out of the pool file).
    pub async fn remove(&self, pool: String, name: String) -> Result<MemberStatus, PoolError> {
        self.ask(RemoveBackend { pool, name }).await
    }

    /// Adds a pool (written to the pool file first); its backends are in rotation at once.
    pub async fn add_pool(&self, spec: PoolSpec) -> Result<Arc<Rotation>, PoolError> {
        self.ask(AddPool { spec }).await
    }

    /// Changes a pool's strategy, probe path or host header (written to the pool file).
    pub async fn update_pool(
        &self,
        name: String,
        settings: PoolSettings,
    ) -> Result<Arc<Rotation>, PoolError> {
        self.ask(UpdatePool { name, settings }).await
    }

    /// Removes a pool no route names; its backends drain out.
    pub async fn remove_pool(&self, name: String) -> Result<Arc<Rotation>, PoolError> {
        self.ask(RemovePool { name }).await
    }

    /// Replaces the routes (validated against the pools, written to the pool file).
    pub async fn replace_routes(&self, entries: Vec<RouteEntry>) -> Result<(), PoolError> {
        self.ask(ReplaceRoutes { entries }).await
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

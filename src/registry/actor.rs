//! The `Registry` actor: the only writer of the pool. Here: its state, health flips (from the
//! health checker, and passively after `health.passive_failures` failed attempts in a row), the
//! sweep that drops drained backends, and the watch's start. The changes from the backends API
//! and reloads are in [`super::changes`]. Each change is logged and published once.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, Recipient, SpawnHandle};

use super::member::Member;
use super::messages::{PoolChanged, PoolFileNews, PoolFileTouched, ReportFailure, SetHealth};
use super::outlier::{Ejection, Outliers};
use super::pools::{Pools, PoolsView};
use super::rotation::PoolDefaults;
use crate::backend::{Backend, BackendId};
use crate::discovery::{FileWatch, PoolFile};
use crate::events::{Events, LbEvent};

/// How often leaving backends are checked for their last request.
const SWEEP_EVERY: Duration = Duration::from_millis(50);

/// A burst of file events (an editor's save, our own rename) becomes one reload this long
/// after the last of them.
pub const WATCH_DEBOUNCE: Duration = Duration::from_millis(250);

/// Where the pool comes from and how it leaves.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// The pool file; `None` = the pool was given in code (changes stay in memory).
    pub file: Option<PoolFile>,
    /// Reload when the file changes.
    pub watch: bool,
    /// A leaving backend is dropped after this even with requests still in flight.
    pub drain_grace: Duration,
    /// Told when backends join or leave (the simulation).
    pub follower: Option<Recipient<PoolChanged>>,
    /// What pools take from the settings.
    pub defaults: PoolDefaults,
    /// `health.eject_*`: `None` = no outlier ejection.
    pub ejection: Option<Ejection>,
    /// `health.slow_start_secs`: `None` = a backend takes all its weight at once.
    pub slow_start: Option<Duration>,
    /// Told the pool file's text whenever it may have changed (a cluster sharing it).
    pub pool_file_news: Option<PoolFileNews>,
}

/// Actor that owns the pools ([`Pools`]) and the routes between them.
pub struct Registry {
    pub(super) pools: Arc<Pools>,
    /// Where changes are published.
    pub(super) events: Events,
    /// Consecutive proxy failures that take a backend out at once.
    pub(super) passive_failures: NonZeroU32,
    pub(super) options: PoolOptions,
    /// The next backend's id.
    pub(super) next_id: BackendId,
    /// Leaving backends and when they go at the latest.
    pub(super) leaving: HashMap<BackendId, Instant>,
    /// Members of pools a reload removed, and when they start leaving: a moment after the new
    /// routes are out, so a request that chose their pool just before still finds them.
    pub(super) retiring: Vec<(Instant, Arc<Member>)>,
    /// Kept alive while the actor runs.
    pub(super) _watch: Option<FileWatch>,
    /// The debounced reload waiting for the file to settle.
    pub(super) pending_reload: Option<SpawnHandle>,
    /// Ejections so far, when outlier ejection is on.
    pub(super) outliers: Option<Outliers>,
    /// Backends starting slowly, and since when.
    pub(super) ramping: HashMap<BackendId, Instant>,
    /// DNS entries whose last lookup failed (said once until one works).
    pub(super) dns_failing: HashSet<BackendId>,
}

impl Registry {
    /// Flips a backend's health; logs and publishes only a real change.
    fn set_health(&mut self, id: BackendId, healthy: bool, reason: &str) -> bool {
        let view = self.pools.load();
        let Some((pool, member)) = view.member(id) else {
            return false;
        };
        if !pool.set_health(id, healthy) {
            return false;
        }
        if healthy {
            self.start_ramp(pool, &member);
        }
        let backend = &member.backend;
        let (in_rotation, total) = (pool.healthy_count(), pool.len());
        let pool_name = backend.pool.to_string();
        let (name, url, reason_text) =
            (backend.name.clone(), backend.url.clone(), reason.to_owned());
        let event = if healthy {
            log::info!(
                "backend {backend} is UP again ({reason}); {in_rotation}/{total} backends of pool {pool_name} in rotation"
            );
            LbEvent::BackendUp {
                pool: pool_name,
                backend: name,
                url,
                reason: reason_text,
            }
        } else {
            if in_rotation == 0 {
                log::error!("backend {backend} is DOWN ({reason}); no backend of pool {pool_name} is left in rotation");
            } else {
                log::warn!(
                    "backend {backend} is DOWN ({reason}); traffic switches to the other {in_rotation}/{total} of pool {pool_name}"
                );
            }
            LbEvent::BackendDown {
                pool: pool_name,
                backend: name,
                url,
                reason: reason_text,
            }
        };
        self.events.publish(event);
        true
    }

    pub(super) fn tell_follower(&self, added: Vec<Arc<Backend>>, removed: Vec<Arc<Backend>>) {
        if let Some(follower) = &self.options.follower {
            follower.do_send(PoolChanged { added, removed });
        }
    }

    /// Drops leaving members whose last request ended or whose grace ran out, and retired pools
    /// left empty.
    fn sweep(&mut self) {
        if self.leaving.is_empty() {
            return;
        }
        let now = Instant::now();
        let view = self.pools.load();
        let mut gone = Vec::new();
        for pool in view.every_pool() {
            let (left, kept): (Vec<_>, Vec<_>) = pool.members().into_iter().partition(|m| {
                self.leaving
                    .get(&m.id())
                    .is_some_and(|deadline| m.in_flight() == 0 || now >= *deadline)
            });
            if !left.is_empty() {
                pool.publish(kept);
                gone.extend(left);
            }
        }
        if gone.is_empty() {
            return;
        }
        if view.retired().iter().any(|p| p.members().is_empty()) {
            let retired = view
                .retired()
                .iter()
                .filter(|p| !p.members().is_empty())
                .cloned()
                .collect();
            self.pools.publish(PoolsView::new(
                view.pools().to_vec(),
                retired,
                Arc::clone(view.routes()),
            ));
        }
        for member in &gone {
            self.forget(member);
        }
        self.tell_follower(
            Vec::new(),
            gone.iter().map(|m| Arc::clone(&m.backend)).collect(),
        );
    }

    /// Members of removed pools whose moment has come start leaving.
    fn retire_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.retiring = later;
        for (_, member) in due {
            self.start_leaving(&member, "its pool is no longer in the pool file");
        }
    }

    /// `member` left its pool: logged, published, and nothing kept about it.
    fn forget(&mut self, member: &Member) {
        self.leaving.remove(&member.id());
        self.ramping.remove(&member.id());
        if let Some(outliers) = self.outliers.as_mut() {
            outliers.forget(member.id());
        }
        let reason = if member.in_flight() == 0 {
            "its last request ended".to_owned()
        } else {
            format!(
                "the drain grace ran out with {} requests in flight",
                member.in_flight()
            )
        };
        log::info!(
            "backend {} ({}) left the pool: {reason}",
            member.backend.name,
            member.backend.url
        );
        self.events.publish(LbEvent::BackendRemoved {
            pool: member.backend.pool.to_string(),
            backend: member.backend.name.clone(),
            url: member.backend.url.clone(),
            reason,
        });
    }

    /// Starts the watch on the pool file (when asked for), telling `registry`.
    pub(super) fn watch(
        options: &PoolOptions,
        registry: Recipient<PoolFileTouched>,
    ) -> Option<FileWatch> {
        let file = options.file.as_ref().filter(|_| options.watch)?;
        file.watch(move || registry.do_send(PoolFileTouched))
            .inspect_err(|err| {
                log::warn!(
                    "cannot watch {file} for changes ({err}); reload with SIGHUP or POST /lb/api/reload"
                );
            })
            .ok()
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(SWEEP_EVERY, |registry, _| {
            registry.retire_due();
            registry.sweep();
        });
        self.start_ramps(ctx);
        self.tell_pool_file(false);
    }
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

//! The `Registry` actor: the only writer of the pool. It flips health (from the health checker,
//! and passively after `health.passive_failures` failed attempts in a row), applies changes from
//! the backends API and reloads, writes the pool file back, drains leaving backends out, and
//! logs and publishes each change once. Changes that write the file hold the actor until the
//! write is done, so two changes never interleave and the file always matches the pool.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, Recipient, SpawnHandle,
    WrapFuture,
};

use super::file::{self, FileEntry};
use super::member::{Member, MemberStatus};
use super::messages::{
    AddBackend, PoolChanged, PoolError, PoolFileTouched, Reload, ReloadReport, ReloadTrigger,
    RemoveBackend, ReportFailure, SetHealth, UpdateBackend,
};
use super::plan::{self, Plan, Planned, Running};
use super::rotation::Rotation;
use super::watch;
use crate::backend::{fill_names, Backend, BackendId, BackendSpec};
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
    pub file: Option<PathBuf>,
    /// Reload when the file changes.
    pub watch: bool,
    /// A leaving backend is dropped after this even with requests still in flight.
    pub drain_grace: Duration,
    /// Told when backends join or leave (the simulation).
    pub follower: Option<Recipient<PoolChanged>>,
}

/// Actor that owns the members of a [`Rotation`].
pub struct Registry {
    pub(super) rotation: Arc<Rotation>,
    /// Where changes are published.
    pub(super) events: Events,
    /// Consecutive proxy failures that take a backend out at once.
    pub(super) passive_failures: NonZeroU32,
    pub(super) options: PoolOptions,
    /// The next backend's id.
    pub(super) next_id: BackendId,
    /// Leaving backends and when they go at the latest.
    pub(super) leaving: HashMap<BackendId, Instant>,
    /// Kept alive while the actor runs.
    pub(super) _watch: Option<watch::FileWatch>,
    /// The debounced reload waiting for the file to settle.
    pub(super) pending_reload: Option<SpawnHandle>,
}

impl Registry {
    /// Flips a backend's health; logs and publishes only a real change.
    fn set_health(&mut self, id: BackendId, healthy: bool, reason: &str) -> bool {
        let Some(member) = self.rotation.member(id) else {
            return false;
        };
        if !self.rotation.set_health(id, healthy) {
            return false;
        }
        let backend = &member.backend;
        let in_rotation = self.rotation.healthy_count();
        let total = self.rotation.len();
        let (name, url, reason_text) =
            (backend.name.clone(), backend.url.clone(), reason.to_owned());
        let event = if healthy {
            log::info!(
                "backend {backend} is UP again ({reason}); {in_rotation}/{total} backends in rotation"
            );
            LbEvent::BackendUp {
                backend: name,
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
                backend: name,
                url,
                reason: reason_text,
            }
        };
        self.events.publish(event);
        true
    }

    /// The member called `name` that is not leaving.
    fn staying(&self, name: &str) -> Result<Arc<Member>, PoolError> {
        let member = self
            .rotation
            .members()
            .into_iter()
            .find(|m| m.backend.name == name)
            .ok_or_else(|| PoolError::NotFound(format!("No backend named {name:?}")))?;
        if member.is_leaving() {
            return Err(PoolError::NotFound(format!(
                "Backend {name:?} is leaving the pool"
            )));
        }
        Ok(member)
    }

    /// The pool file's entries for `members` (those not leaving), in order.
    fn file_entries(members: &[Arc<Member>]) -> Vec<FileEntry> {
        members
            .iter()
            .filter(|m| !m.is_leaving())
            .map(|m| FileEntry {
                url: m.backend.url.clone(),
                weight: m.weight(),
                name: m.backend.name.clone(),
            })
            .collect()
    }

    /// Writes `entries` to the pool file (if there is one) off the actor's thread; the actor
    /// waits for it (see [`AtomicResponse`]), then `apply` runs if the write succeeded.
    fn write_then<T: 'static>(
        &self,
        entries: Vec<FileEntry>,
        apply: impl FnOnce(&mut Self) -> Result<T, PoolError> + 'static,
    ) -> AtomicResponse<Self, Result<T, PoolError>> {
        let path = self.options.file.clone();
        let write = async move {
            let Some(path) = path else { return Ok(()) };
            let text = file::render(&entries);
            let shown = path.display().to_string();
            actix_rt::task::spawn_blocking(move || file::write_atomically(&path, &text))
                .await
                .map_err(|err| err.to_string())
                .and_then(|written| written.map_err(|err| err.to_string()))
                .map_err(|err| PoolError::Storage(format!("cannot write {shown}: {err}")))
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            |written, registry, _| {
                written.inspect_err(|err| log::error!("pool change refused: {err}"))?;
                apply(registry)
            },
        )))
    }

    /// A new member for `spec`, waiting for its first good probe.
    fn new_member(&mut self, spec: &BackendSpec, name: String) -> Arc<Member> {
        let id = self.next_id;
        self.next_id += 1;
        Arc::new(Member::new(
            Backend::from_spec(id, spec, name),
            spec.weight,
            false,
        ))
    }

    /// Starts `member` on its way out: drains now, leaves when idle or after the grace.
    fn start_leaving(&mut self, member: &Member, why: &str) {
        member.mark_leaving();
        self.leaving
            .insert(member.id(), Instant::now() + self.options.drain_grace);
        log::info!(
            "backend {} ({}) drains out of the pool ({why}); {} requests in flight",
            member.backend.name,
            member.backend.url,
            member.in_flight()
        );
        self.events.publish(LbEvent::BackendDraining {
            backend: member.backend.name.clone(),
            url: member.backend.url.clone(),
            draining: true,
        });
    }

    fn announce_added(&self, member: &Member, why: &str) {
        log::info!(
            "backend {} ({}) added with weight {} ({why}); it joins on its first good probe",
            member.backend.name,
            member.backend.url,
            member.weight()
        );
        self.events.publish(LbEvent::BackendAdded {
            backend: member.backend.name.clone(),
            url: member.backend.url.clone(),
            weight: member.weight(),
        });
        self.tell_follower(vec![Arc::clone(&member.backend)], Vec::new());
    }

    fn tell_follower(&self, added: Vec<Arc<Backend>>, removed: Vec<Arc<Backend>>) {
        if let Some(follower) = &self.options.follower {
            follower.do_send(PoolChanged { added, removed });
        }
    }

    /// Drops leaving members whose last request ended or whose grace ran out.
    fn sweep(&mut self) {
        if self.leaving.is_empty() {
            return;
        }
        let now = Instant::now();
        let members = self.rotation.members();
        let (gone, kept): (Vec<_>, Vec<_>) = members.into_iter().partition(|m| {
            self.leaving
                .get(&m.id())
                .is_some_and(|deadline| m.in_flight() == 0 || now >= *deadline)
        });
        if gone.is_empty() {
            return;
        }
        self.rotation.publish(kept);
        for member in &gone {
            self.leaving.remove(&member.id());
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
                backend: member.backend.name.clone(),
                url: member.backend.url.clone(),
                reason,
            });
        }
        self.tell_follower(
            Vec::new(),
            gone.iter().map(|m| Arc::clone(&m.backend)).collect(),
        );
    }

    /// Applies a reload's plan; returns what changed, by name.
    fn apply(&mut self, plan: Plan) -> ReloadReport {
        let current = self.rotation.members();
        let find = |id: BackendId| current.iter().find(|m| m.id() == id).cloned();
        let mut report = ReloadReport::default();
        let mut members = Vec::with_capacity(plan.entries.len());
        let mut added = Vec::new();
        for entry in plan.entries {
            match entry {
                Planned::Keep { id, weight } => {
                    let Some(member) = find(id) else { continue };
                    if member.is_leaving() {
                        self.leaving.remove(&id);
                        member.stay();
                    }
                    if member.set_weight(weight) {
                        self.announce_weight(&member);
                    }
                    members.push(member);
                }
                Planned::Add { spec, name } => {
                    let member = self.new_member(&spec, name);
                    report.added.push(member.backend.name.clone());
                    added.push(Arc::clone(&member));
                    members.push(member);
                }
            }
        }
        report.changed = plan
            .changed
            .iter()
            .filter_map(|id| find(*id))
            .map(|m| m.backend.name.clone())
            .collect();
        let removed: Vec<Arc<Member>> = plan.removed.iter().filter_map(|id| find(*id)).collect();
        let still_leaving: Vec<Arc<Member>> = current
            .iter()
            .filter(|m| m.is_leaving() && !members.iter().any(|k| k.id() == m.id()))
            .cloned()
            .collect();
        members.extend(still_leaving);
        members.extend(removed.iter().cloned());
        for member in &removed {
            self.start_leaving(member, "no longer in the pool file");
            report.removed.push(member.backend.name.clone());
        }
        self.rotation.publish(members);
        for member in &added {
            self.announce_added(member, "pool file reloaded");
        }
        report
    }

    fn announce_weight(&self, member: &Member) {
        log::info!(
            "backend {} ({}) now has weight {}",
            member.backend.name,
            member.backend.url,
            member.weight()
        );
        self.events.publish(LbEvent::BackendWeight {
            backend: member.backend.name.clone(),
            url: member.backend.url.clone(),
            weight: member.weight(),
        });
    }

    /// Logs and publishes a reload's outcome.
    fn report_reload(&self, trigger: ReloadTrigger, result: &Result<ReloadReport, PoolError>) {
        let (ok, report, error) = match result {
            Ok(report) if trigger == ReloadTrigger::Watch && report == &ReloadReport::default() => {
                log::debug!("pool file touched; nothing changed");
                return;
            }
            Ok(report) => {
                log::info!(
                    "pool reloaded ({}): added {:?}, removed {:?}, changed {:?}",
                    trigger.as_str(),
                    report.added,
                    report.removed,
                    report.changed
                );
                (true, report.clone(), None)
            }
            Err(err) => {
                log::error!(
                    "pool reload ({}) refused, the pool is unchanged: {err}",
                    trigger.as_str()
                );
                (false, ReloadReport::default(), Some(err.to_string()))
            }
        };
        self.events.publish(LbEvent::Reload {
            trigger: trigger.label(),
            ok,
            added: report.added,
            removed: report.removed,
            changed: report.changed,
            error,
        });
    }

    /// Starts the watch on the pool file (when asked for), telling `registry`.
    pub(super) fn watch(
        options: &PoolOptions,
        registry: Recipient<PoolFileTouched>,
    ) -> Option<watch::FileWatch> {
        let path = options.file.as_ref().filter(|_| options.watch)?;
        watch::FileWatch::start(path, registry)
            .inspect_err(|err| {
                log::warn!(
                    "cannot watch {} for changes ({err}); reload with SIGHUP or POST /lb/api/reload",
                    path.display()
                );
            })
            .ok()
    }

    /// The running pool as the reload plan sees it.
    fn running(&self) -> Vec<Running> {
        self.rotation
            .members()
            .iter()
            .map(|m| Running {
                id: m.id(),
                authority: m.backend.authority.to_string(),
                name: m.backend.name.clone(),
                weight: m.weight(),
                leaving: m.is_leaving(),
            })
            .collect()
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(SWEEP_EVERY, |registry, _| registry.sweep());
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

impl Handler<AddBackend> for Registry {
    type Result = AtomicResponse<Self, Result<MemberStatus, PoolError>>;

    fn handle(&mut self, msg: AddBackend, _: &mut Context<Self>) -> Self::Result {
        let members = self.rotation.members();
        let spec = msg.spec;
        let refused = |err| AtomicResponse::new(Box::pin(actix::fut::ready(Err(err))));
        if let Some(twin) = members
            .iter()
            .find(|m| m.backend.authority == spec.authority)
        {
            let how = if twin.is_leaving() {
                " (still draining out)"
            } else {
                ""
            };
            return refused(PoolError::Duplicate(format!(
                "{} is already in the pool as {:?}{how}",
                spec.url, twin.backend.name
            )));
        }
        if let Some(name) = &spec.name {
            if members.iter().any(|m| &m.backend.name == name) {
                return refused(PoolError::Duplicate(format!(
                    "The name {name:?} is already taken"
                )));
            }
        }
        let staying: Vec<&Arc<Member>> = members.iter().filter(|m| !m.is_leaving()).collect();
        let mut fixed: Vec<Option<String>> = staying
            .iter()
            .map(|m| Some(m.backend.name.clone()))
            .collect();
        fixed.push(spec.name.clone());
        let reserved: Vec<String> = members
            .iter()
            .filter(|m| m.is_leaving())
            .map(|m| m.backend.name.clone())
            .collect();
        let Some(name) = fill_names(&fixed, &reserved)
            .ok()
            .and_then(|mut names| names.pop())
        else {
            return refused(PoolError::Duplicate("The name is already taken".into()));
        };
        let mut entries = Self::file_entries(&members);
        entries.push(FileEntry {
            url: spec.url.clone(),
            weight: spec.weight,
            name: name.clone(),
        });
        self.write_then(entries, move |registry| {
            let member = registry.new_member(&spec, name);
            let mut members = registry.rotation.members();
            let first_leaving = members.iter().position(|m| m.is_leaving());
            members.insert(first_leaving.unwrap_or(members.len()), Arc::clone(&member));
            registry.rotation.publish(members);
            registry.announce_added(&member, "by the API");
            Ok(member.status())
        })
    }
}

impl Handler<UpdateBackend> for Registry {
    type Result = AtomicResponse<Self, Result<MemberStatus, PoolError>>;

    fn handle(&mut self, msg: UpdateBackend, _: &mut Context<Self>) -> Self::Result {
        let member = match self.staying(&msg.name) {
            Ok(member) => member,
            Err(err) => return AtomicResponse::new(Box::pin(actix::fut::ready(Err(err)))),
        };
        let weight = msg.weight.filter(|w| *w != member.weight());
        let mut entries = Self::file_entries(&self.rotation.members());
        if let Some((entry, weight)) = entries.iter_mut().find(|e| e.name == msg.name).zip(weight) {
            entry.weight = weight;
        }
        let entries = if weight.is_some() {
            entries
        } else {
            Vec::new()
        };
        let needs_write = weight.is_some();
        let apply = move |registry: &mut Self| {
            if let Some(weight) = weight {
                member.set_weight(weight);
                registry.announce_weight(&member);
            }
            if let Some(draining) = msg.draining {
                if member.set_draining(draining) {
                    let what = if draining {
                        "drains"
                    } else {
                        "takes requests again"
                    };
                    log::info!(
                        "backend {} ({}) {what} (by the API)",
                        member.backend.name,
                        member.backend.url
                    );
                    registry.events.publish(LbEvent::BackendDraining {
                        backend: member.backend.name.clone(),
                        url: member.backend.url.clone(),
                        draining,
                    });
                }
            }
            registry.rotation.rebuild();
            Ok(member.status())
        };
        if needs_write {
            self.write_then(entries, apply)
        } else {
            AtomicResponse::new(Box::pin(
                actix::fut::ready(()).map(move |(), registry: &mut Self, _| apply(registry)),
            ))
        }
    }
}

impl Handler<RemoveBackend> for Registry {
    type Result = AtomicResponse<Self, Result<MemberStatus, PoolError>>;

    fn handle(&mut self, msg: RemoveBackend, _: &mut Context<Self>) -> Self::Result {
        let member = match self.staying(&msg.name) {
            Ok(member) => member,
            Err(err) => return AtomicResponse::new(Box::pin(actix::fut::ready(Err(err)))),
        };
        let entries: Vec<FileEntry> = Self::file_entries(&self.rotation.members())
            .into_iter()
            .filter(|e| e.name != msg.name)
            .collect();
        self.write_then(entries, move |registry| {
            registry.start_leaving(&member, "removed by the API");
            let mut members = registry.rotation.members();
            members.retain(|m| m.id() != member.id());
            members.push(Arc::clone(&member));
            registry.rotation.publish(members);
            Ok(member.status())
        })
    }
}

impl Handler<Reload> for Registry {
    type Result = AtomicResponse<Self, Result<ReloadReport, PoolError>>;

    fn handle(&mut self, msg: Reload, _: &mut Context<Self>) -> Self::Result {
        let path = self.options.file.clone();
        let read = async move {
            let Some(path) = path else {
                return Err(PoolError::Config(
                    "There is no pool file to reload (the pool was given in code)".into(),
                ));
            };
            actix_rt::task::spawn_blocking(move || crate::settings::load_specs(&path))
                .await
                .map_err(|err| PoolError::Config(err.to_string()))?
                .map_err(|err| PoolError::Config(err.to_string()))
        };
        let trigger = msg.trigger;
        AtomicResponse::new(Box::pin(read.into_actor(self).map(
            move |specs, registry, _| {
                let result = specs.and_then(|specs| {
                    let origin = registry
                        .options
                        .file
                        .as_ref()
                        .map_or_else(String::new, |p| p.display().to_string());
                    plan::plan(&registry.running(), &specs)
                        .map_err(|(key, problem)| {
                            PoolError::Config(format!("{origin}: {key}: {problem}"))
                        })
                        .map(|plan| {
                            if plan.is_empty() {
                                ReloadReport::default()
                            } else {
                                registry.apply(plan)
                            }
                        })
                });
                registry.report_reload(trigger, &result);
                result
            },
        )))
    }
}

impl Handler<PoolFileTouched> for Registry {
    type Result = ();

    /// Debounces: the reload runs [`WATCH_DEBOUNCE`] after the last event of a burst.
    fn handle(&mut self, _: PoolFileTouched, ctx: &mut Context<Self>) {
        if let Some(pending) = self.pending_reload.take() {
            ctx.cancel_future(pending);
        }
        self.pending_reload = Some(ctx.run_later(WATCH_DEBOUNCE, |registry, ctx| {
            registry.pending_reload = None;
            ctx.address().do_send(Reload {
                trigger: ReloadTrigger::Watch,
            });
        }));
    }
}

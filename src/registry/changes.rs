//! The pool changes the [`Registry`] makes besides health: the backends API's add, update and
//! remove, reloads of the pool file (and the watch's debounce), and the drain of a backend on its
//! way out. Changes that alter the file's content write it first and apply only if that worked;
//! the actor waits for the write ([`AtomicResponse`]), so two changes never interleave and the
//! file always matches the pool.

use std::sync::Arc;
use std::time::Instant;

use actix::{ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, WrapFuture};

use super::actor::{Registry, WATCH_DEBOUNCE};
use super::member::{Member, MemberStatus};
use super::messages::{
    AddBackend, PoolError, PoolFileTouched, Reload, ReloadReport, ReloadTrigger, RemoveBackend,
    UpdateBackend,
};
use super::plan::{self, Plan, Planned, Running};
use crate::backend::{fill_names, Backend, BackendId, BackendSpec};
use crate::discovery::FileEntry;
use crate::events::LbEvent;

impl Registry {
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

    /// Writes `entries` to the pool file (if there is one, and something to write) off the
    /// actor's thread; the actor waits for it (see [`AtomicResponse`]), then `apply` runs if
    /// the write succeeded.
    fn write_then<T: 'static>(
        &self,
        entries: Option<Vec<FileEntry>>,
        apply: impl FnOnce(&mut Self) -> Result<T, PoolError> + 'static,
    ) -> AtomicResponse<Self, Result<T, PoolError>> {
        let file = self.options.file.clone();
        let write = async move {
            let (Some(file), Some(entries)) = (file, entries) else {
                return Ok(());
            };
            let shown = file.to_string();
            actix_rt::task::spawn_blocking(move || file.write(&entries))
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

    /// Drains `member` by hand, or stops draining it; says so when that is a change.
    fn set_draining(&self, member: &Member, draining: bool) {
        if !member.set_draining(draining) {
            return;
        }
        let what = if draining {
            "drains: no new requests"
        } else {
            "takes requests again"
        };
        log::info!(
            "backend {} ({}) {what} (by the API)",
            member.backend.name,
            member.backend.url
        );
        self.events.publish(LbEvent::BackendDraining {
            backend: member.backend.name.clone(),
            url: member.backend.url.clone(),
            draining,
        });
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

/// An immediate refusal, in the shape of the handlers that write the file.
fn refuse<T: 'static>(err: PoolError) -> AtomicResponse<Registry, Result<T, PoolError>> {
    AtomicResponse::new(Box::pin(actix::fut::ready(Err(err))))
}

impl Handler<AddBackend> for Registry {
    type Result = AtomicResponse<Self, Result<MemberStatus, PoolError>>;

    fn handle(&mut self, msg: AddBackend, _: &mut Context<Self>) -> Self::Result {
        let members = self.rotation.members();
        let spec = msg.spec;
        if let Some(twin) = members
            .iter()
            .find(|m| m.backend.authority == spec.authority)
        {
            let how = if twin.is_leaving() {
                " (still draining out)"
            } else {
                ""
            };
            return refuse(PoolError::Duplicate(format!(
                "{} is already in the pool as {:?}{how}",
                spec.url, twin.backend.name
            )));
        }
        if let Some(name) = &spec.name {
            if members.iter().any(|m| &m.backend.name == name) {
                return refuse(PoolError::Duplicate(format!(
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
            return refuse(PoolError::Duplicate("The name is already taken".into()));
        };
        let mut entries = Self::file_entries(&members);
        entries.push(FileEntry {
            url: spec.url.clone(),
            weight: spec.weight,
            name: name.clone(),
        });
        self.write_then(Some(entries), move |registry| {
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
            Err(err) => return refuse(err),
        };
        let weight = msg.weight.filter(|w| *w != member.weight());
        // Only a new weight changes the file; draining is run-time state.
        let entries = weight.map(|weight| {
            let mut entries = Self::file_entries(&self.rotation.members());
            for entry in entries.iter_mut().filter(|e| e.name == msg.name) {
                entry.weight = weight;
            }
            entries
        });
        self.write_then(entries, move |registry| {
            if let Some(weight) = weight {
                member.set_weight(weight);
                registry.announce_weight(&member);
            }
            if let Some(draining) = msg.draining {
                registry.set_draining(&member, draining);
            }
            registry.rotation.rebuild();
            Ok(member.status())
        })
    }
}

impl Handler<RemoveBackend> for Registry {
    type Result = AtomicResponse<Self, Result<MemberStatus, PoolError>>;

    fn handle(&mut self, msg: RemoveBackend, _: &mut Context<Self>) -> Self::Result {
        let member = match self.staying(&msg.name) {
            Ok(member) => member,
            Err(err) => return refuse(err),
        };
        let entries: Vec<FileEntry> = Self::file_entries(&self.rotation.members())
            .into_iter()
            .filter(|e| e.name != msg.name)
            .collect();
        self.write_then(Some(entries), move |registry| {
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
        let file = self.options.file.clone();
        let read = async move {
            let Some(file) = file else {
                return Err(PoolError::Config(
                    "There is no pool file to reload (the pool was given in code)".into(),
                ));
            };
            actix_rt::task::spawn_blocking(move || file.load())
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
                        .map_or_else(String::new, ToString::to_string);
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

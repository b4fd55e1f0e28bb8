//! Reloads of the pool file (SIGHUP, `POST /lb/api/reload`, the watch with its debounce): the
//! file read off the actor's thread, its difference planned ([`super::plan`]) and applied, the
//! outcome logged and published; a bad file changes nothing.

use std::sync::Arc;

use actix::{ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, WrapFuture};

use super::actor::{Registry, WATCH_DEBOUNCE};
use super::member::Member;
use super::messages::{PoolError, PoolFileTouched, Reload, ReloadReport, ReloadTrigger};
use super::plan::{self, Plan, Planned, Running};
use crate::backend::BackendId;
use crate::events::LbEvent;

impl Registry {
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

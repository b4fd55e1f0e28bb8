//! Reloads of the pool file (SIGHUP, `POST /lb/api/reload`, the watch with its debounce): the
//! file read off the actor's thread, its difference planned ([`super::plan`]) and applied, the
//! outcome logged and published; a bad file changes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, WrapFuture};

use super::actor::{Registry, WATCH_DEBOUNCE};
use super::discovered::{entry_members, Applied};
use super::member::Member;
use super::messages::{PoolError, PoolFileTouched, Reload, ReloadReport, ReloadTrigger};
use super::plan::{self, Plan, Planned, Running};
use super::pools::PoolsView;
use super::rotation::{PoolInfo, Rotation};
use crate::backend::{BackendId, DEFAULT_POOL};
use crate::discovery::{DnsEntry, PoolFileError, PoolSpec, Topology};
use crate::events::LbEvent;
use crate::route::RouteSpec;
use crate::routing::RouteTable;

/// A refusal: the path in the file, and the problem.
type Invalid = (String, String);

/// Whether `table` holds exactly `routes`, in order.
fn same_routes(table: &RouteTable, routes: &[RouteSpec]) -> bool {
    let running = table.routes();
    running.len() == routes.len() && running.iter().zip(routes).all(|(r, s)| r.spec == *s)
}

/// A pool of the new file, planned against the running one of its name (if any).
struct PoolPlan {
    spec: PoolSpec,
    running: Option<Arc<Rotation>>,
    plan: Plan,
}

/// How long the backends of a pool a reload removed go on taking requests, for those that
/// chose the pool just before the new routes were out.
const RETIRE_AFTER: Duration = Duration::from_millis(500);

impl Registry {
    /// Plans every pool of `topology` against the running ones; `Err` (nothing may change)
    /// names the entry.
    fn plan_pools(&self, view: &PoolsView, topology: Topology) -> Result<Vec<PoolPlan>, Invalid> {
        topology
            .pools
            .into_iter()
            .map(|spec| {
                let running = view.named(&spec.name).cloned();
                let members = running.as_ref().map(|p| p.members()).unwrap_or_default();
                let dns = running.as_ref().map(|p| p.info().dns.as_slice());
                let running_now = running_of(&members, dns.unwrap_or_default());
                let plan = plan::plan(&running_now, &spec.backends).map_err(|(key, problem)| {
                    let path = if spec.name == DEFAULT_POOL {
                        "backends".to_owned()
                    } else {
                        format!("pools.{}.backends", spec.name)
                    };
                    (key.replacen("backends", &path, 1), problem)
                })?;
                Ok(PoolPlan {
                    spec,
                    running,
                    plan,
                })
            })
            .collect()
    }

    /// Applies a reload: every pool's plan, pools gone from the file drained into retirement,
    /// the routes compiled against the new pools, all published as one view.
    fn apply(&mut self, plans: Vec<PoolPlan>, routes: Vec<RouteSpec>) -> ReloadReport {
        let view = self.pools.load();
        let mut report = ReloadReport::default();
        let mut pools = Vec::with_capacity(plans.len());
        for pool_plan in plans {
            pools.push(self.apply_pool(pool_plan, &mut report));
        }
        let mut retired: Vec<Arc<Rotation>> = view.retired().to_vec();
        let mut leaving = Vec::new();
        for old in view.pools() {
            if pools.iter().any(|p| p.name() == old.name()) {
                continue;
            }
            leaving.extend(old.members().into_iter().filter(|m| !m.is_leaving()));
            report.pools_removed.push(old.name().to_owned());
            retired.push(Arc::clone(old));
        }
        report.routes_changed = !same_routes(view.routes(), &routes);
        self.publish_view(pools, retired, routes);
        // A moment after the new routes are out: a request that chose a removed pool just
        // before still finds its backends taking requests.
        let at = Instant::now() + RETIRE_AFTER;
        for member in leaving {
            report.removed.push(qualified(&member));
            self.retiring.push((at, member));
        }
        report
    }

    /// One pool's plan applied; the pool as it runs now (the same one when its settings stayed).
    fn apply_pool(&mut self, pool_plan: PoolPlan, report: &mut ReloadReport) -> Arc<Rotation> {
        let PoolPlan {
            spec,
            running,
            plan,
        } = pool_plan;
        let current = running.as_ref().map(|p| p.members()).unwrap_or_default();
        let running_dns = running.as_ref().map(|p| p.info().dns.clone());
        let applied = self.members_of(
            &spec.name,
            &plan,
            (&current, running_dns.as_deref().unwrap_or_default()),
            running.is_none(),
            report,
        );
        let info =
            PoolInfo::new(&spec.name, spec.settings, &self.options.defaults).with_dns(applied.dns);
        let members = applied.members;
        let pool = match running {
            Some(pool) if *pool.info() == info => {
                pool.publish(members);
                pool
            }
            Some(previous) => {
                report.pools_changed.push(spec.name.clone());
                Arc::new(Rotation::succeeding(&previous, info, members))
            }
            None => {
                report.pools_added.push(spec.name.clone());
                Arc::new(Rotation::of_pool(info, members, &self.options.defaults))
            }
        };
        for member in &applied.added {
            self.announce_added(member, "pool file reloaded");
        }
        pool
    }

    /// Pool `name` after `plan`, from its `current` members and DNS entries: the members in file
    /// order (those on their way out last), the new ones among them, and the DNS entries. Kept
    /// members and entries take their new weight; removed ones start leaving.
    fn members_of(
        &mut self,
        name: &str,
        plan: &Plan,
        (current, running_dns): (&[Arc<Member>], &[DnsEntry]),
        new_pool: bool,
        report: &mut ReloadReport,
    ) -> Applied {
        let find = |id: BackendId| current.iter().find(|m| m.id() == id).cloned();
        let entry_of = |id: BackendId| running_dns.iter().find(|e| e.id == id);
        let pool_name: Arc<str> = name.into();
        let mut applied = Applied::default();
        for (position, entry) in plan.entries.iter().enumerate() {
            match entry {
                Planned::Keep {
                    id,
                    weight,
                    max_connections,
                } => {
                    if let Some(found) = entry_of(*id) {
                        let limits = (*weight, *max_connections);
                        let kept = self.keep_entry(found, position, limits, current, &mut applied);
                        applied.dns.push(kept);
                        continue;
                    }
                    let Some(member) = find(*id) else { continue };
                    self.keep(&member, *weight, *max_connections);
                    applied.members.push(member);
                }
                Planned::Add { spec, name } if spec.dns => {
                    report.added.push(qualified_name(&pool_name, name));
                    applied.dns.push(self.new_entry(spec, name, position));
                }
                Planned::Add { spec, name } => {
                    let member = self.new_member(&pool_name, spec, name.clone(), new_pool);
                    report.added.push(qualified(&member));
                    applied.added.push(Arc::clone(&member));
                    applied.members.push(member);
                }
            }
        }
        report.changed.extend(plan.changed.iter().filter_map(|id| {
            find(*id)
                .map(|m| qualified(&m))
                .or_else(|| entry_of(*id).map(|e| qualified_name(&pool_name, &e.name)))
        }));
        self.leave_removed(name, plan, (current, running_dns), &mut applied, report);
        applied
    }

    /// What `plan` removes starts leaving — members, and every member of a removed DNS entry —
    /// and goes last in `applied`, after those already on their way out.
    fn leave_removed(
        &mut self,
        pool: &str,
        plan: &Plan,
        (current, running_dns): (&[Arc<Member>], &[DnsEntry]),
        applied: &mut Applied,
        report: &mut ReloadReport,
    ) {
        let mut removed: Vec<Arc<Member>> = current
            .iter()
            .filter(|m| plan.removed.contains(&m.id()))
            .cloned()
            .collect();
        for entry in running_dns.iter().filter(|e| plan.removed.contains(&e.id)) {
            report.removed.push(qualified_name(pool, &entry.name));
            removed.extend(
                entry_members(current, &entry.spec)
                    .filter(|m| !m.is_leaving())
                    .cloned(),
            );
        }
        let still_leaving = current
            .iter()
            .filter(|m| m.is_leaving() && !applied.members.iter().any(|k| k.id() == m.id()))
            .cloned()
            .collect::<Vec<_>>();
        applied.members.extend(still_leaving);
        applied.members.extend(removed.iter().cloned());
        for member in &removed {
            self.start_leaving(member, "no longer in the pool file");
            if member.backend.address.is_none() {
                report.removed.push(qualified(member));
            }
        }
    }

    /// A member the new file keeps, with its weight and own limit from there (back from
    /// leaving, if it was).
    pub(super) fn keep(&mut self, member: &Member, weight: u32, max_connections: Option<u32>) {
        if member.is_leaving() {
            self.leaving.remove(&member.id());
            member.stay();
        }
        if member.set_weight(weight) {
            self.announce_weight(member);
        }
        member.set_own_limit(max_connections);
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
}

/// A backend's name in reports: `name` in the `default` pool, `pool/name` in others.
fn qualified(member: &Member) -> String {
    qualified_name(&member.backend.pool, &member.backend.name)
}

fn qualified_name(pool: &str, name: &str) -> String {
    if pool == DEFAULT_POOL {
        name.to_owned()
    } else {
        format!("{pool}/{name}")
    }
}

/// A running pool as the reload plan sees it: its members (those DNS found stand behind their
/// entry) and its DNS entries.
fn running_of(members: &[Arc<Member>], dns: &[DnsEntry]) -> Vec<Running> {
    let members = members
        .iter()
        .filter(|m| m.backend.address.is_none())
        .map(|m| Running {
            id: m.id(),
            authority: m.backend.authority.to_string(),
            name: m.backend.name.clone(),
            weight: m.weight(),
            max_connections: m.own_max_connections(),
            leaving: m.is_leaving(),
            dns: false,
        });
    let entries = dns.iter().map(|e| Running {
        id: e.id,
        authority: e.spec.authority.to_string(),
        name: e.name.clone(),
        weight: e.spec.weight,
        max_connections: e.spec.max_connections,
        leaving: false,
        dns: true,
    });
    members.chain(entries).collect()
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
                .map_err(|err: PoolFileError| PoolError::Config(err.to_string()))
        };
        let trigger = msg.trigger;
        AtomicResponse::new(Box::pin(read.into_actor(self).map(
            move |specs, registry, _| {
                let result = specs.and_then(|topology| {
                    let origin = registry
                        .options
                        .file
                        .as_ref()
                        .map_or_else(String::new, ToString::to_string);
                    let view = registry.pools.load();
                    let routes = topology.routes.clone();
                    registry
                        .plan_pools(&view, topology)
                        .map_err(|(key, problem)| {
                            PoolError::Config(format!("{origin}: {key}: {problem}"))
                        })
                        .map(|plans| {
                            let unchanged = plans.iter().all(|p| {
                                p.plan.is_empty()
                                    && p.running
                                        .as_ref()
                                        .is_some_and(|r| r.info().written == p.spec.settings)
                            }) && plans.len() == view.pools().len()
                                && same_routes(view.routes(), &routes);
                            if unchanged {
                                ReloadReport::default()
                            } else {
                                let report = registry.apply(plans, routes);
                                registry.tell_pool_file(trigger != ReloadTrigger::Cluster);
                                report
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

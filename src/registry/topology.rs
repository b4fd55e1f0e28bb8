//! The pools API's and the routes API's changes: a pool added, changed or removed, the routes
//! replaced. Like the backends API's ([`super::api`]), each is validated, written to the pool
//! file first and applied only if that worked, then logged and announced; pools and routes are
//! published together as one view ([`Registry::publish_view`]).

use std::sync::Arc;

use actix::{AtomicResponse, Context, Handler};

use super::actor::Registry;
use super::api::{file_entries, refuse, FileContent};
use super::member::Member;
use super::messages::{AddPool, PoolError, RemovePool, ReplaceRoutes, UpdatePool};
use super::pools::PoolsView;
use super::rotation::{PoolInfo, Rotation};
use crate::backend::DEFAULT_POOL;
use crate::discovery::fill_names;
use crate::discovery::{check_routes, FilePool};
use crate::events::LbEvent;
use crate::route::{RouteEntry, RouteSpec};

impl Registry {
    /// Publishes `pools` (put in order: `default` first, then by name) with `retired` ones and
    /// `routes` compiled against them; route counters carry over by name.
    pub(super) fn publish_view(
        &self,
        mut pools: Vec<Arc<Rotation>>,
        retired: Vec<Arc<Rotation>>,
        routes: Vec<RouteSpec>,
    ) {
        pools.sort_by(|a, b| {
            (a.name() != DEFAULT_POOL, a.name()).cmp(&(b.name() != DEFAULT_POOL, b.name()))
        });
        let previous = self.pools.load();
        let view = PoolsView::compiled(pools, retired, routes, Some(previous.routes()));
        self.pools.publish(view);
    }
}

/// The pool file for `pools` and `routes`.
pub(super) fn content(pools: &[Arc<Rotation>], routes: Vec<RouteEntry>) -> FileContent {
    let pools = pools
        .iter()
        .map(|p| FilePool {
            name: p.name().to_owned(),
            settings: p.info().written.clone(),
            entries: file_entries(p),
        })
        .collect();
    (pools, routes)
}

/// The running routes' specs, and as written.
fn routes_of(view: &PoolsView) -> (Vec<RouteSpec>, Vec<RouteEntry>) {
    let specs: Vec<RouteSpec> = view
        .routes()
        .routes()
        .iter()
        .map(|r| r.spec.clone())
        .collect();
    let entries = specs.iter().map(|s| s.entry.clone()).collect();
    (specs, entries)
}

impl Handler<AddPool> for Registry {
    type Result = AtomicResponse<Self, Result<Arc<Rotation>, PoolError>>;

    fn handle(&mut self, msg: AddPool, _: &mut Context<Self>) -> Self::Result {
        let view = self.pools.load();
        let spec = msg.spec;
        if let Some(taken) = view.every_pool().find(|p| p.name() == spec.name) {
            let draining = view.retired().iter().any(|p| Arc::ptr_eq(p, taken));
            let how = if draining {
                " (still draining out)"
            } else {
                ""
            };
            return refuse(PoolError::Duplicate(format!(
                "A pool named {:?} exists{how}",
                spec.name
            )));
        }
        let fixed: Vec<Option<String>> = spec.backends.iter().map(|b| b.name.clone()).collect();
        let names = match fill_names(&fixed, &[]) {
            Ok(names) => names,
            Err((_, second)) => {
                return refuse(PoolError::Invalid {
                    field: format!("backends[{second}].name"),
                    problem: "the name is already used by another backend of the pool".into(),
                })
            }
        };
        let pool_name: Arc<str> = spec.name.as_str().into();
        let (mut members, mut dns): (Vec<Arc<Member>>, _) = (Vec::new(), Vec::new());
        for (position, (backend, name)) in spec.backends.iter().zip(names).enumerate() {
            if backend.dns {
                dns.push(self.new_entry(backend, &name, position));
            } else {
                members.push(self.new_member(&pool_name, backend, name, true));
            }
        }
        let info = PoolInfo::new(&spec.name, spec.settings, &self.options.defaults).with_dns(dns);
        let pool = Arc::new(Rotation::of_pool(info, members, &self.options.defaults));
        let mut pools = view.pools().to_vec();
        pools.push(Arc::clone(&pool));
        let (routes, entries) = routes_of(&view);
        let retired = view.retired().to_vec();
        self.write_then(Some(content(&pools, entries)), move |registry| {
            registry.publish_view(pools, retired, routes);
            log::info!("pool {} added by the API", pool.name());
            for member in pool.members() {
                registry.announce_added(&member, "its pool was added by the API");
            }
            registry.announce_pool("added", pool.name());
            Ok(pool)
        })
    }
}

impl Handler<UpdatePool> for Registry {
    type Result = AtomicResponse<Self, Result<Arc<Rotation>, PoolError>>;

    fn handle(&mut self, msg: UpdatePool, _: &mut Context<Self>) -> Self::Result {
        let current = match self.pool(&msg.name) {
            Ok(pool) => pool,
            Err(err) => return refuse(err),
        };
        let info = PoolInfo::new(&msg.name, msg.settings, &self.options.defaults)
            .with_dns(current.info().dns.clone());
        if info == *current.info() {
            return refuse_nothing(current);
        }
        let view = self.pools.load();
        let pool = Arc::new(Rotation::succeeding(&current, info, current.members()));
        let pools: Vec<Arc<Rotation>> = view
            .pools()
            .iter()
            .map(|p| {
                if Arc::ptr_eq(p, &current) {
                    Arc::clone(&pool)
                } else {
                    Arc::clone(p)
                }
            })
            .collect();
        let (routes, entries) = routes_of(&view);
        let retired = view.retired().to_vec();
        self.write_then(Some(content(&pools, entries)), move |registry| {
            registry.publish_view(pools, retired, routes);
            let info = pool.info();
            log::info!(
                "pool {} changed by the API: {}, probes {}, {:?} Host",
                info.name,
                info.strategy,
                info.health_path,
                info.host_header
            );
            registry.announce_pool("changed", pool.name());
            Ok(pool)
        })
    }
}

/// An answer that changes nothing (a PATCH to the settings already in effect).
fn refuse_nothing(
    pool: Arc<Rotation>,
) -> AtomicResponse<Registry, Result<Arc<Rotation>, PoolError>> {
    AtomicResponse::new(Box::pin(actix::fut::ready(Ok(pool))))
}

impl Handler<RemovePool> for Registry {
    type Result = AtomicResponse<Self, Result<Arc<Rotation>, PoolError>>;

    fn handle(&mut self, msg: RemovePool, _: &mut Context<Self>) -> Self::Result {
        let pool = match self.pool(&msg.name) {
            Ok(pool) => pool,
            Err(err) => return refuse(err),
        };
        let view = self.pools.load();
        if let Some(route) = view
            .routes()
            .routes()
            .iter()
            .find(|r| r.spec.pool == msg.name)
        {
            return refuse(PoolError::Duplicate(format!(
                "Route {:?} sends requests to pool {:?}: change the routes first",
                route.spec.name, msg.name
            )));
        }
        let pools: Vec<Arc<Rotation>> = view
            .pools()
            .iter()
            .filter(|p| !Arc::ptr_eq(p, &pool))
            .cloned()
            .collect();
        let (routes, entries) = routes_of(&view);
        let mut retired = view.retired().to_vec();
        self.write_then(Some(content(&pools, entries)), move |registry| {
            for member in pool.members().iter().filter(|m| !m.is_leaving()) {
                registry.start_leaving(member, "its pool was removed by the API");
            }
            retired.push(Arc::clone(&pool));
            registry.publish_view(pools, retired, routes);
            log::info!(
                "pool {} removed by the API; its backends drain",
                pool.name()
            );
            registry.announce_pool("removed", pool.name());
            Ok(pool)
        })
    }
}

impl Handler<ReplaceRoutes> for Registry {
    type Result = AtomicResponse<Self, Result<(), PoolError>>;

    fn handle(&mut self, msg: ReplaceRoutes, _: &mut Context<Self>) -> Self::Result {
        let view = self.pools.load();
        let checked = check_routes(&msg.entries, |name| view.named(name).is_some());
        let routes = match checked {
            Ok(routes) => routes,
            Err((field, problem)) => return refuse(PoolError::Invalid { field, problem }),
        };
        let pools = view.pools().to_vec();
        let retired = view.retired().to_vec();
        let names: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
        self.write_then(Some(content(&pools, msg.entries)), move |registry| {
            registry.publish_view(pools, retired, routes);
            log::info!("routes replaced by the API: {names:?}");
            registry.events.publish(LbEvent::Routes { routes: names });
            Ok(())
        })
    }
}

impl Registry {
    fn announce_pool(&self, action: &'static str, pool: &str) {
        self.events.publish(LbEvent::Pool {
            action,
            pool: pool.to_owned(),
        });
    }
}

//! Every pool and the routes between them, as the workers see them: one immutable
//! [`PoolsView`] behind an atomic pointer, swapped whole by the registry when pools or routes
//! change (a reload swaps both at once). Membership and health changes within a pool go to
//! that pool's own [`Rotation`] and need no new view.

use std::sync::Arc;

use actix_web::http::header::HeaderMap;
use arc_swap::ArcSwap;

use super::member::{Member, MemberStatus};
use super::rotation::{PoolDefaults, PoolInfo, Rotation};
use crate::backend::{BackendId, DEFAULT_POOL};
use crate::discovery::dns::DnsTarget;
use crate::discovery::{DnsEntry, NamedTopology};
use crate::route::RouteSpec;
use crate::routing::{Route, RouteTable, Target};

/// One published state of the pools and routes.
#[derive(Debug, Default)]
pub struct PoolsView {
    /// The pools in service: `default` first, then by name.
    pools: Vec<Arc<Rotation>>,
    /// Pools removed whose members are still draining out: probed and shown, never routed to.
    retired: Vec<Arc<Rotation>>,
    routes: Arc<RouteTable>,
    /// Index of the `default` pool in `pools`.
    default: Option<usize>,
}

/// Where a request goes: a pool, and the route that chose it (none: the `default` pool).
pub struct Destination<'a> {
    pub pool: &'a Arc<Rotation>,
    pub route: Option<&'a Route>,
}

impl PoolsView {
    /// `pools` (in service, in order) and `retired` ones, with `routes` compiled against them.
    pub fn new(
        pools: Vec<Arc<Rotation>>,
        retired: Vec<Arc<Rotation>>,
        routes: Arc<RouteTable>,
    ) -> Self {
        let default = pools.iter().position(|p| p.name() == DEFAULT_POOL);
        Self {
            pools,
            retired,
            routes,
            default,
        }
    }

    /// `pools` and `retired` ones with `routes` compiled against them (each route to its pool's
    /// place); the counters of routes named in `previous` carry over.
    pub fn compiled(
        pools: Vec<Arc<Rotation>>,
        retired: Vec<Arc<Rotation>>,
        routes: Vec<RouteSpec>,
        previous: Option<&RouteTable>,
    ) -> Self {
        let place = |name: &str| {
            pools
                .iter()
                .position(|p| p.name() == name)
                .unwrap_or_default()
        };
        let table = RouteTable::compile(routes, place, previous);
        Self::new(pools, retired, Arc::new(table))
    }

    /// The pools in service, in order.
    pub fn pools(&self) -> &[Arc<Rotation>] {
        &self.pools
    }

    /// Pools in service, then retired ones.
    pub fn every_pool(&self) -> impl Iterator<Item = &Arc<Rotation>> {
        self.pools.iter().chain(&self.retired)
    }

    pub fn retired(&self) -> &[Arc<Rotation>] {
        &self.retired
    }

    pub fn routes(&self) -> &Arc<RouteTable> {
        &self.routes
    }

    /// The pool in service called `name`.
    pub fn named(&self, name: &str) -> Option<&Arc<Rotation>> {
        self.pools.iter().find(|p| p.name() == name)
    }

    pub fn default_pool(&self) -> Option<&Arc<Rotation>> {
        self.default.map(|at| &self.pools[at])
    }

    /// The route and pool for a request; `None` when no route matches and there is no
    /// `default` pool.
    pub fn destination(
        &self,
        host: Option<&str>,
        path: &str,
        method: &str,
        headers: &HeaderMap,
    ) -> Option<Destination<'_>> {
        if !self.routes.is_empty() {
            let target = Target {
                host,
                path,
                method,
                headers,
            };
            if let Some(route) = self.routes.select(&target) {
                let pool = &self.pools[route.pool];
                return Some(Destination {
                    pool,
                    route: Some(route),
                });
            }
        }
        self.default_pool()
            .map(|pool| Destination { pool, route: None })
    }

    /// The member with this id, in whichever pool, with its pool.
    pub fn member(&self, id: BackendId) -> Option<(&Arc<Rotation>, Arc<Member>)> {
        self.every_pool()
            .find_map(|pool| pool.member(id).map(|member| (pool, member)))
    }

    /// The pool in service holding DNS entry `entry`, with the entry.
    pub fn dns_entry(&self, entry: BackendId) -> Option<(&Arc<Rotation>, &DnsEntry)> {
        self.pools
            .iter()
            .find_map(|pool| Some((pool, pool.info().dns.iter().find(|e| e.id == entry)?)))
    }

    /// What DNS should be asked: every entry of the pools in service.
    pub fn dns_targets(&self) -> Vec<DnsTarget> {
        self.pools
            .iter()
            .flat_map(|pool| pool.info().dns.iter())
            .map(|entry| DnsTarget {
                entry: entry.id,
                host: entry
                    .spec
                    .authority
                    .host()
                    .trim_matches(['[', ']'])
                    .to_owned(),
            })
            .collect()
    }

    /// Every member's state, pool after pool.
    pub fn snapshot(&self) -> Vec<MemberStatus> {
        self.every_pool().flat_map(|pool| pool.snapshot()).collect()
    }
}

/// The shared, swappable pools and routes.
#[derive(Debug)]
pub struct Pools {
    view: ArcSwap<PoolsView>,
}

impl Pools {
    pub fn new(view: PoolsView) -> Self {
        Self {
            view: ArcSwap::from_pointee(view),
        }
    }

    /// The pools and routes of the pool file at start, every backend in rotation; pools take
    /// what they do not set from `defaults`.
    pub fn at_start(topology: &NamedTopology, defaults: &PoolDefaults) -> Self {
        let pools: Vec<Arc<Rotation>> = topology
            .pools
            .iter()
            .map(|pool| {
                let info = PoolInfo::new(&pool.name, pool.settings.clone(), defaults)
                    .with_dns(pool.dns.clone());
                let members = pool
                    .entries
                    .iter()
                    .map(|e| {
                        let member = Member::new(e.backend.clone(), e.weight, true);
                        Arc::new(member.with_own_limit(e.max_connections))
                    })
                    .collect();
                Arc::new(Rotation::of_pool(info, members, defaults))
            })
            .collect();
        let routes = topology.routes.clone();
        Self::new(PoolsView::compiled(pools, Vec::new(), routes, None))
    }

    /// The current view; it stays whole for as long as it is held.
    pub fn load(&self) -> Arc<PoolsView> {
        self.view.load_full()
    }

    /// Whether `view` is the one published now (a cheap check: no reference is counted).
    pub fn is_current(&self, view: &Arc<PoolsView>) -> bool {
        Arc::ptr_eq(&self.view.load(), view)
    }

    /// Publishes a new view. Registry only.
    pub(super) fn publish(&self, view: PoolsView) {
        self.view.store(Arc::new(view));
    }

    /// Every member's state, pool after pool.
    pub fn snapshot(&self) -> Vec<MemberStatus> {
        self.view.load().snapshot()
    }

    /// Whether a backend (of any pool) is in rotation.
    pub fn is_healthy(&self, id: BackendId) -> bool {
        self.view
            .load()
            .member(id)
            .is_some_and(|(_, m)| m.is_healthy())
    }
}

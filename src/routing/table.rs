//! The compiled routes. Every (route, host pattern) pair gets a rank from the contract's order;
//! the pairs are filed by host — an exact-host map, a map of wildcard suffixes (`.example.com`),
//! and the routes without hosts — and within each by path prefix: a map from prefix to its
//! pairs, searched by the prefix lengths that occur, longest first. A request looks up its host
//! and each of its suffixes, then at most one prefix per length, and keeps the best rank.

use std::cmp::Reverse;
use std::collections::HashMap as StdMap;
use std::sync::Arc;

use actix_web::http::header::HeaderMap;

use super::compiled::Route;
use crate::client::{Limits, RouteCharge};
use crate::route::{HostPattern, RouteSpec};

/// The table's maps: keyed by the operator's hosts and prefixes, hashed fast (see Cargo.toml).
type HashMap<K, V> = StdMap<K, V, foldhash::fast::RandomState>;

/// What a request offers to be matched: its host (normalised, see [`super::host`]), path
/// (before `?`), method and headers.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub method: &'a str,
    pub headers: &'a HeaderMap,
}

/// One (route, host pattern) pair and its place in the order.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    rank: u32,
    route: u32,
}

/// The candidates of one host (or of no host), by path prefix.
#[derive(Debug, Default)]
struct Group {
    /// Prefix (empty for routes without one) → candidates, best rank first.
    by_prefix: HashMap<Box<[u8]>, Vec<Candidate>>,
    /// Prefix lengths that occur, longest first.
    lengths: Vec<usize>,
    /// Every candidate has the same priority: the longest matching prefix decides, so the
    /// search stops there.
    one_priority: bool,
}

/// The routes of one pool file, compiled.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// File order.
    routes: Vec<Route>,
    exact: HashMap<Box<str>, Group>,
    suffixes: HashMap<Box<str>, Group>,
    any_host: Group,
}

impl RouteTable {
    /// Compiles `specs` (file order); `pool` gives each route's pool index. Counters of routes
    /// named in `previous` carry over.
    pub fn compile(
        specs: Vec<RouteSpec>,
        pool: impl Fn(&str) -> usize,
        previous: Option<&RouteTable>,
    ) -> Self {
        let routes: Vec<Route> = specs
            .into_iter()
            .map(|spec| Route {
                pool: pool(&spec.pool),
                bucket: RouteCharge {
                    route: spec.name.as_str().into(),
                    defaults: spec
                        .limits
                        .map(|limits| Limits::new(limits.capacity, limits.rate_per_sec)),
                },
                counters: previous
                    .and_then(|p| p.named(&spec.name))
                    .map_or_else(Arc::default, |r| Arc::clone(&r.counters)),
                spec,
            })
            .collect();
        let mut pairs: Vec<(u32, Option<&HostPattern>)> = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            let index = index as u32;
            if route.spec.hosts.is_empty() {
                pairs.push((index, None));
            }
            pairs.extend(route.spec.hosts.iter().map(|h| (index, Some(h))));
        }
        pairs.sort_by_key(|(index, host)| order_key(&routes[*index as usize].spec, *host, *index));
        let mut table = Self::default();
        for (rank, (index, host)) in pairs.into_iter().enumerate() {
            let group = match host {
                None => &mut table.any_host,
                Some(HostPattern::Exact(name)) => {
                    table.exact.entry(name.as_str().into()).or_default()
                }
                Some(HostPattern::Suffix(suffix)) => {
                    table.suffixes.entry(suffix.as_str().into()).or_default()
                }
            };
            let prefix = routes[index as usize]
                .spec
                .path_prefix
                .as_deref()
                .unwrap_or("");
            let candidate = Candidate {
                rank: rank as u32,
                route: index,
            };
            group
                .by_prefix
                .entry(prefix.as_bytes().into())
                .or_default()
                .push(candidate);
        }
        for group in table.groups_mut() {
            group.finish(&routes);
        }
        table.routes = routes;
        table
    }

    /// No routes: every request goes to the `default` pool.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every route, in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn named(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.spec.name == name)
    }

    /// The best route for `target`, if any matches.
    pub fn select(&self, target: &Target<'_>) -> Option<&Route> {
        let mut best: Option<Candidate> = None;
        if let Some(host) = target.host {
            if let Some(group) = self.exact.get(host) {
                self.search(group, target, &mut best);
            }
            if !self.suffixes.is_empty() {
                for (at, _) in host.match_indices('.') {
                    if let Some(group) = self.suffixes.get(&host[at..]) {
                        self.search(group, target, &mut best);
                    }
                }
            }
        }
        self.search(&self.any_host, target, &mut best);
        best.map(|c| &self.routes[c.route as usize])
    }

    /// Improves `best` with the best candidate of `group` that matches.
    fn search(&self, group: &Group, target: &Target<'_>, best: &mut Option<Candidate>) {
        let path = target.path.as_bytes();
        for &length in group.lengths.iter().filter(|l| **l <= path.len()) {
            let Some(candidates) = group.by_prefix.get(&path[..length]) else {
                continue;
            };
            let found = candidates
                .iter()
                .take_while(|c| best.is_none_or(|b| c.rank < b.rank))
                .find(|c| conditions_hold(&self.routes[c.route as usize].spec, target));
            if let Some(found) = found {
                *best = Some(*found);
                if group.one_priority {
                    return;
                }
            }
        }
    }

    fn groups_mut(&mut self) -> impl Iterator<Item = &mut Group> {
        self.exact
            .values_mut()
            .chain(self.suffixes.values_mut())
            .chain(std::iter::once(&mut self.any_host))
    }
}

impl Group {
    /// Orders the lengths and notes whether one priority holds for all.
    fn finish(&mut self, routes: &[Route]) {
        self.lengths = self.by_prefix.keys().map(|p| p.len()).collect();
        self.lengths.sort_unstable_by_key(|l| Reverse(*l));
        self.lengths.dedup();
        let mut priorities = self
            .by_prefix
            .values()
            .flatten()
            .map(|c| routes[c.route as usize].spec.priority);
        let first = priorities.next();
        self.one_priority = priorities.all(|p| Some(p) == first);
    }
}

/// The contract's order, best first: higher priority, exact host over wildcard over none,
/// longer prefix, more conditions (methods count as one, each header as one), file order.
fn order_key(
    spec: &RouteSpec,
    host: Option<&HostPattern>,
    index: u32,
) -> (
    Reverse<i32>,
    Reverse<u8>,
    Reverse<usize>,
    Reverse<usize>,
    u32,
) {
    let host_class = match host {
        Some(HostPattern::Exact(_)) => 2,
        Some(HostPattern::Suffix(_)) => 1,
        None => 0,
    };
    let prefix = spec.path_prefix.as_ref().map_or(0, String::len);
    let conditions = usize::from(!spec.methods.is_empty()) + spec.headers.len();
    (
        Reverse(spec.priority),
        Reverse(host_class),
        Reverse(prefix),
        Reverse(conditions),
        index,
    )
}

/// Indexes of `specs` in the order they are chosen, each route placed by its best host pattern
/// (what `--check` prints).
pub fn in_selection_order(specs: &[RouteSpec]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..specs.len()).collect();
    order.sort_by_key(|&i| {
        let best = specs[i]
            .hosts
            .iter()
            .find(|h| matches!(h, HostPattern::Exact(_)))
            .or(specs[i].hosts.first());
        order_key(&specs[i], best, i as u32)
    });
    order
}

/// The route's methods and headers hold for `target` (its host and prefix already did).
fn conditions_hold(spec: &RouteSpec, target: &Target<'_>) -> bool {
    (spec.methods.is_empty() || spec.methods.iter().any(|m| m == target.method))
        && spec.headers.iter().all(|condition| {
            target.headers.get(&condition.name).is_some_and(|value| {
                condition
                    .value
                    .as_ref()
                    .is_none_or(|wanted| wanted == value)
            })
        })
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;

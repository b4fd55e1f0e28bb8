//! A route of the running table: its validated spec, the index of its pool, its counters, and
//! the path it forwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::client::RouteCharge;
use crate::route::RouteSpec;

/// A route of the running table: its spec, the pool it sends to, its counters.
#[derive(Debug)]
pub struct Route {
    pub spec: RouteSpec,
    /// Its name and limits, for each client's bucket on it.
    pub bucket: RouteCharge,
    /// Index of its pool in the running pools.
    pub pool: usize,
    pub counters: Arc<RouteCounters>,
}

/// What a route has seen; kept across reloads by the route's name.
#[derive(Debug, Default)]
pub struct RouteCounters {
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
}

impl RouteCounters {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }
}

impl Route {
    /// The path to forward: without the route's prefix when it strips it (a leading `/` kept),
    /// the query unchanged. `path_and_query` is the request's.
    pub fn forwarded_path<'a>(&self, path_and_query: &'a str) -> std::borrow::Cow<'a, str> {
        let prefix = match (&self.spec.path_prefix, self.spec.strip_prefix) {
            (Some(prefix), true) => prefix.trim_end_matches('/'),
            _ => return path_and_query.into(),
        };
        let rest = path_and_query.get(prefix.len()..).unwrap_or_default();
        if rest.starts_with('/') {
            rest.into()
        } else {
            format!("/{rest}").into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::RouteEntry;

    fn stripping(prefix: &str) -> Route {
        let entry = RouteEntry {
            name: "r".into(),
            hosts: Vec::new(),
            path_prefix: Some(prefix.into()),
            methods: Vec::new(),
            headers: Default::default(),
            pool: "p".into(),
            strip_prefix: true,
            priority: 0,
            cost: None,
            limits: None,
        };
        Route {
            bucket: RouteCharge {
                route: "r".into(),
                defaults: None,
            },
            spec: entry.check().expect("valid"),
            pool: 0,
            counters: Arc::default(),
        }
    }

    /// The prefix goes, a leading `/` and the query stay; `/v1` and `/v1/` strip alike.
    #[test]
    fn strips_the_prefix_keeping_the_query() {
        let cases = [
            ("/v1/", "/v1/users?x=1", "/users?x=1"),
            ("/v1/", "/v1/", "/"),
            ("/v1", "/v1", "/"),
            ("/v1", "/v1?x=/v1", "/?x=/v1"),
            ("/v1", "/v1/a/b", "/a/b"),
            ("/v1", "/v1x", "/x"),
            ("/", "/a?b", "/a?b"),
        ];
        for (prefix, path, forwarded) in cases {
            assert_eq!(
                stripping(prefix).forwarded_path(path),
                forwarded,
                "{prefix} on {path}"
            );
        }
    }
}

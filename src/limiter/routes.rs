//! A shard's route buckets: one per (route with limits, client), beside the client's own
//! bucket in the same shard, so that both are checked and charged under one lock. A full bucket
//! carries no information and is swept; past the cap the least recently seen go first (on the
//! shard's thread, like the IP buckets).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::bucket::TokenBucket;
use crate::client::{ClientKey, Limits};

#[derive(Debug)]
struct Entry {
    bucket: TokenBucket,
    last_seen: Instant,
}

/// The route buckets of one shard.
#[derive(Debug)]
pub struct RouteBuckets {
    buckets: HashMap<(Arc<str>, ClientKey), Entry>,
    max_tracked: usize,
}

impl RouteBuckets {
    pub fn new(max_tracked: usize) -> Self {
        Self {
            buckets: HashMap::new(),
            max_tracked: max_tracked.max(1),
        }
    }

    /// `key`'s bucket on `route`, held to `limits` (a new one starts full; new limits apply
    /// at once, clamping but never refilling).
    pub fn bucket(
        &mut self,
        route: &Arc<str>,
        key: &ClientKey,
        limits: Limits,
        now: Instant,
    ) -> &mut TokenBucket {
        let entry = self
            .buckets
            .entry((Arc::clone(route), key.clone()))
            .or_insert_with(|| Entry {
                bucket: TokenBucket::new(limits, now),
                last_seen: now,
            });
        entry.last_seen = now;
        if entry.bucket.limits != limits {
            entry.bucket.set_limits(limits, now);
        }
        &mut entry.bucket
    }

    /// Whether a bucket for `key` on `route` would be new with the map at its cap (the eviction
    /// that makes room runs on the shard's thread, never a worker's).
    pub fn full_for(&self, route: &Arc<str>, key: &ClientKey) -> bool {
        self.buckets.len() >= self.max_tracked
            && !self.buckets.contains_key(&(Arc::clone(route), key.clone()))
    }

    /// Drops full buckets; returns how many went.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let before = self.buckets.len();
        self.buckets.retain(|_, entry| !entry.bucket.is_full(now));
        before - self.buckets.len()
    }

    /// Drops full buckets, then the least recently seen, until at most the cap remain.
    pub fn evict(&mut self, now: Instant) {
        if self.buckets.len() <= self.max_tracked {
            return;
        }
        self.sweep(now);
        let excess = self.buckets.len().saturating_sub(self.max_tracked);
        if excess == 0 {
            return;
        }
        let evict = (excess + self.max_tracked / 10).min(self.buckets.len());
        let mut by_age: Vec<(Instant, (Arc<str>, ClientKey))> = self
            .buckets
            .iter()
            .map(|(key, entry)| (entry.last_seen, key.clone()))
            .collect();
        by_age.select_nth_unstable_by_key(evict - 1, |(seen, _)| *seen);
        for (_, key) in &by_age[..evict] {
            self.buckets.remove(key);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Bucket, Charge, RouteCharge};
    use crate::limiter::map::BucketMap;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    fn charge(key: ClientKey, cost: u32, route: Option<(&str, u64)>) -> Charge {
        Charge {
            key,
            cost,
            route: route.map(|(name, capacity)| RouteCharge {
                route: name.into(),
                defaults: Some(Limits::new(capacity, 0.001)),
            }),
        }
    }

    /// A client with 10 tokens and a route bucket of 3: the route refuses the fourth request
    /// and the client's bucket is not charged for it; then the client's bucket refuses and the
    /// route's is not charged.
    #[test]
    fn both_buckets_or_neither() {
        let now = Instant::now();
        let mut map = BucketMap::new(Limits::new(10, 0.001), 100);
        let export = || charge(ip(1), 1, Some(("export", 3)));
        for _ in 0..3 {
            assert!(map.admit(&export(), now).allowed());
        }
        let refused = map.admit(&export(), now);
        assert!(!refused.allowed());
        assert_eq!(refused.tighter().0, Bucket::Route("export"));
        assert_eq!(
            refused.decision.remaining, 7,
            "the client's bucket was not charged"
        );
        let big = charge(ip(2), 8, Some(("heavy", 2)));
        assert!(map.admit(&big, now).allowed());
        let refused = map.admit(&big, now);
        assert_eq!(refused.tighter().0, Bucket::Client);
        let heavy = refused.route.expect("a route verdict");
        assert_eq!(
            heavy.decision.remaining, 1,
            "the route's bucket was not charged"
        );
    }

    /// A registered client's own limits on a route replace the route's; another client keeps
    /// the route's; a route without limits has a bucket only for clients with their own.
    #[test]
    fn a_client_s_own_limits_on_a_route_win() {
        let now = Instant::now();
        let mut map = BucketMap::new(Limits::new(100, 0.001), 100);
        map.upsert("gold", None, Limits::new(100, 0.001), now);
        let own = [
            ("search".to_owned(), Limits::new(5, 0.001)),
            ("open".to_owned(), Limits::new(1, 0.001)),
        ];
        map.set_routes("gold", own.into_iter().collect(), now);
        let gold = ClientKey::Registered("gold".into());
        let admitted = |map: &mut BucketMap, key: &ClientKey, route: Option<(&str, u64)>| {
            let mut charge = charge(key.clone(), 1, route);
            if route.is_some_and(|(_, capacity)| capacity == 0) {
                charge.route.as_mut().expect("route").defaults = None;
            }
            (0..10)
                .filter(|_| map.admit(&charge, now).allowed())
                .count()
        };
        assert_eq!(admitted(&mut map, &gold, Some(("search", 2))), 5);
        assert_eq!(admitted(&mut map, &ip(1), Some(("search", 2))), 2);
        assert_eq!(
            admitted(&mut map, &gold, Some(("open", 0))),
            1,
            "its own bucket on open"
        );
        assert_eq!(
            admitted(&mut map, &ip(1), Some(("open", 0))),
            10,
            "no bucket on open"
        );
    }

    /// `cost` takes that many tokens; 0 takes none; a cost above the capacity is never allowed.
    #[test]
    fn cost_takes_that_many_tokens() {
        let now = Instant::now();
        let mut map = BucketMap::new(Limits::new(10, 1.0), 100);
        let admitted = map.admit(&charge(ip(1), 4, None), now);
        assert_eq!((admitted.allowed(), admitted.decision.remaining), (true, 6));
        let free = map.admit(&charge(ip(1), 0, None), now);
        assert_eq!((free.allowed(), free.decision.remaining), (true, 6));
        let refused = map.admit(&charge(ip(1), 7, None), now);
        assert!(!refused.allowed());
        assert_eq!(refused.decision.retry_after, Duration::from_secs(1));
        assert!(!map.admit(&charge(ip(3), 11, None), now).allowed());
    }

    fn ip(n: u8) -> ClientKey {
        ClientKey::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)))
    }

    /// Each (route, client) has its own bucket; full ones are swept; the cap evicts the oldest.
    #[test]
    fn one_bucket_per_route_and_client() {
        let now = Instant::now();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let limits = Limits::new(2, 1.0);
        let mut buckets = RouteBuckets::new(3);
        assert!(
            buckets
                .bucket(&a, &ip(1), limits, now)
                .try_take(now)
                .allowed
        );
        assert!(
            buckets
                .bucket(&a, &ip(1), limits, now)
                .try_take(now)
                .allowed
        );
        assert!(
            !buckets
                .bucket(&a, &ip(1), limits, now)
                .try_take(now)
                .allowed
        );
        assert!(
            buckets
                .bucket(&b, &ip(1), limits, now)
                .try_take(now)
                .allowed
        );
        assert!(
            buckets
                .bucket(&a, &ip(2), limits, now)
                .try_take(now)
                .allowed
        );
        assert_eq!(buckets.len(), 3);
        assert!(buckets.full_for(&a, &ip(3)));
        assert!(!buckets.full_for(&a, &ip(2)));
        let later = now + std::time::Duration::from_secs(5);
        buckets.bucket(&b, &ip(3), limits, later).try_take(later);
        buckets.evict(later);
        assert!(buckets.len() <= 3);
        assert_eq!(
            buckets.sweep(later),
            buckets.len() - 1,
            "all but the newest are full"
        );
    }
}

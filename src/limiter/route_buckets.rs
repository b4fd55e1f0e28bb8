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
    use std::net::{IpAddr, Ipv4Addr};

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

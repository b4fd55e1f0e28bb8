//! A shard's route buckets: one per (route with limits, client), beside the client's own
//! bucket in the same shard, so that both are checked and charged under one lock. A full bucket
//! carries no information and is swept; past the cap the least recently seen go first (on the
//! shard's thread, like the IP buckets). The buckets of registered clients are saved with their
//! own levels (dirty ones at each flush) and restored at start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::bucket::TokenBucket;
use crate::client::{ClientKey, Limits};
use crate::persistence::RouteLevel;

#[derive(Debug)]
struct Entry {
    bucket: TokenBucket,
    last_seen: Instant,
    /// Charged since the last flush.
    dirty: bool,
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
                dirty: false,
            });
        entry.last_seen = now;
        entry.dirty = true;
        if entry.bucket.limits != limits {
            entry.bucket.set_limits(limits, now);
        }
        &mut entry.bucket
    }

    /// Puts back a registered client's bucket as it was saved.
    pub fn restore(&mut self, route: &str, id: &str, bucket: TokenBucket, now: Instant) {
        let key = (Arc::from(route), ClientKey::Registered(id.to_owned()));
        let entry = Entry {
            bucket,
            last_seen: now,
            dirty: false,
        };
        self.buckets.insert(key, entry);
    }

    /// The levels of registered clients' buckets charged since the last call (of the clients
    /// `registered` still knows); clears the marks.
    pub fn take_dirty(
        &mut self,
        now: Instant,
        registered: impl Fn(&str) -> bool,
    ) -> Vec<RouteLevel> {
        let mut levels = Vec::new();
        for ((route, key), entry) in &mut self.buckets {
            if !std::mem::take(&mut entry.dirty) {
                continue;
            }
            if let ClientKey::Registered(id) = key {
                if registered(id) {
                    levels.push(RouteLevel {
                        client_id: id.clone(),
                        route: route.to_string(),
                        limits: entry.bucket.limits,
                        tokens: entry.bucket.tokens(now),
                    });
                }
            }
        }
        levels
    }

    /// Marks levels as unsaved again (a flush failed).
    pub fn mark_dirty(&mut self, levels: &[RouteLevel]) {
        for level in levels {
            let key = (
                Arc::from(level.route.as_str()),
                ClientKey::Registered(level.client_id.clone()),
            );
            if let Some(entry) = self.buckets.get_mut(&key) {
                entry.dirty = true;
            }
        }
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

    /// Only registered clients' charged buckets are taken for saving, once, and only of
    /// clients still known; a failed flush marks them again.
    #[test]
    fn registered_levels_are_taken_once() {
        let now = Instant::now();
        let route: Arc<str> = "export".into();
        let limits = Limits::new(5, 1.0);
        let gold = ClientKey::Registered("gold".into());
        let gone = ClientKey::Registered("gone".into());
        let mut buckets = RouteBuckets::new(10);
        for key in [&gold, &gone, &ip(1)] {
            buckets.bucket(&route, key, limits, now).try_take(now);
        }
        let levels = buckets.take_dirty(now, |id| id == "gold");
        let taken: Vec<(&str, f64)> = levels
            .iter()
            .map(|l| (l.client_id.as_str(), l.tokens))
            .collect();
        assert_eq!(taken, [("gold", 4.0)]);
        assert!(buckets.take_dirty(now, |_| true).is_empty());
        buckets.mark_dirty(&levels);
        assert_eq!(buckets.take_dirty(now, |_| true), levels);
        let mut restored = RouteBuckets::new(10);
        restored.restore(
            "export",
            "gold",
            TokenBucket::with_tokens(limits, 1.0, now),
            now,
        );
        assert!(
            restored.take_dirty(now, |_| true).is_empty(),
            "restored is saved"
        );
        let bucket = restored.bucket(&route, &gold, limits, now);
        assert!(bucket.try_take(now).allowed && !bucket.try_take(now).allowed);
    }
}

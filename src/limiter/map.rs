//! One shard's buckets as plain data: registered clients (their limits, name and bucket; never
//! evicted) and unregistered peers by IP (default limits). A full, idle IP bucket carries no
//! information and is swept; past `max_tracked` IP buckets the least recently seen go first.
//! Registered clients whose level changed are marked dirty until the next flush.
//!
//! [`SharedMap`] is how a shard's map is held: by its actor and, for a single instance, by the
//! handlers, which admit under its lock on their own thread.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Instant;

use super::bucket::TokenBucket;
use super::route_buckets::RouteBuckets;
use crate::client::{Admission, Charge, ClientKey, ClientRecord, Limits};

#[derive(Debug)]
pub(super) struct Registered {
    pub(super) name: Option<String>,
    pub(super) bucket: TokenBucket,
    /// Its own limits on routes, by route name.
    pub(super) routes: BTreeMap<String, Limits>,
    /// Level changed since the last flush.
    pub(super) dirty: bool,
    /// When a rejection of this client was last reported for the log.
    pub(super) reported: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct Anonymous {
    pub(super) bucket: TokenBucket,
    pub(super) last_seen: Instant,
    pub(super) reported: Option<Instant>,
}

/// Rejections of one client are reported to the log at most this often.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a rejection at `now` should be logged, given the last one logged.
pub(super) fn report_due(reported: &mut Option<Instant>, allowed: bool, now: Instant) -> bool {
    let due =
        !allowed && reported.is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
    if due {
        *reported = Some(now);
    }
    due
}

/// Clients whose rejections decided elsewhere are remembered for reporting (bounded under
/// attack).
const MAX_REPORTED_ELSEWHERE: usize = 1024;

/// A shard's buckets.
#[derive(Debug)]
pub struct BucketMap {
    pub(super) defaults: Limits,
    max_tracked: usize,
    pub(super) registered: HashMap<String, Registered>,
    pub(super) anonymous: HashMap<IpAddr, Anonymous>,
    /// Each client's buckets on routes with limits.
    pub(super) routes: RouteBuckets,
    /// When a rejection decided elsewhere (Redis, in cluster mode) was last reported, per client.
    reported_elsewhere: HashMap<ClientKey, Instant>,
}

impl BucketMap {
    pub fn new(defaults: Limits, max_tracked: usize) -> Self {
        Self {
            defaults,
            max_tracked: max_tracked.max(1),
            registered: HashMap::new(),
            anonymous: HashMap::new(),
            routes: RouteBuckets::new(max_tracked),
            reported_elsewhere: HashMap::new(),
        }
    }

    /// The limits `key` is held to: a registered client's own, else the defaults.
    pub fn limits_for(&self, key: &ClientKey) -> Limits {
        match key {
            ClientKey::Registered(id) => self
                .registered
                .get(id)
                .map_or(self.defaults, |client| client.bucket.limits),
            ClientKey::Ip(_) => self.defaults,
        }
    }

    /// Whether a rejection decided elsewhere (in cluster mode, by Redis's bucket) is worth a
    /// log line (at most one a second per client).
    pub fn record_elsewhere(&mut self, key: &ClientKey, allowed: bool, now: Instant) -> bool {
        if allowed {
            return false;
        }
        let last = self.reported_elsewhere.get(key).copied();
        let room = last.is_some() || self.reported_elsewhere.len() < MAX_REPORTED_ELSEWHERE;
        let due = room && last.is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
        if due {
            self.reported_elsewhere.insert(key.clone(), now);
        }
        due
    }

    /// A fresh map for deciding alone while the shared buckets cannot be reached: every limit
    /// divided by `instances` (capacity at least 1; clients' own limits on routes too), registered
    /// clients kept, buckets full.
    pub fn divided(&self, instances: usize, now: Instant) -> BucketMap {
        let mut map = BucketMap::new(self.defaults.shared_by(instances), self.max_tracked);
        for (id, client) in &self.registered {
            let limits = client.bucket.limits.shared_by(instances);
            map.restore(
                ClientRecord {
                    client_id: id.clone(),
                    name: client.name.clone(),
                    limits,
                    tokens: limits.capacity as f64,
                    routes: (client.routes.iter())
                        .map(|(route, limits)| (route.clone(), limits.shared_by(instances)))
                        .collect(),
                },
                now,
            );
        }
        map
    }

    /// Takes what `charge` wants: `cost` tokens from the client's bucket and one from its bucket
    /// on the route, both or neither. A registered key that is not (or no longer) here falls
    /// back to a fresh bucket: the caller resolves keys, so this only happens in a race with a
    /// delete, and then the request is admitted rather than charged to a stranger.
    pub fn admit(&mut self, charge: &Charge, now: Instant) -> Admission {
        let admission = if charge.is_plain() {
            self.take(&charge.key, now)
        } else {
            self.take_routed(charge, now)
        };
        self.routes.evict(now);
        admission
    }

    /// [`Self::admit`], unless that would evict (a new IP or route bucket with the map at its
    /// cap): `None` then, so that the O(n) eviction pass runs on the shard's thread, never on a
    /// worker's.
    pub fn admit_without_evicting(&mut self, charge: &Charge, now: Instant) -> Option<Admission> {
        if let ClientKey::Ip(ip) = &charge.key {
            if self.anonymous.len() >= self.max_tracked && !self.anonymous.contains_key(ip) {
                return None;
            }
        }
        if let Some(route) = &charge.route {
            if self.routes.full_for(&route.route, &charge.key) {
                return None;
            }
        }
        Some(self.admit(charge, now))
    }

    /// Forgets when rejections decided elsewhere were reported (every minute, so the bounded
    /// record makes room for new clients).
    pub fn forget_reports(&mut self) {
        self.reported_elsewhere.clear();
    }

    fn take(&mut self, key: &ClientKey, now: Instant) -> Admission {
        match key {
            ClientKey::Registered(id) => match self.registered.get_mut(id) {
                Some(client) => {
                    client.dirty = true;
                    let decision = client.bucket.try_take(now);
                    Admission {
                        decision,
                        limits: client.bucket.limits,
                        report: report_due(&mut client.reported, decision.allowed, now),
                        route: None,
                    }
                }
                None => Admission {
                    decision: TokenBucket::new(self.defaults, now).try_take(now),
                    limits: self.defaults,
                    report: false,
                    route: None,
                },
            },
            ClientKey::Ip(ip) => {
                let defaults = self.defaults;
                let entry = self.anonymous.entry(*ip).or_insert_with(|| Anonymous {
                    bucket: TokenBucket::new(defaults, now),
                    last_seen: now,
                    reported: None,
                });
                entry.last_seen = now;
                let decision = entry.bucket.try_take(now);
                let report = report_due(&mut entry.reported, decision.allowed, now);
                if self.anonymous.len() > self.max_tracked {
                    self.evict_to(self.max_tracked, now);
                }
                Admission {
                    decision,
                    limits: defaults,
                    report,
                    route: None,
                }
            }
        }
    }

    /// Adds a client with a full bucket, or applies new limits to an existing one (a lowered
    /// capacity clamps its tokens, a raised one does not refill). Returns the record.
    pub fn upsert(
        &mut self,
        id: &str,
        name: Option<String>,
        limits: Limits,
        now: Instant,
    ) -> ClientRecord {
        let client = self
            .registered
            .entry(id.to_owned())
            .and_modify(|c| c.bucket.set_limits(limits, now))
            .or_insert_with(|| Registered {
                name: None,
                bucket: TokenBucket::new(limits, now),
                routes: BTreeMap::new(),
                dirty: true,
                reported: None,
            });
        client.name = name;
        client.dirty = true;
        record(id, client, now)
    }

    pub fn remove(&mut self, id: &str) -> bool {
        self.registered.remove(id).is_some()
    }

    pub fn get(&mut self, id: &str, now: Instant) -> Option<ClientRecord> {
        self.registered
            .get_mut(id)
            .map(|client| record(id, client, now))
    }

    pub fn list(&mut self, now: Instant) -> Vec<ClientRecord> {
        self.registered
            .iter_mut()
            .map(|(id, client)| record(id, client, now))
            .collect()
    }

    /// Drops full IP and route buckets (they carry no information); returns how many went.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let before = self.anonymous.len();
        self.anonymous.retain(|_, entry| !entry.bucket.is_full(now));
        before - self.anonymous.len() + self.routes.sweep(now)
    }

    /// Tracked buckets: registered clients and IPs.
    pub fn tracked(&self) -> (usize, usize) {
        (self.registered.len(), self.anonymous.len())
    }

    /// Drops full buckets, then the least recently seen, until `target` IP buckets remain.
    fn evict_to(&mut self, target: usize, now: Instant) {
        self.sweep(now);
        let excess = self.anonymous.len().saturating_sub(target);
        if excess == 0 {
            return;
        }
        // Evict a tenth more than needed so this O(n) pass does not run on every request.
        let evict = (excess + target / 10).min(self.anonymous.len());
        let mut by_age: Vec<(Instant, IpAddr)> = self
            .anonymous
            .iter()
            .map(|(ip, e)| (e.last_seen, *ip))
            .collect();
        by_age.select_nth_unstable(evict - 1);
        for (_, ip) in &by_age[..evict] {
            self.anonymous.remove(ip);
        }
    }
}

/// One shard's map behind a lock, shared by the shard's actor (admin writes, flushes, sweeps,
/// cluster mode) and the request handlers of a single instance, which take their tokens under
/// the lock on their own thread instead of a round trip to the shard's (docs/performance.md
/// has what that saves). Every admission of a client still goes through this one map, so the
/// limits are exactly those of the actor alone. The lock is held for one map operation at a
/// time, never across an await.
#[derive(Debug, Clone)]
pub struct SharedMap(Arc<Mutex<BucketMap>>);

impl SharedMap {
    pub fn new(map: BucketMap) -> Self {
        Self(Arc::new(Mutex::new(map)))
    }

    /// The map, once the lock is free. A panic while it was held leaves buckets that are each
    /// still whole, so a poisoned lock is taken over rather than passed on.
    pub fn lock(&self) -> MutexGuard<'_, BucketMap> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a token for `key` at once if the lock is free and no eviction is due; `None`
    /// otherwise (the shard's actor holds the lock for a sweep or a flush, or the other worker
    /// holds it this instant), and the charge goes to the actor, which never makes a worker wait.
    pub fn try_admit(&self, charge: &Charge, now: Instant) -> Option<Admission> {
        let mut map = match self.0.try_lock() {
            Ok(map) => map,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        map.admit_without_evicting(charge, now)
    }
}

pub(super) fn record(id: &str, client: &mut Registered, now: Instant) -> ClientRecord {
    ClientRecord {
        client_id: id.to_owned(),
        name: client.name.clone(),
        limits: client.bucket.limits,
        tokens: client.bucket.tokens(now),
        routes: client.routes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Charge;
    use std::time::Duration;

    fn limits(capacity: u64, rate_per_sec: f64) -> Limits {
        Limits::new(capacity, rate_per_sec)
    }

    fn ip(n: u32) -> ClientKey {
        ClientKey::Ip(IpAddr::from(n.to_be_bytes()))
    }

    /// IPs get the default limits; registered clients their own, independently.
    #[test]
    fn limits_each_client_on_its_own() {
        let now = Instant::now();
        let mut map = BucketMap::new(limits(2, 1.0), 100);
        map.upsert("gold", None, limits(5, 1.0), now);
        let gold = ClientKey::Registered("gold".into());
        let admitted_gold = (0..10)
            .filter(|_| {
                map.admit(&Charge::plain(gold.clone()), now)
                    .decision
                    .allowed
            })
            .count();
        let admitted_ip = (0..10)
            .filter(|_| {
                map.admit(&Charge::plain(ip(1).clone()), now)
                    .decision
                    .allowed
            })
            .count();
        assert_eq!((admitted_gold, admitted_ip), (5, 2));
        assert!(
            map.admit(&Charge::plain(ip(2).clone()), now)
                .decision
                .allowed,
            "another IP has its own bucket"
        );
    }

    /// Full idle IP buckets are swept; partly used ones stay; registered ones always stay.
    #[test]
    fn sweep_drops_only_full_anonymous_buckets() {
        let now = Instant::now();
        let mut map = BucketMap::new(limits(10, 1.0), 100);
        map.upsert("keep", None, limits(1, 1.0), now);
        map.admit(&Charge::plain(ip(1).clone()), now);
        map.admit(&Charge::plain(ip(2).clone()), now);
        assert_eq!(map.sweep(now), 0);
        assert_eq!(map.sweep(now + Duration::from_secs(2)), 2);
        assert_eq!(map.tracked(), (1, 0));
    }

    /// 100 000 one-off clients, then quiet: once their buckets are full again nothing is left.
    #[test]
    fn a_hundred_thousand_idle_clients_are_all_swept() {
        let start = Instant::now();
        let mut map = BucketMap::new(limits(5, 10.0), 1_000_000);
        for n in 0..100_000u32 {
            map.admit(&Charge::plain(ip(n).clone()), start);
        }
        assert_eq!(map.tracked(), (0, 100_000));
        assert_eq!(
            map.sweep(start + Duration::from_millis(50)),
            0,
            "not yet refilled"
        );
        assert_eq!(map.sweep(start + Duration::from_millis(100)), 100_000);
        assert_eq!(map.tracked(), (0, 0));
    }

    /// Past the cap the least recently seen IPs are evicted first.
    #[test]
    fn evicts_least_recently_seen_past_the_cap() {
        let start = Instant::now();
        let mut map = BucketMap::new(limits(10, 0.001), 100);
        for n in 0..150u32 {
            map.admit(
                &Charge::plain(ip(n).clone()),
                start + Duration::from_millis(u64::from(n)),
            );
        }
        let (_, tracked) = map.tracked();
        assert!(tracked <= 100, "{tracked} tracked");
        assert!(map
            .anonymous
            .contains_key(&IpAddr::from(149u32.to_be_bytes())));
        assert!(!map
            .anonymous
            .contains_key(&IpAddr::from(0u32.to_be_bytes())));
    }

    /// At the cap, a new IP is left to the shard's actor (the eviction pass is O(n)); known IPs
    /// and registered clients are still admitted at once.
    #[test]
    fn no_eviction_without_the_shard() {
        let now = Instant::now();
        let mut map = BucketMap::new(limits(10, 0.001), 3);
        map.upsert("known", None, limits(5, 0.001), now);
        for n in 0..3u32 {
            assert!(map
                .admit_without_evicting(&Charge::plain(ip(n).clone()), now)
                .is_some());
        }
        assert!(map
            .admit_without_evicting(&Charge::plain(ip(3).clone()), now)
            .is_none());
        assert_eq!(map.tracked(), (1, 3), "nothing evicted, nothing added");
        let again = map
            .admit_without_evicting(&Charge::plain(ip(0).clone()), now)
            .expect("known IP");
        assert_eq!(again.decision.remaining, 8);
        let registered = ClientKey::Registered("known".into());
        let admitted = map.admit_without_evicting(&Charge::plain(registered.clone()), now);
        assert_eq!(admitted.expect("registered").decision.remaining, 4);
    }

    /// A client hammering at a refused bucket is reported once a second, not per request.
    #[test]
    fn rejections_are_reported_at_most_once_a_second() {
        let now = Instant::now();
        let mut map = BucketMap::new(limits(1, 0.001), 100);
        map.admit(&Charge::plain(ip(1).clone()), now);
        let reports = (0..100)
            .filter(|_| map.admit(&Charge::plain(ip(1).clone()), now).report)
            .count();
        assert_eq!(reports, 1);
        assert!(
            map.admit(&Charge::plain(ip(1).clone()), now + Duration::from_secs(1))
                .report
        );
    }

    /// Deciding alone while Redis is down: every limit divided by the instances, registered
    /// clients kept, buckets full.
    #[test]
    fn divided_limits_for_deciding_alone() {
        let now = Instant::now();
        let mut map = BucketMap::new(limits(30, 9.0), 100);
        map.upsert("gold", Some("G".into()), limits(10, 3.0), now);
        map.upsert("tiny", None, limits(2, 1.0), now);
        let mut alone = map.divided(3, now);
        let gold = ClientKey::Registered("gold".into());
        assert_eq!(alone.limits_for(&gold), limits(3, 1.0));
        assert_eq!(alone.limits_for(&ip(1)), limits(10, 3.0));
        let tiny = ClientKey::Registered("tiny".into());
        assert_eq!(alone.limits_for(&tiny).capacity, 1, "never below one token");
        let admitted = (0..5)
            .filter(|_| {
                alone
                    .admit(&Charge::plain(gold.clone()), now)
                    .decision
                    .allowed
            })
            .count();
        assert_eq!(admitted, 3);
        assert_eq!(
            alone.get("gold", now).and_then(|c| c.name),
            Some("G".into())
        );
    }

    /// Decisions taken by Redis are reported like the map's own.
    #[test]
    fn rejections_decided_elsewhere_are_reported_once_a_second() {
        let now = Instant::now();
        let mut map = BucketMap::new(limits(1, 1.0), 100);
        assert!(!map.record_elsewhere(&ip(1), true, now));
        let reports = (0..10)
            .filter(|_| map.record_elsewhere(&ip(1), false, now))
            .count();
        assert_eq!(reports, 1);
        assert!(map.record_elsewhere(&ip(1), false, now + Duration::from_secs(1)));
    }

    /// Upserting new limits clamps; only touched clients are dirty, once.
    #[test]
    fn updates_and_dirty_tracking() {
        let now = Instant::now();
        let mut map = BucketMap::new(limits(10, 1.0), 100);
        map.upsert("a", Some("A".into()), limits(10, 1.0), now);
        map.upsert("b", None, limits(10, 1.0), now);
        assert_eq!(map.take_dirty(now).clients.len(), 2);
        assert!(map.take_dirty(now).is_empty());
        map.admit(
            &Charge::plain(ClientKey::Registered("a".into()).clone()),
            now,
        );
        let dirty = map.take_dirty(now);
        assert_eq!(dirty.clients, [("a".to_owned(), 9.0)]);
        let updated = map.upsert("a", None, limits(3, 1.0), now);
        assert_eq!((updated.tokens, updated.name), (3.0, None));
        assert!(map.remove("a"));
        assert!(!map.remove("a"));
    }
}

//! The pool as every worker sees it: an immutable [`PoolView`] (its members in pool order and
//! the strategy's [`Selection`] built from them) behind one atomic pointer. Workers pick and
//! count without a lock or a message round trip; the [`super::Registry`] actor alone changes
//! membership, health, weights and draining, and publishes a new view after each change, so
//! picks never see half a change.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::capacity::{Capacity, NoBackend, Waited};
use super::member::{Lease, Member, MemberStatus};
use super::selection::consistent_hash::ConsistentHash;
use super::selection::least_connections::LeastConnections;
use super::selection::power_of_two::PowerOfTwo;
use super::selection::round_robin::RoundRobin;
use super::selection::Selection;
use crate::backend::{BackendId, HostHeader};
use crate::discovery::{DnsEntry, PoolSettings};
use crate::strategy::Strategy;

/// One published state of the pool. Rebuilt (never edited) by the registry.
#[derive(Debug)]
struct PoolView {
    /// Pool order; members on their way out last.
    members: Vec<Arc<Member>>,
    /// The strategy, built from these members.
    selection: Box<dyn Selection>,
}

/// What a pool takes from the settings: where it sets nothing of its own (`strategy`,
/// `health_path`, `max_connections`), and the line and retry budget every pool has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDefaults {
    /// `backends.strategy`.
    pub strategy: Strategy,
    /// `health.path`.
    pub health_path: String,
    /// `backends.max_connections`; 0 = no limit.
    pub max_connections: u32,
    /// `backends.queue_size` / `queue_timeout_ms`.
    pub queue_size: usize,
    pub queue_timeout: Duration,
    /// `backends.retry_budget_percent`.
    pub retry_budget_percent: u32,
}

#[cfg(test)]
impl PoolDefaults {
    /// Those of `strategy`, probed on `/`, with no limits and no line.
    pub fn of_strategy(strategy: Strategy) -> Self {
        Self {
            strategy,
            health_path: "/".to_owned(),
            max_connections: 0,
            queue_size: 0,
            queue_timeout: Duration::from_secs(1),
            retry_budget_percent: 20,
        }
    }
}

/// What a pool is apart from its members: its name, and its settings as written and in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    pub name: Arc<str>,
    /// As the pool file writes them.
    pub written: PoolSettings,
    pub strategy: Strategy,
    /// Probed with `GET` on this path.
    pub health_path: Arc<str>,
    pub host_header: HostHeader,
    /// Requests in flight per backend at most, where an entry sets none; 0 = no limit.
    pub max_connections: u32,
    /// Entries whose members DNS finds (`"discovery": "dns"`), in file order.
    pub dns: Vec<DnsEntry>,
}

impl PoolInfo {
    /// The settings in effect for a pool `written` so: its own, else the `defaults`.
    pub fn new(name: &str, written: PoolSettings, defaults: &PoolDefaults) -> Self {
        Self {
            name: name.into(),
            strategy: written.strategy.unwrap_or(defaults.strategy),
            health_path: written
                .health_path
                .as_deref()
                .unwrap_or(&defaults.health_path)
                .into(),
            host_header: written.host_header,
            max_connections: written.max_connections.unwrap_or(defaults.max_connections),
            written,
            dns: Vec::new(),
        }
    }

    /// The same, with these DNS entries.
    pub fn with_dns(self, dns: Vec<DnsEntry>) -> Self {
        Self { dns, ..self }
    }
}

/// One pool: its members and the strategy that picks from them, swappable as a whole.
#[derive(Debug)]
pub struct Rotation {
    view: ArcSwap<PoolView>,
    info: PoolInfo,
    strategy: Strategy,
    /// Where round-robin (and least-connections' scan) goes on from; shared by every view so a
    /// rebuild does not restart the order.
    cursor: Arc<AtomicUsize>,
    /// The line and the retry budget; kept when the pool's settings change.
    capacity: Arc<Capacity>,
}

impl Rotation {
    /// The `default` pool of `members` (in order) with `defaults`.
    #[cfg(test)]
    pub fn new(members: Vec<Member>, defaults: &PoolDefaults) -> Self {
        let info = PoolInfo::new(
            crate::backend::DEFAULT_POOL,
            PoolSettings::default(),
            defaults,
        );
        let members = members.into_iter().map(Arc::new).collect();
        Self::of_pool(info, members, defaults)
    }

    /// The pool `info` of `members` (in order), with the line and budget of `defaults`.
    pub fn of_pool(info: PoolInfo, members: Vec<Arc<Member>>, defaults: &PoolDefaults) -> Self {
        let capacity = Capacity::new(
            defaults.queue_size,
            defaults.queue_timeout,
            defaults.retry_budget_percent,
        );
        Self::with_capacity(info, members, Arc::new(capacity))
    }

    /// The pool `info` of `members` taking over `previous`'s line and budget (its settings
    /// changed): requests waiting there are called by the new pool's leases.
    pub fn succeeding(previous: &Rotation, info: PoolInfo, members: Vec<Arc<Member>>) -> Self {
        let rotation = Self::with_capacity(info, members, Arc::clone(&previous.capacity));
        rotation.capacity.queue.call_all();
        rotation
    }

    fn with_capacity(info: PoolInfo, members: Vec<Arc<Member>>, capacity: Arc<Capacity>) -> Self {
        let cursor = Arc::new(AtomicUsize::new(0));
        let strategy = info.strategy;
        for member in &members {
            member.join(&capacity);
            member.apply_limit(info.max_connections);
        }
        Self {
            view: ArcSwap::from_pointee(view(members, strategy, &cursor)),
            info,
            strategy,
            cursor,
            capacity,
        }
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    pub fn info(&self) -> &PoolInfo {
        &self.info
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The backend for the next attempt, skipping `exclude` (backends this request already
    /// tried) and every member that is down, draining or at its limit; `affinity` is the
    /// client's hash for `consistent_hash` (without one it falls back to round-robin). The
    /// returned [`Lease`] counts the attempt as in flight until it is dropped. Never waits,
    /// and takes nothing of the retry budget (a retry after a refused connect uses it: the
    /// request never reached a backend, so it adds no load).
    pub fn pick(&self, exclude: &[BackendId], affinity: Option<u64>) -> Result<Lease, NoBackend> {
        self.lease(exclude, affinity, false)
    }

    /// The first attempt's backend: at once when one has room and nobody waits, else after a
    /// wait in the pool's line (`backends.queue_size`, `queue_timeout_ms`).
    pub async fn pick_or_wait(&self, affinity: Option<u64>) -> Waited<Lease> {
        self.capacity
            .pick_or_wait(|| self.lease(&[], affinity, false))
            .await
    }

    /// A retry's backend, within the pool's retry budget ([`NoBackend::OverBudget`] when it is
    /// spent); never waits.
    pub fn pick_retry(
        &self,
        tried: &[BackendId],
        affinity: Option<u64>,
    ) -> Result<Lease, NoBackend> {
        let in_flight = self.view.load().members.iter().map(|m| m.in_flight()).sum();
        if !self.capacity.try_retry(in_flight) {
            return Err(NoBackend::OverBudget);
        }
        let picked = self.lease(tried, affinity, true);
        if picked.is_err() {
            self.capacity.retry_ended();
        }
        picked
    }

    fn lease(
        &self,
        exclude: &[BackendId],
        affinity: Option<u64>,
        retry: bool,
    ) -> Result<Lease, NoBackend> {
        let view = self.view.load();
        // Another worker may take a member's last slot between the selection and the lease:
        // then select again (the member is full now, so it is skipped).
        for _ in 0..=view.members.len() {
            let Some(at) = view.selection.select(&view.members, exclude, affinity) else {
                break;
            };
            if let Some(lease) = view.members[at].lease(retry) {
                return Ok(lease);
            }
        }
        let busy = view
            .members
            .iter()
            .any(|m| m.takes_requests() && !m.has_room() && !exclude.contains(&m.id()));
        Err(if busy {
            NoBackend::Busy
        } else {
            NoBackend::Unavailable
        })
    }

    /// Requests waiting in the pool's line.
    pub fn queue_len(&self) -> usize {
        self.capacity.queue.len()
    }

    /// Replaces the pool with `members` (in order) and publishes the new view; requests in line
    /// look again (a member may have come up, joined or got more room). Registry only.
    pub(super) fn publish(&self, members: Vec<Arc<Member>>) {
        for member in &members {
            member.join(&self.capacity);
            member.apply_limit(self.info.max_connections);
        }
        self.view
            .store(Arc::new(view(members, self.strategy, &self.cursor)));
        self.capacity.queue.call_all();
    }

    /// Puts a backend in or out of rotation; returns whether its state changed. Registry only.
    pub(super) fn set_health(&self, id: BackendId, healthy: bool) -> bool {
        let changed = self.member(id).is_some_and(|m| m.set_health(healthy));
        if changed {
            self.rebuild();
        }
        changed
    }

    /// Publishes the current members again, after a flag or weight of one of them changed.
    pub(super) fn rebuild(&self) {
        self.publish(self.members());
    }

    /// Every member, in pool order (those on their way out last).
    pub fn members(&self) -> Vec<Arc<Member>> {
        self.view.load().members.clone()
    }

    /// Every member's state, in pool order.
    pub fn snapshot(&self) -> Vec<MemberStatus> {
        self.view
            .load()
            .members
            .iter()
            .map(|m| m.status())
            .collect()
    }

    /// The member with this id.
    pub fn member(&self, id: BackendId) -> Option<Arc<Member>> {
        self.view
            .load()
            .members
            .iter()
            .find(|m| m.id() == id)
            .cloned()
    }

    /// Members in the pool, healthy or not, not counting those on their way out.
    pub fn len(&self) -> usize {
        self.view
            .load()
            .members
            .iter()
            .filter(|m| !m.is_leaving())
            .count()
    }

    /// Members currently taking requests.
    pub fn healthy_count(&self) -> usize {
        self.view
            .load()
            .members
            .iter()
            .filter(|m| m.takes_requests())
            .count()
    }
}

/// The view of `members` with `strategy`'s selection built from them.
fn view(members: Vec<Arc<Member>>, strategy: Strategy, cursor: &Arc<AtomicUsize>) -> PoolView {
    let cursor = Arc::clone(cursor);
    let selection: Box<dyn Selection> = match strategy {
        Strategy::RoundRobin => Box::new(RoundRobin::new(&members, cursor)),
        Strategy::LeastConnections => Box::new(LeastConnections::new(cursor)),
        Strategy::PowerOfTwo => Box::new(PowerOfTwo),
        Strategy::ConsistentHash => Box::new(ConsistentHash::new(&members, cursor)),
    };
    PoolView { members, selection }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::backend::Backend;
    use crate::registry::member::{FailureKind, Outcome};

    fn weighted(weights: &[u32], strategy: Strategy) -> Rotation {
        let members = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let url = format!("http://127.0.0.1:{}", 9001 + i);
                Member::new(Backend::parse(i, &url).expect("valid"), *w, true)
            })
            .collect();
        Rotation::new(members, &PoolDefaults::of_strategy(strategy))
    }

    fn rotation(n: usize) -> Rotation {
        weighted(&vec![1; n], Strategy::RoundRobin)
    }

    fn picks(rotation: &Rotation, n: usize) -> Vec<BackendId> {
        (0..n)
            .map(|_| {
                let lease = rotation.pick(&[], None).expect("a healthy backend");
                lease.record(Outcome::Responded);
                lease.backend.id
            })
            .collect()
    }

    /// Three healthy backends are used in strict rotation.
    #[test]
    fn rotates_strictly_over_healthy_backends() {
        let rotation = rotation(3);
        assert_eq!(picks(&rotation, 7), [0, 1, 2, 0, 1, 2, 0]);
    }

    /// A backend that goes down is skipped; the others keep alternating; it rejoins in its place.
    #[test]
    fn skips_a_down_backend_and_takes_it_back_in_turn() {
        let rotation = rotation(3);
        assert_eq!(picks(&rotation, 1), [0]);
        assert!(rotation.set_health(1, false));
        assert_eq!(picks(&rotation, 4), [2, 0, 2, 0]);
        assert!(rotation.set_health(1, true));
        assert_eq!(picks(&rotation, 6), [1, 2, 0, 1, 2, 0]);
    }

    /// Nothing healthy means no pick, and nothing is counted.
    #[test]
    fn picks_nothing_when_all_are_down() {
        let rotation = rotation(2);
        rotation.set_health(0, false);
        rotation.set_health(1, false);
        assert_eq!(rotation.pick(&[], None).err(), Some(NoBackend::Unavailable));
        assert!(rotation.snapshot().iter().all(|m| m.requests == 0));
        assert_eq!(rotation.healthy_count(), 0);
    }

    /// A retry excludes the backends already tried, and gives up when they are all tried.
    #[test]
    fn excludes_backends_already_tried() {
        let rotation = rotation(3);
        let first = rotation.pick(&[], None).expect("first").backend.id;
        let second = rotation.pick(&[first], None).expect("second").backend.id;
        let third = rotation
            .pick(&[first, second], None)
            .expect("third")
            .backend
            .id;
        assert_eq!([first, second, third], [0, 1, 2]);
        assert!(rotation.pick(&[0, 1, 2], None).is_err());
    }

    /// Counters follow picks and outcomes; a lease is in flight until dropped; setting the same
    /// health twice is no change.
    #[test]
    fn counts_requests_failures_and_in_flight() {
        let rotation = rotation(1);
        let first = rotation.pick(&[], None).expect("pick");
        let second = rotation.pick(&[], None).expect("pick");
        assert_eq!(rotation.snapshot()[0].in_flight, 2);
        assert_eq!(first.record(Outcome::Failed(FailureKind::Connect)), 1);
        assert_eq!(second.record(Outcome::Failed(FailureKind::Timeout)), 2);
        assert_eq!(
            rotation.snapshot()[0].in_flight,
            2,
            "recording does not end the attempt"
        );
        drop((first, second));
        let status = &rotation.snapshot()[0];
        assert_eq!(
            (status.requests, status.failures, status.in_flight),
            (2, 2, 0)
        );
        let third = rotation.pick(&[], None).expect("pick");
        assert_eq!(third.record(Outcome::Responded), 0);
        assert_eq!(rotation.snapshot()[0].consecutive_failures, 0);
        assert!(!rotation.set_health(0, true));
        assert!(!rotation.set_health(7, false));
    }

    /// Picks from several threads at once still share the load exactly evenly.
    #[test]
    fn concurrent_picks_stay_exactly_fair() {
        let rotation = Arc::new(rotation(3));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let rotation = Arc::clone(&rotation);
                std::thread::spawn(move || {
                    for _ in 0..3000 {
                        let lease = rotation.pick(&[], None).expect("pick");
                        lease.record(Outcome::Responded);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("picker thread");
        }
        let counts: Vec<u64> = rotation.snapshot().iter().map(|m| m.requests).collect();
        assert_eq!(counts, [4000, 4000, 4000]);
    }

    /// Weights 3:1 over 400 picks: exactly 300 and 100, never more than three in a row.
    #[test]
    fn weights_give_exact_interleaved_shares() {
        let rotation = weighted(&[3, 1], Strategy::RoundRobin);
        let order = picks(&rotation, 400);
        assert_eq!(order.iter().filter(|id| **id == 0).count(), 300);
        let longest = order
            .chunk_by(|a, b| a == b)
            .map(<[BackendId]>::len)
            .max()
            .expect("picks");
        assert!(longest <= 3, "a run of {longest}");
        assert_eq!(&order[..4], [0, 0, 1, 0]);
    }

    /// Least-connections sends new requests where fewest are in flight per weight, and goes
    /// round in pool order on ties.
    #[test]
    fn least_connections_follows_in_flight_per_weight() {
        let rotation = weighted(&[1, 1, 2], Strategy::LeastConnections);
        let pick = |r: &Rotation| r.pick(&[], None).expect("pick");
        let ties: Vec<BackendId> = (0..3).map(|_| pick(&rotation).backend.id).collect();
        assert_eq!(ties, [0, 1, 2], "idle: round in pool order");
        let held: Vec<Lease> = (0..4).map(|_| pick(&rotation)).collect();
        let per_backend = |id| held.iter().filter(|l| l.backend.id == id).count();
        // 4 picks over weights 1, 1, 2 with nothing else in flight: 1, 1, 2.
        assert_eq!((per_backend(0), per_backend(1), per_backend(2)), (1, 1, 2));
        drop(held);
        let slow = pick(&rotation);
        let others: Vec<BackendId> = (0..6)
            .map(|_| pick(&rotation).backend.id)
            .filter(|id| *id == slow.backend.id)
            .collect();
        assert!(
            others.is_empty(),
            "the busy backend was picked while others were idle"
        );
    }

    /// Power of two never picks a member that is down, and spreads over the others.
    #[test]
    fn power_of_two_picks_only_members_taking_requests() {
        let rotation = weighted(&[1, 1, 1], Strategy::PowerOfTwo);
        assert!(rotation.set_health(0, false));
        let picked: std::collections::HashSet<BackendId> =
            picks(&rotation, 60).into_iter().collect();
        assert_eq!(picked, [1, 2].into_iter().collect());
    }

    /// Consistent hashing keeps a key on one backend, moves it clockwise while that one is down,
    /// and brings it back.
    #[test]
    fn consistent_hash_is_sticky_and_fails_over() {
        let rotation = weighted(&[1, 1, 1], Strategy::ConsistentHash);
        let key = super::super::selection::consistent_hash::hash_bytes(b"client-7");
        let owner = rotation.pick(&[], Some(key)).expect("pick").backend.id;
        for _ in 0..20 {
            assert_eq!(
                rotation.pick(&[], Some(key)).expect("pick").backend.id,
                owner
            );
        }
        assert!(rotation.set_health(owner, false));
        let fallback = rotation.pick(&[], Some(key)).expect("pick").backend.id;
        assert_ne!(fallback, owner);
        assert!(rotation.set_health(owner, true));
        assert_eq!(
            rotation.pick(&[], Some(key)).expect("pick").backend.id,
            owner
        );
        let spread: std::collections::HashSet<BackendId> = (0..60_u8)
            .map(|k| {
                let key = super::super::selection::consistent_hash::hash_bytes(&[k]);
                rotation.pick(&[], Some(key)).expect("pick").backend.id
            })
            .collect();
        assert_eq!(spread.len(), 3, "keys spread over every backend");
    }

    /// A member at its limit is skipped; with every member at its limit the pool is busy (not
    /// unavailable); an ended lease makes room again. The pool's limit applies where the entry
    /// sets none, the entry's own (0 = none) wins.
    #[test]
    fn members_at_their_limit_are_skipped_then_busy() {
        let defaults = PoolDefaults {
            max_connections: 1,
            ..PoolDefaults::of_strategy(Strategy::RoundRobin)
        };
        let member = |i: usize, own: Option<u32>| {
            let url = format!("http://127.0.0.1:{}", 9001 + i);
            Member::new(Backend::parse(i, &url).expect("valid"), 1, true).with_own_limit(own)
        };
        let rotation = Rotation::new(vec![member(0, None), member(1, Some(2))], &defaults);
        let held: Vec<Lease> = (0..3)
            .map(|_| rotation.pick(&[], None).expect("room"))
            .collect();
        let on = |id| held.iter().filter(|l| l.backend.id == id).count();
        assert_eq!((on(0), on(1)), (1, 2));
        assert_eq!(rotation.pick(&[], None).err(), Some(NoBackend::Busy));
        assert_eq!(
            rotation.pick(&[0, 1], None).err(),
            Some(NoBackend::Unavailable)
        );
        drop(held);
        assert!(rotation.pick(&[], None).is_ok());
        let unlimited = Rotation::new(vec![member(0, Some(0))], &defaults);
        let many: Vec<Lease> = (0..5)
            .map(|_| unlimited.pick(&[], None).expect("no limit"))
            .collect();
        assert_eq!(many.len(), 5);
    }

    /// A draining member takes no new request, and takes them again when it stops draining.
    #[test]
    fn draining_members_are_skipped() {
        let rotation = rotation(2);
        let member = rotation.member(0).expect("member 0");
        member.set_draining(true);
        rotation.rebuild();
        assert_eq!(picks(&rotation, 3), [1, 1, 1]);
        member.set_draining(false);
        rotation.rebuild();
        assert_eq!(picks(&rotation, 4).iter().filter(|id| **id == 0).count(), 2);
    }
}

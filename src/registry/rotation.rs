//! The pool as every worker sees it: an immutable [`PoolView`] (its members in pool order and
//! the strategy's precomputed choice — the smooth round-robin cycle, the hash ring) behind one
//! atomic pointer, plus the shared round-robin cursor. Workers pick and count without a lock or
//! a message round trip (measured: a cross-thread actor hop per request cost ~30% of throughput
//! on two cores); the [`super::Registry`] actor alone changes membership, health, weights and
//! draining, and publishes a new view after each change, so picks never see half a change.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::member::{Lease, Member, MemberStatus};
use super::strategy::{less_loaded, smooth_cycle, two_distinct, Ring};
use crate::backend::{BackendId, Strategy};

/// One published state of the pool. Rebuilt (never edited) by the registry.
#[derive(Debug, Default)]
struct PoolView {
    /// Pool order; members on their way out last.
    members: Vec<Arc<Member>>,
    /// Round-robin: one smooth weighted cycle over the members taking requests when it was
    /// built (indices into `members`).
    cycle: Vec<u32>,
    /// Consistent hash: every member not leaving, healthy or not, so a health flip moves no
    /// other backend's keys.
    ring: Ring,
}

impl PoolView {
    fn build(members: Vec<Arc<Member>>, strategy: Strategy) -> Self {
        let takers: Vec<(usize, u32)> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.takes_requests())
            .map(|(i, m)| (i, m.weight()))
            .collect();
        let weights: Vec<u32> = takers.iter().map(|t| t.1).collect();
        let cycle = smooth_cycle(&weights)
            .into_iter()
            .map(|k| takers[k as usize].0 as u32)
            .collect();
        let ring = if strategy == Strategy::ConsistentHash {
            let staying: Vec<(&str, u32)> = members
                .iter()
                .filter(|m| !m.is_leaving())
                .map(|m| (m.backend.url.as_str(), m.weight()))
                .collect();
            let mut ring_members = Ring::build(&staying);
            // Ring indices count staying members; map them back to pool positions.
            let positions: Vec<u32> = (0..members.len() as u32)
                .filter(|i| !members[*i as usize].is_leaving())
                .collect();
            ring_members.renumber(&positions);
            ring_members
        } else {
            Ring::default()
        };
        Self {
            members,
            cycle,
            ring,
        }
    }
}

/// The shared, swappable pool and the strategy that picks from it.
#[derive(Debug)]
pub struct Rotation {
    view: ArcSwap<PoolView>,
    strategy: Strategy,
    /// Round-robin position in the current cycle (and the start of least-connections' scan);
    /// kept across views so a rebuild does not restart the order.
    cursor: AtomicUsize,
}

/// Whether `member` may take this request.
fn eligible(member: &Member, exclude: &[BackendId]) -> bool {
    member.takes_requests() && !exclude.contains(&member.id())
}

impl Rotation {
    /// A pool of `members` (in order) picked from by `strategy`.
    pub fn new(members: Vec<Member>, strategy: Strategy) -> Self {
        let members = members.into_iter().map(Arc::new).collect();
        Self {
            view: ArcSwap::from_pointee(PoolView::build(members, strategy)),
            strategy,
            cursor: AtomicUsize::new(0),
        }
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The backend for the next attempt, skipping `exclude` (backends this request already
    /// tried) and every member that is down or draining; `affinity` is the client's hash for
    /// `consistent_hash` (without one it falls back to round-robin). The returned [`Lease`]
    /// counts the attempt as in flight until it is dropped; `None` when no backend can take it.
    pub fn pick(&self, exclude: &[BackendId], affinity: Option<u64>) -> Option<Lease> {
        let view = self.view.load();
        let member = match (self.strategy, affinity) {
            (Strategy::RoundRobin, _) | (Strategy::ConsistentHash, None) => {
                self.round_robin(&view, exclude)
            }
            (Strategy::LeastConnections, _) => self.least_connections(&view, exclude),
            (Strategy::PowerOfTwo, _) => {
                power_of_two(&view, exclude, &mut |n| fastrand::usize(..n))
            }
            (Strategy::ConsistentHash, Some(key)) => view
                .ring
                .owner(key, |i| eligible(&view.members[i as usize], exclude))
                .map(|i| &view.members[i as usize]),
        }?;
        Some(member.lease())
    }

    /// The next eligible member of the smooth cycle after the last one picked. Concurrent picks
    /// are ordered by a compare-and-swap on the cursor, so the order is strict across workers.
    fn round_robin<'v>(
        &self,
        view: &'v PoolView,
        exclude: &[BackendId],
    ) -> Option<&'v Arc<Member>> {
        let len = view.cycle.len();
        let mut start = self.cursor.load(Ordering::Relaxed);
        loop {
            let position = (0..len)
                .map(|step| (start + step) % len)
                .find(|&p| eligible(&view.members[view.cycle[p] as usize], exclude))?;
            match self.cursor.compare_exchange_weak(
                start,
                position + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(&view.members[view.cycle[position] as usize]),
                Err(now) => start = now,
            }
        }
    }

    /// The eligible member with the fewest requests in flight per weight; the scan starts one
    /// further each time, so ties go round in pool order.
    fn least_connections<'v>(
        &self,
        view: &'v PoolView,
        exclude: &[BackendId],
    ) -> Option<&'v Arc<Member>> {
        let len = view.members.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<&Arc<Member>> = None;
        for step in 0..len {
            let member = &view.members[(start + step) % len];
            if eligible(member, exclude)
                && best.is_none_or(|b| less_loaded(member.load(), b.load()))
            {
                best = Some(member);
            }
        }
        best
    }

    /// Replaces the pool with `members` (in order) and publishes the new view. Registry only.
    pub(super) fn publish(&self, members: Vec<Arc<Member>>) {
        self.view
            .store(Arc::new(PoolView::build(members, self.strategy)));
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

    /// Whether a backend is in rotation.
    pub fn is_healthy(&self, id: BackendId) -> bool {
        self.member(id).is_some_and(|m| m.is_healthy())
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

/// Two random eligible members; the less loaded one (the first drawn on a tie).
fn power_of_two<'v>(
    view: &'v PoolView,
    exclude: &[BackendId],
    random: &mut impl FnMut(usize) -> usize,
) -> Option<&'v Arc<Member>> {
    let nth = |n: usize| view.members.iter().filter(|m| eligible(m, exclude)).nth(n);
    let count = view.members.iter().filter(|m| eligible(m, exclude)).count();
    match count {
        0 => None,
        1 => nth(0),
        _ => {
            let (a, b) = two_distinct(count, random);
            let (a, b) = (nth(a)?, nth(b)?);
            Some(if less_loaded(b.load(), a.load()) {
                b
            } else {
                a
            })
        }
    }
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
        Rotation::new(members, strategy)
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
        assert!(rotation.pick(&[], None).is_none());
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
        assert!(rotation.pick(&[0, 1, 2], None).is_none());
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

    /// Power of two: of the two drawn, the one with less in flight per weight wins; the first
    /// drawn wins ties; down members are never drawn.
    #[test]
    fn power_of_two_takes_the_less_loaded_of_two() {
        let rotation = weighted(&[1, 1, 1], Strategy::PowerOfTwo);
        let view = rotation.view.load();
        let busy = view.members[0].lease();
        let mut draws = [0, 0].into_iter();
        let chosen = power_of_two(&view, &[], &mut |_| draws.next().expect("two draws"));
        assert_eq!(chosen.map(|m| m.id()), Some(1), "0 is busy, 1 is idle");
        let mut draws = [1, 1].into_iter();
        let chosen = power_of_two(&view, &[], &mut |_| draws.next().expect("two draws"));
        assert_eq!(
            chosen.map(|m| m.id()),
            Some(1),
            "1 and 2 idle: the first drawn"
        );
        drop(busy);
        let chosen = power_of_two(&view, &[0, 1], &mut |_| unreachable!("one left"));
        assert_eq!(chosen.map(|m| m.id()), Some(2));
        assert!(power_of_two(&view, &[0, 1, 2], &mut |_| 0).is_none());
    }

    /// Consistent hashing keeps a key on one backend, moves it clockwise while that one is down,
    /// and brings it back.
    #[test]
    fn consistent_hash_is_sticky_and_fails_over() {
        let rotation = weighted(&[1, 1, 1], Strategy::ConsistentHash);
        let key = super::super::strategy::hash_bytes(b"client-7");
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
                let key = super::super::strategy::hash_bytes(&[k]);
                rotation.pick(&[], Some(key)).expect("pick").backend.id
            })
            .collect();
        assert_eq!(spread.len(), 3, "keys spread over every backend");
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

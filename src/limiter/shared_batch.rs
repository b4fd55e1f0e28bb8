//! How cluster mode's shard decides a batch: [`plan`] splits it between what the leases answer
//! now, one lease ask to Redis per other client and the routed charges ([`super::routed`]);
//! [`settle`] answers the waiting requests from Redis's grants; [`alone`] decides while Redis
//! is down, as `cluster.on_redis_down` says.

use std::time::{Duration, Instant};

use super::map::BucketMap;
use super::routed::{self, RoutedGroup};
use crate::client::{Admission, Charge, ClientKey, Decision, Limits};
use crate::cluster::lease::{Ask, Grant, LeaseBook};
use crate::settings::OnRedisDown;

/// What a shard holds between asks to Redis.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) leases: LeaseBook,
    /// While Redis is down under `on_redis_down = "local"`: buckets with every limit divided by
    /// the instances last seen (and that count, to notice a change).
    pub(super) alone: Option<(usize, BucketMap)>,
}

/// One client's asks of a batch that go to Redis: the key, its limits, and the positions of
/// its requests in the batch.
pub(super) type Pending = (ClientKey, Limits, Vec<usize>);

/// A batch split by [`plan`]: what the leases answered, and what Redis is to be asked.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) answers: Vec<Option<Admission>>,
    pub(super) pending: Vec<Pending>,
    pub(super) asks: Vec<(ClientKey, Limits, Ask)>,
    pub(super) routed: Vec<RoutedGroup>,
}

/// Splits a batch: the asks the leases answer now (or refuse, while Redis said the bucket is
/// empty), one ask to Redis per other client, for all its requests of the batch, and the routed
/// charges, grouped.
pub(super) fn plan(
    leases: &mut LeaseBook,
    map: &mut BucketMap,
    charges: Vec<Charge>,
    now: Instant,
) -> Batch {
    let mut answers: Vec<Option<Admission>> = vec![None; charges.len()];
    let mut pending: Vec<Pending> = Vec::new();
    let mut routed = Vec::new();
    for (at, charge) in charges.into_iter().enumerate() {
        if routed::is_routed(map, &charge) {
            routed.push((at, charge));
            continue;
        }
        let key = charge.key;
        let limits = map.limits_for(&key);
        if let Some(decision) = leases.take(&key, now) {
            answers[at] = Some(judged(map, &key, decision, limits, now));
            continue;
        }
        match pending.iter_mut().find(|(waiting, _, _)| *waiting == key) {
            Some((_, _, positions)) => positions.push(at),
            None => pending.push((key, limits, vec![at])),
        }
    }
    let asks = pending
        .iter()
        .map(|(key, limits, positions)| {
            let ask = leases.ask(key, positions.len() as u64, *limits, now);
            (key.clone(), *limits, ask)
        })
        .collect();
    Batch {
        answers,
        pending,
        asks,
        routed: routed::group(map, routed),
    }
}

/// Redis's `grants` (one per ask of `batch`, in order) answer the requests waiting on them;
/// what is left of each grant is held as a lease.
pub(super) fn settle(
    leases: &mut LeaseBook,
    map: &mut BucketMap,
    batch: &mut Batch,
    grants: Vec<Grant>,
    now: Instant,
) {
    let asked = batch.asks.iter().zip(grants).zip(&batch.pending);
    for (((key, limits, ask), grant), (_, _, positions)) in asked {
        let waiting = positions.len() as u64;
        let decisions = leases.grant(key, *ask, grant, waiting, *limits, now);
        for (at, decision) in positions.iter().zip(decisions) {
            batch.answers[*at] = Some(judged(map, key, decision, *limits, now));
        }
    }
}

/// Decides `charges` without Redis, as `policy` says; Redis's buckets are the truth again when
/// it returns, so every lease is dropped. Under `local`, a route's limits are divided too.
pub(super) fn alone(
    held: &mut Held,
    map: &mut BucketMap,
    policy: OnRedisDown,
    instances: usize,
    charges: &[Charge],
    now: Instant,
) -> Vec<Option<Admission>> {
    if !held.leases.is_empty() {
        held.leases.clear();
    }
    match policy {
        OnRedisDown::Allow => charges
            .iter()
            .map(|charge| {
                let limits = map.limits_for(&charge.key);
                let decision = Decision {
                    allowed: true,
                    remaining: limits.capacity,
                    retry_after: Duration::ZERO,
                };
                Some(Admission {
                    decision,
                    limits,
                    report: false,
                    route: None,
                })
            })
            .collect(),
        OnRedisDown::Deny => vec![None; charges.len()],
        OnRedisDown::Local => {
            if held.alone.as_ref().map(|(n, _)| *n) != Some(instances) {
                held.alone = Some((instances, map.divided(instances, now)));
            }
            let Some((_, divided)) = held.alone.as_mut() else {
                return Vec::new();
            };
            charges
                .iter()
                .map(|charge| Some(divided.admit(&shared_by(charge, instances), now)))
                .collect()
        }
    }
}

/// `charge` with its route's limits divided by `instances`.
fn shared_by(charge: &Charge, instances: usize) -> Charge {
    let mut charge = charge.clone();
    if let Some(route) = &mut charge.route {
        route.defaults = route.defaults.map(|limits| limits.shared_by(instances));
    }
    charge
}

/// An admission decided by Redis's bucket, counted like the map's own.
fn judged(
    map: &mut BucketMap,
    key: &ClientKey,
    decision: Decision,
    limits: Limits,
    now: Instant,
) -> Admission {
    Admission {
        decision,
        limits,
        report: map.record_elsewhere(key, decision.allowed, now),
        route: None,
    }
}

/// For the tests of cluster mode's shard: a map with client "a" (8 tokens) registered,
/// defaults of 10.
#[cfg(test)]
pub(super) fn test_map() -> BucketMap {
    let mut map = BucketMap::new(Limits::new(10, 1.0), 100);
    map.upsert("a", None, Limits::new(8, 1.0), Instant::now());
    map
}

/// For the tests: each answer's decision, `None` for no decision.
#[cfg(test)]
pub(super) fn allowed(answers: &[Option<Admission>]) -> Vec<Option<bool>> {
    answers
        .iter()
        .map(|a| a.as_ref().map(|a| a.decision.allowed))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::RouteCharge;

    const LEASE: Duration = Duration::from_millis(100);

    fn client(id: &str) -> ClientKey {
        ClientKey::Registered(id.to_owned())
    }

    fn plain(keys: Vec<ClientKey>) -> Vec<Charge> {
        keys.into_iter().map(Charge::plain).collect()
    }

    /// A batch with nothing held: one ask per client for all its requests, their positions
    /// kept; nothing is answered yet.
    #[test]
    fn a_batch_asks_redis_once_per_client() {
        let (mut leases, mut map, now) = (LeaseBook::new(LEASE), test_map(), Instant::now());
        let keys = vec![client("a"), client("b"), client("a"), client("a")];
        let batch = plan(&mut leases, &mut map, plain(keys), now);
        assert_eq!(allowed(&batch.answers), [None; 4]);
        let asked: Vec<(ClientKey, u64, Vec<usize>)> = batch
            .pending
            .iter()
            .zip(&batch.asks)
            .map(|((key, _, positions), (_, _, ask))| (key.clone(), ask.want, positions.clone()))
            .collect();
        assert_eq!(
            asked,
            [(client("a"), 3, vec![0, 2, 3]), (client("b"), 1, vec![1])]
        );
        // Each client is asked with its own limits ("b" is not registered: the defaults).
        assert_eq!(batch.asks[0].1.capacity, 8);
        assert_eq!(batch.asks[1].1.capacity, 10);
    }

    /// Redis's grants answer the waiting requests in order; the rest of a grant is held, and
    /// the next batch is answered from it without asking.
    #[test]
    fn grants_answer_in_order_and_the_rest_is_held() {
        let (mut leases, mut map, now) = (LeaseBook::new(LEASE), test_map(), Instant::now());
        let keys = vec![client("a"), client("b"), client("a")];
        let mut batch = plan(&mut leases, &mut map, plain(keys), now);
        let grants = vec![
            Grant {
                granted: 3,
                wait: Duration::ZERO,
                level: 4,
            },
            Grant {
                granted: 0,
                wait: Duration::from_millis(300),
                level: 0,
            },
        ];
        settle(&mut leases, &mut map, &mut batch, grants, now);
        assert_eq!(
            allowed(&batch.answers),
            [Some(true), Some(false), Some(true)]
        );
        let refused = batch.answers[1].clone().expect("answered");
        assert!(refused.decision.retry_after >= Duration::from_millis(300));
        // One token of "a"'s grant is left: the next ask is answered from it.
        let next = plan(&mut leases, &mut map, plain(vec![client("a")]), now);
        assert_eq!(allowed(&next.answers), [Some(true)]);
        assert!(next.asks.is_empty());
    }

    /// Without Redis: `allow` admits at full capacity, `deny` decides nothing, `local` limits
    /// with every limit divided by the instances; whatever was held is dropped.
    #[test]
    fn alone_follows_on_redis_down() {
        let now = Instant::now();
        let mut held = Held {
            leases: LeaseBook::new(LEASE),
            alone: None,
        };
        let mut map = test_map();
        let keys = plain(vec![client("a"); 6]);
        let batch = plan(&mut held.leases, &mut map, plain(vec![client("a")]), now);
        assert!(!batch.asks.is_empty() && !held.leases.is_empty());
        let open = alone(&mut held, &mut map, OnRedisDown::Allow, 2, &keys, now);
        assert_eq!(allowed(&open), [Some(true); 6]);
        assert!(held.leases.is_empty(), "leases are dropped");
        let shut = alone(&mut held, &mut map, OnRedisDown::Deny, 2, &keys, now);
        assert_eq!(allowed(&shut), [None; 6]);
        let local = alone(&mut held, &mut map, OnRedisDown::Local, 2, &keys, now);
        let admitted = local
            .iter()
            .flatten()
            .filter(|a| a.decision.allowed)
            .count();
        assert_eq!(admitted, 4, "8 tokens over 2 instances");
        // A third instance seen: the limits are divided again.
        let third = alone(&mut held, &mut map, OnRedisDown::Local, 3, &keys, now);
        let admitted = third
            .iter()
            .flatten()
            .filter(|a| a.decision.allowed)
            .count();
        assert_eq!(admitted, 2, "8 tokens over 3 instances");
    }

    /// Routed charges never touch the leases; decided alone under `local`, a route's bucket is
    /// divided by the instances like the client's.
    #[test]
    fn routed_charges_go_around_the_leases() {
        let now = Instant::now();
        let mut held = Held {
            leases: LeaseBook::new(LEASE),
            alone: None,
        };
        let mut map = test_map();
        let export = Charge {
            route: Some(RouteCharge {
                route: "export".into(),
                defaults: Some(Limits::new(6, 0.001)),
            }),
            ..Charge::plain(client("a"))
        };
        let charges = vec![export.clone(), Charge::plain(client("a")), export.clone()];
        let batch = plan(&mut held.leases, &mut map, charges, now);
        assert_eq!(batch.pending.len(), 1, "the plain charge asks for a lease");
        assert_eq!(batch.routed.len(), 1);
        assert_eq!(batch.routed[0].positions, [0, 2]);
        let charges = vec![export; 6];
        let local = alone(&mut held, &mut map, OnRedisDown::Local, 3, &charges, now);
        let admitted = local.iter().flatten().filter(|a| a.allowed()).count();
        assert_eq!(admitted, 2, "6 route tokens over 3 instances");
    }
}

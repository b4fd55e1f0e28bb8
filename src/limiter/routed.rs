//! Cluster mode's routed charges: a cost other than one, or a bucket on the route. They take
//! nothing from leases: a batch's routed charges are grouped by client, cost and route, each
//! group is one script call that takes both buckets or neither in Redis, and Redis's answer
//! (requests granted, both levels before) becomes one admission per request with the decisions
//! of both buckets as the map would give them.

use std::sync::Arc;
use std::time::Instant;

use super::bucket::TokenBucket;
use super::map::BucketMap;
use crate::client::{Admission, Charge, RouteVerdict};
use crate::cluster::{RoutedAsk, RoutedGrant};

/// Alike charges of a batch: one ask to Redis, and the positions of its requests in the batch.
#[derive(Debug)]
pub(super) struct RoutedGroup {
    pub ask: RoutedAsk,
    /// One of the alike charges (for deciding alone if Redis fails).
    pub charge: Charge,
    pub positions: Vec<usize>,
}

/// Whether `charge` must go to Redis as a routed charge rather than from the leases, which
/// only ever hold single tokens of a client's own bucket.
pub(super) fn is_routed(map: &BucketMap, charge: &Charge) -> bool {
    charge.cost != 1 || map.route_limits(charge).is_some()
}

/// Groups routed charges (with their positions in the batch) into asks to Redis.
pub(super) fn group(
    map: &BucketMap,
    charges: impl IntoIterator<Item = (usize, Charge)>,
) -> Vec<RoutedGroup> {
    let mut groups: Vec<RoutedGroup> = Vec::new();
    for (at, charge) in charges {
        let route = map
            .route_limits(&charge)
            .map(|(route, limits)| (Arc::clone(route), limits));
        let alike = |group: &&mut RoutedGroup| {
            group.ask.key == charge.key && group.ask.cost == charge.cost && group.ask.route == route
        };
        if let Some(group) = groups.iter_mut().find(alike) {
            group.ask.requests += 1;
            group.positions.push(at);
            continue;
        }
        groups.push(RoutedGroup {
            ask: RoutedAsk {
                key: charge.key.clone(),
                limits: map.limits_for(&charge.key),
                cost: charge.cost,
                route,
                requests: 1,
            },
            charge,
            positions: vec![at],
        });
    }
    groups
}

/// The admissions of `group`'s requests, in order, from Redis's `grant`: the first `granted`
/// took from both buckets; the others took nothing, each bucket showing what it holds. Counted
/// like the map's own decisions.
pub(super) fn admissions(
    map: &mut BucketMap,
    group: &RoutedGroup,
    grant: RoutedGrant,
    now: Instant,
) -> Vec<Admission> {
    let ask = &group.ask;
    let mut client = TokenBucket::with_tokens(ask.limits, grant.client, now);
    let mut route = ask
        .route
        .as_ref()
        .zip(grant.route)
        .map(|((name, limits), level)| (name, TokenBucket::with_tokens(*limits, level, now)));
    (0..ask.requests)
        .map(|i| {
            let granted = i < grant.granted;
            let mut decision = if granted {
                client.take_checked(ask.cost)
            } else {
                let mut checked = client.check(ask.cost, now);
                checked.remaining = client.tokens(now).floor() as u64;
                checked
            };
            let verdict = route.as_mut().map(|(name, bucket)| {
                let decision = if granted {
                    bucket.take_checked(1)
                } else {
                    let mut checked = bucket.check(1, now);
                    checked.remaining = bucket.tokens(now).floor() as u64;
                    checked
                };
                RouteVerdict {
                    route: Arc::clone(name),
                    decision,
                    limits: bucket.limits,
                }
            });
            // Redis refused it: whichever bucket it was, the request is not admitted.
            if !granted && verdict.as_ref().is_none_or(|v| v.decision.allowed) {
                decision.allowed = false;
            }
            let admission = Admission {
                decision,
                limits: ask.limits,
                report: false,
                route: verdict,
            };
            Admission {
                report: map.record_elsewhere(&ask.key, admission.allowed(), now),
                ..admission
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;
    use crate::client::{ClientKey, Limits, RouteCharge};

    fn ip() -> ClientKey {
        ClientKey::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    fn charge(cost: u32, route: Option<(&str, u64)>) -> Charge {
        Charge {
            key: ip(),
            cost,
            route: route.map(|(name, capacity)| RouteCharge {
                route: name.into(),
                defaults: Some(Limits::new(capacity, 1.0)),
            }),
        }
    }

    /// Only what the leases cannot hold is routed; alike charges share one ask.
    #[test]
    fn alike_charges_share_one_ask() {
        let map = BucketMap::new(Limits::new(10, 1.0), 100);
        assert!(!is_routed(&map, &Charge::plain(ip())));
        let unlimited = Charge {
            route: Some(RouteCharge {
                route: "free".into(),
                defaults: None,
            }),
            ..Charge::plain(ip())
        };
        assert!(!is_routed(&map, &unlimited), "a route without limits");
        assert!(is_routed(&map, &charge(5, None)));
        assert!(is_routed(&map, &charge(1, Some(("export", 3)))));
        let charges = [
            charge(5, None),
            charge(1, Some(("export", 3))),
            charge(5, None),
            charge(0, None),
        ];
        let groups = group(&map, charges.into_iter().enumerate());
        let shape: Vec<(u32, u64, Vec<usize>)> = groups
            .iter()
            .map(|g| (g.ask.cost, g.ask.requests, g.positions.clone()))
            .collect();
        assert_eq!(
            shape,
            [(5, 2, vec![0, 2]), (1, 1, vec![1]), (0, 1, vec![3])]
        );
        assert_eq!(
            groups[1].ask.route,
            Some(("export".into(), Limits::new(3, 1.0)))
        );
    }

    /// Redis granted two of three: those show what is left after them; the third is refused by
    /// the route's bucket, the client's bucket showing its level untouched.
    #[test]
    fn a_grant_becomes_both_decisions_per_request() {
        let (mut map, now) = (BucketMap::new(Limits::new(10, 1.0), 100), Instant::now());
        let groups = group(&map, (0..3).map(|at| (at, charge(2, Some(("export", 2))))));
        let grant = RoutedGrant {
            granted: 2,
            client: 10.0,
            route: Some(2.0),
        };
        let answers = admissions(&mut map, &groups[0], grant, now);
        let allowed: Vec<bool> = answers.iter().map(Admission::allowed).collect();
        assert_eq!(allowed, [true, true, false]);
        assert_eq!(answers[1].decision.remaining, 6);
        let refused = &answers[2];
        assert!(
            refused.decision.allowed,
            "the client's bucket had the tokens"
        );
        assert_eq!(refused.decision.remaining, 6);
        let route = refused.route.as_ref().expect("the route's verdict");
        assert!(!route.decision.allowed);
        assert_eq!(route.decision.retry_after, Duration::from_secs(1));
    }

    /// A request Redis refused stays refused even where the levels, read back, would allow it.
    #[test]
    fn what_redis_refused_is_never_admitted() {
        let (mut map, now) = (BucketMap::new(Limits::new(10, 1.0), 100), Instant::now());
        let groups = group(&map, [(0, charge(3, None))]);
        let grant = RoutedGrant {
            granted: 0,
            client: 3.0,
            route: None,
        };
        let answers = admissions(&mut map, &groups[0], grant, now);
        assert!(!answers[0].allowed());
    }
}

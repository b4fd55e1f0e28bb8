//! A charge with a route or a cost other than one ([`crate::client::Charge`]), taken from one
//! shard's map: `cost` tokens from the client's own bucket and one from its bucket on the
//! route (the route's limits, or the client's own there), both or neither, under the one lock
//! of the map. Also a registered client's own limits on routes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::bucket::TokenBucket;
use super::map::{record, report_due, Anonymous, BucketMap};
use crate::client::{Admission, Charge, ClientKey, ClientRecord, Limits, RouteVerdict};

impl BucketMap {
    /// `charge` with a cost other than one or a route bucket: both buckets are checked, and both
    /// charged only when both have the tokens.
    pub(super) fn take_routed(&mut self, charge: &Charge, now: Instant) -> Admission {
        let limits = self.limits_for(&charge.key);
        let route_limits = self.route_limits(charge);
        let defaults = self.defaults;
        let mut fresh = TokenBucket::new(limits, now);
        let (client, reported) = match &charge.key {
            ClientKey::Registered(id) => match self.registered.get_mut(id) {
                Some(client) => {
                    client.dirty = true;
                    (&mut client.bucket, Some(&mut client.reported))
                }
                None => (&mut fresh, None),
            },
            ClientKey::Ip(ip) => {
                let entry = self.anonymous.entry(*ip).or_insert_with(|| Anonymous {
                    bucket: TokenBucket::new(defaults, now),
                    last_seen: now,
                    reported: None,
                });
                entry.last_seen = now;
                (&mut entry.bucket, Some(&mut entry.reported))
            }
        };
        let mut decision = client.check(charge.cost, now);
        let mut route = route_limits.map(|(route, limits)| {
            let bucket = self.routes.bucket(route, &charge.key, limits, now);
            (route, bucket.check(1, now), bucket)
        });
        let route_allows = route.as_ref().is_none_or(|(_, d, _)| d.allowed);
        if decision.allowed && route_allows {
            decision = client.take_checked(charge.cost);
            if let Some((_, checked, bucket)) = &mut route {
                *checked = bucket.take_checked(1);
            }
        } else {
            // Neither is charged: each shows what it holds.
            decision.remaining = client.tokens(now).floor() as u64;
            if let Some((_, checked, bucket)) = &mut route {
                checked.remaining = bucket.tokens(now).floor() as u64;
            }
        }
        let allowed = decision.allowed && route_allows;
        let report = reported.is_some_and(|r| report_due(r, allowed, now));
        Admission {
            decision,
            limits,
            report,
            route: route.map(|(name, decision, bucket)| RouteVerdict {
                route: Arc::clone(name),
                decision,
                limits: bucket.limits,
            }),
        }
    }

    /// The limits of `charge`'s bucket on its route: the client's own there, else the route's;
    /// `None` when neither has any (no route bucket).
    pub fn route_limits<'c>(&self, charge: &'c Charge) -> Option<(&'c Arc<str>, Limits)> {
        let route = charge.route.as_ref()?;
        let own = match &charge.key {
            ClientKey::Registered(id) => self.registered.get(id),
            ClientKey::Ip(_) => None,
        }
        .and_then(|client| client.routes.get(&*route.route).copied());
        own.or(route.defaults).map(|limits| (&route.route, limits))
    }

    /// Replaces a registered client's own limits on routes (its buckets there take them at
    /// their next request); the record, if the client is here.
    pub fn set_routes(
        &mut self,
        id: &str,
        routes: BTreeMap<String, Limits>,
        now: Instant,
    ) -> Option<ClientRecord> {
        let client = self.registered.get_mut(id)?;
        client.routes = routes;
        Some(record(id, client, now))
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
}

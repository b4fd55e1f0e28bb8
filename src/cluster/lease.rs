//! Tokens one shard holds between asks to Redis, per client: the arithmetic of cluster-mode
//! admission, with the clock passed in.
//!
//! A shard asks Redis's shared bucket for several tokens at once (a *lease*) and spends them
//! locally; whatever is left when the lease ends (`cluster.lease_ms`) is given back on the next
//! ask, so an instance never admits on tokens older than the lease. That keeps the bound of the
//! contract: over any T seconds all instances together admit at most
//! `capacity + rate * (T + lease)`. How many tokens a shard asks for adapts to its demand: it
//! doubles while leases run out before they end and halves when tokens come back unused, up to
//! a quarter of the capacity, so a quiet instance holds little that a busy one could use. When
//! Redis says the bucket has no whole token left, it also says when this shard's turn for the
//! next one is (turns go to the instances one after the other), and the shard refuses locally
//! until then instead of asking again for every refused request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::client::{ClientKey, Decision, Limits};

/// One client's lease on this shard.
#[derive(Debug, Clone, PartialEq)]
struct Lease {
    /// Tokens taken from Redis and not spent yet.
    held: u64,
    /// The held tokens may be spent until then; afterwards they go back.
    until: Instant,
    /// How many tokens the next ask asks for.
    size: u64,
    /// Redis said the bucket has no whole token before then.
    empty_until: Option<Instant>,
    /// Redis's level after the last ask (for the `remaining` a response reports).
    level: u64,
    /// An ask for this client is on its way; concurrent asks do not ask for a lease on top.
    asking: bool,
}

impl Lease {
    fn new(now: Instant) -> Self {
        Self {
            held: 0,
            until: now,
            size: 1,
            empty_until: None,
            level: 0,
            asking: false,
        }
    }
}

/// What one ask to Redis is for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Tokens wanted: the requests waiting now, or more to hold as a lease.
    pub want: u64,
    /// Unspent tokens of an ended lease, given back in the same call.
    pub refund: u64,
}

/// Redis's answer to one [`Ask`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    pub granted: u64,
    /// Until this shard's turn for a whole token (zero when the bucket has one left).
    pub wait: Duration,
    /// Whole tokens left in Redis's bucket.
    pub level: u64,
}

/// Every lease of one shard.
#[derive(Debug)]
pub struct LeaseBook {
    lease: Duration,
    leases: HashMap<ClientKey, Lease>,
}

impl LeaseBook {
    /// `lease` zero: nothing is held, every admission asks Redis.
    pub fn new(lease: Duration) -> Self {
        Self {
            lease,
            leases: HashMap::new(),
        }
    }

    /// Answers from what this shard holds, if it can: a held token, or a refusal while Redis
    /// said the bucket is empty. `None`: Redis must be asked.
    pub fn take(&mut self, key: &ClientKey, now: Instant) -> Option<Decision> {
        let lease = self.leases.get_mut(key)?;
        if lease.held > 0 && now < lease.until {
            lease.held -= 1;
            return Some(Decision {
                allowed: true,
                remaining: lease.held + lease.level,
                retry_after: Duration::ZERO,
            });
        }
        match lease.empty_until {
            Some(until) if now < until && lease.held == 0 => Some(Decision {
                allowed: false,
                remaining: 0,
                retry_after: until - now,
            }),
            _ => None,
        }
    }

    /// What to ask Redis for `waiting` requests of `key` that [`Self::take`] could not answer;
    /// takes back the tokens of an ended lease as the refund.
    pub fn ask(&mut self, key: &ClientKey, waiting: u64, limits: Limits, now: Instant) -> Ask {
        let holding = !self.lease.is_zero();
        let lease = self
            .leases
            .entry(key.clone())
            .or_insert_with(|| Lease::new(now));
        let refund = std::mem::take(&mut lease.held);
        if refund > 0 {
            // Tokens came back unused: this shard asked for more than it needed.
            lease.size = (lease.size / 2).max(1);
        }
        let extra = if holding && !lease.asking {
            lease.size
        } else {
            0
        };
        lease.asking = true;
        Ask {
            want: waiting.max(extra.min(limits.capacity)),
            refund,
        }
    }

    /// Applies Redis's answer to `ask`: the first `waiting` requests get a token each while the
    /// grant lasts (their decisions, in order), the rest of the grant is held as a lease.
    pub fn grant(
        &mut self,
        key: &ClientKey,
        ask: Ask,
        grant: Grant,
        waiting: u64,
        limits: Limits,
        now: Instant,
    ) -> Vec<Decision> {
        let max_size = (limits.capacity / 4).max(1);
        // Present unless the book was cleared meanwhile (Redis went down while another ask
        // was out); Redis's answer holds all the same.
        let lease = self
            .leases
            .entry(key.clone())
            .or_insert_with(|| Lease::new(now));
        lease.asking = false;
        lease.level = grant.level;
        let served = grant.granted.min(waiting);
        let spare = grant.granted - served;
        if spare > 0 {
            lease.held += spare;
            lease.until = now + self.lease;
        }
        let holding = !self.lease.is_zero();
        if holding && grant.granted >= ask.want && ask.refund == 0 {
            // Granted in full, and the last lease was spent before it ended: ask for more.
            lease.size = (lease.size * 2).min(max_size);
        }
        // No whole token left: until this shard's turn, refuse here without asking.
        lease.empty_until = (holding && !grant.wait.is_zero()).then(|| now + grant.wait);
        let mut remaining_tokens = served;
        (0..waiting)
            .map(|_| {
                if remaining_tokens > 0 {
                    remaining_tokens -= 1;
                    Decision {
                        allowed: true,
                        remaining: remaining_tokens + spare + grant.level,
                        retry_after: Duration::ZERO,
                    }
                } else {
                    Decision {
                        allowed: false,
                        remaining: 0,
                        retry_after: grant.wait.max(Duration::from_millis(1)),
                    }
                }
            })
            .collect()
    }

    /// Ends leases past their end: returns the tokens to give back, per client, and forgets
    /// clients with nothing held and nothing pending.
    pub fn expire(&mut self, now: Instant) -> Vec<(ClientKey, u64)> {
        let mut refunds = Vec::new();
        self.leases.retain(|key, lease| {
            if lease.held > 0 && now >= lease.until && !lease.asking {
                refunds.push((key.clone(), std::mem::take(&mut lease.held)));
            }
            let empty_known = lease.empty_until.is_some_and(|until| now < until);
            lease.held > 0 || lease.asking || empty_known
        });
        refunds
    }

    /// Forgets everything held (Redis went away; its buckets are the truth again on return).
    pub fn clear(&mut self) {
        self.leases.clear();
    }

    /// Clients with a lease entry (bounded: entries go once nothing is held).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn key(n: u8) -> ClientKey {
        ClientKey::Ip(IpAddr::from([10, 0, 0, n]))
    }

    const LIMITS: Limits = Limits::new(100, 10.0);
    const LEASE: Duration = Duration::from_millis(100);

    fn grant(granted: u64, level: u64) -> Grant {
        Grant {
            granted,
            wait: Duration::ZERO,
            level,
        }
    }

    /// Nothing held: Redis is asked; the spare tokens of the grant are spent locally until
    /// the lease ends, and what is left then goes back.
    #[test]
    fn spends_a_lease_then_gives_back_what_is_left() {
        let now = Instant::now();
        let mut book = LeaseBook::new(LEASE);
        assert_eq!(book.take(&key(1), now), None);
        let ask = book.ask(&key(1), 1, LIMITS, now);
        assert_eq!(ask, Ask { want: 1, refund: 0 });
        let decisions = book.grant(&key(1), ask, grant(1, 99), 1, LIMITS, now);
        assert_eq!(decisions.len(), 1);
        assert!(decisions[0].allowed);
        // The first lease was spent at once: the next ask asks for two.
        let ask = book.ask(&key(1), 1, LIMITS, now);
        assert_eq!(ask, Ask { want: 2, refund: 0 });
        book.grant(&key(1), ask, grant(2, 97), 1, LIMITS, now);
        let held = book.take(&key(1), now + Duration::from_millis(50));
        assert_eq!(held.map(|d| (d.allowed, d.remaining)), Some((true, 97)));
        // The lease size grew to 4 but the next one ends unused: all of it goes back.
        let ask = book.ask(&key(1), 1, LIMITS, now + Duration::from_millis(60));
        assert_eq!(ask, Ask { want: 4, refund: 0 });
        book.grant(&key(1), ask, grant(4, 93), 1, LIMITS, now);
        assert_eq!(book.take(&key(1), now + LEASE), None, "the lease has ended");
        let ask = book.ask(&key(1), 1, LIMITS, now + LEASE);
        assert_eq!(
            ask,
            Ask { want: 4, refund: 3 },
            "returned, and asks for half"
        );
    }

    /// A lease never exceeds a quarter of the capacity, so others keep most of the bucket.
    #[test]
    fn a_lease_is_at_most_a_quarter_of_the_capacity() {
        let now = Instant::now();
        let mut book = LeaseBook::new(LEASE);
        let mut wants = Vec::new();
        for _ in 0..10 {
            let ask = book.ask(&key(1), 1, LIMITS, now);
            wants.push(ask.want);
            book.grant(&key(1), ask, grant(ask.want, 50), 1, LIMITS, now);
            while book.take(&key(1), now).is_some() {}
        }
        assert_eq!(wants, [1, 2, 4, 8, 16, 25, 25, 25, 25, 25]);
    }

    /// Redis out of tokens: the waiting requests beyond the grant are refused with Redis's wait,
    /// and later ones are refused locally until then, without asking.
    #[test]
    fn an_empty_bucket_is_refused_locally_until_the_next_token() {
        let now = Instant::now();
        let mut book = LeaseBook::new(LEASE);
        let ask = book.ask(&key(1), 3, LIMITS, now);
        let wait = Duration::from_millis(80);
        let answer = Grant {
            granted: 1,
            wait,
            level: 0,
        };
        let decisions = book.grant(&key(1), ask, answer, 3, LIMITS, now);
        let allowed: Vec<bool> = decisions.iter().map(|d| d.allowed).collect();
        assert_eq!(allowed, [true, false, false]);
        assert_eq!(decisions[2].retry_after, wait);
        let later = now + Duration::from_millis(30);
        let refused = book.take(&key(1), later).expect("answered locally");
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(50));
        assert_eq!(
            book.take(&key(1), now + wait),
            None,
            "the token is due: ask"
        );
    }

    /// A grant in full that leaves no whole token still says when this shard's turn is: the
    /// next request is refused here until then, without asking Redis.
    #[test]
    fn a_grant_that_empties_the_bucket_waits_for_the_turn() {
        let now = Instant::now();
        let mut book = LeaseBook::new(LEASE);
        let ask = book.ask(&key(1), 1, LIMITS, now);
        let turn = Duration::from_millis(250);
        let answer = Grant {
            granted: 1,
            wait: turn,
            level: 0,
        };
        let decisions = book.grant(&key(1), ask, answer, 1, LIMITS, now);
        assert!(decisions[0].allowed);
        let later = now + Duration::from_millis(100);
        let refused = book.take(&key(1), later).expect("answered locally");
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(150));
        assert_eq!(book.take(&key(1), now + turn), None, "its turn: ask");
    }

    /// With `lease_ms = 0` nothing is held and nothing refused locally: every admission asks.
    #[test]
    fn a_zero_lease_asks_for_every_admission() {
        let now = Instant::now();
        let mut book = LeaseBook::new(Duration::ZERO);
        for _ in 0..3 {
            let ask = book.ask(&key(1), 2, LIMITS, now);
            assert_eq!(ask, Ask { want: 2, refund: 0 });
            let answer = Grant {
                granted: 0,
                wait: Duration::from_millis(100),
                level: 0,
            };
            book.grant(&key(1), ask, answer, 2, LIMITS, now);
            assert_eq!(book.take(&key(1), now), None);
        }
    }

    /// Ended leases are handed back by the sweep, and idle clients are forgotten.
    #[test]
    fn expire_returns_ended_leases_and_forgets_idle_clients() {
        let now = Instant::now();
        let mut book = LeaseBook::new(LEASE);
        for n in 1..=3 {
            let ask = book.ask(&key(n), 1, LIMITS, now);
            book.grant(&key(n), ask, grant(u64::from(n), 10), 1, LIMITS, now);
        }
        assert_eq!(book.expire(now), []);
        assert_eq!(book.len(), 2, "client 1 spent its only token");
        let mut refunds = book.expire(now + LEASE);
        refunds.sort_by_key(|(_, n)| *n);
        assert_eq!(refunds, [(key(2), 1), (key(3), 2)]);
        assert_eq!(book.len(), 0);
    }

    /// A grant that arrives after the book was cleared (Redis went down meanwhile) still
    /// answers every waiting request.
    #[test]
    fn a_grant_after_a_clear_still_answers() {
        let now = Instant::now();
        let mut book = LeaseBook::new(LEASE);
        let ask = book.ask(&key(1), 2, LIMITS, now);
        book.clear();
        let decisions = book.grant(&key(1), ask, grant(2, 10), 2, LIMITS, now);
        assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 2);
    }

    /// Two asks for one client at once: only the first asks for a lease on top.
    #[test]
    fn concurrent_asks_ask_for_one_lease() {
        let now = Instant::now();
        let mut book = LeaseBook::new(LEASE);
        let first = book.ask(&key(1), 1, LIMITS, now);
        book.grant(&key(1), first, grant(1, 50), 1, LIMITS, now);
        let first = book.ask(&key(1), 1, LIMITS, now);
        let second = book.ask(&key(1), 1, LIMITS, now);
        assert_eq!((first.want, second.want), (2, 1));
    }
}

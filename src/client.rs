//! Who a request counts against and what the rate limiter answers: the value types shared by
//! the limiter, the persistence and the HTTP layer.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Who a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A registered client, by `client_id` (from the API key header).
    Registered(String),
    /// Anyone else, by address.
    Ip(IpAddr),
}

/// A registered client as the admin API sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRecord {
    pub client_id: String,
    pub name: Option<String>,
    pub limits: Limits,
    pub tokens: f64,
    /// Its own limits on routes, by route name (instead of the route's `limits`).
    pub routes: BTreeMap<String, Limits>,
}

impl ClientKey {
    /// The client id or the address alone, as the status API lists it.
    pub fn id(&self) -> String {
        match self {
            Self::Registered(id) => id.clone(),
            Self::Ip(ip) => ip.to_string(),
        }
    }
}

/// For log lines: `client user1`, `ip 10.0.0.7`.
impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registered(id) => write!(f, "client {id}"),
            Self::Ip(ip) => write!(f, "ip {ip}"),
        }
    }
}

/// A client's limits; both are validated positive and finite before they get here.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub capacity: u64,
    pub rate_per_sec: f64,
}

impl Limits {
    pub const fn new(capacity: u64, rate_per_sec: f64) -> Self {
        Self {
            capacity,
            rate_per_sec,
        }
    }

    /// One instance's share when `instances` decide alone: capacity and rate divided (capacity
    /// at least 1).
    pub fn shared_by(self, instances: usize) -> Self {
        let n = instances.max(1);
        Self {
            capacity: (self.capacity / n as u64).max(1),
            rate_per_sec: self.rate_per_sec / n as f64,
        }
    }

    /// Seconds for an empty bucket to fill (the `w` of `RateLimit-Policy`).
    pub fn window_secs(&self) -> f64 {
        self.capacity as f64 / self.rate_per_sec
    }
}

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Whole tokens left after this request.
    pub remaining: u64,
    /// Until the next whole token (zero when one is available now).
    pub retry_after: Duration,
}

/// One request's charge of the limiter: whose bucket, how many tokens from it, and the route's
/// own bucket when its route has limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub key: ClientKey,
    /// Tokens from the client's own bucket (0 = not counted there).
    pub cost: u32,
    pub route: Option<RouteCharge>,
}

impl Charge {
    /// One token from `key`'s bucket, no route bucket.
    pub fn plain(key: ClientKey) -> Self {
        Self {
            key,
            cost: 1,
            route: None,
        }
    }

    /// One token from the client's own bucket, no route at all.
    pub fn is_plain(&self) -> bool {
        self.cost == 1 && self.route.is_none()
    }
}

/// The route of a request, for its bucket per client: the route's `limits`, or a registered
/// client's own limits on it (without either, no route bucket).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteCharge {
    pub route: Arc<str>,
    pub defaults: Option<Limits>,
}

/// The result of admitting one request. Both buckets or neither: when one refuses, the other
/// is not charged.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    /// The client's own bucket.
    pub decision: Decision,
    pub limits: Limits,
    /// A rejection worth a log line (at most one a second per client).
    pub report: bool,
    /// The route's bucket for this client, when the route has limits.
    pub route: Option<RouteVerdict>,
}

/// The answer of a route's bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteVerdict {
    pub route: Arc<str>,
    pub decision: Decision,
    pub limits: Limits,
}

/// Which bucket a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket<'a> {
    Client,
    Route(&'a str),
}

impl Admission {
    /// Both buckets had the tokens.
    pub fn allowed(&self) -> bool {
        self.decision.allowed && self.route.as_ref().is_none_or(|r| r.decision.allowed)
    }

    /// The bucket the RateLimit headers speak of: the one that refused, else the one with
    /// fewer tokens left; its decision and limits.
    pub fn tighter(&self) -> (Bucket<'_>, &Decision, &Limits) {
        match &self.route {
            Some(route)
                if !route.decision.allowed
                    || (self.decision.allowed
                        && route.decision.remaining < self.decision.remaining) =>
            {
                (Bucket::Route(&route.route), &route.decision, &route.limits)
            }
            _ => (Bucket::Client, &self.decision, &self.limits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log lines name a client by id or address, not by its Rust spelling.
    #[test]
    fn keys_display_as_client_or_ip() {
        let user = ClientKey::Registered("user1".into());
        let ip = ClientKey::Ip("10.0.0.7".parse().expect("ip"));
        assert_eq!(user.to_string(), "client user1");
        assert_eq!(ip.to_string(), "ip 10.0.0.7");
        assert_eq!(
            (user.id(), ip.id()),
            ("user1".to_owned(), "10.0.0.7".to_owned())
        );
    }
}

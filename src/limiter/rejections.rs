//! Who was refused most recently, and where: refusals counted per client and route (the route
//! the request took, whichever bucket refused it) over periods of a minute, for the status page's
//! "most limited clients". One count per 429 under a short lock; the number of entries is
//! bounded, so a flood of new addresses cannot grow it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::ClientKey;

/// Length of a counting period.
const PERIOD: Duration = Duration::from_secs(60);

/// Clients (and routes) counted in one period; later ones wait for the next.
const MAX_ENTRIES: usize = 1024;

/// One line of the ranking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub key: ClientKey,
    /// The route the refused requests took, if any.
    pub route: Option<Arc<str>>,
    pub count: u64,
}

/// The counts of the current period.
#[derive(Debug)]
pub struct Rejections {
    period: Mutex<Period>,
}

#[derive(Debug)]
struct Period {
    started: Instant,
    counts: HashMap<(ClientKey, Option<Arc<str>>), u64>,
}

impl Default for Rejections {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl Rejections {
    fn new(now: Instant) -> Self {
        Self {
            period: Mutex::new(Period {
                started: now,
                counts: HashMap::new(),
            }),
        }
    }

    /// Counts one refusal of `key`'s request on `route`.
    pub fn count(&self, key: &ClientKey, route: Option<&Arc<str>>, now: Instant) {
        let mut period = self.current(now);
        let entry = (key.clone(), route.cloned());
        if let Some(count) = period.counts.get_mut(&entry) {
            *count += 1;
        } else if period.counts.len() < MAX_ENTRIES {
            period.counts.insert(entry, 1);
        }
    }

    /// The `n` clients and routes refused most in the current period, most first.
    pub fn top(&self, n: usize, now: Instant) -> Vec<Rejected> {
        let period = self.current(now);
        let mut all: Vec<Rejected> = (period.counts.iter())
            .map(|((key, route), count)| Rejected {
                key: key.clone(),
                route: route.clone(),
                count: *count,
            })
            .collect();
        all.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.key.id().cmp(&b.key.id()))
        });
        all.truncate(n);
        all
    }

    /// The period at `now`, a new one when the last has run out.
    fn current(&self, now: Instant) -> std::sync::MutexGuard<'_, Period> {
        let mut period = self.period.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(period.started) >= PERIOD {
            period.started = now;
            period.counts.clear();
        }
        period
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> ClientKey {
        ClientKey::Ip(std::net::IpAddr::from([10, 0, 0, last]))
    }

    /// Ranked by count, a client on two routes being two lines; a new period starts empty.
    #[test]
    fn ranks_clients_by_route_for_a_period() {
        let start = Instant::now();
        let rejections = Rejections::new(start);
        let search: Arc<str> = Arc::from("search");
        for _ in 0..5 {
            rejections.count(&ip(2), Some(&search), start);
        }
        rejections.count(&ip(2), None, start);
        rejections.count(&ip(1), Some(&search), start);
        rejections.count(&ip(1), Some(&search), start);
        let top = rejections.top(2, start);
        let lines: Vec<_> = top
            .iter()
            .map(|r| (r.key.clone(), r.route.clone(), r.count))
            .collect();
        assert_eq!(
            lines,
            [
                (ip(2), Some(Arc::clone(&search)), 5),
                (ip(1), Some(search), 2)
            ]
        );
        assert!(rejections.top(5, start + PERIOD).is_empty());
    }

    /// Past the cap, new clients are not counted; those already there still are.
    #[test]
    fn entries_are_bounded() {
        let now = Instant::now();
        let rejections = Rejections::new(now);
        for n in 0..(MAX_ENTRIES as u32 + 10) {
            let key = ClientKey::Ip(std::net::IpAddr::from(n.to_be_bytes()));
            rejections.count(&key, None, now);
        }
        rejections.count(
            &ClientKey::Ip(std::net::IpAddr::from([0, 0, 0, 0])),
            None,
            now,
        );
        let top = rejections.top(usize::MAX, now);
        assert_eq!(top.len(), MAX_ENTRIES);
        assert_eq!(top[0].count, 2);
    }
}

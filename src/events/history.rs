//! The recent past of the event stream, so a page opened now shows what happened before it:
//! the last [`EVENTS_KEPT`] events and the last [`STATS_KEPT`] `stats` ticks (five minutes at
//! one a second), each in a ring of its own so the ticks never push the events out.

use std::collections::VecDeque;

use super::event::{LbEvent, Stamped};

/// Events other than `stats` kept for new subscribers.
pub const EVENTS_KEPT: usize = 200;
/// `stats` ticks kept for new subscribers: five minutes of per-second points.
pub const STATS_KEPT: usize = 300;

/// Stamps events and keeps the recent ones.
#[derive(Debug, Default)]
pub struct History {
    /// The id of the last event stamped.
    last_id: u64,
    events: VecDeque<Stamped>,
    stats: VecDeque<Stamped>,
}

impl History {
    /// A history whose ids start after `last_id`.
    pub fn after(last_id: u64) -> Self {
        Self {
            last_id,
            ..Self::default()
        }
    }

    /// Gives `event` the next id and the time `at_ms`, keeps it, and returns it stamped.
    pub fn record(&mut self, event: LbEvent, at_ms: u64) -> Stamped {
        self.last_id += 1;
        let stamped = Stamped {
            id: self.last_id,
            at_ms,
            event,
        };
        let (ring, kept) = if stamped.event.is_stats() {
            (&mut self.stats, STATS_KEPT)
        } else {
            (&mut self.events, EVENTS_KEPT)
        };
        if ring.len() == kept {
            ring.pop_front();
        }
        ring.push_back(stamped.clone());
        stamped
    }

    /// The kept events with an id above `after` (all of them for `None`), oldest first.
    pub fn since(&self, after: Option<u64>) -> Vec<Stamped> {
        let after = after.unwrap_or(0);
        let mut found: Vec<Stamped> = self
            .events
            .iter()
            .chain(&self.stats)
            .filter(|e| e.id > after)
            .cloned()
            .collect();
        found.sort_by_key(|e| e.id);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(n: usize) -> LbEvent {
        LbEvent::Client {
            action: "created",
            client_id: format!("c{n}"),
        }
    }

    fn stats(requests: u64) -> LbEvent {
        LbEvent::Stats {
            requests,
            requests_per_sec: 0.0,
            rate_limited: 0,
            errors: 0,
            backends: Vec::new(),
            routes: Vec::new(),
            pools: Vec::new(),
        }
    }

    /// Ids count up from 1 and the merged history comes back in id order.
    #[test]
    fn stamps_in_order_and_merges_both_rings_by_id() {
        let mut history = History::default();
        assert_eq!(history.record(client(1), 10).id, 1);
        assert_eq!(history.record(stats(5), 20).id, 2);
        assert_eq!(history.record(client(2), 30).id, 3);
        let ids: Vec<u64> = history.since(None).iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        let after: Vec<u64> = history.since(Some(1)).iter().map(|e| e.id).collect();
        assert_eq!(after, [2, 3]);
        assert_eq!(history.since(None)[1].at_ms, 20);
    }

    /// A history can start its ids anywhere, as a restarted bus does.
    #[test]
    fn ids_continue_after_the_given_start() {
        let mut history = History::after(1_795_000_000_000_000);
        assert_eq!(history.record(client(1), 10).id, 1_795_000_000_000_001);
        assert!(history.since(Some(1_795_000_000_000_001)).is_empty());
    }

    /// Each ring keeps its own number: a flood of ticks never evicts the events.
    #[test]
    fn keeps_the_last_events_and_ticks_apart() {
        let mut history = History::default();
        for n in 0..EVENTS_KEPT + 5 {
            history.record(client(n), n as u64);
        }
        for n in 0..STATS_KEPT * 2 {
            history.record(stats(n as u64), n as u64);
        }
        let kept = history.since(None);
        let events = kept.iter().filter(|e| !e.event.is_stats()).count();
        let ticks = kept.iter().filter(|e| e.event.is_stats()).count();
        assert_eq!((events, ticks), (EVENTS_KEPT, STATS_KEPT));
        assert_eq!(
            kept[0].event,
            client(5),
            "the oldest five events went first"
        );
        let last = kept.last().expect("ticks kept");
        assert_eq!(last.event, stats(STATS_KEPT as u64 * 2 - 1));
    }
}

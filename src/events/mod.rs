//! The event stream: typed events (a backend going down or up, failovers, simulation changes,
//! client changes, and a `stats` tick every second) published by the parts of the balancer and
//! fanned out by the [`bus`] actor to any number of subscribers — such as the status page's
//! server-sent events. The recent past is kept ([`history`]) and given to each new subscriber
//! first. [`Events`] is the handle everyone holds.

mod bus;
mod event;
mod history;

use actix::{Actor, Addr};
use tokio::sync::mpsc;

use bus::{EventBus, Publish, Subscribe};
pub use event::{BackendStat, LbEvent, PoolStat, RouteStat, Stamped};

/// What a subscriber gets: the recent past, then the live stream.
pub struct Subscription {
    /// Kept events, oldest first.
    pub history: Vec<Stamped>,
    /// Every event from now on; it ends when the bus stops or drops this subscriber.
    pub live: mpsc::Receiver<Stamped>,
}

/// Cheap to clone; publishes to and subscribes at the event bus.
#[derive(Clone)]
pub struct Events {
    bus: Addr<EventBus>,
}

impl Events {
    /// Starts the bus on the current arbiter.
    pub fn start() -> Self {
        Self {
            bus: EventBus::new(crate::clock::now_ms()).start(),
        }
    }

    /// Hands `event` to every subscriber (fire and forget).
    pub fn publish(&self, event: LbEvent) {
        self.bus.do_send(Publish(event));
    }

    /// Subscribes; the history holds the kept events with an id above `after`.
    /// `None` once the bus has stopped.
    pub async fn subscribe(&self, after: Option<u64>) -> Option<Subscription> {
        let (history, live) = self.bus.send(Subscribe { after }).await.ok()?;
        Some(Subscription { history, live })
    }
}

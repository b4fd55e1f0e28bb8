//! The event stream: typed events (a backend going down or up, failovers, simulation changes,
//! client changes, and a `stats` tick every second) published by the parts of the balancer and
//! fanned out by the `EventBus` actor to any number of subscribers — actors, or channels such as
//! the status page's server-sent events. A subscriber that is full or gone is dropped, so a slow
//! reader never holds up the publishers or the proxy.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, Message, Recipient};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::registry::Rotation;
use crate::stats::StatsWindow;

/// How often the `stats` event is sent.
pub const STATS_EVERY: Duration = Duration::from_secs(1);

/// One backend in a `stats` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendStat {
    pub backend: String,
    pub state: &'static str,
    pub requests: u64,
    pub failures: u64,
    pub in_flight: u64,
}

/// Something an operator would want to see happen.
#[derive(Debug, Clone, PartialEq, Serialize, Message)]
#[rtype(result = "()")]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LbEvent {
    /// Taken out of rotation.
    BackendDown {
        backend: String,
        url: String,
        reason: String,
    },
    /// Back in rotation.
    BackendUp {
        backend: String,
        url: String,
        reason: String,
    },
    /// A request moved from a failed backend to another (at most one event a second).
    Failover {
        from: String,
        to: String,
        reason: String,
    },
    /// A simulated backend started or stopped failing.
    Simulation {
        backend: String,
        url: String,
        /// `up`, or the failure mode: `refuse`, `error`, `hang`.
        state: String,
        /// Whether an operator asked for it (else the random schedule did).
        manual: bool,
    },
    /// A client was created, updated or deleted through `/clients`.
    Client {
        action: &'static str,
        client_id: String,
    },
    /// Once a second: totals so far and per backend.
    Stats {
        requests: u64,
        /// Over the last second.
        requests_per_sec: f64,
        rate_limited: u64,
        errors: u64,
        backends: Vec<BackendStat>,
    },
}

/// From a consumer: send me every event from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<LbEvent>);

/// From the server-sent events handler: the same, through a bounded channel.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeChannel(pub mpsc::Sender<LbEvent>);

/// From the registry, the simulator, the proxy and the client API: hand this to everyone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub LbEvent);

enum Subscriber {
    Actor(Recipient<LbEvent>),
    Channel(mpsc::Sender<LbEvent>),
}

impl Subscriber {
    /// Whether the subscriber took the event (else it is dropped).
    fn offer(&self, event: &LbEvent) -> bool {
        match self {
            Self::Actor(recipient) => recipient.try_send(event.clone()).is_ok(),
            Self::Channel(sender) => sender.try_send(event.clone()).is_ok(),
        }
    }
}

/// Fans events out to subscribers and sends the `stats` tick.
pub struct EventBus {
    subscribers: Vec<Subscriber>,
    rotation: Arc<Rotation>,
    metrics: Arc<Metrics>,
    /// The last ten seconds of totals, shared with the status API.
    window: Arc<Mutex<StatsWindow>>,
}

impl EventBus {
    pub fn new(
        rotation: Arc<Rotation>,
        metrics: Arc<Metrics>,
        window: Arc<Mutex<StatsWindow>>,
    ) -> Self {
        Self {
            subscribers: Vec::new(),
            rotation,
            metrics,
            window,
        }
    }

    fn publish(&mut self, event: LbEvent) {
        self.subscribers
            .retain(|subscriber| subscriber.offer(&event));
    }

    fn tick(&mut self) {
        let totals = self.metrics.totals();
        let requests_per_sec = match self.window.lock() {
            Ok(mut window) => {
                window.push(Instant::now(), totals);
                window.last_second()
            }
            Err(_) => 0.0,
        };
        let backends = self
            .rotation
            .snapshot()
            .into_iter()
            .map(|m| BackendStat {
                backend: m.backend.name.clone(),
                state: if m.healthy { "up" } else { "down" },
                requests: m.requests,
                failures: m.failures,
                in_flight: m.in_flight,
            })
            .collect();
        if !self.subscribers.is_empty() {
            self.publish(LbEvent::Stats {
                requests: totals.requests,
                requests_per_sec,
                rate_limited: totals.rate_limited,
                errors: totals.own_errors,
                backends,
            });
        }
    }
}

impl Actor for EventBus {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(STATS_EVERY, |bus, _| bus.tick());
    }
}

impl Handler<Subscribe> for EventBus {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(Subscriber::Actor(msg.0));
    }
}

impl Handler<SubscribeChannel> for EventBus {
    type Result = ();

    fn handle(&mut self, msg: SubscribeChannel, _: &mut Context<Self>) {
        self.subscribers.push(Subscriber::Channel(msg.0));
    }
}

impl Handler<Publish> for EventBus {
    type Result = ();

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        self.publish(msg.0);
    }
}

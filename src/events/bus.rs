//! The `EventBus` actor: stamps each published event, keeps the recent ones ([`History`]) and
//! hands every event to every subscriber's bounded channel. A subscriber that is full or gone is
//! dropped, so a slow reader never holds up the publishers or the proxy.

use actix::{Actor, Context, Handler, Message, MessageResult};
use tokio::sync::mpsc;

use super::event::{LbEvent, Stamped};
use super::history::History;
use crate::clock;

/// Events a subscriber has not read yet before it counts as too slow and is dropped.
pub const SUBSCRIBER_BUFFER: usize = 256;

/// From anyone with news (the registry, the simulator, the proxy, the client API, the stats
/// ticker): stamp it and hand it to everyone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub LbEvent);

/// From a new subscriber: the kept events after this id (all for `None`), then every new one
/// through the returned channel.
#[derive(Message)]
#[rtype(result = "(Vec<Stamped>, mpsc::Receiver<Stamped>)")]
pub struct Subscribe {
    pub after: Option<u64>,
}

/// Fans events out to subscribers and remembers the recent ones.
pub struct EventBus {
    subscribers: Vec<mpsc::Sender<Stamped>>,
    history: History,
}

impl EventBus {
    /// Event ids start at the start time's Unix seconds × 10⁶, so they keep growing across
    /// restarts (a run would need a million events a second to reach the next run's first id)
    /// and a page that reconnects to a restarted balancer with `Last-Event-ID` misses nothing.
    /// They stay below 2⁵³, exact in JavaScript.
    pub fn new(now_ms: u64) -> Self {
        Self {
            subscribers: Vec::new(),
            history: History::after(now_ms / 1000 * 1_000_000),
        }
    }
}

impl Actor for EventBus {
    type Context = Context<Self>;
}

impl Handler<Publish> for EventBus {
    type Result = ();

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        let stamped = self.history.record(msg.0, clock::now_ms());
        self.subscribers
            .retain(|subscriber| subscriber.try_send(stamped.clone()).is_ok());
    }
}

impl Handler<Subscribe> for EventBus {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_BUFFER);
        self.subscribers.push(sender);
        MessageResult((self.history.since(msg.after), receiver))
    }
}

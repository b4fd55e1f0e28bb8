//! The event stream: typed events (a backend going down or up, simulation changes) published
//! by the registry and the simulator, fanned out by the `EventBus` actor to any number of
//! subscribers (the status page's server-sent events attach here). A subscriber whose mailbox
//! is full or gone is dropped, so a slow reader never holds up the publishers.

use actix::{Actor, Context, Handler, Message, Recipient};
use serde::Serialize;

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
    /// A simulated backend started or stopped failing.
    Simulation {
        backend: String,
        url: String,
        /// `up`, or the failure mode: `refuse`, `error`, `hang`.
        state: String,
        /// Whether an operator asked for it (else the random schedule did).
        manual: bool,
    },
}

/// From a future consumer (status page, tests): send me every event from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<LbEvent>);

/// From the registry and the simulator: hand this event to every subscriber.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub LbEvent);

/// Fans events out to subscribers.
#[derive(Default)]
pub struct EventBus {
    subscribers: Vec<Recipient<LbEvent>>,
}

impl Actor for EventBus {
    type Context = Context<Self>;
}

impl Handler<Subscribe> for EventBus {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(msg.0);
    }
}

impl Handler<Publish> for EventBus {
    type Result = ();

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        self.subscribers
            .retain(|subscriber| subscriber.try_send(msg.0.clone()).is_ok());
    }
}

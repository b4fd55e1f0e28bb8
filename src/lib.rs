//! `loadbalancer`: an HTTP load balancer (HTTP/1.1; HTTP/2 over TLS) with per-client rate
//! limiting, on actix-web, actix actors and awc. `main.rs` only parses arguments and calls
//! [`run`]; everything else lives here so integration tests can start a balancer on
//! `127.0.0.1:0` with [`start`].
//!
//! Layers point one way: `startup/` (the wiring: actors, signals, listeners) uses `http/` (the
//! server, proxy and APIs), which uses the domain folders (`registry/`, `health/`, `limiter/`,
//! `persistence/`, `simulation/`, `events/`, `stats/`, `cluster/`), which use `settings/` and
//! `discovery/` (the pool file), which use the leaf value types (`backend`, `certs`, `client`,
//! `clock`, `digits`, `draining`, `fault`, `net`). The architecture map in the README names the
//! file of each concept.

mod backend;
mod certs;
pub mod cli;
mod client;
mod clock;
mod cluster;
mod digits;
mod discovery;
mod draining;
mod events;
pub mod exit;
mod fault;
mod health;
mod http;
mod limiter;
mod metrics;
mod net;
mod persistence;
mod registry;
mod route;
mod routing;
pub mod settings;
mod simulation;
mod startup;
mod stats;
mod strategy;
mod trace;
mod upstream;

pub use backend::{Backend, BackendCounters, BackendState};
pub use client::{Charge, ClientKey, Limits};
pub use events::{BackendStat, Events, LbEvent, Stamped, Subscription};
pub use health::PROBE_USER_AGENT;
pub use limiter::{Limiter, Tracked};
pub use registry::MemberStatus;
pub use settings::Settings;
pub use startup::{
    run, start, start_listeners, Balancer, BalancerHandle, ShutdownHook, StartError,
};

/// What the benches and integration tests reach inside (the `test-util` feature).
#[cfg(feature = "test-util")]
pub mod test_util {
    pub use crate::limiter::map::BucketMap;
    pub use crate::persistence::{Database, Levels};
    pub use crate::route::RouteEntry;
    pub use crate::routing::{RouteTable, Target};
}

//! `loadbalancer`: an HTTP/1.1 load balancer with per-client rate limiting, on actix-web,
//! actix actors and awc. `main.rs` only parses arguments and calls [`http::server::run`];
//! everything else lives here so integration tests can start a balancer on `127.0.0.1:0`.

pub mod backend;
pub mod cli;
pub mod client;
pub mod clock;
pub mod draining;
pub mod events;
pub mod exit;
pub mod health;
pub mod http;
pub mod limiter;
pub mod metrics;
pub mod net;
pub mod persistence;
pub mod registry;
pub mod settings;
pub mod simulation;
pub mod stats;
pub mod upstream;

pub use http::server::{start, Balancer, BalancerHandle};
pub use settings::Settings;

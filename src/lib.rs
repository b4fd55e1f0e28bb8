//! `loadbalancer`: an HTTP/1.1 load balancer with per-client rate limiting, on actix-web,
//! actix actors and awc. `main.rs` only parses arguments and calls [`server::run`]; everything
//! else lives here so integration tests can start a balancer on `127.0.0.1:0`.

pub mod access_log;
pub mod admin;
pub mod api;
pub mod backend;
pub mod cli;
pub mod clients_api;
pub mod error;
pub mod events;
pub mod health;
pub mod limiter;
pub mod metrics;
pub mod page;
pub mod persistence;
pub mod proxy;
pub mod registry;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod simulation;
pub mod stats;

pub use server::{start, Balancer, BalancerHandle};
pub use settings::Settings;

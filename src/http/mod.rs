//! Everything that speaks HTTP: the server wiring, the proxy, the balancer's own APIs and page,
//! the access log and the JSON error answers. Nothing outside this folder imports it; it
//! reaches the domain (registry, limiter, events, ...) through their handles.

pub mod access_log;
pub mod admin;
pub mod api;
pub mod client_id;
pub mod clients;
pub mod error;
pub mod json_body;
pub mod page;
pub mod proxy;
pub mod server;
pub mod shutdown;
pub mod tls;

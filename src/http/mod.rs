//! Everything that speaks HTTP: the server, the proxy, the balancer's own APIs and page, the
//! access log and the JSON error answers. Only the start-up imports it from outside; it
//! reaches the domain (registry, limiter, events, ...) through their handles.

pub mod access_log;
pub mod admin;
pub mod api;
pub mod client_body;
pub mod client_id;
pub mod client_routes;
pub mod clients;
pub mod error;
pub mod h2_drain;
pub mod json_body;
pub mod page;
pub mod proxy;
pub mod request_id;
pub mod server;
pub mod tls;

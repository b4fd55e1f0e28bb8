//! The one way to reach a backend. [`Connector`] opens connections (TCP, and TLS with the one
//! client configuration of [`tls`] for `https://` backends); each worker keeps its own
//! [`Connections`], the kept-alive ones of every backend, over which proxied requests go, and
//! from which tunnels take fresh ones. A request is written by [`exchange`] (the head is ours:
//! no header is added to what the caller writes), its answer's head read there with one limit,
//! and its body streamed by [`answer`]. Health probes go through awc with the same TLS
//! configuration (`health/probe.rs`).

mod answer;
mod connections;
mod connector;
mod early;
mod error;
mod exchange;
mod framing;
mod idle;
mod tls;

pub use answer::{Answer, Reply};
pub use connections::Connections;
pub use connector::{Connector, Io};
pub use error::UpstreamError;
pub use exchange::{Request, READ_CHUNK};
pub use tls::tls_config;

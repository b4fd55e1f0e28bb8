//! The one way this crate builds an HTTP client to backends (the proxy's, one per worker, and
//! the health checker's): no redirects followed, no default headers invented, no
//! decompression (awc is built without it), and the connect and response-head timeouts applied.

use std::time::Duration;

use awc::{Client, Connector};

/// A client for backends. Must be built on the thread that uses it (an awc client is not
/// `Send`); its connection pool is that thread's.
pub fn client(connect_timeout: Duration, response_timeout: Duration) -> Client {
    let connector = Connector::new()
        .timeout(connect_timeout)
        // 0 lifts awc's default cap of 100 connections per pool.
        .limit(0);
    Client::builder()
        .connector(connector)
        .disable_redirects()
        .no_default_headers()
        .timeout(response_timeout)
        .finish()
}

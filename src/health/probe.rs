//! One probe: `GET {health.path}` through awc, the HTTP client the user's card names. A probe
//! is a plain bodiless request with a timeout, which awc does well, on its own few kept-alive
//! connections apart from the traffic's. It uses the traffic's rustls configuration
//! ([`crate::upstream::tls_config`]), so a backend's certificate is verified exactly as for
//! proxied requests.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use awc::error::SendRequestError;
use awc::{Client, Connector};
use rustls::ClientConfig;

use crate::backend::Backend;
use crate::settings::HealthSettings;

/// `User-Agent` of probes, so backends can tell them from traffic.
pub const PROBE_USER_AGENT: &str = "loadbalancer-health-check";

/// The probes' awc client: no redirects followed, no default headers, no decompression (awc
/// is built without it), the timeouts applied, TLS with the one configuration. Must be built
/// on the thread that uses it (an awc client is not `Send`).
pub fn prober(
    connect_timeout: Duration,
    response_timeout: Duration,
    tls: &Arc<ClientConfig>,
) -> Client {
    let connector = Connector::new()
        .rustls_0_23(Arc::clone(tls))
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

/// One probe: `Ok` for a 2xx or 3xx answer, else why not. A member DNS found is probed at its
/// address under its entry's name (`Host`, TLS), on a connection of its own each time: awc
/// keeps connections per `host:port`, which every member of an entry shares.
pub async fn probe_once(
    prober: Client,
    backend: Arc<Backend>,
    settings: HealthSettings,
) -> Result<(), String> {
    let scheme = if backend.tls { "https" } else { "http" };
    let url = format!("{scheme}://{}{}", backend.authority, settings.path);
    let mut request = prober
        .get(url)
        .insert_header((header::USER_AGENT, PROBE_USER_AGENT));
    if let Some(address) = backend.address {
        request = request.address(address).force_close();
    }
    let response = request
        .send()
        .await
        .map_err(|err| describe(err, settings.timeout))?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("status {}", status.as_u16()))
    }
}

fn describe(err: SendRequestError, timeout: Duration) -> String {
    match err {
        SendRequestError::Timeout => format!("no answer within {} ms", timeout.as_millis()),
        SendRequestError::Connect(e) => format!("connect: {e}"),
        other => other.to_string(),
    }
}

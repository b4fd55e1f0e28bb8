//! WebSocket tunnels. A `GET` over HTTP/1.1 with `Upgrade: websocket` and `Connection: upgrade`
//! is admitted like any request, then sent to the backend the strategy picks over a fresh
//! connection of its own (never a pooled one: the connection becomes the tunnel), written and
//! read like any request's ([`crate::upstream`]); when the backend answers `101`, that answer
//! goes to the client and both connections become one byte pipe: no frame is parsed or
//! re-encoded, so the extensions and subprotocols the two ends agree on pass through untouched.
//! Any other answer goes to the client as it came (a failure before any answer is retried or
//! becomes JSON, as for any request).
//!
//! The open tunnel is carried by [`pump`]. While draining no new tunnel is opened.

use std::sync::Arc;

use actix_http::{ConnectionType, ResponseHead};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode, Version};
use actix_web::web::{self, BytesMut};
use actix_web::{HttpRequest, HttpResponse};

use super::attempt::{AttemptError, Attempts};
use super::body::RequestBody;
use super::error::ProxyError;
use super::headers;
use super::pump::{self, Pump};
use super::response::{to_client, Forwarded};
use super::state::ProxyState;
use crate::backend::HostHeader;
use crate::http::tls::ViaTls;
use crate::registry::{Destination, Lease, Outcome};
use crate::upstream::{Connections, Reply, Request};

/// Whether the request asks for a WebSocket tunnel. Other `Upgrade` values (`h2c`, …) are not
/// tunnelled: the header is dropped like any hop-by-hop one and the request proxied as plain
/// HTTP/1.1. `Upgrade: websocket` on anything but a `GET` over HTTP/1.1 with `Connection:
/// upgrade` is refused, because actix-http reads such a request's body until the connection
/// ends, so it cannot be proxied as a plain request either.
pub fn requested(req: &HttpRequest) -> Result<bool, ProxyError> {
    requested_by(req.method(), req.version(), req.headers())
}

fn requested_by(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<bool, ProxyError> {
    let websocket = headers
        .get_all(header::UPGRADE)
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.trim().eq_ignore_ascii_case("websocket"));
    if !websocket {
        return Ok(false);
    }
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if method == Method::GET && version == Version::HTTP_11 && connection_upgrade {
        Ok(true)
    } else {
        Err(ProxyError::BadRequest(
            "a WebSocket handshake is a GET over HTTP/1.1 with Connection: upgrade",
        ))
    }
}

/// Sends the handshake to backends until one answers; a `101` opens the tunnel.
pub async fn open(
    req: &HttpRequest,
    payload: web::Payload,
    state: &ProxyState,
    connections: &Connections,
    destination: &Destination<'_>,
) -> Result<Forwarded, ProxyError> {
    if state.tunnels.draining.is_draining() {
        return Err(ProxyError::Draining);
    }
    let peer = req.peer_addr().map(|addr| addr.ip());
    let via_tls = req.conn_data::<ViaTls>().is_some();
    let target = headers::target(req, destination.route);
    let websocket = HeaderValue::from_static("websocket");
    let pool = destination.pool;
    let client_host = pool.info().host_header == HostHeader::Client;
    let mut attempts = Attempts::new(state, req, pool);
    loop {
        let lease = attempts.next().await?;
        let backend = Arc::clone(&lease.backend);
        let host = backend.authority.as_str();
        let traceparent = attempts.traceparent();
        // The client's path, query and end-to-end headers (`Sec-WebSocket-*` among them), the
        // forwarding headers, and the upgrade.
        let headers = |out: &mut BytesMut| {
            let to = (host, client_host);
            headers::write_to_backend(req.headers(), peer, via_tls, to, traceparent.as_ref(), out);
        };
        let handshake = Request {
            method: &Method::GET,
            target: &target,
            headers: &headers,
            upgrade: Some(&websocket),
        };
        let failure = match connections.upgrade(&backend, &handshake).await {
            Ok(reply) => {
                let status = match &reply {
                    Reply::Answer(answer) => answer.head.status,
                    Reply::Switched { head, .. } => head.status,
                };
                attempts.answered(&backend, status.as_u16());
                return answered(reply, lease, payload, state);
            }
            Err(err) => AttemptError::from(err),
        };
        // A handshake has no body and GET is idempotent: a refused connect or a reset before
        // the answer may go to another backend; a timeout is not retried.
        let retryable = failure.retryable(&Method::GET, &RequestBody::Empty);
        attempts.failed(lease, failure, retryable)?;
    }
}

/// The client's answer to a backend's reply: on a `101`, the switch, and the tunnel starts;
/// any other answer goes to the client as it came.
fn answered(
    reply: Reply,
    lease: Lease,
    payload: web::Payload,
    state: &ProxyState,
) -> Result<Forwarded, ProxyError> {
    lease.record(Outcome::Responded);
    let backend = Arc::clone(&lease.backend);
    match reply {
        Reply::Switched { head, io, early } => {
            let Some(upgrade) = websocket_upgrade(&head) else {
                log::error!("backend {backend} answered 101 without Upgrade: websocket");
                return Err(ProxyError::BadGateway);
            };
            let response = switched(&head, upgrade);
            let pump = Pump {
                io,
                early,
                payload,
                lease,
            };
            let body = pump::start(pump, state);
            Ok((response.set_body(body).map_into_boxed_body(), backend))
        }
        Reply::Answer(answer) => {
            let mut response = to_client(
                &Method::GET,
                answer.head.status,
                &answer.head.headers,
                answer.body,
                lease,
                state.send_timeout,
            );
            // actix-http writes the body of any answer to a WebSocket handshake as raw bytes
            // to the end of the connection, even one it labelled chunked: so no such label. A
            // body without a length then ends with the connection (which closes after it
            // anyway).
            response.head_mut().no_chunking(true);
            Ok((response, backend))
        }
    }
}

/// The `Upgrade` value of a `101` that switched to WebSocket, if it did.
fn websocket_upgrade(head: &ResponseHead) -> Option<HeaderValue> {
    head.headers
        .get(header::UPGRADE)
        .filter(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
        })
        .cloned()
}

/// The client's `101`: the backend's end-to-end headers (`Sec-WebSocket-Accept`, `-Protocol`,
/// `-Extensions`) with the upgrade.
fn switched(head: &ResponseHead, upgrade: HeaderValue) -> HttpResponse<()> {
    let mut response = HttpResponse::with_body(StatusCode::SWITCHING_PROTOCOLS, ());
    *response.headers_mut() = headers::to_client(&head.headers);
    response.headers_mut().insert(header::UPGRADE, upgrade);
    response
        .head_mut()
        .set_connection_type(ConnectionType::Upgrade);
    response
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderName;

    use super::*;

    fn asks(method: Method, version: Version, headers: &[(&str, &str)]) -> Result<bool, String> {
        let mut map = HeaderMap::new();
        for &(name, value) in headers {
            map.append(
                HeaderName::try_from(name).expect("name"),
                HeaderValue::try_from(value).expect("value"),
            );
        }
        requested_by(&method, version, &map).map_err(|err| err.to_string())
    }

    #[test]
    fn only_websocket_handshakes_are_tunnelled() {
        let (get, h11) = (Method::GET, Version::HTTP_11);
        let handshake = [("upgrade", "websocket"), ("connection", "Upgrade")];
        assert_eq!(asks(get.clone(), h11, &handshake), Ok(true));
        // Case and extra connection options do not matter.
        let mixed = [
            ("upgrade", " WebSocket "),
            ("connection", "keep-alive, upgrade"),
        ];
        assert_eq!(asks(get.clone(), h11, &mixed), Ok(true));
        // Other upgrades, or none, are plain requests.
        let h2c = [
            ("upgrade", "h2c"),
            ("connection", "Upgrade, HTTP2-Settings"),
        ];
        assert_eq!(asks(get.clone(), h11, &h2c), Ok(false));
        assert_eq!(asks(get.clone(), h11, &[]), Ok(false));
        // A websocket upgrade that is not a valid handshake is refused.
        for (method, version, headers) in [
            (Method::POST, h11, &handshake[..]),
            (get.clone(), Version::HTTP_10, &handshake[..]),
            (get.clone(), h11, &[("upgrade", "websocket")][..]),
            (
                get.clone(),
                h11,
                &[("upgrade", "websocket"), ("connection", "close")][..],
            ),
        ] {
            let refused = asks(method.clone(), version, headers);
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.contains("WebSocket handshake")),
                "{method} {version:?} {headers:?}: {refused:?}"
            );
        }
    }
}

//! WebSocket tunnels. A `GET` over HTTP/1.1 with `Upgrade: websocket` and `Connection: upgrade`
//! is admitted like any request, then sent to the backend the strategy picks over a fresh
//! connection of its own (never a pooled one: the connection becomes the tunnel), written and
//! read like any request's ([`crate::upstream`]); when the backend answers `101`, that answer
//! goes to the client and both connections become one byte pipe: no frame is parsed or
//! re-encoded, so the
//! extensions and subprotocols the two ends agree on pass through untouched. Any other answer
//! goes to the client as it came (a failure before any answer is retried or becomes JSON, as for
//! any request).
//!
//! A tunnel holds its backend's lease while open (it counts as in flight, which
//! `least_connections` sees), ends when either side closes or fails, after
//! `server.tunnel_idle_timeout_secs` with no byte either way, or when a drain's grace ends.
//! While draining no new tunnel is opened.

use std::cell::Cell;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{ConnectionType, ResponseHead};
use actix_web::body::BodyStream;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode, Version};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::attempt::{AttemptError, Attempts};
use super::body::RequestBody;
use super::error::ProxyError;
use super::headers;
use super::response::{to_client, Forwarded};
use super::state::ProxyState;
use super::tunnels::Tunnels;
use crate::http::tls::ViaTls;
use crate::registry::{Lease, Outcome};
use crate::upstream::{Connections, Io, Reply, Request};

/// Bytes read from a backend at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Chunks on their way to the client, per tunnel; a client that stops reading stops the
/// backend's side being read once these are queued.
const QUEUED_CHUNKS: usize = 8;

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
) -> Result<Forwarded, ProxyError> {
    if state.tunnels.draining.is_draining() {
        return Err(ProxyError::Draining);
    }
    let peer = req.peer_addr().map(|addr| addr.ip());
    let via_tls = req.conn_data::<ViaTls>().is_some();
    let target = headers::target(req);
    let websocket = HeaderValue::from_static("websocket");
    let affinity = state.hash_clients.then(|| state.identity.affinity(req));
    let mut attempts = Attempts::new(state, affinity);
    loop {
        let lease = attempts.next()?;
        let backend = Arc::clone(&lease.backend);
        let host = backend.authority.as_str();
        // The client's path, query and end-to-end headers (`Sec-WebSocket-*` among them), the
        // forwarding headers, and the upgrade.
        let headers =
            |out: &mut BytesMut| headers::write_to_backend(req.headers(), peer, via_tls, host, out);
        let handshake = Request {
            method: &Method::GET,
            target: &target,
            headers: &headers,
            upgrade: Some(&websocket),
        };
        let failure = match connections.upgrade(&backend, &handshake).await {
            Ok(Reply::Switched { head, io, early }) => {
                lease.record(Outcome::Responded);
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
                let body = start(pump, state);
                return Ok((response.set_body(body).map_into_boxed_body(), backend));
            }
            Ok(Reply::Answer(answer)) => {
                lease.record(Outcome::Responded);
                let mut response = to_client(
                    &Method::GET,
                    answer.head.status,
                    &answer.head.headers,
                    answer.body,
                    lease,
                    state.send_timeout,
                );
                // actix-http writes the body of any answer to a WebSocket handshake as raw
                // bytes to the end of the connection, even one it labelled chunked: so no such
                // label. A body without a length then ends with the connection (which
                // closes after it anyway).
                response.head_mut().no_chunking(true);
                return Ok((response, backend));
            }
            Err(err) => AttemptError::from(err),
        };
        // A handshake has no body and GET is idempotent: a refused connect or a reset before
        // the answer may go to another backend; a timeout is not retried.
        let retryable = failure.retryable(&Method::GET, &RequestBody::Empty);
        attempts.failed(lease, failure, retryable)?;
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

/// What one tunnel carries.
struct Pump {
    io: Io,
    early: Bytes,
    payload: web::Payload,
    lease: Lease,
}

/// Why a tunnel ended.
enum Ended {
    BackendClosed,
    BackendFailed(io::Error),
    ClientGone,
    ClientFailed(String),
    Idle(Duration),
    Drained,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BackendClosed => f.write_str("the backend closed it"),
            Self::BackendFailed(err) => write!(f, "the backend's side failed: {err}"),
            Self::ClientGone => f.write_str("the client closed it"),
            Self::ClientFailed(err) => write!(f, "the client's side failed: {err}"),
            Self::Idle(after) => write!(f, "no byte either way for {} s", after.as_secs()),
            Self::Drained => f.write_str("the drain's grace ended"),
        }
    }
}

/// Starts the tunnel's task; the returned stream is what the client is sent.
fn start(
    pump: Pump,
    state: &ProxyState,
) -> BodyStream<impl Stream<Item = Result<Bytes, io::Error>>> {
    let (to_client, mut queued) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
    let counted = state.tunnels.opened(&state.metrics);
    actix_rt::spawn(async move {
        let opened = Instant::now();
        let backend = Arc::clone(&pump.lease.backend);
        let (ended, up, down) = run(pump, counted.tunnels(), to_client).await;
        let line = format!(
            "WebSocket tunnel to {backend} closed after {:.1} s ({ended}); {up} bytes up, {down} down",
            opened.elapsed().as_secs_f64()
        );
        match ended {
            Ended::BackendFailed(_) | Ended::ClientFailed(_) => log::warn!("{line}"),
            Ended::Idle(_) | Ended::Drained => log::info!("{line}"),
            Ended::BackendClosed | Ended::ClientGone => log::debug!("{line}"),
        }
        drop(counted);
    });
    BodyStream::new(futures_util::stream::poll_fn(move |cx| {
        queued.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }))
}

/// Carries bytes both ways until one of the ends described by [`Ended`]; returns it with the
/// bytes sent up (to the backend) and down (to the client).
async fn run(pump: Pump, tunnels: &Tunnels, to_client: mpsc::Sender<Bytes>) -> (Ended, u64, u64) {
    let Pump {
        io,
        early,
        mut payload,
        lease,
    } = pump;
    let (mut from_backend, mut to_backend) = tokio::io::split(io);
    let mut closing = tunnels.closing();
    let idle_timeout = tunnels.idle_timeout;
    let last_byte = Cell::new(Instant::now());
    let (sent_up, sent_down) = (Cell::new(0u64), Cell::new(0u64));

    let up = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|err| Ended::ClientFailed(err.to_string()))?;
            to_backend
                .write_all(&chunk)
                .await
                .map_err(Ended::BackendFailed)?;
            // TLS buffers a record until flushed; for TCP this does nothing.
            to_backend.flush().await.map_err(Ended::BackendFailed)?;
            sent_up.set(sent_up.get() + chunk.len() as u64);
            last_byte.set(Instant::now());
        }
        // The client finished sending: pass the half-close on and keep the other way open
        // until the backend closes too.
        let _ = to_backend.shutdown().await;
        std::future::pending::<Result<Infallible, Ended>>().await
    };
    let down = async {
        if !early.is_empty() {
            sent_down.set(early.len() as u64);
            to_client.send(early).await.map_err(|_| Ended::ClientGone)?;
        }
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            buf.reserve(READ_CHUNK);
            match from_backend.read_buf(&mut buf).await {
                Ok(0) => return Err::<Infallible, _>(Ended::BackendClosed),
                Ok(n) => sent_down.set(sent_down.get() + n as u64),
                Err(err) => return Err(Ended::BackendFailed(err)),
            }
            last_byte.set(Instant::now());
            let chunk = buf.split().freeze();
            to_client.send(chunk).await.map_err(|_| Ended::ClientGone)?;
        }
    };
    let idle = async {
        loop {
            let deadline = last_byte.get() + idle_timeout;
            if Instant::now() >= deadline {
                return Ended::Idle(idle_timeout);
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    let drained = async {
        if closing.wait_for(|closing| *closing).await.is_err() {
            // The signal's sender is gone with the server; nothing will ask any more.
            std::future::pending::<()>().await;
        }
        Ended::Drained
    };
    let ended = tokio::select! {
        Err(ended) = up => ended,
        Err(ended) = down => ended,
        ended = idle => ended,
        ended = drained => ended,
    };
    drop(lease);
    (ended, sent_up.get(), sent_down.get())
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

//! WebSocket tunnels. A `GET` over HTTP/1.1 with `Upgrade: websocket` and `Connection: upgrade`
//! is admitted like any request, then sent to the backend the strategy picks over a connection
//! of its own (not awc's pool: the connection becomes the tunnel). The handshake goes up through
//! actix-http's HTTP/1.1 client codec; when the backend answers `101`, that answer goes to the
//! client and both connections become one byte pipe: no frame is parsed or re-encoded, so the
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

use actix_codec::{Decoder, Encoder};
use actix_http::h1::{ClientCodec, Message, MessageType};
use actix_http::{ConnectionType, RequestHead, RequestHeadType, ResponseHead};
use actix_web::body::{BodySize, BodyStream};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::uri::PathAndQuery;
use actix_web::http::{Method, StatusCode, Uri, Version};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use awc::error::PayloadError;
use futures_util::{Stream, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::attempt::{AttemptError, Attempts};
use super::body::RequestBody;
use super::error::ProxyError;
use super::headers;
use super::response::{to_client, Forwarded};
use super::state::ProxyState;
use super::tunnels::Tunnels;
use crate::backend::Backend;
use crate::http::tls::ViaTls;
use crate::registry::{Lease, Outcome};

/// Bytes read from a backend at a time.
const READ_CHUNK: usize = 16 * 1024;
/// A backend's answer head larger than this is refused (actix-http's own cap is higher).
const MAX_ANSWER_HEAD: usize = 64 * 1024;
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
) -> Result<Forwarded, ProxyError> {
    let tunnels = &state.tunnels;
    if tunnels.draining.is_draining() {
        return Err(ProxyError::Draining);
    }
    let head = handshake_head(req);
    let affinity = state.hash_clients.then(|| state.identity.affinity(req));
    let mut attempts = Attempts::new(state, affinity);
    loop {
        let lease = attempts.next()?;
        let backend = Arc::clone(&lease.backend);
        let failure = match handshake(&backend, head.clone(), tunnels).await {
            Ok(Answer::Switched { head, io, early }) => {
                lease.record(Outcome::Responded);
                let Some(upgrade) = websocket_upgrade(&head) else {
                    log::error!("backend {backend} answered 101 without Upgrade: websocket");
                    return Err(ProxyError::BadGateway);
                };
                let response = switched(&head, upgrade);
                let body = start(
                    Pump {
                        io,
                        early,
                        payload,
                        lease,
                    },
                    state,
                );
                return Ok((response.set_body(body).map_into_boxed_body(), backend));
            }
            Ok(Answer::Refused { head, body }) => {
                lease.record(Outcome::Responded);
                let mut response = to_client(
                    &Method::GET,
                    head.status,
                    &head.headers,
                    body,
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
            Err(failure) => failure,
        };
        // A handshake has no body and GET is idempotent: a refused connect or a reset before
        // the answer may go to another backend; a timeout is not retried.
        let retryable = failure.retryable(&Method::GET, &RequestBody::Empty);
        attempts.failed(lease, failure, retryable)?;
    }
}

/// The handshake as it goes to backends: the client's path, query and end-to-end headers
/// (`Sec-WebSocket-*` among them), the forwarding headers, and `Upgrade: websocket`.
fn handshake_head(req: &HttpRequest) -> RequestHead {
    let peer = req.peer_addr().map(|addr| addr.ip());
    let via_tls = req.conn_data::<ViaTls>().is_some();
    let target = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut head = RequestHead::default();
    head.method = Method::GET;
    head.version = Version::HTTP_11;
    head.uri = Uri::from(target);
    head.headers = headers::to_backend(req.headers(), peer, via_tls);
    head.headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    head.set_connection_type(ConnectionType::Upgrade);
    head
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

/// A backend connection: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}
type BoxIo = Box<dyn Io>;

/// A backend's answer to a handshake.
enum Answer {
    /// `101`: the connection is now the backend's end of the tunnel; `early` holds what the
    /// backend sent right behind the head.
    Switched {
        head: ResponseHead,
        io: BoxIo,
        early: Bytes,
    },
    /// Anything else, with its body, for the client.
    Refused {
        head: ResponseHead,
        body: RefusalBody,
    },
}

type RefusalBody = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>;

/// Connects (within the connect timeout, TLS included) and exchanges the handshake (within
/// the response timeout).
async fn handshake(
    backend: &Backend,
    head: RequestHead,
    tunnels: &Tunnels,
) -> Result<Answer, AttemptError> {
    let mut io = tokio::time::timeout(tunnels.connect_timeout, connect(backend, tunnels))
        .await
        .map_err(|_| AttemptError::Connect("connect timed out".to_owned()))??;
    tokio::time::timeout(tunnels.response_timeout, async {
        let mut codec = ClientCodec::default();
        let mut out = BytesMut::new();
        let dated = head.headers.contains_key(header::DATE);
        codec
            .encode(
                Message::Item((RequestHeadType::Owned(head), BodySize::None)),
                &mut out,
            )
            .map_err(|err| AttemptError::Reset(err.to_string()))?;
        if !dated {
            headers::drop_encoder_date(&mut out);
        }
        io.write_all(&out)
            .await
            .map_err(|err| AttemptError::Reset(err.to_string()))?;
        let mut read = BytesMut::with_capacity(READ_CHUNK);
        let head = loop {
            match codec.decode(&mut read) {
                Ok(Some(head)) => break head,
                Ok(None) if read.len() > MAX_ANSWER_HEAD => {
                    return Err(AttemptError::Reset("answer head too large".to_owned()))
                }
                Ok(None) => {}
                Err(err) => return Err(AttemptError::Reset(format!("bad answer: {err}"))),
            }
            match io.read_buf(&mut read).await {
                Ok(0) => return Err(AttemptError::Reset("closed before answering".to_owned())),
                Ok(_) => {}
                Err(err) => return Err(AttemptError::Reset(err.to_string())),
            }
        };
        Ok(if head.status == StatusCode::SWITCHING_PROTOCOLS {
            Answer::Switched {
                head,
                io,
                early: read.freeze(),
            }
        } else {
            let body = refusal_body(io, read, codec, &head);
            Answer::Refused { head, body }
        })
    })
    .await
    .map_err(|_| AttemptError::Timeout)?
}

async fn connect(backend: &Backend, tunnels: &Tunnels) -> Result<BoxIo, AttemptError> {
    let connect_error = |err: io::Error| AttemptError::Connect(err.to_string());
    let tcp = TcpStream::connect(backend.authority.as_str())
        .await
        .map_err(connect_error)?;
    // Frames are small and each should go at once.
    tcp.set_nodelay(true).map_err(connect_error)?;
    if !backend.tls {
        return Ok(Box::new(tcp));
    }
    let host = backend.authority.host();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned())
        .map_err(|err| AttemptError::Connect(format!("{host} as a TLS server name: {err}")))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(&tunnels.backend_tls))
        .connect(name, tcp)
        .await
        .map_err(connect_error)?;
    Ok(Box::new(tls))
}

/// The body of a non-`101` answer, framed as its head says: a length, chunked, or — with
/// neither, on a status that has a body — everything until the backend closes (RFC 9112 §6.3;
/// actix-http's client codec reads that as no body for HTTP/1.1, so it is read here).
fn refusal_body(io: BoxIo, read: BytesMut, codec: ClientCodec, head: &ResponseHead) -> RefusalBody {
    let framed = head.headers.contains_key(header::CONTENT_LENGTH)
        || head.headers.contains_key(header::TRANSFER_ENCODING);
    let bodiless = head.status.is_informational()
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED;
    let to_close = !framed && !bodiless;
    if to_close {
        return Box::pin(futures_util::stream::unfold(
            Some((io, read)),
            |state| async move {
                let (mut io, mut read) = state?;
                if !read.is_empty() {
                    return Some((Ok(read.split().freeze()), Some((io, read))));
                }
                match io.read_buf(&mut read).await {
                    Ok(0) => None,
                    Ok(_) => Some((Ok(read.split().freeze()), Some((io, read)))),
                    Err(err) => Some((Err(PayloadError::Io(err)), None)),
                }
            },
        ));
    }
    if codec.message_type() == MessageType::None {
        return Box::pin(futures_util::stream::empty());
    }
    let codec = codec.into_payload_codec();
    Box::pin(futures_util::stream::unfold(
        Some((io, read, codec)),
        |state| async move {
            let (mut io, mut read, mut codec) = state?;
            loop {
                match codec.decode(&mut read) {
                    Ok(Some(Some(chunk))) => return Some((Ok(chunk), Some((io, read, codec)))),
                    Ok(Some(None)) => return None,
                    Ok(None) => {}
                    Err(err) => return Some((Err(err), None)),
                }
                match io.read_buf(&mut read).await {
                    // Short of a stated length: the client's decoder sees the body end early.
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(err) => return Some((Err(PayloadError::Io(err)), None)),
                }
            }
        },
    ))
}

/// What one tunnel carries.
struct Pump {
    io: BoxIo,
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

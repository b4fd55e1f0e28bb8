//! The proxy's own HTTP/1.1 client for plain `http://` backends: actix-http's public client
//! codec over kept-alive connections of this worker, instead of awc. awc builds a new codec,
//! and with it a `ServiceConfig` whose date task is spawned and aborted, for every request; here
//! one `ServiceConfig` serves the worker and a connection keeps its codec and buffers from one
//! request to the next. awc stays the client for `https://` backends and health probes.
//!
//! Connections are kept per backend while idle for up to [`IDLE_FOR`] (a sweep closes older
//! ones). One taken from the pool
//! is checked first (a backend that closed it, or wrote to it unasked, makes it unusable); one
//! that fails anyway before any byte of an answer came back is replaced by a fresh connection
//! once, for requests that may be sent again (idempotent, body in memory), without counting
//! against the backend. A connection goes back to the pool only when its answer was read to the
//! end, the backend keeps it alive and nothing unasked follows.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use actix_codec::{Decoder, Encoder};
use actix_http::h1::{ClientCodec, ClientPayloadCodec, Message, MessageType};
use actix_http::{RequestHead, RequestHeadType, ResponseHead, ServiceConfig, ServiceConfigBuilder};
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::http::header;
use actix_web::http::uri::PathAndQuery;
use actix_web::http::{Method, StatusCode, Uri, Version};
use actix_web::web::{Bytes, BytesMut};
use awc::error::PayloadError;
use futures_util::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::attempt::AttemptError;
use super::body::BodyTooLarge;
use super::headers;
use crate::backend::{Backend, BackendId};

/// An idle connection older than this is not used again (awc's default keep-alive too).
const IDLE_FOR: Duration = Duration::from_secs(15);
/// Idle connections kept per backend and worker.
const MAX_IDLE: usize = 512;
/// Body chunks at least this large are written from their own buffer rather than copied.
const DIRECT_WRITE: usize = 8 * 1024;
/// Read buffer reserve.
const READ_CHUNK: usize = 16 * 1024;
/// A response head larger than this is refused (actix-http's codec caps lower first).
const MAX_HEAD: usize = 256 * 1024;

/// A worker's clients to backends: its own for plain ones, awc for the rest.
pub struct WorkerClients {
    pub origins: Origins,
    pub awc: awc::Client,
}

impl WorkerClients {
    /// Must be called on the worker thread that uses them.
    pub fn new(
        connect_timeout: Duration,
        response_timeout: Duration,
        backend_tls: &std::sync::Arc<rustls::ClientConfig>,
    ) -> Self {
        Self {
            origins: Origins::new(connect_timeout, response_timeout),
            awc: crate::upstream::client(connect_timeout, response_timeout, backend_tls),
        }
    }
}

/// This worker's connections to plain backends. Cheap to clone; not `Send` (one per worker).
#[derive(Clone)]
pub struct Origins(Rc<Inner>);

struct Inner {
    /// One per worker: its date task is spawned once, here.
    config: ServiceConfig,
    idle: RefCell<HashMap<BackendId, Vec<(Connection, Instant)>>>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

/// What an exchange sends besides the body.
struct Request<'a> {
    method: &'a Method,
    target: &'a PathAndQuery,
    headers: &'a dyn Fn(&mut BytesMut),
}

/// A kept-alive connection with its codec and read buffer.
struct Connection {
    io: TcpStream,
    read: BytesMut,
    write: BytesMut,
    codec: ClientCodec,
}

/// An answer's head, and its body streaming from the connection.
pub struct Answer {
    pub head: ResponseHead,
    pub body: AnswerBody,
}

impl Origins {
    /// Must be called on the worker thread that uses it.
    pub fn new(connect_timeout: Duration, response_timeout: Duration) -> Self {
        let inner = Rc::new(Inner {
            config: ServiceConfigBuilder::new().build(),
            idle: RefCell::new(HashMap::new()),
            connect_timeout,
            response_timeout,
        });
        // Connections idle too long are closed even when nothing asks for their backend any
        // more (it left the pool, or its turn never comes); the task ends with the worker.
        let weak = Rc::downgrade(&inner);
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(IDLE_FOR);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.idle.borrow_mut().retain(|_, list| {
                    list.retain(|(_, since)| since.elapsed() < IDLE_FOR);
                    !list.is_empty()
                });
            }
        });
        Self(inner)
    }

    /// Sends a request to `backend` and reads the answer's head (within the response timeout).
    /// `headers` writes the request's header lines (`Host` among them) into the head; it and
    /// `body` are called again for a second exchange. `replayable`: whether the request may be
    /// sent again after a reused connection failed.
    pub async fn send(
        &self,
        backend: &Backend,
        method: &Method,
        target: &PathAndQuery,
        headers: impl Fn(&mut BytesMut),
        body: impl Fn() -> BoxBody,
        replayable: bool,
    ) -> Result<Answer, AttemptError> {
        let request = Request {
            method,
            target,
            headers: &headers,
        };
        if let Some(conn) = self.take_idle(backend.id) {
            match self.exchange(conn, backend.id, &request, body()).await {
                Err(Failure::Stale(why)) if replayable => {
                    log::debug!("kept-alive connection to {backend} was gone ({why}); a new one");
                }
                other => return other.map_err(Failure::into_attempt),
            }
        }
        let conn = self.connect(backend).await?;
        self.exchange(conn, backend.id, &request, body())
            .await
            .map_err(Failure::into_attempt)
    }

    async fn connect(&self, backend: &Backend) -> Result<Connection, AttemptError> {
        let connect = TcpStream::connect(backend.authority.as_str());
        let io = match tokio::time::timeout(self.0.connect_timeout, connect).await {
            Ok(Ok(io)) => io,
            Ok(Err(err)) => return Err(AttemptError::Connect(err.to_string())),
            Err(_) => return Err(AttemptError::Connect("connect timed out".to_owned())),
        };
        io.set_nodelay(true)
            .map_err(|err| AttemptError::Connect(err.to_string()))?;
        Ok(Connection {
            io,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: BytesMut::with_capacity(READ_CHUNK),
            codec: ClientCodec::new(self.0.config.clone()),
        })
    }

    /// A pooled connection to `backend` that is still usable, if any.
    fn take_idle(&self, backend: BackendId) -> Option<Connection> {
        let mut idle = self.0.idle.borrow_mut();
        let list = idle.get_mut(&backend)?;
        while let Some((conn, since)) = list.pop() {
            if since.elapsed() < IDLE_FOR && conn.usable() {
                return Some(conn);
            }
        }
        None
    }

    fn put_back(&self, backend: BackendId, conn: Connection) {
        let mut idle = self.0.idle.borrow_mut();
        let list = idle.entry(backend).or_default();
        if list.len() < MAX_IDLE {
            list.push((conn, Instant::now()));
        }
    }

    /// Writes the request and reads the answer's head on `conn`.
    async fn exchange(
        &self,
        mut conn: Connection,
        backend: BackendId,
        request: &Request<'_>,
        mut body: BoxBody,
    ) -> Result<Answer, Failure> {
        let size = body.size();
        let method = request.method;
        let exchange = async {
            conn.write.clear();
            // The codec writes the request line and the framing (and keeps what it needs to
            // read the answer: whether it was HEAD, the connection's fate) and a `Date` of its
            // own, taken out again; the forwarded headers go in before the head's closing
            // blank line, straight from the client's.
            let mut head = RequestHead::default();
            head.method = method.clone();
            head.uri = Uri::from(request.target.clone());
            head.version = Version::HTTP_11;
            conn.codec
                .encode(
                    Message::Item((RequestHeadType::Owned(head), size)),
                    &mut conn.write,
                )
                .map_err(Failure::Reset)?;
            if !conn.write.ends_with(b"\r\n\r\n") {
                return Err(Failure::Reset(io::Error::other(
                    "the codec's request head did not end with a blank line",
                )));
            }
            headers::drop_encoder_date(&mut conn.write);
            conn.write.truncate(conn.write.len() - 2);
            (request.headers)(&mut conn.write);
            conn.write.extend_from_slice(b"\r\n");
            if !matches!(size, BodySize::None | BodySize::Sized(0)) {
                let mut wrote_directly = false;
                loop {
                    let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_next(cx)).await;
                    match next {
                        // Large chunks go out from the buffer the server handed over, with
                        // what is waiting and their framing, in one vectored write: no copy.
                        Some(Ok(chunk)) if chunk.len() >= DIRECT_WRITE => {
                            let chunked = matches!(size, BodySize::Stream);
                            if chunked {
                                use std::fmt::Write as _;
                                let _ = write!(conn.write, "{:X}\r\n", chunk.len());
                            }
                            let tail: &[u8] = if chunked { b"\r\n" } else { b"" };
                            write_parts(&mut conn.io, [&conn.write[..], &chunk[..], tail])
                                .await
                                .map_err(Failure::Stale)?;
                            conn.write.clear();
                            wrote_directly = true;
                        }
                        Some(Ok(chunk)) => {
                            conn.codec
                                .encode(Message::Chunk(Some(chunk)), &mut conn.write)
                                .map_err(Failure::Reset)?;
                            if conn.write.len() >= READ_CHUNK {
                                write_out(&mut conn).await?;
                            }
                        }
                        Some(Err(err)) => {
                            return Err(Failure::ClientBody {
                                too_large: err.downcast_ref::<BodyTooLarge>().is_some(),
                                reason: err.to_string(),
                            })
                        }
                        None => break,
                    }
                }
                // A sized body needs no end mark (and the codec's count of it missed the
                // chunks written directly); a chunked one ends with the last chunk.
                if !(wrote_directly && matches!(size, BodySize::Sized(_))) {
                    conn.codec
                        .encode(Message::Chunk(None), &mut conn.write)
                        .map_err(Failure::Reset)?;
                }
            }
            write_out(&mut conn).await?;
            read_head(&mut conn).await
        };
        let head = tokio::time::timeout(self.0.response_timeout, exchange)
            .await
            .map_err(|_| Failure::Timeout)??;
        let to_close = !head.headers.contains_key(header::CONTENT_LENGTH)
            && !head.headers.contains_key(header::TRANSFER_ENCODING)
            && has_body(method, head.status);
        let Connection {
            io,
            read,
            write,
            codec,
        } = conn;
        let framing = if to_close {
            // Neither a length nor chunks: the body ends when the backend closes (RFC 9112
            // §6.3), which the codec reads as no body for HTTP/1.1.
            Framing::ToClose
        } else if codec.message_type() == MessageType::None {
            let conn = Connection {
                io,
                read,
                write,
                codec,
            };
            self.finished(backend, conn.codec.keep_alive(), conn);
            return Ok(Answer {
                head,
                body: AnswerBody::empty(),
            });
        } else {
            Framing::Codec(codec.into_payload_codec())
        };
        let body = AnswerBody {
            state: Some(Reading {
                io,
                read,
                write,
                framing,
                origins: self.clone(),
                backend,
            }),
        };
        Ok(Answer { head, body })
    }

    /// An answer read to its end: the connection goes back to the pool when it can be used
    /// again.
    fn finished(&self, backend: BackendId, keep_alive: bool, conn: Connection) {
        if keep_alive && conn.read.is_empty() {
            self.put_back(backend, conn);
        }
    }
}

impl Connection {
    /// Whether a pooled connection is still open with nothing unasked waiting on it.
    fn usable(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
    }
}

/// How an exchange failed.
enum Failure {
    /// Writing or reading broke before any byte of an answer came back: on a reused
    /// connection, most likely closed by the backend while idle.
    Stale(io::Error),
    /// Broke after part of an answer, or the answer was malformed.
    Reset(io::Error),
    Timeout,
    ClientBody {
        reason: String,
        too_large: bool,
    },
}

impl Failure {
    fn into_attempt(self) -> AttemptError {
        match self {
            Self::Stale(err) | Self::Reset(err) => AttemptError::Reset(err.to_string()),
            Self::Timeout => AttemptError::Timeout,
            Self::ClientBody { reason, too_large } => {
                AttemptError::ClientBody { reason, too_large }
            }
        }
    }
}

async fn write_out(conn: &mut Connection) -> Result<(), Failure> {
    conn.io
        .write_all(&conn.write)
        .await
        .map_err(Failure::Stale)?;
    conn.write.clear();
    Ok(())
}

/// Writes `parts` in order, with as few vectored writes as the socket takes.
async fn write_parts(io: &mut TcpStream, mut parts: [&[u8]; 3]) -> io::Result<()> {
    loop {
        let slices = parts.map(io::IoSlice::new);
        let mut written = io.write_vectored(&slices).await?;
        if written == 0 && parts.iter().any(|part| !part.is_empty()) {
            return Err(io::ErrorKind::WriteZero.into());
        }
        for part in &mut parts {
            let taken = written.min(part.len());
            *part = &part[taken..];
            written -= taken;
        }
        if parts.iter().all(|part| part.is_empty()) {
            return Ok(());
        }
    }
}

/// Reads the answer's head, passing over informational answers other than `101`.
async fn read_head(conn: &mut Connection) -> Result<ResponseHead, Failure> {
    let mut answered = false;
    loop {
        match conn.codec.decode(&mut conn.read) {
            Ok(Some(head))
                if head.status.is_informational()
                    && head.status != StatusCode::SWITCHING_PROTOCOLS =>
            {
                answered = true;
            }
            Ok(Some(head)) => return Ok(head),
            Ok(None) if conn.read.len() > MAX_HEAD => {
                return Err(Failure::Reset(io::Error::other("answer head too large")))
            }
            Ok(None) => {}
            Err(err) => {
                return Err(Failure::Reset(io::Error::other(format!(
                    "malformed answer: {err}"
                ))))
            }
        }
        conn.read.reserve(READ_CHUNK);
        let read = conn.io.read_buf(&mut conn.read).await;
        let broke = match read {
            Ok(0) => io::Error::new(io::ErrorKind::UnexpectedEof, "closed before answering"),
            Ok(_) => {
                answered = true;
                continue;
            }
            Err(err) => err,
        };
        return Err(if answered {
            Failure::Reset(broke)
        } else {
            Failure::Stale(broke)
        });
    }
}

/// An answer's body as it arrives; the connection goes back to the pool at its end.
pub struct AnswerBody {
    state: Option<Reading>,
}

struct Reading {
    io: TcpStream,
    read: BytesMut,
    write: BytesMut,
    framing: Framing,
    origins: Origins,
    backend: BackendId,
}

/// How an answer's body ends.
enum Framing {
    /// As its head says (a length or chunks): the codec finds the end.
    Codec(ClientPayloadCodec),
    /// When the backend closes the connection.
    ToClose,
}

/// Whether an answer with `status` to `method` has a body (RFC 9110 §6.4.1).
fn has_body(method: &Method, status: StatusCode) -> bool {
    *method != Method::HEAD
        && !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED
}

impl AnswerBody {
    fn empty() -> Self {
        Self { state: None }
    }
}

impl Stream for AnswerBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(state) = this.state.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match &mut state.framing {
                Framing::ToClose => {
                    if !state.read.is_empty() {
                        return Poll::Ready(Some(Ok(state.read.split().freeze())));
                    }
                }
                Framing::Codec(codec) => match codec.decode(&mut state.read) {
                    Ok(Some(Some(chunk))) => return Poll::Ready(Some(Ok(chunk))),
                    Ok(Some(None)) => {
                        if let Some(Reading {
                            io,
                            read,
                            write,
                            framing: Framing::Codec(codec),
                            origins,
                            backend,
                        }) = this.state.take()
                        {
                            let keep_alive = codec.keep_alive();
                            let conn = Connection {
                                io,
                                read,
                                write,
                                codec: codec.into_message_codec(),
                            };
                            origins.finished(backend, keep_alive, conn);
                        }
                        return Poll::Ready(None);
                    }
                    Ok(None) => {}
                    Err(err) => {
                        this.state = None;
                        return Poll::Ready(Some(Err(err)));
                    }
                },
            }
            state.read.reserve(READ_CHUNK);
            match state.io.try_read_buf(&mut state.read) {
                Ok(0) => {
                    // Closed: the end of a body that ends so, else a body cut short.
                    let to_close = matches!(state.framing, Framing::ToClose);
                    this.state = None;
                    return Poll::Ready(if to_close {
                        None
                    } else {
                        Some(Err(PayloadError::Incomplete(None)))
                    });
                }
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(err) = ready!(state.io.poll_read_ready(cx)) {
                        this.state = None;
                        return Poll::Ready(Some(Err(PayloadError::Io(err))));
                    }
                }
                Err(err) => {
                    this.state = None;
                    return Poll::Ready(Some(Err(PayloadError::Io(err))));
                }
            }
        }
    }
}

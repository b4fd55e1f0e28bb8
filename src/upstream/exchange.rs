//! One exchange on a backend connection: the request head written here (request line, the
//! caller's header lines, the upgrade and framing lines; no header of our own), the body after
//! it, and the answer's head read back by the one head reader, with one limit. actix-http's
//! client codec is used only to read answers; nothing it writes is sent.

use std::fmt::Write as _;
use std::io;
use std::pin::Pin;

use actix_codec::Decoder;
use actix_http::h1::ClientCodec;
use actix_http::{ResponseHead, ServiceConfig};
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::http::header::HeaderValue;
use actix_web::http::uri::PathAndQuery;
use actix_web::http::{Method, StatusCode};
use actix_web::web::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::connector::Io;
use super::early;
use super::error::UpstreamError;

/// Bytes read from a backend at a time (the buffer reserve of every read and write).
pub const READ_CHUNK: usize = 16 * 1024;
/// A backend's answer head larger than this is refused (a 502 for the client).
pub const MAX_ANSWER_HEAD: usize = 64 * 1024;
/// Body chunks at least this large are written from their own buffer rather than copied.
const DIRECT_WRITE: usize = 8 * 1024;

/// What a request sends besides its body.
pub struct Request<'a> {
    pub method: &'a Method,
    /// The path and query.
    pub target: &'a PathAndQuery,
    /// Writes the request's header lines (`name: value\r\n` each, `Host` among them); called
    /// again for each exchange of the request.
    pub headers: &'a dyn Fn(&mut BytesMut),
    /// Asks the backend to switch to this protocol (`Upgrade` and `Connection: upgrade`).
    pub upgrade: Option<&'a HeaderValue>,
}

/// A connection with its buffers: what is kept alive between requests.
pub struct Connection {
    pub(super) io: Io,
    pub(super) read: BytesMut,
    write: BytesMut,
}

/// How an exchange failed.
pub(super) enum Failure {
    /// Writing or reading broke before any byte of an answer came back: on a reused
    /// connection, most likely closed by the backend while idle.
    Stale(io::Error),
    /// Broke after part of an answer, or the answer was malformed or too large.
    Reset(io::Error),
    Timeout,
    RequestBody(Box<dyn std::error::Error>),
}

impl Failure {
    pub(super) fn into_error(self) -> UpstreamError {
        match self {
            Self::Stale(err) | Self::Reset(err) => UpstreamError::Reset(err.to_string()),
            Self::Timeout => UpstreamError::Timeout,
            Self::RequestBody(err) => UpstreamError::RequestBody(err),
        }
    }
}

impl Connection {
    pub fn new(io: Io) -> Self {
        Self {
            io,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Whether an idle connection can carry another request.
    pub(super) fn usable(&mut self) -> bool {
        self.read.is_empty() && self.io.usable()
    }

    /// Writes `request` with `body` and reads the answer's head, all within `timeout`; the
    /// codec returned has read the head and knows how the body is framed. [`Sent::Cut`]: the
    /// backend answered before the body was all sent (see [`super::early`]).
    pub(super) async fn exchange(
        &mut self,
        request: &Request<'_>,
        body: BoxBody,
        config: &ServiceConfig,
        timeout: std::time::Duration,
    ) -> Result<(ResponseHead, ClientCodec, Sent), Failure> {
        let exchange = async {
            self.write.clear();
            let size = body.size();
            write_head(&mut self.write, request, size);
            let sent = self.write_body(body, size, request.method, config).await?;
            let mut codec = ClientCodec::new(config.clone());
            let head = self.read_head(&mut codec).await?;
            Ok((head, codec, sent))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Failure::Timeout)?
    }

    /// Sends the body after the head waiting in the write buffer: one held in memory at once,
    /// a streamed one in chunks while the answer is watched for (an early answer ends it).
    async fn write_body(
        &mut self,
        body: BoxBody,
        size: BodySize,
        method: &Method,
        config: &ServiceConfig,
    ) -> Result<Sent, Failure> {
        if matches!(size, BodySize::None | BodySize::Sized(0)) {
            write_out(&mut self.io, &mut self.write).await?;
            return Ok(Sent::Whole);
        }
        let body = match body.try_into_bytes() {
            Ok(bytes) if matches!(size, BodySize::Sized(_)) => {
                self.write.extend_from_slice(&bytes);
                write_out(&mut self.io, &mut self.write).await?;
                return Ok(Sent::Whole);
            }
            Ok(bytes) => bytes.boxed(),
            Err(body) => body,
        };
        let chunked = matches!(size, BodySize::Stream);
        let (mut reader, mut writer) = tokio::io::split(&mut self.io);
        tokio::select! {
            sent = send_stream(&mut writer, &mut self.write, body, chunked) => sent.map(|()| Sent::Whole),
            () = early::complete_answer(&mut reader, &mut self.read, READ_CHUNK, method, config) => Ok(Sent::Cut),
        }
    }

    /// Reads the answer's head, passing over informational answers other than `101`.
    async fn read_head(&mut self, codec: &mut ClientCodec) -> Result<ResponseHead, Failure> {
        let mut answered = false;
        let too_large = || {
            Failure::Reset(io::Error::other(format!(
                "answer head larger than {} KiB",
                MAX_ANSWER_HEAD / 1024
            )))
        };
        loop {
            let buffered = self.read.len();
            match codec.decode(&mut self.read) {
                Ok(Some(_)) if buffered - self.read.len() > MAX_ANSWER_HEAD => {
                    return Err(too_large())
                }
                Ok(Some(head))
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    answered = true;
                }
                Ok(Some(head)) => return Ok(head),
                Ok(None) if self.read.len() > MAX_ANSWER_HEAD => return Err(too_large()),
                Ok(None) => {}
                Err(err) => {
                    return Err(Failure::Reset(io::Error::other(format!(
                        "malformed answer: {err}"
                    ))))
                }
            }
            self.read.reserve(READ_CHUNK);
            let broke = match self.io.read_buf(&mut self.read).await {
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
}

/// The request head: request line, the caller's header lines, the upgrade, the framing.
fn write_head(out: &mut BytesMut, request: &Request<'_>, size: BodySize) {
    out.extend_from_slice(request.method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(request.target.as_str().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    (request.headers)(out);
    if let Some(protocol) = request.upgrade {
        out.extend_from_slice(b"upgrade: ");
        out.extend_from_slice(protocol.as_bytes());
        out.extend_from_slice(b"\r\nconnection: upgrade\r\n");
    }
    match size {
        BodySize::None => {}
        BodySize::Sized(len) => {
            let _ = write!(out, "content-length: {len}\r\n");
        }
        BodySize::Stream => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether the request's body was all sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Whole,
    /// The backend answered first; the rest was not sent.
    Cut,
}

/// Streams `body` to `io` after the head waiting in `write`, in chunks (`chunked`: with
/// chunked framing). Chunks that are ready are gathered up to [`READ_CHUNK`]; large ones go out
/// from the buffer the server handed over, with what is waiting and their framing, in one
/// vectored write: no copy.
async fn send_stream<W: AsyncWrite + Unpin>(
    io: &mut W,
    write: &mut BytesMut,
    mut body: BoxBody,
    chunked: bool,
) -> Result<(), Failure> {
    loop {
        let mut next_chunk = std::future::poll_fn(|cx| Pin::new(&mut body).poll_next(cx));
        let next = match (&mut next_chunk).now_or_never() {
            Some(next) => next,
            None => {
                // The client's next chunk is not here yet: what waits goes out first (the head
                // at the start), so the backend sees a slow upload as it comes.
                if !write.is_empty() {
                    write_out(io, write).await?;
                }
                next_chunk.await
            }
        };
        match next {
            Some(Ok(chunk)) if chunk.len() >= DIRECT_WRITE => {
                if chunked {
                    let _ = write!(write, "{:X}\r\n", chunk.len());
                }
                let tail: &[u8] = if chunked { b"\r\n" } else { b"" };
                write_parts(io, [&write[..], &chunk[..], tail])
                    .await
                    .map_err(Failure::Stale)?;
                io.flush().await.map_err(Failure::Stale)?;
                write.clear();
            }
            Some(Ok(chunk)) => {
                if chunked {
                    let _ = write!(write, "{:X}\r\n", chunk.len());
                }
                write.extend_from_slice(&chunk);
                if chunked {
                    write.extend_from_slice(b"\r\n");
                }
                if write.len() >= READ_CHUNK {
                    write_out(io, write).await?;
                }
            }
            Some(Err(err)) => return Err(Failure::RequestBody(err)),
            None => break,
        }
    }
    if chunked {
        write.extend_from_slice(b"0\r\n\r\n");
    }
    write_out(io, write).await
}

/// Sends what waits in `write`, and flushes it out of TLS's buffer too: a body that streams
/// must not sit there while the client's next chunk is awaited.
async fn write_out<W: AsyncWrite + Unpin>(io: &mut W, write: &mut BytesMut) -> Result<(), Failure> {
    io.write_all(write).await.map_err(Failure::Stale)?;
    io.flush().await.map_err(Failure::Stale)?;
    write.clear();
    Ok(())
}

/// Writes `parts` in order, with as few vectored writes as the connection takes.
async fn write_parts<W: AsyncWrite + Unpin>(io: &mut W, mut parts: [&[u8]; 3]) -> io::Result<()> {
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

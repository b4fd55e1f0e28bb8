//! The request body on its way to a backend. Small bodies with a `Content-Length` are read
//! into memory so any number of attempts can send them; larger and chunked bodies stream from
//! the client, and can still be sent to another backend as long as no byte of them was taken
//! (a refused connect never takes any). Framing is kept: a sized body goes up with the same
//! `Content-Length`, a chunked one as chunked.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::body::{self, BodyStream, BoxBody, MessageBody, SizedStream};
use actix_web::http::header::{self, HeaderMap};
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::{Stream, StreamExt};

use super::error::ProxyError;

/// A request body ready for one or more attempts.
pub enum RequestBody {
    /// No body at all (no Content-Length, not chunked).
    Empty,
    /// Read in full; can be sent any number of times.
    Buffered(Bytes),
    /// Streams from the client; `length` is the Content-Length, `None` for chunked.
    Streamed {
        source: SharedPayload,
        length: Option<u64>,
    },
}

/// What the body's headers say about it.
enum Framing {
    None,
    Length(u64),
    Chunked,
}

fn framing(headers: &HeaderMap) -> Result<Framing, ProxyError> {
    // actix-http has already refused requests with both headers or conflicting lengths.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Ok(Framing::Chunked);
    }
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(Framing::None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .map(Framing::Length)
            .ok_or(ProxyError::BadRequest("invalid Content-Length")),
    }
}

impl RequestBody {
    /// Reads a small sized body into memory, or prepares a larger or chunked one to stream.
    /// `max_bytes` is `backends.max_request_body_bytes`.
    pub async fn prepare(
        headers: &HeaderMap,
        mut payload: Payload,
        retry_limit: u64,
        max_bytes: Option<u64>,
    ) -> Result<Self, ProxyError> {
        let framing = framing(headers)?;
        if let (Framing::Length(len), Some(max)) = (&framing, max_bytes) {
            if *len > max {
                return Err(ProxyError::PayloadTooLarge);
            }
        }
        match framing {
            Framing::None => Ok(Self::Empty),
            Framing::Length(len) if len <= retry_limit => {
                let mut buf = BytesMut::with_capacity(len as usize);
                while let Some(chunk) = payload.next().await {
                    buf.extend_from_slice(&chunk.map_err(|_| ProxyError::BodyRead)?);
                }
                Ok(Self::Buffered(buf.freeze()))
            }
            Framing::Length(len) => Ok(Self::Streamed {
                source: SharedPayload::new(payload, max_bytes),
                length: Some(len),
            }),
            Framing::Chunked => Ok(Self::Streamed {
                source: SharedPayload::new(payload, max_bytes),
                length: None,
            }),
        }
    }

    /// Whether another attempt can still send this body in full.
    pub fn replayable(&self) -> bool {
        match self {
            Self::Empty | Self::Buffered(_) => true,
            Self::Streamed { source, .. } => !source.started.get(),
        }
    }

    /// Bytes of the body read from the client so far.
    pub fn bytes_read(&self) -> u64 {
        match self {
            Self::Empty => 0,
            Self::Buffered(bytes) => bytes.len() as u64,
            Self::Streamed { source, .. } => source.sent.get(),
        }
    }

    /// Whether the body was held in memory or absent (so a request that reached a backend may
    /// be sent again elsewhere without losing bytes).
    pub fn in_memory(&self) -> bool {
        matches!(self, Self::Empty | Self::Buffered(_))
    }

    /// The body for one attempt, with its framing.
    pub fn for_attempt(&self) -> BoxBody {
        match self {
            Self::Empty => body::None::new().boxed(),
            Self::Buffered(bytes) => bytes.clone().boxed(),
            Self::Streamed {
                source,
                length: Some(len),
            } => SizedStream::new(*len, source.stream()).boxed(),
            Self::Streamed {
                source,
                length: None,
            } => BodyStream::new(source.stream()).boxed(),
        }
    }
}

/// The client's payload, shared between attempts so that one that never took a byte can hand
/// it to the next.
#[derive(Clone)]
pub struct SharedPayload {
    payload: Rc<RefCell<Payload>>,
    /// Set once any chunk has been handed to a backend connection.
    started: Rc<Cell<bool>>,
    /// Bytes handed on so far, checked against `limit`.
    sent: Rc<Cell<u64>>,
    limit: Option<u64>,
}

impl SharedPayload {
    fn new(payload: Payload, limit: Option<u64>) -> Self {
        Self {
            payload: Rc::new(RefCell::new(payload)),
            started: Rc::new(Cell::new(false)),
            sent: Rc::new(Cell::new(0)),
            limit,
        }
    }

    fn stream(&self) -> PayloadStream {
        PayloadStream(self.clone())
    }
}

/// One attempt's view of a [`SharedPayload`].
struct PayloadStream(SharedPayload);

/// Ends an upload that grew past `backends.max_request_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body is larger than the configured limit")]
pub struct BodyTooLarge;

impl Stream for PayloadStream {
    type Item = Result<Bytes, Box<dyn std::error::Error>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let shared = &self.0;
        let polled = Pin::new(&mut *shared.payload.borrow_mut()).poll_next(cx);
        match polled {
            Poll::Ready(Some(Ok(chunk))) => {
                shared.started.set(true);
                let sent = shared.sent.get() + chunk.len() as u64;
                shared.sent.set(sent);
                match shared.limit {
                    Some(limit) if sent > limit => Poll::Ready(Some(Err(Box::new(BodyTooLarge)))),
                    _ => Poll::Ready(Some(Ok(chunk))),
                }
            }
            Poll::Ready(Some(Err(err))) => {
                shared.started.set(true);
                Poll::Ready(Some(Err(Box::new(err))))
            }
            other => other.map(|_| None),
        }
    }
}

//! A backend's answer as it comes back: its head, and its body streaming from the connection,
//! framed as the head says (a length, chunks, or — with neither — until the backend closes);
//! or, for a `101` to an upgrade, the connection itself. A connection goes back to its worker's
//! pool only when its answer was read to the end, the backend keeps it alive and nothing
//! unasked follows.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_codec::Decoder;
use actix_http::error::PayloadError;
use actix_http::h1::{ClientCodec, ClientPayloadCodec, MessageType};
use actix_http::ResponseHead;
use actix_web::http::{header, Method, StatusCode};
use actix_web::web::Bytes;
use futures_util::Stream;

use super::connector::Io;
use super::exchange::{Connection, READ_CHUNK};
use super::framing::has_body;
use super::idle::Home;

/// An answer's head, and its body streaming from the connection.
pub struct Answer {
    pub head: ResponseHead,
    pub body: AnswerBody,
    /// Given before the request's body was all sent: the client connection closes after it.
    pub early: bool,
}

/// What a request that asked to switch protocols gets back.
pub enum Reply {
    /// Any answer but a `101`, with its body.
    Answer(Answer),
    /// `101 Switching Protocols`: the connection is the backend's end of a tunnel now;
    /// `early` holds what the backend sent right behind the head.
    Switched {
        head: ResponseHead,
        io: Io,
        early: Bytes,
    },
}

/// An answer's body as it arrives.
pub struct AnswerBody {
    state: Option<Reading>,
}

struct Reading {
    conn: Connection,
    framing: Framing,
    /// The pool the connection goes back to at the body's end (if the backend keeps it alive).
    home: Option<Home>,
}

/// How an answer's body ends.
enum Framing {
    /// As its head says (a length or chunks): the codec finds the end.
    Codec(ClientPayloadCodec),
    /// When the backend closes the connection (RFC 9112 §6.3: neither a length nor chunks).
    ToClose,
}

/// The reply read on `conn` (whose `codec` has just read `head`) to a request that asked to
/// switch protocols: the connection itself on a `101`, else the answer (the connection is the
/// request's own, never pooled).
pub(super) fn reply(
    method: &Method,
    head: ResponseHead,
    codec: ClientCodec,
    conn: Connection,
) -> Reply {
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        let Connection { io, read, .. } = conn;
        let early = read.freeze();
        return Reply::Switched { head, io, early };
    }
    Reply::Answer(answer(method, head, codec, conn, None))
}

/// The answer read on `conn` (whose `codec` has just read `head`) to a `method` request;
/// `home`: where the connection goes back once the answer is read.
pub(super) fn answer(
    method: &Method,
    head: ResponseHead,
    codec: ClientCodec,
    conn: Connection,
    home: Option<Home>,
) -> Answer {
    let home = home.filter(|_| head.keep_alive());
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        // A switch nobody asked for: the answer goes on without a body, the connection not.
        return Answer::empty(head);
    }
    let framed = head.headers.contains_key(header::CONTENT_LENGTH)
        || head.headers.contains_key(header::TRANSFER_ENCODING);
    let bodiless = !has_body(method, head.status);
    if bodiless || (framed && codec.message_type() == MessageType::None) {
        // A HEAD answer may carry a length for the body it has not: nothing follows it. Any
        // other bodiless answer that says a body follows leaves its connection behind.
        let nothing_follows = *method == Method::HEAD || codec.message_type() == MessageType::None;
        if let (true, Some(home)) = (nothing_follows, home) {
            home.put_back(conn);
        }
        return Answer::empty(head);
    }
    let framing = if framed {
        Framing::Codec(codec.into_payload_codec())
    } else {
        // actix-http's codec reads this as no body for HTTP/1.1, so it is read here.
        Framing::ToClose
    };
    Answer {
        head,
        body: AnswerBody {
            state: Some(Reading {
                conn,
                framing,
                home,
            }),
        },
        early: false,
    }
}

impl Answer {
    fn empty(head: ResponseHead) -> Self {
        Self {
            head,
            body: AnswerBody { state: None },
            early: false,
        }
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
                Framing::ToClose if !state.conn.read.is_empty() => {
                    return Poll::Ready(Some(Ok(state.conn.read.split().freeze())));
                }
                Framing::ToClose => {}
                Framing::Codec(codec) => match codec.decode(&mut state.conn.read) {
                    Ok(Some(Some(chunk))) => return Poll::Ready(Some(Ok(chunk))),
                    Ok(Some(None)) => {
                        if let Some(Reading {
                            conn,
                            home: Some(home),
                            ..
                        }) = this.state.take()
                        {
                            home.put_back(conn);
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
            state.conn.read.reserve(READ_CHUNK);
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut state.conn.io),
                cx,
                &mut state.conn.read
            ));
            match read {
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
                Err(err) => {
                    this.state = None;
                    return Poll::Ready(Some(Err(PayloadError::Io(err))));
                }
            }
        }
    }
}

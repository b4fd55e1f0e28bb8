//! A response body that counts the bytes it hands on and, carrying a JSON access record or a
//! SERVER span, writes or ends it when the body ends — or when it is dropped unfinished (the
//! client went away).

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;

use super::note::Served;
use super::record::{self, Arrival, Outcome};
use super::writer::LineWriter;
use crate::http::h2_drain::H2Stream;
use crate::trace::PendingSpan;

/// What a JSON record still needs when the body ends.
pub struct Finish {
    pub arrival: Arrival,
    pub served: Served,
    pub status: u16,
    pub request_id: String,
    /// With tracing on.
    pub trace_id: Option<String>,
    pub writer: LineWriter,
}

impl Finish {
    fn write(self, bytes_out: u64) {
        let outcome = Outcome {
            request_id: &self.request_id,
            trace_id: self.trace_id.as_deref(),
            status: self.status,
            served: &self.served,
            bytes_out,
        };
        self.writer.write(record::json(&self.arrival, &outcome));
    }
}

/// The response body, passed through; with a record to write and a SERVER span to end at its
/// end.
pub struct LoggedBody<B> {
    body: B,
    finish: Option<Box<Finish>>,
    span: Option<Box<PendingSpan>>,
    bytes_out: u64,
    /// On an HTTP/2 connection: its request counts as under way until the body is dropped.
    _stream: Option<H2Stream>,
}

impl<B> LoggedBody<B> {
    pub fn new(
        body: B,
        finish: Option<Finish>,
        span: Option<PendingSpan>,
        stream: Option<H2Stream>,
    ) -> Self {
        Self {
            body,
            finish: finish.map(Box::new),
            span: span.map(Box::new),
            bytes_out: 0,
            _stream: stream,
        }
    }

    fn finish(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish.write(self.bytes_out);
        }
        if let Some(span) = self.span.take() {
            span.end();
        }
    }
}

impl<B: MessageBody + Unpin> MessageBody for LoggedBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => this.bytes_out += chunk.len() as u64,
            Poll::Ready(None | Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }
}

impl<B> Drop for LoggedBody<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

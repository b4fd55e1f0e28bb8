//! The backend's answer as the client gets it.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{self as body_types, BodyStream, BoxBody, MessageBody, SizedStream};
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpResponse};
use futures_util::Stream;

use super::headers;
use super::stall;
use crate::backend::Backend;
use crate::registry::Lease;

/// The response and the backend that gave it.
pub type Forwarded = (HttpResponse, Arc<Backend>);

/// The backend's response for the client: status and end-to-end headers as they came, the body
/// streamed with the same framing (a Content-Length stays a Content-Length). Statuses that
/// carry no body get none, so nothing stray is left on a kept-alive connection.
/// The lease travels with the body, so the attempt stays in flight until the body is sent; the
/// body is watched for a client that stops reading ([`stall`]).
pub fn to_client<S>(
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
    upstream_body: S,
    lease: Lease,
    send_timeout: Duration,
) -> HttpResponse
where
    S: Stream<Item = Result<web::Bytes, actix_http::error::PayloadError>> + Unpin + 'static,
{
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    // Only a body that is sent is watched; for the others the lease ends here.
    let expected = length.filter(|_| method != Method::HEAD);
    let watched = move || stall::Watched::new(upstream_body, lease, expected, send_timeout);
    let body: BoxBody = match (no_body, length) {
        (true, _) => body_types::None::new().boxed(),
        (false, Some(len)) => SizedStream::new(len, watched()).boxed(),
        (false, None) if method == Method::HEAD => body_types::None::new().boxed(),
        (false, None) => BodyStream::new(watched()).boxed(),
    };
    let mut response = HttpResponse::with_body(status, body);
    *response.headers_mut() = headers::to_client(headers);
    response
}

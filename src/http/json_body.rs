//! Reading an admin API's JSON body: `Content-Type: application/json` (else 415) and at most
//! [`MAX_BODY_BYTES`] (else 413), read without buffering more than that. Shared by `/clients`
//! and `/lb/api/backends`; each API validates the fields itself and names the bad one.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;

/// Largest admin request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("Request body too large (limit {MAX_BODY_BYTES} bytes)")]
    TooLarge,
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("body: could not be read ({0})")]
    Unreadable(String),
}

/// The body's bytes, once the content type and size are right.
pub async fn read_json(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<web::BytesMut, BodyError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(BodyError::UnsupportedMediaType);
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Unreadable(e.to_string()))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The answer's status for each reason.
pub fn body_status(err: &BodyError) -> StatusCode {
    match err {
        BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        BodyError::Unreadable(_) => StatusCode::BAD_REQUEST,
    }
}

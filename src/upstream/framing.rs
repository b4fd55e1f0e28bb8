//! How an answer is framed, by RFC 9110.

use actix_web::http::{Method, StatusCode};

/// Whether an answer with `status` to `method` has a body (RFC 9110 §6.4.1).
pub fn has_body(method: &Method, status: StatusCode) -> bool {
    *method != Method::HEAD
        && !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED
}

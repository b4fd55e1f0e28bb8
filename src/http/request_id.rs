//! Request IDs. A client's `X-Request-Id` is kept when it is 1–128 characters of
//! `[A-Za-z0-9._:/+=-]`; otherwise the balancer makes one (32 lowercase hex digits: the trace
//! id with tracing on) and puts it
//! in the request's headers, so the proxy sends it to the backend like any other header. The
//! access log middleware ([`super::access_log`]) settles the id, returns it on every response
//! and writes it into the balancer's own JSON error bodies ([`super::error::own_error_body`]).

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{HeaderName, HeaderValue};

use crate::digits::lower_hex;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id kept from a client.
const MAX_LEN: usize = 128;

/// Whether a client's id is kept as it is.
pub fn is_valid(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/+=-".contains(b))
}

/// A new id: 128 random bits as 32 lowercase hex digits.
pub fn make() -> HeaderValue {
    hex(u128::from(fastrand::u64(..)) << 64 | u128::from(fastrand::u64(..)))
}

/// 128 bits as 32 lowercase hex digits (a trace id, or random ones).
fn hex(bits: u128) -> HeaderValue {
    let mut digits = [0u8; 32];
    lower_hex(&bits.to_be_bytes(), &mut digits);
    HeaderValue::from_bytes(&digits).expect("hex digits are a valid header value")
}

/// The request's id: the client's when valid, else a new one — the request's trace id with
/// tracing on, else random — which replaces the client's in the request's headers.
pub fn settle(req: &mut ServiceRequest, trace_id: Option<[u8; 16]>) -> HeaderValue {
    let given = req.headers().get(X_REQUEST_ID);
    if let Some(id) = given.filter(|id| is_valid(id.as_bytes())) {
        return id.clone();
    }
    let id = match trace_id {
        Some(trace_id) => hex(u128::from_be_bytes(trace_id)),
        None => make(),
    };
    // Appending (no removal) when the client sent none, the common case.
    if given.is_some() {
        req.headers_mut().insert(X_REQUEST_ID, id.clone());
    } else {
        req.headers_mut().append(X_REQUEST_ID, id.clone());
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract's alphabet and length, nothing else.
    #[test]
    fn ids_are_checked_by_alphabet_and_length() {
        assert!(is_valid(b"abc-123_x.y:z/w+v=u"));
        assert!(is_valid(&[b'a'; 128]));
        assert!(!is_valid(&[b'a'; 129]));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"has space"));
        assert!(!is_valid("é".as_bytes()));
        assert!(!is_valid(b"semi;colon"));
    }

    /// Made ids are 32 lowercase hex digits, and differ.
    #[test]
    fn made_ids_are_hex() {
        let (a, b) = (make(), make());
        assert_eq!(a.len(), 32);
        assert!(a
            .as_bytes()
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}

//! Why an attempt on a backend produced no answer.

use std::fmt;

/// Why an exchange with a backend produced no answer head.
#[derive(Debug)]
pub enum UpstreamError {
    /// Never connected (TCP or TLS): the request did not reach the backend.
    Connect(String),
    /// Connected, but the connection broke before a whole answer head came back, or the
    /// answer was malformed or its head too large.
    Reset(String),
    /// No answer head within `backends.response_timeout_ms`.
    Timeout,
    /// The request's body failed while it was being sent (the client's upload broke off, or a
    /// limit of the caller's stopped it): the caller's own error.
    RequestBody(Box<dyn std::error::Error>),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(reason) => write!(f, "connect: {reason}"),
            Self::Reset(reason) => write!(f, "broke before responding: {reason}"),
            Self::Timeout => f.write_str("no response within the response timeout"),
            Self::RequestBody(err) => write!(f, "request body failed: {err}"),
        }
    }
}

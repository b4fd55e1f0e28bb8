//! Why the proxy could not produce a backend's response, and the status each reason maps to.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::error::json_response;

/// Failures the proxy answers itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// `CONNECT` (tunnels are not offered: this is not a forward proxy).
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// The request's own framing is unusable.
    #[error("Bad request: {0}")]
    BadRequest(&'static str),
    /// The client's upload broke off or was malformed mid-stream.
    #[error("Bad request: the request body could not be read")]
    BodyRead,
    /// Larger than `backends.max_request_body_bytes`.
    #[error("Request body too large")]
    PayloadTooLarge,
    /// Every backend is out of rotation.
    #[error("No healthy backend available")]
    NoHealthyBackend,
    /// The last backend tried failed before a response and nothing is left to try. Backend
    /// addresses are logged, never told to the client.
    #[error("Bad gateway: the backend failed before responding")]
    BadGateway,
    /// No response head within `backends.response_timeout_ms`.
    #[error("Gateway timeout: the backend did not respond in time")]
    GatewayTimeout,
}

impl ResponseError for ProxyError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) | Self::BodyRead => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NoHealthyBackend => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        json_response(self.status_code(), &self.to_string())
    }
}

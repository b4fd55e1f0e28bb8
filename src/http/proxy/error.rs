//! Why the proxy could not produce a backend's response, and the status each reason maps to.

use actix_web::http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::client::{Admission, Bucket, Limits};
use crate::digits::push_decimal;
use crate::http::error::{error_response, json_response};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): the quota and its window.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left and when the next unit comes.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Failures the proxy answers itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The client's bucket is empty.
    #[error("Rate limit exceeded")]
    RateLimited(Admission),
    /// No route matches and there is no `default` pool: `"GET host/path"`.
    #[error("No route matches {0}")]
    NoRoute(String),
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
    /// The rate limiter's shard is gone (only while the process stops).
    #[error("Service unavailable: shutting down")]
    LimiterStopped,
    /// Cluster mode with Redis down and `cluster.on_redis_down = "deny"`.
    #[error("Service unavailable: the shared rate limiter (Redis) cannot be reached")]
    SharedLimitsDown,
    /// A drain has begun: no new WebSocket tunnel is opened.
    #[error("Service unavailable: shutting down")]
    Draining,
    /// Every backend is out of rotation.
    #[error("No healthy backend available")]
    NoHealthyBackend,
    /// Every backend that could take it is at its `max_connections`, and the pool's line was
    /// full or the wait ran out.
    #[error("All backends are busy")]
    Busy,
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
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) | Self::BodyRead => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NoHealthyBackend
            | Self::Busy
            | Self::LimiterStopped
            | Self::SharedLimitsDown
            | Self::Draining => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let admission = match self {
            Self::RateLimited(admission) => admission,
            Self::Busy => {
                let mut response = json_response(self.status_code(), &self.to_string());
                let headers = response.headers_mut();
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
            _ => return json_response(self.status_code(), &self.to_string()),
        };
        let (bucket, decision, _) = admission.tighter();
        let limit = match bucket {
            Bucket::Client => "client".to_owned(),
            Bucket::Route(route) => format!("route:{route}"),
        };
        let message = self.to_string();
        let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, &message, Some(&limit));
        let wait = decision.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let headers = response.headers_mut();
        headers.insert(RETRY_AFTER, HeaderValue::from(wait));
        headers.insert(RATELIMIT_POLICY, policy_header(admission));
        headers.insert(RATELIMIT, ratelimit_header(admission));
        response
    }
}

/// A policy's name in the RateLimit headers: `default` for the client's own bucket (the
/// name it always had), the route's name for its bucket.
fn policy_name(bucket: Bucket<'_>) -> &str {
    match bucket {
        Bucket::Client => "default",
        Bucket::Route(route) => route,
    }
}

/// `"default";q=<capacity>;w=<seconds to fill>`, and the route's policy after it when the
/// request's route has a bucket of its own.
pub fn policy_header(admission: &Admission) -> HeaderValue {
    let policy = |name: &str, limits: &Limits| {
        let window = limits.window_secs().ceil().max(1.0) as u64;
        format!("\"{name}\";q={};w={window}", limits.capacity)
    };
    let mut text = policy(policy_name(Bucket::Client), &admission.limits);
    if let Some(route) = &admission.route {
        text.push_str(", ");
        text.push_str(&policy(&route.route, &route.limits));
    }
    HeaderValue::try_from(text).expect("names, digits and quotes make a valid header value")
}

/// `"<policy>";r=<remaining>;t=<seconds to the next token>` for the tighter bucket.
pub fn ratelimit_header(admission: &Admission) -> HeaderValue {
    let (bucket, decision, _) = admission.tighter();
    let next = decision.retry_after.as_secs_f64().ceil() as u64;
    // Written by hand: this goes on every admitted response.
    let mut text = String::with_capacity(32);
    text.push('"');
    text.push_str(policy_name(bucket));
    text.push_str("\";r=");
    push_decimal(&mut text, decision.remaining);
    text.push_str(";t=");
    push_decimal(&mut text, next);
    HeaderValue::try_from(text).expect("names, digits and quotes make a valid header value")
}

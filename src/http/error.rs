//! The balancer's own answers: every error it produces itself is JSON,
//! `{"code": 429, "message": "Rate limit exceeded", "request_id": "…"}`, with
//! `Content-Type: application/json`. Module error enums implement `ResponseError` through
//! [`json_response`] (or [`error_response`]), the one place the body is shaped. An error is
//! built without knowing its request, so it also carries an [`OwnError`] in its extensions, and
//! the access log middleware, which knows the request's id, writes the body again with it
//! ([`own_error_body`]) — only error answers pay for that.

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpResponse, Resource, Route};
use serde::Serialize;

/// The JSON error body.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub code: u16,
    pub message: &'a str,
    /// A 429's bucket: `client` or `route:<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<&'a str>,
    /// The request's id ([`super::request_id`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
}

/// What an error answer of the balancer's own said, to write its body again with the id.
#[derive(Debug, Clone)]
pub struct OwnError {
    code: u16,
    message: String,
    limit: Option<String>,
}

/// A JSON error response with `status` and `message`.
pub fn json_response(status: StatusCode, message: &str) -> HttpResponse {
    error_response(status, message, None)
}

/// A JSON error response with `status`, `message` and a 429's `limit`.
pub fn error_response(status: StatusCode, message: &str, limit: Option<&str>) -> HttpResponse {
    let own = OwnError {
        code: status.as_u16(),
        message: message.to_owned(),
        limit: limit.map(str::to_owned),
    };
    let mut res = HttpResponse::build(status).json(own.body(None));
    res.extensions_mut().insert(own);
    res
}

impl OwnError {
    fn body<'a>(&'a self, request_id: Option<&'a str>) -> ErrorBody<'a> {
        ErrorBody {
            code: self.code,
            message: &self.message,
            limit: self.limit.as_deref(),
            request_id,
        }
    }
}

/// The JSON body of `res` again with `request_id`, when `res` is an error answer of the
/// balancer's own.
pub fn own_error_body(res: &HttpResponse<impl Sized>, request_id: &str) -> Option<Bytes> {
    let extensions = res.extensions();
    let own = extensions.get::<OwnError>()?;
    serde_json::to_vec(&own.body(Some(request_id)))
        .ok()
        .map(Bytes::from)
}

/// `404` for routes under `/lb/` that do not exist.
pub async fn not_found() -> HttpResponse {
    json_response(StatusCode::NOT_FOUND, "Not found")
}

/// `405` for a method a `/lb/` route does not take.
pub async fn method_not_allowed() -> HttpResponse {
    json_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
}

/// A resource at `path` answering `route`, and a JSON 405 to any other method (the `/lb/`
/// namespace never falls through to the proxy).
pub fn only(path: &str, route: Route) -> Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(method_not_allowed))
}

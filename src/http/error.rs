//! The balancer's own answers: every error it produces itself is JSON,
//! `{"code": 429, "message": "Rate limit exceeded"}`, with `Content-Type: application/json`.
//! Module error enums implement `ResponseError` through [`json_response`], the one place the
//! body is shaped.

use actix_web::http::StatusCode;
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
    /// The request's id ([`super::request_id`]), when a request is being handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A JSON error response with `status` and `message`.
pub fn json_response(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        code: status.as_u16(),
        message,
        limit: None,
        request_id: super::request_id::current(),
    })
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

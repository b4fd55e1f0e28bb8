//! One access line per request (target `loadbalancer::access`, level info):
//! `127.0.0.1 "GET /path" 200 backend-2 1.4ms`. Filter it out with
//! `RUST_LOG=info,loadbalancer::access=off`. While draining, every response also asks the
//! client to close its connection, so kept-alive connections end after their current request.

use std::time::Instant;

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{ConnectionType, Method};

use crate::http::proxy::ServedBy;
use crate::http::shutdown::Draining;

/// Log target of access lines.
pub const TARGET: &str = "loadbalancer::access";

/// What is noted of a request before it is handled (only when access logging is on).
pub struct RequestLine {
    started: Instant,
    peer: String,
    method: Method,
    path: String,
}

impl RequestLine {
    /// Captures the request, or `None` when the access log is filtered out (no allocation then).
    pub fn capture(req: &ServiceRequest) -> Option<Self> {
        log::log_enabled!(target: TARGET, log::Level::Info).then(|| Self {
            started: Instant::now(),
            peer: req.peer_addr().map_or_else(
                || "-".to_owned(),
                |a| crate::net::canonical(a.ip()).to_string(),
            ),
            method: req.method().clone(),
            path: req.path().to_owned(),
        })
    }

    /// Writes the line for the finished response.
    pub fn write<B>(self, res: &ServiceResponse<B>) {
        let served_by = res
            .response()
            .extensions()
            .get::<ServedBy>()
            .map(|s| s.0.name.clone());
        log::info!(
            target: TARGET,
            "{} \"{} {}\" {} {} {:.1}ms",
            self.peer,
            self.method,
            self.path,
            res.status().as_u16(),
            served_by.as_deref().unwrap_or("-"),
            self.started.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// Marks the response `Connection: close` when the balancer is draining.
pub fn close_if_draining<B>(res: &mut ServiceResponse<B>, draining: &Draining) {
    if draining.is_draining() {
        res.response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
}

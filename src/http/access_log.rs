//! The access log, a named middleware ([`log_requests`]): one line per request (target
//! `loadbalancer::access`, level info), `127.0.0.1 "GET /path" 200 backend-2 1.4ms`. Filter it
//! out with `RUST_LOG=info,loadbalancer::access=off`. While draining, every response also asks
//! the client to close its connection, so kept-alive connections end after their current
//! request.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{ConnectionType, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, Error};

use crate::backend::Backend;
use crate::draining::Draining;
use crate::net::canonical;

/// Log target of access lines.
pub const TARGET: &str = "loadbalancer::access";

/// The backend that answered, put in the response's extensions by the proxy for the line
/// (only while access lines are logged: an extension costs two allocations per response).
#[derive(Clone)]
pub struct ServedBy(pub Arc<Backend>);

/// Whether access lines are written at all.
pub fn enabled() -> bool {
    log::log_enabled!(target: TARGET, log::Level::Info)
}

/// The middleware: writes the line for each finished response and marks responses
/// `Connection: close` while draining.
pub async fn log_requests(
    draining: web::Data<Draining>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let line = RequestLine::capture(&req);
    let asked_upgrade = req.head().upgrade();
    let mut res = next.call(req).await?;
    let switched = res.status() == StatusCode::SWITCHING_PROTOCOLS;
    // A tunnel that switched just as the drain began keeps its upgrade (it ends with the
    // grace). A request that asked for an upgrade it did not get (`h2c`, or an error) is
    // answered `Connection: close`: actix-http does not keep such a connection alive, and
    // would otherwise answer `Connection: upgrade` without switching.
    if (draining.is_draining() || asked_upgrade) && !switched {
        res.response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    if let Some(line) = line {
        line.write(&res);
    }
    Ok(res)
}

/// What is noted of a request before it is handled (only when access logging is on).
struct RequestLine {
    started: Instant,
    peer: String,
    method: actix_web::http::Method,
    path: String,
}

impl RequestLine {
    /// Captures the request, or `None` when the access log is filtered out (no allocation then).
    fn capture(req: &ServiceRequest) -> Option<Self> {
        enabled().then(|| Self {
            started: Instant::now(),
            peer: req
                .peer_addr()
                .map_or_else(|| "-".to_owned(), |a| canonical(a.ip()).to_string()),
            method: req.method().clone(),
            path: req.path().to_owned(),
        })
    }

    /// Writes the line for the finished response.
    fn write<B>(self, res: &ServiceResponse<B>) {
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

//! The access log, a middleware ([`AccessLog`]): one line per request (target
//! `loadbalancer::access`, level info), `127.0.0.1 "GET /path" 200 backend-2 1.4ms id=<id>`, and
//! `route=<name>` after the backend when a route took the request. Filter it
//! out with `RUST_LOG=info,loadbalancer::access=off`. It also settles each request's id
//! ([`super::request_id`]), current while the request is handled and returned on its response.
//! While draining, every response also asks the client to close its connection, so kept-alive
//! connections end after their current request.
//!
//! Written as a `Transform` rather than with `from_fn`: that boxes each request's future and the
//! next service's, and looks the drain flag up in the app data, on every request; here the
//! future is the inner one's (already boxed by the router) with the line next to it.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::HeaderValue;
use actix_web::http::{ConnectionType, StatusCode};
use actix_web::{Error, HttpMessage};

use super::request_id::{self, X_REQUEST_ID};
use crate::backend::Backend;
use crate::draining::Draining;
use crate::net::canonical;

/// Log target of access lines.
pub const TARGET: &str = "loadbalancer::access";

/// The route that took the request, put in the request's extensions by the proxy (only while
/// this log is on).
pub struct RouteTaken(pub Arc<str>);

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
pub struct AccessLog {
    draining: Draining,
}

impl AccessLog {
    pub fn new(draining: Draining) -> Self {
        Self { draining }
    }
}

impl<S, B> Transform<S, ServiceRequest> for AccessLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: Unpin,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = AccessLogService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AccessLogService {
            service,
            draining: Rc::new(self.draining.clone()),
        }))
    }
}

/// [`AccessLog`] around a worker's service.
pub struct AccessLogService<S> {
    service: S,
    /// Handed to each request's future; an `Rc`, so that costs no atomic count.
    draining: Rc<Draining>,
}

impl<S, B> Service<ServiceRequest> for AccessLogService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: Unpin,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Logged<S::Future>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let mut id = request_id::settle(&mut req);
        let line = RequestLine::capture(&req);
        let asked_upgrade = req.head().upgrade();
        let inner = request_id::scoped(&mut id, || self.service.call(req));
        Logged {
            inner,
            id,
            line,
            asked_upgrade,
            draining: Rc::clone(&self.draining),
        }
    }
}

/// A request's response on its way, with what its line needs.
pub struct Logged<F> {
    inner: F,
    /// The request's id (see [`request_id`]).
    id: HeaderValue,
    line: Option<RequestLine>,
    asked_upgrade: bool,
    draining: Rc<Draining>,
}

impl<F, B> Future for Logged<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>> + Unpin,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let inner = &mut this.inner;
        let polled = request_id::scoped(&mut this.id, || Pin::new(inner).poll(cx));
        let mut res = match polled {
            Poll::Ready(Ok(res)) => res,
            other => return other,
        };
        res.headers_mut().insert(X_REQUEST_ID, this.id.clone());
        let switched = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        // A tunnel that switched just as the drain began keeps its upgrade (it ends with the
        // grace). A request that asked for an upgrade it did not get (`h2c`, or an error) is
        // answered `Connection: close`: actix-http does not keep such a connection alive, and
        // would otherwise answer `Connection: upgrade` without switching.
        if (this.draining.is_draining() || this.asked_upgrade) && !switched {
            res.response_mut()
                .head_mut()
                .set_connection_type(ConnectionType::Close);
        }
        if let Some(line) = this.line.take() {
            line.write(&res, &this.id);
        }
        Poll::Ready(Ok(res))
    }
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
    fn write<B>(self, res: &ServiceResponse<B>, id: &HeaderValue) {
        let served_by = res
            .response()
            .extensions()
            .get::<ServedBy>()
            .map(|s| s.0.name.clone());
        let route = res
            .request()
            .extensions()
            .get::<RouteTaken>()
            .map(|r| format!(" route={}", r.0))
            .unwrap_or_default();
        log::info!(
            target: TARGET,
            "{} \"{} {}\" {} {}{route} {:.1}ms id={}",
            self.peer,
            self.method,
            self.path,
            res.status().as_u16(),
            served_by.as_deref().unwrap_or("-"),
            self.started.elapsed().as_secs_f64() * 1000.0,
            id.to_str().unwrap_or("-")
        );
    }
}

//! The access log, a middleware ([`AccessLog`]): one record per request, as `log.access` says —
//! `text`: `127.0.0.1 "GET /path" 200 backend-2 route=api 1.4ms id=<id>` (through `env_logger`,
//! target `loadbalancer::access`, or appended to `log.access_path` after a timestamp), written
//! when the response head goes out; `json`: the contract's object per line ([`record`]),
//! written when the response body has gone out (so it knows `bytes_out`); `off`. File lines go
//! through a bounded queue to a writer thread ([`writer`]). The proxy adds what it knows through
//! [`note`]. The middleware also settles each request's id ([`super::request_id`]), returns it
//! on every response and writes it into the balancer's own JSON error bodies; and while
//! draining, every response asks the client to close its connection.
//!
//! Written as a `Transform` rather than with `from_fn`: that boxes each request's future and the
//! next service's, and looks the drain flag up in the app data, on every request; here the
//! future is the inner one's (already boxed by the router) with the record next to it.

mod body;
pub mod note;
mod record;
pub mod writer;

use std::future::{ready, Future, Ready};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::HeaderValue;
use actix_web::http::{ConnectionType, StatusCode};
use actix_web::{Error, HttpMessage};
use prometheus_client::metrics::counter::Counter;

use super::error::own_error_body;
use super::request_id::{self, X_REQUEST_ID};
use crate::draining::Draining;
use crate::settings::{AccessFormat, LogSettings};
use body::{Finish, LoggedBody};
pub use note::{note, Served};
use record::Arrival;
use writer::LineWriter;

/// Log target of access lines written through the process log.
pub const TARGET: &str = "loadbalancer::access";

/// Where access records go.
#[derive(Clone)]
pub enum AccessSink {
    Off,
    /// Text lines through the process log (`env_logger`, filtered by `RUST_LOG`).
    Logger,
    /// Text lines after a timestamp, into the writer's file.
    Text(LineWriter),
    /// JSON objects, into the writer's file or stderr.
    Json(LineWriter),
}

impl AccessSink {
    /// The sink `[log]` asks for; a file is opened (appending) now, its writer thread started.
    pub fn open(log: &LogSettings, dropped: Counter) -> io::Result<Self> {
        let writer = || LineWriter::start(log.access_path.clone(), dropped.clone());
        Ok(match (log.access, &log.access_path) {
            (AccessFormat::Off, _) => Self::Off,
            (AccessFormat::Text, None) => Self::Logger,
            (AccessFormat::Text, Some(_)) => Self::Text(writer()?),
            (AccessFormat::Json, _) => Self::Json(writer()?),
        })
    }

    /// SIGUSR1: a file is opened again by its path (after logrotate renamed it).
    pub fn reopen(&self) {
        if let Self::Text(writer) | Self::Json(writer) = self {
            writer.reopen();
        }
    }

    /// Writes out what is queued, waiting at most `within` (at shutdown).
    pub fn flush(&self, within: std::time::Duration) {
        if let Self::Text(writer) | Self::Json(writer) = self {
            writer.flush(within);
        }
    }

    /// Whether a record is written for each request now.
    fn writes(&self) -> bool {
        match self {
            Self::Off => false,
            Self::Logger => log::log_enabled!(target: TARGET, log::Level::Info),
            Self::Text(_) | Self::Json(_) => true,
        }
    }
}

/// The middleware: settles request ids, writes the records and marks responses
/// `Connection: close` while draining.
pub struct AccessLog {
    draining: Draining,
    sink: AccessSink,
}

impl AccessLog {
    pub fn new(draining: Draining, sink: AccessSink) -> Self {
        Self { draining, sink }
    }
}

impl<S, B> Transform<S, ServiceRequest> for AccessLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: Unpin,
    B: MessageBody + Unpin,
{
    type Response = ServiceResponse<LoggedBody<EitherBody<B>>>;
    type Error = Error;
    type Transform = AccessLogService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AccessLogService {
            service,
            shared: Rc::new((self.draining.clone(), self.sink.clone())),
        }))
    }
}

/// [`AccessLog`] around a worker's service.
pub struct AccessLogService<S> {
    service: S,
    /// Handed to each request's future; an `Rc`, so that costs no atomic count.
    shared: Rc<(Draining, AccessSink)>,
}

impl<S, B> Service<ServiceRequest> for AccessLogService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: Unpin,
    B: MessageBody + Unpin,
{
    type Response = ServiceResponse<LoggedBody<EitherBody<B>>>;
    type Error = Error;
    type Future = Logged<S::Future>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let id = request_id::settle(&mut req);
        let arrival = self.shared.1.writes().then(|| {
            req.extensions_mut().insert(Served::default());
            Box::new(Arrival::capture(&req))
        });
        let asked_upgrade = req.head().upgrade();
        Logged {
            inner: self.service.call(req),
            id,
            arrival,
            asked_upgrade,
            shared: Rc::clone(&self.shared),
        }
    }
}

/// A request's response on its way, with what its record needs.
pub struct Logged<F> {
    inner: F,
    /// The request's id (see [`request_id`]).
    id: HeaderValue,
    /// Boxed: the future is moved around, and most of the time there is none.
    arrival: Option<Box<Arrival>>,
    asked_upgrade: bool,
    shared: Rc<(Draining, AccessSink)>,
}

impl<F, B> Future for Logged<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>> + Unpin,
    B: MessageBody + Unpin,
{
    type Output = Result<ServiceResponse<LoggedBody<EitherBody<B>>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut res = match Pin::new(&mut this.inner).poll(cx) {
            Poll::Ready(Ok(res)) => res,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => return Poll::Pending,
        };
        res.headers_mut().insert(X_REQUEST_ID, this.id.clone());
        let switched = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        // A tunnel that switched just as the drain began keeps its upgrade (it ends with the
        // grace). A request that asked for an upgrade it did not get (`h2c`, or an error) is
        // answered `Connection: close`: actix-http does not keep such a connection alive, and
        // would otherwise answer `Connection: upgrade` without switching.
        let (draining, sink) = &*this.shared;
        if (draining.is_draining() || this.asked_upgrade) && !switched {
            res.response_mut()
                .head_mut()
                .set_connection_type(ConnectionType::Close);
        }
        let finish = this
            .arrival
            .take()
            .and_then(|arrival| record_now(*arrival, &res, &this.id, sink));
        let own = own_error_body(res.response(), this.id.to_str().unwrap_or_default());
        let res = res.map_body(|_, body| {
            let body = match own {
                Some(own) => EitherBody::right(BoxBody::new(own)),
                None => EitherBody::left(body),
            };
            LoggedBody::new(body, finish)
        });
        Poll::Ready(Ok(res))
    }
}

/// Writes a text record for the response now; a JSON one is handed to the body, which writes it
/// when the body has gone out.
fn record_now<B>(
    arrival: Arrival,
    res: &ServiceResponse<B>,
    id: &HeaderValue,
    sink: &AccessSink,
) -> Option<Finish> {
    let served = res.request().extensions_mut().remove::<Served>();
    let status = res.status().as_u16();
    let id = id.to_str().unwrap_or("-");
    match sink {
        AccessSink::Off => None,
        AccessSink::Logger => {
            let line = record::text(&arrival, status, served.as_ref(), id);
            log::info!(target: TARGET, "{line}");
            None
        }
        AccessSink::Text(writer) => {
            let line = record::text(&arrival, status, served.as_ref(), id);
            let at = record::rfc3339_millis(SystemTime::now());
            writer.write(format!("{at} {line}"));
            None
        }
        AccessSink::Json(writer) => Some(Finish {
            arrival,
            served: served.unwrap_or_default(),
            status,
            request_id: id.to_owned(),
            writer: writer.clone(),
        }),
    }
}

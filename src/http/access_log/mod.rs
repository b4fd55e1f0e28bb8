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
mod json;
pub mod note;
mod record;
pub mod writer;

use std::future::{ready, Future, Ready};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
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
use crate::http::h2_drain::{H2Connection, H2Stream};
use crate::net::canonical;
use crate::settings::{AccessFormat, LogSettings};
use crate::trace::{PendingSpan, ServedRequest, SpanStart, Tracing};
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

/// The middleware: settles request ids, writes the records, begins and ends each request's
/// SERVER span (with tracing on) and marks responses `Connection: close` while draining.
pub struct AccessLog {
    shared: Rc<Shared>,
}

/// What every request's future shares (an `Rc`, so that costs no atomic count).
struct Shared {
    draining: Draining,
    sink: AccessSink,
    tracing: Option<Tracing>,
}

impl AccessLog {
    pub fn new(draining: Draining, sink: AccessSink, tracing: Option<Tracing>) -> Self {
        let shared = Shared {
            draining,
            sink,
            tracing,
        };
        Self {
            shared: Rc::new(shared),
        }
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
            shared: Rc::clone(&self.shared),
        }))
    }
}

/// [`AccessLog`] around a worker's service.
pub struct AccessLogService<S> {
    service: S,
    shared: Rc<Shared>,
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
        let shared = &self.shared;
        let trace = shared
            .tracing
            .as_ref()
            .map(|t| Box::new(t.begin(req.headers())));
        let id = request_id::settle(&mut req, trace.as_ref().map(|t| t.trace_id()));
        let writes = shared.sink.writes();
        // The proxy notes what it did only for a record or a recorded span; every traced
        // request's attempts need its span.
        if writes || trace.as_ref().is_some_and(|t| t.sampled()) {
            req.extensions_mut().insert(Served::default());
        }
        if let Some(trace) = &trace {
            req.extensions_mut().insert(trace.server());
        }
        let arrival = writes.then(|| Box::new(Arrival::capture(&req)));
        let asked_upgrade = req.head().upgrade();
        let stream = req
            .conn_data::<Arc<H2Connection>>()
            .map(H2Connection::stream);
        Logged {
            inner: self.service.call(req),
            id,
            arrival,
            trace,
            asked_upgrade,
            stream,
            shared: Rc::clone(shared),
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
    /// With tracing on: the request's place in its trace.
    trace: Option<Box<SpanStart>>,
    asked_upgrade: bool,
    /// On an HTTP/2 connection: the request under way, until its response is out.
    stream: Option<H2Stream>,
    shared: Rc<Shared>,
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
        let shared = &*this.shared;
        if (shared.draining.is_draining() || this.asked_upgrade) && !switched {
            res.response_mut()
                .head_mut()
                .set_connection_type(ConnectionType::Close);
        }
        let (arrival, trace) = (this.arrival.take(), this.trace.take());
        let sampled = trace.as_ref().is_some_and(|t| t.sampled());
        let served = (arrival.is_some() || sampled)
            .then(|| res.request().extensions_mut().remove::<Served>())
            .flatten();
        let finish = arrival.and_then(|arrival| {
            let trace_id = trace.as_deref().map(SpanStart::trace_id);
            record_now(
                *arrival,
                &res,
                served.as_ref(),
                (&this.id, trace_id),
                &shared.sink,
            )
        });
        let span = match (trace, &shared.tracing, &served) {
            (Some(trace), Some(tracing), Some(served)) if sampled && served.proxied => {
                server_span(*trace, tracing, &res, served)
            }
            _ => None,
        };
        let own = own_error_body(res.response(), this.id.to_str().unwrap_or_default());
        let stream = this.stream.take();
        let res = res.map_body(|_, body| {
            let body = match own {
                Some(own) => EitherBody::right(BoxBody::new(own)),
                None => EitherBody::left(body),
            };
            LoggedBody::new(body, finish, span, stream)
        });
        Poll::Ready(Ok(res))
    }
}

/// Writes a text record for the response now; a JSON one is handed to the body, which writes it
/// when the body has gone out. `ids` are the request's and, with tracing on, its trace's.
fn record_now<B>(
    arrival: Arrival,
    res: &ServiceResponse<B>,
    served: Option<&Served>,
    (id, trace_id): (&HeaderValue, Option<[u8; 16]>),
    sink: &AccessSink,
) -> Option<Finish> {
    let status = res.status().as_u16();
    let id = id.to_str().unwrap_or("-");
    match sink {
        AccessSink::Off => None,
        AccessSink::Logger => {
            let line = record::text(&arrival, status, served, id);
            log::info!(target: TARGET, "{line}");
            None
        }
        AccessSink::Text(writer) => {
            let line = record::text(&arrival, status, served, id);
            let at = record::rfc3339_millis(SystemTime::now());
            writer.write(format!("{at} {line}"));
            None
        }
        AccessSink::Json(writer) => Some(Finish {
            arrival,
            served: served.cloned().unwrap_or_default(),
            status,
            request_id: id.to_owned(),
            trace_id: trace_id.map(|t| format!("{:032x}", u128::from_be_bytes(t))),
            writer: writer.clone(),
        }),
    }
}

/// The SERVER span of a request the proxy handled, to be ended with its body.
fn server_span<B>(
    trace: SpanStart,
    tracing: &Tracing,
    res: &ServiceResponse<B>,
    served: &Served,
) -> Option<PendingSpan> {
    let req = res.request();
    let peer = req.peer_addr().map(|a| canonical(a.ip()).to_string());
    let request = ServedRequest {
        method: req.method(),
        path: req.path(),
        route: served.route.as_deref(),
        pool: served.pool.as_deref(),
        status: res.status().as_u16(),
        client_address: peer.as_deref(),
        client: served.client.as_deref(),
        rate_limited: served.limited,
    };
    tracing.served(trace, &request)
}

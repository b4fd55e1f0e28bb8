//! A worker's connections to backends: the kept-alive ones of every backend, plain and TLS
//! alike ([`super::idle`]), and the fresh ones tunnels take. One taken from the idle ones is
//! checked first (a backend that closed it, or wrote to it unasked, makes it unusable); one
//! that fails anyway before any byte of an answer came back is replaced by a fresh connection
//! once, for requests that may be sent again (idempotent, body in memory), without counting
//! against the backend.

use actix_http::{ServiceConfig, ServiceConfigBuilder};
use actix_web::body::{self, BoxBody};

use super::answer::{answer, reply, Answer, Reply};
use super::connector::Connector;
use super::error::UpstreamError;
use super::exchange::{Connection, Failure, Request, Sent};
use super::idle::Idle;
use crate::backend::{Backend, BackendId};

/// This worker's connections to backends; not `Send` (one per worker).
pub struct Connections {
    connector: Connector,
    /// One per worker, for the codecs that read answers.
    config: ServiceConfig,
    idle: Idle,
}

impl Connections {
    /// Must be called on the worker thread that uses them.
    pub fn new(connector: Connector) -> Self {
        Self {
            connector,
            config: ServiceConfigBuilder::new().build(),
            idle: Idle::new(),
        }
    }

    /// Sends `request` to `backend` over a kept-alive connection (or a new one) and reads the
    /// answer's head. `body` is called again for a second exchange. `replayable`: whether the
    /// request may be sent again after a reused connection failed.
    pub async fn send(
        &self,
        backend: &Backend,
        request: &Request<'_>,
        body: impl Fn() -> BoxBody,
        replayable: bool,
    ) -> Result<Answer, UpstreamError> {
        if let Some(conn) = self.idle.take(backend.id) {
            match self.answer(conn, backend.id, request, body()).await {
                Err(Failure::Stale(why)) if replayable => {
                    log::debug!("kept-alive connection to {backend} was gone ({why}); a new one");
                }
                other => return other.map_err(Failure::into_error),
            }
        }
        let conn = Connection::new(self.connector.connect(backend).await?);
        self.answer(conn, backend.id, request, body())
            .await
            .map_err(Failure::into_error)
    }

    /// Sends `request`, which asks to switch protocols, over a fresh connection (it becomes
    /// the tunnel's, never the pool's).
    pub async fn upgrade(
        &self,
        backend: &Backend,
        request: &Request<'_>,
    ) -> Result<Reply, UpstreamError> {
        let mut conn = Connection::new(self.connector.connect(backend).await?);
        let (head, codec, _) = conn
            .exchange(
                request,
                BoxBody::new(body::None::new()),
                &self.config,
                self.connector.response_timeout,
            )
            .await
            .map_err(Failure::into_error)?;
        Ok(reply(request.method, head, codec, conn))
    }

    async fn answer(
        &self,
        mut conn: Connection,
        backend: BackendId,
        request: &Request<'_>,
        body: BoxBody,
    ) -> Result<Answer, Failure> {
        let (head, codec, sent) = conn
            .exchange(request, body, &self.config, self.connector.response_timeout)
            .await?;
        if sent == Sent::Cut {
            // The backend never got the whole request: the connection is not used again.
            let mut answer = answer(request.method, head, codec, conn, None);
            answer.early = true;
            return Ok(answer);
        }
        let home = self.idle.home(backend);
        Ok(answer(request.method, head, codec, conn, Some(home)))
    }
}

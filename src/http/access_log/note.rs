//! What the proxy tells the access log about a request it handled: the route and pool it
//! took, the client it was charged to, the backend that answered after how many attempts and
//! how long, and how much of the body it read. The log middleware puts an empty [`Served`] in
//! the request's extensions while access lines are written or tracing is on; without one,
//! [`note`] does nothing.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpMessage, HttpRequest};

use crate::backend::Backend;

/// A proxied request, as far as the proxy got with it.
#[derive(Debug, Default, Clone)]
pub struct Served {
    /// The proxy handled the request (not `/lb` or `/clients`).
    pub proxied: bool,
    pub route: Option<Arc<str>>,
    pub pool: Option<Arc<str>>,
    /// The backend whose answer went to the client.
    pub backend: Option<Arc<Backend>>,
    /// A registered client's id (an address is in the record anyway).
    pub client: Option<String>,
    /// Backends tried.
    pub attempts: u32,
    /// From sending to the answering backend until its response head arrived.
    pub upstream: Option<Duration>,
    /// Request body bytes read from the client by the time the backend answered.
    pub bytes_in: u64,
    /// Refused by a rate limit.
    pub limited: bool,
}

/// Changes `req`'s note, when there is one.
pub fn note(req: &HttpRequest, change: impl FnOnce(&mut Served)) {
    if let Some(served) = req.extensions_mut().get_mut::<Served>() {
        change(served);
    }
}

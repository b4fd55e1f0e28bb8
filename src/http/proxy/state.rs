//! What every worker's proxy handler shares, built once from the settings and the domain's
//! handles.

use std::cell::RefCell;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::events::Events;
use crate::http::client_id::ClientIdentity;
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::registry::{Membership, Pools, PoolsView};
use crate::settings::Settings;
use crate::trace::Tracing;

use super::tunnels::Tunnels;

thread_local! {
    /// This worker's hold on the pools view, by the `Pools` it came from: taken again only
    /// when the registry published a new one. Every request takes it, and counting references
    /// on the shared view from every worker (`Arc` clones) measured about 5% of requests/s.
    static VIEW: RefCell<Option<(usize, Rc<HeldView>)>> = const { RefCell::new(None) };
}

/// A worker's hold on one published view (see [`ProxyState::view`]).
pub struct HeldView(Arc<PoolsView>);

impl std::ops::Deref for HeldView {
    type Target = PoolsView;

    fn deref(&self) -> &PoolsView {
        &self.0
    }
}

/// What every worker's proxy handler shares.
pub struct ProxyState {
    /// Admission per client; `None` when `rate_limit.enabled` is off.
    pub limiter: Option<Arc<Limiter>>,
    /// Counted on every request.
    pub metrics: Arc<Metrics>,
    /// Where failovers are published.
    pub events: Events,
    /// When the last failover event went out (ms since `UNIX_EPOCH`); one a second at most.
    pub last_failover_event_ms: AtomicU64,
    /// When the last `request_failed` event went out (they are at most one a second).
    pub last_failure_event_ms: AtomicU64,
    /// Where routes and pools are chosen, and backends picked and counted.
    pub pools: Arc<Pools>,
    /// Told about failures.
    pub registry: Membership,
    /// Tells clients apart for the limiter and for `consistent_hash`.
    pub identity: ClientIdentity,
    /// Other backends tried after a retryable failure (`backends.retries`).
    pub retries: u32,
    /// Request bodies up to this size are buffered so they can be retried.
    pub retry_body_limit_bytes: u64,
    /// `backends.max_request_body_bytes`.
    pub max_request_body_bytes: Option<u64>,
    /// `server.send_timeout_ms`: a stalled reader is cut off after this.
    pub send_timeout: Duration,
    /// `health.eject_consecutive_5xx`: 5xx answers are counted only when set.
    pub eject_after_5xx: Option<NonZeroU32>,
    /// WebSocket tunnels: how they reach backends, and the signal that ends them.
    pub tunnels: Arc<Tunnels>,
    /// With tracing on: where attempts' spans go.
    pub tracing: Option<Tracing>,
}

impl ProxyState {
    /// The pools and routes now, held for as long as a request needs them (a reload meanwhile
    /// does not change them under it).
    pub fn view(&self) -> Rc<HeldView> {
        let from = Arc::as_ptr(&self.pools) as usize;
        VIEW.with(|cell| {
            let mut held = cell.borrow_mut();
            if let Some((source, view)) = held.as_ref() {
                if *source == from && self.pools.is_current(&view.0) {
                    return Rc::clone(view);
                }
            }
            let view = Rc::new(HeldView(self.pools.load()));
            *held = Some((from, Rc::clone(&view)));
            view
        })
    }

    /// The proxy's state from the settings and the domain's handles (tracing off).
    pub fn new(
        settings: &Settings,
        limiter: &Arc<Limiter>,
        metrics: Arc<Metrics>,
        events: Events,
        pools: Arc<Pools>,
        registry: Membership,
        tunnels: Arc<Tunnels>,
    ) -> Self {
        Self {
            limiter: settings.rate_limit.enabled.then(|| Arc::clone(limiter)),
            metrics,
            events,
            last_failover_event_ms: AtomicU64::new(0),
            last_failure_event_ms: AtomicU64::new(0),
            pools,
            registry,
            identity: ClientIdentity::new(&settings.rate_limit),
            retries: settings.backends.retries,
            retry_body_limit_bytes: settings.backends.retry_body_limit_bytes,
            max_request_body_bytes: settings.backends.max_request_body_bytes,
            send_timeout: settings.server.send_timeout,
            eject_after_5xx: settings.health.eject_consecutive_5xx,
            tunnels,
            tracing: None,
        }
    }
}

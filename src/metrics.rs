//! Counters the request path bumps directly (atomics and a read-locked map — no actor round
//! trip), exposed at `/lb/metrics` in the Prometheus text format by `prometheus-client`, and
//! read once a second for the status page's `stats` event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::cluster::ClusterCounters;
use crate::registry::MemberStatus;

/// `backend` is the backend's name, or `none` for answers the balancer gave itself.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub backend: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub backend: String,
    pub kind: String,
}

/// Every metric of the balancer.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    backend_up: Family<BackendLabels, Gauge>,
    backend_in_flight: Family<BackendLabels, Gauge>,
    rate_limited: Counter,
    clients: Gauge,
    tracked_buckets: Gauge,
    upstream_failures: Family<FailureLabels, Counter>,
    tunnels_open: Gauge,
    tunnels: Counter,
    /// Proxied requests answered, any status (for the stats tick).
    proxied: AtomicU64,
    /// 5xx the balancer answered itself (502, 503, 504).
    own_errors: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let backend_up = Family::<BackendLabels, Gauge>::default();
        let backend_in_flight = Family::<BackendLabels, Gauge>::default();
        let rate_limited = Counter::default();
        let clients = Gauge::default();
        let tracked_buckets = Gauge::default();
        let upstream_failures = Family::<FailureLabels, Counter>::default();
        let tunnels_open = Gauge::default();
        let tunnels = Counter::default();
        registry.register(
            "lb_requests",
            "Proxied requests by backend and status",
            requests.clone(),
        );
        registry.register(
            "lb_request_duration_seconds",
            "Time from request to response head, proxied requests",
            duration.clone(),
        );
        registry.register(
            "lb_backend_up",
            "1 when the backend is in rotation",
            backend_up.clone(),
        );
        registry.register(
            "lb_backend_in_flight",
            "Attempts under way per backend",
            backend_in_flight.clone(),
        );
        registry.register(
            "lb_rate_limited",
            "Requests refused with 429",
            rate_limited.clone(),
        );
        registry.register("lb_clients", "Registered clients", clients.clone());
        registry.register(
            "lb_tracked_buckets",
            "Token buckets held (registered and by IP)",
            tracked_buckets.clone(),
        );
        registry.register(
            "lb_upstream_failures",
            "Attempts that failed before a response, by backend and kind",
            upstream_failures.clone(),
        );
        registry.register(
            "lb_websocket_tunnels_open",
            "WebSocket tunnels open now",
            tunnels_open.clone(),
        );
        registry.register(
            "lb_websocket_tunnels",
            "WebSocket tunnels opened (backend answered 101)",
            tunnels.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            backend_up,
            backend_in_flight,
            rate_limited,
            clients,
            tracked_buckets,
            upstream_failures,
            tunnels_open,
            tunnels,
            proxied: AtomicU64::new(0),
            own_errors: AtomicU64::new(0),
        }
    }
}

/// The counters the stats tick reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub rate_limited: u64,
    pub own_errors: u64,
}

impl Metrics {
    /// One proxied request finished its head: `backend` is `None` when the balancer answered.
    pub fn record_request(&self, backend: Option<&str>, code: u16, took: Duration) {
        let labels = RequestLabels {
            backend: backend.unwrap_or("none").to_owned(),
            code,
        };
        self.requests.get_or_create(&labels).inc();
        self.duration.observe(took.as_secs_f64());
        self.proxied.fetch_add(1, Ordering::Relaxed);
        if backend.is_none() && code >= 500 {
            self.own_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_rate_limited(&self) {
        self.rate_limited.inc();
    }

    pub fn record_upstream_failure(&self, backend: &str, kind: &str) {
        let labels = FailureLabels {
            backend: backend.to_owned(),
            kind: kind.to_owned(),
        };
        self.upstream_failures.get_or_create(&labels).inc();
    }

    pub fn tunnel_opened(&self) {
        self.tunnels_open.inc();
        self.tunnels.inc();
    }

    pub fn tunnel_closed(&self) {
        self.tunnels_open.dec();
    }

    pub fn totals(&self) -> Totals {
        Totals {
            requests: self.proxied.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.get(),
            own_errors: self.own_errors.load(Ordering::Relaxed),
        }
    }

    /// The exposition text, with the gauges set from the current pool and limiter state (and
    /// the cluster's counters, in cluster mode).
    pub fn render(
        &self,
        members: &[MemberStatus],
        clients: usize,
        buckets: usize,
        cluster: Option<ClusterCounters>,
    ) -> String {
        // Backends that left the pool leave the exposition too.
        self.backend_up.clear();
        self.backend_in_flight.clear();
        for member in members {
            let labels = BackendLabels {
                backend: member.backend.name.clone(),
            };
            self.backend_up
                .get_or_create(&labels)
                .set(i64::from(member.healthy));
            self.backend_in_flight
                .get_or_create(&labels)
                .set(member.in_flight as i64);
        }
        self.clients.set(clients as i64);
        self.tracked_buckets.set(buckets as i64);
        let mut text = String::new();
        // Cluster mode's figures are the cluster's own counters, read now.
        let mut cluster_registry = Registry::default();
        if let Some(counters) = cluster {
            cluster_registry.register(
                "lb_redis_up",
                "1 while Redis answers (cluster mode)",
                ConstGauge::new(i64::from(counters.up)),
            );
            cluster_registry.register(
                "lb_redis_calls",
                "Commands sent to Redis (a pipeline of n bucket asks counts n)",
                ConstCounter::new(counters.calls),
            );
            cluster_registry.register(
                "lb_admissions_decided_locally",
                "Admissions decided without Redis because it was down (cluster mode)",
                ConstCounter::new(counters.decided_locally),
            );
        }
        prometheus_client::encoding::text::encode_registry(&mut text, &self.registry)
            .and_then(|()| {
                prometheus_client::encoding::text::encode_registry(&mut text, &cluster_registry)
            })
            .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut text))
            .expect("writing to a String cannot fail");
        text
    }
}

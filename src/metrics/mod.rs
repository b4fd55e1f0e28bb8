//! Counters the request path bumps directly (no actor round trip), exposed at `/lb/metrics` in
//! the Prometheus text format by `prometheus-client`, and read once a second for the status
//! page's `stats` event. The per-request tallies (requests by backend, route and status, their
//! durations, registered clients' decisions) are kept in shards ([`tally`]); a scrape sums them.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

mod labels;
mod tally;

use crate::cluster::ClusterCounters;
use crate::registry::MemberStatus;
use labels::{BackendLabels, FailureLabels, PoolLabels, RouteLabels};
use tally::Tallies;

/// Every metric of the balancer.
pub struct Metrics {
    registry: Registry,
    tallies: Tallies,
    backend_up: Family<BackendLabels, Gauge>,
    backend_in_flight: Family<BackendLabels, Gauge>,
    rate_limited: Counter,
    clients: Gauge,
    tracked_buckets: Gauge,
    upstream_failures: Family<FailureLabels, Counter>,
    tunnels_open: Gauge,
    tunnels: Counter,
    access_log_dropped: Counter,
    trace_spans_dropped: Counter,
    queue_length: Family<PoolLabels, Gauge>,
    queue_wait: Family<PoolLabels, Histogram, fn() -> Histogram>,
    retry_budget_exhausted: Family<PoolLabels, Counter>,
}

/// Buckets of `lb_queue_wait_seconds`: 1 ms to about 8 s.
fn queue_wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Registry::default(),
            tallies: Tallies::default(),
            backend_up: Family::default(),
            backend_in_flight: Family::default(),
            rate_limited: Counter::default(),
            clients: Gauge::default(),
            tracked_buckets: Gauge::default(),
            upstream_failures: Family::default(),
            tunnels_open: Gauge::default(),
            tunnels: Counter::default(),
            access_log_dropped: Counter::default(),
            trace_spans_dropped: Counter::default(),
            queue_length: Family::default(),
            queue_wait: Family::new_with_constructor(queue_wait_histogram),
            retry_budget_exhausted: Family::default(),
        };
        metrics.register();
        metrics.register_capacity();
        metrics
    }
}

impl Metrics {
    /// Puts every kept metric into the registry the exposition reads.
    fn register(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "lb_backend_up",
            "1 when the backend is in rotation",
            self.backend_up.clone(),
        );
        registry.register(
            "lb_backend_in_flight",
            "Attempts under way per backend",
            self.backend_in_flight.clone(),
        );
        registry.register(
            "lb_rate_limited",
            "Requests refused with 429",
            self.rate_limited.clone(),
        );
        registry.register("lb_clients", "Registered clients", self.clients.clone());
        registry.register(
            "lb_tracked_buckets",
            "Token buckets held (registered and by IP)",
            self.tracked_buckets.clone(),
        );
        registry.register(
            "lb_upstream_failures",
            "Attempts that failed before a response, by backend and kind",
            self.upstream_failures.clone(),
        );
        registry.register(
            "lb_websocket_tunnels_open",
            "WebSocket tunnels open now",
            self.tunnels_open.clone(),
        );
        registry.register(
            "lb_websocket_tunnels",
            "WebSocket tunnels opened (backend answered 101)",
            self.tunnels.clone(),
        );
        registry.register(
            "lb_access_log_dropped",
            "Access records dropped because the writer's queue was full",
            self.access_log_dropped.clone(),
        );
        registry.register(
            "lb_trace_spans_dropped",
            "Spans not delivered: past the exporter's queue, or in a batch the collector did not take",
            self.trace_spans_dropped.clone(),
        );
    }
}

impl Metrics {
    /// The pools' queues and retry budgets.
    fn register_capacity(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "lb_queue_length",
            "Requests waiting for a backend under its max_connections, by pool",
            self.queue_length.clone(),
        );
        registry.register(
            "lb_queue_wait_seconds",
            "Time requests waited in their pool's queue (served, timed out or gone), by pool",
            self.queue_wait.clone(),
        );
        registry.register(
            "lb_retries_budget_exhausted",
            "Retries not made because the pool's retry budget was spent, by pool",
            self.retry_budget_exhausted.clone(),
        );
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
    /// One proxied request finished its head: `backend` (`pool`, `name`) is `None` when the
    /// balancer answered; `route` the route that took it, if one did.
    pub fn record_request(
        &self,
        backend: Option<(&str, &str)>,
        route: Option<&Arc<str>>,
        code: u16,
        took: Duration,
    ) {
        self.tallies
            .request(backend, route, code, took.as_secs_f64());
    }

    /// A registered client's request was admitted or refused by a limit (addresses are never
    /// label values: the series stay bounded by the registry the admins keep).
    pub fn record_client(&self, client_id: &str, admitted: bool) {
        self.tallies.client(client_id, admitted);
    }

    pub fn record_rate_limited(&self) {
        self.rate_limited.inc();
    }

    pub fn record_upstream_failure(&self, pool: &str, backend: &str, kind: &str) {
        let labels = FailureLabels {
            pool: pool.to_owned(),
            backend: backend.to_owned(),
            kind: kind.to_owned(),
        };
        self.upstream_failures.get_or_create(&labels).inc();
    }

    /// A request waited `waited` in `pool`'s queue.
    pub fn record_queue_wait(&self, pool: &str, waited: Duration) {
        let labels = PoolLabels {
            pool: pool.to_owned(),
        };
        self.queue_wait
            .get_or_create(&labels)
            .observe(waited.as_secs_f64());
    }

    /// A retry in `pool` was not made: its retry budget was spent.
    pub fn record_retry_budget_exhausted(&self, pool: &str) {
        let labels = PoolLabels {
            pool: pool.to_owned(),
        };
        self.retry_budget_exhausted.get_or_create(&labels).inc();
    }

    /// The counter of dropped access records, for the access log's writer to count into.
    pub fn access_log_dropped(&self) -> Counter {
        self.access_log_dropped.clone()
    }

    /// The counter of spans not delivered, for the trace exporter to count into.
    pub fn trace_spans_dropped(&self) -> Counter {
        self.trace_spans_dropped.clone()
    }

    pub fn tunnel_opened(&self) {
        self.tunnels_open.inc();
        self.tunnels.inc();
    }

    pub fn tunnel_closed(&self) {
        self.tunnels_open.dec();
    }

    pub fn totals(&self) -> Totals {
        let (requests, own_errors) = self.tallies.totals();
        Totals {
            requests,
            rate_limited: self.rate_limited.get(),
            own_errors,
        }
    }

    /// The exposition text, with the gauges set from the current pool and limiter state (and
    /// the cluster's counters, in cluster mode).
    pub fn render(
        &self,
        members: &[MemberStatus],
        queues: &[(String, usize)],
        routes_limited: &[(String, u64)],
        clients: usize,
        buckets: usize,
        cluster: Option<ClusterCounters>,
    ) -> String {
        self.set_gauges(members, clients, buckets);
        self.set_queues(queues);
        let mut text = String::new();
        // The shards' tallies and, in cluster mode, the cluster's own counters, read now.
        let mut scraped = Registry::default();
        let summed = self.tallies.summed();
        scraped.register(
            "lb_requests",
            "Proxied requests by pool, backend and status",
            summed.requests,
        );
        scraped.register(
            "lb_route_requests",
            "Requests a route took, by route and status",
            summed.routes,
        );
        scraped.register(
            "lb_client_requests",
            "Registered clients' requests, admitted or limited",
            summed.clients,
        );
        scraped.register(
            "lb_backend_response_seconds",
            "Time from request to response head, by the backend that answered",
            summed.backends,
        );
        register_counted(&mut scraped, members, routes_limited);
        scraped.register(
            "lb_request_duration_seconds",
            "Time from request to response head, proxied requests",
            summed.duration,
        );
        if let Some(counters) = cluster {
            register_cluster(&mut scraped, counters);
        }
        prometheus_client::encoding::text::encode_registry(&mut text, &self.registry)
            .and_then(|()| prometheus_client::encoding::text::encode_registry(&mut text, &scraped))
            .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut text))
            .expect("writing to a String cannot fail");
        text
    }

    /// The gauges from the current pool and limiter state; backends that left the pool leave
    /// the exposition too.
    fn set_gauges(&self, members: &[MemberStatus], clients: usize, buckets: usize) {
        self.backend_up.clear();
        self.backend_in_flight.clear();
        for member in members {
            let labels = BackendLabels {
                pool: member.backend.pool.to_string(),
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
    }
}

impl Metrics {
    /// Each pool's queue length; every pool in service shows its queue series (0 and empty
    /// ones too, so dashboards find them before the first wait).
    fn set_queues(&self, queues: &[(String, usize)]) {
        self.queue_length.clear();
        for (pool, length) in queues {
            let labels = PoolLabels { pool: pool.clone() };
            self.queue_length.get_or_create(&labels).set(*length as i64);
            drop(self.queue_wait.get_or_create(&labels));
            drop(self.retry_budget_exhausted.get_or_create(&labels));
        }
    }
}

/// Counters kept outside the metrics and read now: each route's 429s and each backend's
/// ejections.
fn register_counted(
    scraped: &mut Registry,
    members: &[MemberStatus],
    routes_limited: &[(String, u64)],
) {
    let limited = Family::<RouteLabels, Counter>::default();
    for (route, count) in routes_limited {
        let labels = RouteLabels {
            route: route.clone(),
        };
        limited.get_or_create(&labels).inc_by(*count);
    }
    scraped.register(
        "lb_route_rate_limited",
        "Requests a route took that were refused with 429, by route",
        limited,
    );
    let ejections = Family::<BackendLabels, Counter>::default();
    for member in members {
        let labels = BackendLabels {
            pool: member.backend.pool.to_string(),
            backend: member.backend.name.clone(),
        };
        ejections.get_or_create(&labels).inc_by(member.ejections);
    }
    scraped.register(
        "lb_backend_ejections",
        "Times a backend was ejected for answering 5xx in a row (outlier ejection)",
        ejections,
    );
}

/// Cluster mode's counters, read now.
fn register_cluster(scraped: &mut Registry, counters: ClusterCounters) {
    scraped.register(
        "lb_redis_up",
        "1 while Redis answers (cluster mode)",
        ConstGauge::new(i64::from(counters.up)),
    );
    scraped.register(
        "lb_redis_calls",
        "Commands sent to Redis (a pipeline of n bucket asks counts n)",
        ConstCounter::new(counters.calls),
    );
    scraped.register(
        "lb_redis_failed_calls",
        "Redis calls that failed or were slower than cluster.redis_timeout_ms; \
         cluster.redis_down_after of them in a row make Redis down",
        ConstCounter::new(counters.failed_calls),
    );
    scraped.register(
        "lb_admissions_decided_locally",
        "Admissions decided without Redis because it was down or its call failed (cluster mode)",
        ConstCounter::new(counters.decided_locally),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests counted on several threads (so in several shards) are summed in the totals and
    /// the exposition: the counter family by backend and status, and the histogram's count,
    /// sum and buckets.
    #[test]
    fn tallies_from_every_thread_are_summed() {
        let metrics = std::sync::Arc::new(Metrics::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let metrics = std::sync::Arc::clone(&metrics);
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        let route: Arc<str> = "r".into();
                        metrics.record_request(
                            Some(("p", "b1")),
                            Some(&route),
                            200,
                            Duration::from_millis(1),
                        );
                    }
                    metrics.record_request(None, None, 502, Duration::from_secs(100));
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        let totals = metrics.totals();
        assert_eq!((totals.requests, totals.own_errors), (44, 4));
        let text = metrics.render(&[], &[], &[("r".into(), 3)], 0, 0, None);
        assert!(
            text.contains(r#"lb_requests_total{pool="p",backend="b1",code="200"} 40"#),
            "{text}"
        );
        assert!(
            text.contains(r#"lb_requests_total{pool="none",backend="none",code="502"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(r#"lb_route_requests_total{route="r",code="200"} 40"#)
                && text.contains(r#"lb_route_rate_limited_total{route="r"} 3"#),
            "{text}"
        );
        assert!(
            text.contains("lb_request_duration_seconds_count 44"),
            "{text}"
        );
        assert!(
            text.contains("lb_request_duration_seconds_sum 400.04"),
            "{text}"
        );
        // 1 ms falls in the 0.001 s bucket (cumulative: 40 there), 100 s only in +Inf.
        assert!(
            text.contains(r#"lb_request_duration_seconds_bucket{le="0.0005"} 0"#)
                && text.contains(r#"lb_request_duration_seconds_bucket{le="0.001"} 40"#),
            "{text}"
        );
        assert!(
            text.contains(r#"lb_request_duration_seconds_bucket{le="+Inf"} 44"#),
            "{text}"
        );
    }
}

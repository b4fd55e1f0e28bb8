//! What the request path counts, kept in shards, one per worker thread as far as there are
//! shards: a shared counter family and histogram (a lock and cache lines every core writes)
//! cost about 4% of requests/s. A scrape sums the shards ([`Tallies::summed`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::metrics::MetricType;

use super::labels::{BackendLabels, ClientLabels, RequestLabels, RouteCodeLabels};

/// Shards of the per-request tallies; a thread keeps to the one it was given first.
const SHARDS: usize = 16;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// The shards, and the duration buckets' upper bounds (seconds, infinity last).
pub struct Tallies {
    bounds: Vec<f64>,
    shards: Vec<Shard>,
}

/// One shard, on cache lines of its own.
#[derive(Default)]
#[repr(align(128))]
struct Shard(Mutex<Tally>);

/// Durations per bucket of the bounds (not cumulative), their sum and count.
#[derive(Default, Clone)]
struct Durations {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Durations {
    fn observe(&mut self, bucket: usize, buckets: usize, secs: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; buckets];
        }
        self.buckets[bucket] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

/// One shard's counts.
#[derive(Default)]
struct Tally {
    /// Requests by (pool, backend, status): a handful of entries, scanned.
    requests: Vec<(String, String, u16, u64)>,
    /// Requests by route, then status, for those a route took: a map, as a file may have
    /// thousands of routes (a scanned list cost a third of the requests/s with 10 000).
    routes: HashMap<Arc<str>, Vec<(u16, u64)>, foldhash::fast::RandomState>,
    /// Every proxied request's duration.
    durations: Durations,
    /// Durations by the backend that answered (pool, backend).
    backends: Vec<(String, String, Durations)>,
    /// Registered clients' requests: (admitted, limited).
    clients: HashMap<String, (u64, u64), foldhash::fast::RandomState>,
    /// Proxied requests answered, any status (for the stats tick).
    proxied: u64,
    /// 5xx the balancer answered itself (502, 503, 504).
    own_errors: u64,
}

impl Shard {
    /// A panic elsewhere while holding the lock leaves counts that are still counts.
    fn lock(&self) -> MutexGuard<'_, Tally> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything the shards counted, summed for a scrape.
pub struct Summed {
    pub requests: Family<RequestLabels, Counter>,
    pub routes: Family<RouteCodeLabels, Counter>,
    pub duration: SummedHistogram,
    pub backends: BackendHistograms,
    pub clients: Family<ClientLabels, Counter>,
}

impl Default for Tallies {
    fn default() -> Self {
        let mut bounds: Vec<f64> = exponential_buckets(0.0005, 2.0, 16).collect();
        bounds.push(f64::INFINITY);
        Self {
            bounds,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl Tallies {
    fn mine(&self) -> MutexGuard<'_, Tally> {
        self.shards[SHARD.with(|shard| *shard)].lock()
    }

    /// One proxied request finished its head (see [`super::Metrics::record_request`]).
    pub fn request(
        &self,
        backend: Option<(&str, &str)>,
        route: Option<&Arc<str>>,
        code: u16,
        secs: f64,
    ) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(self.bounds.len() - 1);
        let buckets = self.bounds.len();
        let (pool, name) = backend.unwrap_or(("none", "none"));
        let mut tally = self.mine();
        match (tally.requests.iter_mut()).find(|(p, b, c, _)| *c == code && b == name && p == pool)
        {
            Some((_, _, _, count)) => *count += 1,
            None => tally
                .requests
                .push((pool.to_owned(), name.to_owned(), code, 1)),
        }
        if let Some(route) = route {
            let codes = match tally.routes.get_mut(route) {
                Some(codes) => codes,
                None => tally.routes.entry(Arc::clone(route)).or_default(),
            };
            match codes.iter_mut().find(|(c, _)| *c == code) {
                Some((_, count)) => *count += 1,
                None => codes.push((code, 1)),
            }
        }
        tally.durations.observe(bucket, buckets, secs);
        if let Some((pool, name)) = backend {
            match (tally.backends.iter_mut()).find(|(p, b, _)| b == name && p == pool) {
                Some((_, _, durations)) => durations.observe(bucket, buckets, secs),
                None => {
                    let mut durations = Durations::default();
                    durations.observe(bucket, buckets, secs);
                    tally
                        .backends
                        .push((pool.to_owned(), name.to_owned(), durations));
                }
            }
        }
        tally.proxied += 1;
        if backend.is_none() && code >= 500 {
            tally.own_errors += 1;
        }
    }

    /// A registered client's request was admitted or limited.
    pub fn client(&self, id: &str, admitted: bool) {
        let mut tally = self.mine();
        let counts = match tally.clients.get_mut(id) {
            Some(counts) => counts,
            None => tally.clients.entry(id.to_owned()).or_default(),
        };
        if admitted {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }

    /// Proxied requests and the balancer's own 5xx, over every shard.
    pub fn totals(&self) -> (u64, u64) {
        self.shards
            .iter()
            .fold((0, 0), |(requests, errors), shard| {
                let tally = shard.lock();
                (requests + tally.proxied, errors + tally.own_errors)
            })
    }

    /// Every shard's counts, summed.
    pub fn summed(&self) -> Summed {
        let summed = Summed {
            requests: Family::default(),
            routes: Family::default(),
            duration: SummedHistogram::new(&self.bounds),
            backends: BackendHistograms(Vec::new()),
            clients: Family::default(),
        };
        self.shards.iter().fold(summed, |mut summed, shard| {
            summed.add(&shard.lock(), &self.bounds);
            summed
        })
    }
}

impl Summed {
    fn add(&mut self, tally: &Tally, bounds: &[f64]) {
        for (pool, backend, code, count) in &tally.requests {
            let labels = RequestLabels {
                pool: pool.clone(),
                backend: backend.clone(),
                code: *code,
            };
            self.requests.get_or_create(&labels).inc_by(*count);
        }
        for (route, codes) in &tally.routes {
            for (code, count) in codes {
                let labels = RouteCodeLabels {
                    route: route.to_string(),
                    code: *code,
                };
                self.routes.get_or_create(&labels).inc_by(*count);
            }
        }
        self.duration.add(&tally.durations);
        for (pool, backend, durations) in &tally.backends {
            let labels = BackendLabels {
                pool: pool.clone(),
                backend: backend.clone(),
            };
            let histograms = &mut self.backends.0;
            let at = match histograms.iter().position(|(l, _)| *l == labels) {
                Some(at) => at,
                None => {
                    histograms.push((labels, SummedHistogram::new(bounds)));
                    histograms.len() - 1
                }
            };
            histograms[at].1.add(durations);
        }
        for (client, (admitted, limited)) in &tally.clients {
            for (decision, count) in [("admitted", admitted), ("limited", limited)] {
                let labels = ClientLabels {
                    client: client.clone(),
                    decision,
                };
                self.clients.get_or_create(&labels).inc_by(*count);
            }
        }
    }
}

/// Shards' durations summed, encoded as a histogram.
#[derive(Debug)]
pub struct SummedHistogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl SummedHistogram {
    fn new(bounds: &[f64]) -> Self {
        Self {
            sum: 0.0,
            count: 0,
            buckets: bounds.iter().map(|bound| (*bound, 0)).collect(),
        }
    }

    fn add(&mut self, durations: &Durations) {
        for (summed, count) in self.buckets.iter_mut().zip(&durations.buckets) {
            summed.1 += count;
        }
        self.sum += durations.sum;
        self.count += durations.count;
    }
}

impl EncodeMetric for SummedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A histogram per backend, summed over the shards.
#[derive(Debug)]
pub struct BackendHistograms(Vec<(BackendLabels, SummedHistogram)>);

impl EncodeMetric for BackendHistograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, histogram) in &self.0 {
            let family = encoder.encode_family(labels)?;
            histogram.encode(family)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

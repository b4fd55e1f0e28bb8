//! The `stats` tick: once a second the `StatsTicker` actor samples the request counters and
//! the pool, feeds the rate [`window`] shared with the status API, and publishes a `stats` event
//! (which the event history keeps for five minutes, the status page's chart).

pub mod window;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context};

use crate::events::{BackendStat, Events, LbEvent, PoolStat, RouteStat};
use crate::metrics::Metrics;
use crate::registry::Pools;
pub use window::StatsWindow;

/// How often the `stats` event is sent.
pub const STATS_EVERY: Duration = Duration::from_secs(1);

/// Samples the counters every [`STATS_EVERY`].
pub struct StatsTicker {
    pools: Arc<Pools>,
    metrics: Arc<Metrics>,
    /// The last ten seconds of totals, shared with the status API.
    window: Arc<Mutex<StatsWindow>>,
    events: Events,
}

impl StatsTicker {
    pub fn new(
        pools: Arc<Pools>,
        metrics: Arc<Metrics>,
        window: Arc<Mutex<StatsWindow>>,
        events: Events,
    ) -> Self {
        Self {
            pools,
            metrics,
            window,
            events,
        }
    }

    fn tick(&mut self) {
        let totals = self.metrics.totals();
        let requests_per_sec = match self.window.lock() {
            Ok(mut window) => {
                window.push(Instant::now(), totals);
                window.last_second()
            }
            Err(_) => 0.0,
        };
        let view = self.pools.load();
        let routes = view
            .routes()
            .routes()
            .iter()
            .map(|r| RouteStat {
                route: r.spec.name.clone(),
                requests: r.counters.requests(),
                rate_limited: r.counters.rate_limited(),
            })
            .collect();
        let backends = view
            .snapshot()
            .iter()
            .map(|m| BackendStat {
                pool: m.backend.pool.to_string(),
                backend: m.backend.name.clone(),
                counters: m.counters(),
            })
            .collect();
        let pools = view
            .pools()
            .iter()
            .map(|p| PoolStat {
                pool: p.name().to_owned(),
                queued: p.queue_len(),
            })
            .collect();
        self.events.publish(LbEvent::Stats {
            requests: totals.requests,
            requests_per_sec,
            rate_limited: totals.rate_limited,
            errors: totals.own_errors,
            backends,
            routes,
            pools,
        });
    }
}

impl Actor for StatsTicker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(STATS_EVERY, |ticker, _| ticker.tick());
    }
}

//! The domain at start: the event bus, the rate limiter on its database, the pool and the
//! registry that owns it, the health checker, the stats ticker and the simulation, each
//! started once and handed out as the handles everyone else holds.

use std::sync::{Arc, Mutex};

use actix::Actor;

use crate::cluster::{Cluster, ConfigReplica};
use crate::discovery::{dns, PoolFile};
use crate::draining::Draining;
use crate::events::Events;
use crate::health::HealthChecker;
use crate::http::access_log::AccessSink;
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::persistence::{Database, SavedClient, Store};
use crate::registry::{Ejection, Membership, PoolDefaults, PoolFileNews, PoolOptions, Pools};
use crate::settings::Settings;
use crate::simulation::{Simulation, Simulator};
use crate::stats::{StatsTicker, StatsWindow};
use crate::trace::Tracing;

/// The running domain: the actors' handles and the shared state the HTTP layer reads.
pub struct Domain {
    pub pools: Arc<Pools>,
    pub membership: Membership,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    /// Request rates over the last seconds, for the status API.
    pub window: Arc<Mutex<StatsWindow>>,
    pub limiter: Arc<Limiter>,
    /// Present in cluster mode.
    pub cluster: Option<Cluster>,
    /// Present when the simulation runs.
    pub simulation: Option<Simulation>,
    pub draining: Draining,
    /// Where access records go.
    pub access: AccessSink,
    /// `None`: tracing off.
    pub tracing: Option<Tracing>,
}

/// What the domain starts from: everything that could fail is already done (the database is
/// open, the simulated ports are bound), so starting it cannot fail halfway.
pub struct Opened {
    pub database: Database,
    pub saved: Vec<SavedClient>,
    pub simulator: Option<Simulator>,
    pub backend_tls: Arc<rustls::ClientConfig>,
    /// Made first: the access log's writer counts into it.
    pub metrics: Arc<Metrics>,
    pub access: AccessSink,
    pub tracing: Option<Tracing>,
}

impl Domain {
    /// Starts every actor of the domain (inside an actix system).
    pub fn start(settings: &Settings, opened: Opened) -> Self {
        let events = Events::start();
        let cluster = Cluster::new(&settings.cluster, events.clone());
        let limiter = start_limiter(settings, opened.database, opened.saved, &cluster);
        let pools = Arc::new(Pools::at_start(
            &settings.backends.topology,
            &pool_defaults(settings),
        ));
        let metrics = opened.metrics;
        let window = Arc::new(Mutex::new(StatsWindow::default()));
        StatsTicker::new(
            Arc::clone(&pools),
            Arc::clone(&metrics),
            Arc::clone(&window),
            events.clone(),
        )
        .start();
        let simulation = opened
            .simulator
            .map(|simulator| simulator.run(events.clone()));
        let membership = start_registry(
            settings,
            &pools,
            &events,
            simulation.as_ref(),
            pool_file_news(settings, &cluster),
        );
        start_dns(settings, &pools, &membership);
        HealthChecker::new(
            Arc::clone(&pools),
            membership.clone(),
            settings.health.clone(),
            settings.backends.connect_timeout,
            &opened.backend_tls,
        )
        .start();
        Self {
            pools,
            membership,
            events,
            metrics,
            window,
            limiter,
            cluster,
            simulation,
            draining: Draining::default(),
            access: opened.access,
            tracing: opened.tracing,
        }
    }
}

fn start_limiter(
    settings: &Settings,
    database: Database,
    saved: Vec<SavedClient>,
    cluster: &Option<Cluster>,
) -> Arc<Limiter> {
    Arc::new(Limiter::start(
        &settings.rate_limit,
        settings.persistence.flush_interval,
        Store::start(database),
        saved,
        settings.server.workers,
        cluster
            .clone()
            .map(|cluster| (cluster, settings.cluster.lease)),
    ))
}

fn start_registry(
    settings: &Settings,
    pools: &Arc<Pools>,
    events: &Events,
    simulation: Option<&Simulation>,
    pool_file_news: Option<PoolFileNews>,
) -> Membership {
    Membership::start(
        Arc::clone(pools),
        events.clone(),
        settings.health.passive_failures,
        PoolOptions {
            file: settings.backends.file.clone().map(PoolFile::new),
            watch: settings.backends.watch,
            drain_grace: settings.server.shutdown_timeout,
            follower: simulation.map(Simulation::follower),
            defaults: pool_defaults(settings),
            ejection: settings
                .health
                .eject_consecutive_5xx
                .map(|after_5xx| Ejection {
                    after_5xx,
                    base: settings.health.eject_base,
                    max: settings.health.eject_max,
                    max_percent: settings.health.max_ejected_percent,
                }),
            slow_start: settings.health.slow_start,
            pool_file_news,
        },
    )
}

/// In cluster mode with `cluster.share_config` and a pool file, the registry tells the cluster
/// its pool file's text.
fn pool_file_news(settings: &Settings, cluster: &Option<Cluster>) -> Option<PoolFileNews> {
    let cluster = cluster.clone()?;
    if !settings.cluster.share_config || settings.backends.file.is_none() {
        return None;
    }
    Some(PoolFileNews(Arc::new(move |text, changed_here| {
        cluster.tell_pool_file(text, changed_here);
    })))
}

/// The registry as the place the cluster's configuration goes.
struct SharedPoolFile(Membership);

impl ConfigReplica for SharedPoolFile {
    fn apply(&self, text: String) {
        self.0.apply_shared(text);
    }
}

impl Domain {
    /// Where the cluster's configuration goes: the registry.
    pub fn config_replica(&self) -> Box<dyn ConfigReplica> {
        Box::new(SharedPoolFile(self.membership.clone()))
    }
}

/// Looks up the pools' `"discovery": "dns"` entries for as long as the balancer runs.
fn start_dns(settings: &Settings, pools: &Arc<Pools>, membership: &Membership) {
    let resolver = dns::resolver(&settings.backends.dns_servers);
    let wanted = !pools.load().dns_targets().is_empty();
    if let (Err(problem), true) = (&resolver, wanted) {
        log::warn!("{problem}: \"discovery\": \"dns\" entries will find no members");
    }
    let (pools, membership) = (Arc::clone(pools), membership.clone());
    dns::keep_resolving(
        resolver,
        settings.backends.dns_refresh,
        move || pools.load().dns_targets(),
        move |lookup| membership.tell_lookup(lookup),
    );
}

/// What every pool takes from the settings where it sets nothing of its own.
fn pool_defaults(settings: &Settings) -> PoolDefaults {
    let backends = &settings.backends;
    PoolDefaults {
        strategy: backends.strategy,
        health_path: settings.health.path.clone(),
        max_connections: backends.max_connections,
        queue_size: backends.queue_size,
        queue_timeout: backends.queue_timeout,
        retry_budget_percent: backends.retry_budget_percent,
    }
}

//! Wiring, the only module that knows every part: [`start`] opens the database, starts the
//! actors and starts the HTTP server on an already-bound listener (so tests can bind
//! `127.0.0.1:0`); [`run`] is what the binary does. [`BalancerHandle`] controls a running
//! balancer.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Actor;
use actix_web::dev::{Server, ServerHandle};
use actix_web::http::KeepAlive;
use actix_web::{web, App, HttpServer};

use crate::certs::CertError;
use crate::cluster::{self, Cluster};
use crate::discovery::PoolFile;
use crate::draining::Draining;
use crate::events::Events;
use crate::health::HealthChecker;
use crate::http::access_log::AccessLog;
use crate::http::api::{self, ApiState};
use crate::http::clients::{self, ClientsState};
use crate::http::proxy::{self, ProxyState, Tunnels, WorkerClients};
use crate::http::shutdown::{Hangups, Signals};
use crate::http::tls::{self, TlsReloader};
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::persistence::{Database, DbError, SavedClient, Store};
use crate::registry::{
    Member, MemberStatus, Membership, PoolError, PoolOptions, ReloadReport, ReloadTrigger, Rotation,
};
use crate::settings::Settings;
use crate::simulation::{Simulation, Simulator};
use crate::stats::{StatsTicker, StatsWindow};
use crate::upstream;

/// Why the balancer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database file is unusable (not SQLite, newer schema, cannot be created): exit 2.
    #[error("{0}")]
    Database(#[from] DbError),
    /// Listening or spawning failed (an address in use, ...).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// `backends.ca_file` could not be used (it was checked at load; it changed since): exit 2.
    #[error("backends.ca_file: {0}")]
    Tls(#[from] CertError),
}

/// Work that must run after the last request finished and before the process exits.
pub type ShutdownHook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>>>;

/// A started balancer: await [`Balancer::run`] to serve until it is shut down.
pub struct Balancer {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// The TLS listener's address, when there is one.
    pub tls_addr: Option<SocketAddr>,
    server: Server,
    handle: BalancerHandle,
    hooks: Vec<ShutdownHook>,
}

/// How long before the end of a drain's grace open tunnels are closed.
const TUNNEL_CLOSE_MARGIN: Duration = Duration::from_millis(100);

/// Cheap to clone; controls a running balancer.
#[derive(Clone)]
pub struct BalancerHandle {
    server: ServerHandle,
    draining: Draining,
    membership: Membership,
    events: Events,
    limiter: Arc<Limiter>,
    shutdown_timeout: Duration,
    /// Present with a TLS listener.
    tls: Option<TlsReloader>,
    /// Ended when the drain's grace is over.
    tunnels: Arc<Tunnels>,
}

impl BalancerHandle {
    /// Stops accepting and waits for in-flight requests (at most the shutdown timeout).
    /// actix-server closes idle kept-alive connections at once. WebSocket tunnels never finish
    /// on their own: they are ended a moment before actix-server's deadline, so that they
    /// close cleanly and the server stops on its own rather than by force.
    pub async fn shutdown(&self) {
        self.begin_drain();
        let tunnels = Arc::clone(&self.tunnels);
        let grace = self.shutdown_timeout;
        let closer = actix_rt::spawn(async move {
            actix_rt::time::sleep(grace.saturating_sub(TUNNEL_CLOSE_MARGIN)).await;
            tunnels.close_all();
        });
        self.server.stop(true).await;
        closer.abort();
    }

    /// WebSocket tunnels open now.
    pub fn open_tunnels(&self) -> usize {
        self.tunnels.open()
    }

    /// Marks the balancer as draining without stopping it yet: `/lb/health` answers 503 and
    /// every response closes its connection. [`Self::shutdown`] starts with this.
    pub fn begin_drain(&self) {
        self.draining.begin();
    }

    /// Every backend with its health and counters, in pool order.
    pub fn members(&self) -> Vec<MemberStatus> {
        self.membership.members()
    }

    /// Reads the pool file again and applies the difference (what SIGHUP does).
    pub async fn reload(&self) -> Result<ReloadReport, PoolError> {
        self.membership.reload(ReloadTrigger::Signal).await
    }

    /// Reads the TLS certificate and key again (SIGHUP does this too); without a TLS listener
    /// there is nothing to do. A bad pair is logged and the old one kept.
    pub async fn reload_certificate(&self) -> Result<(), CertError> {
        match &self.tls {
            Some(tls) => tls.reload().await,
            None => Ok(()),
        }
    }

    /// The event stream (subscribe to see backends go down and up).
    pub fn events(&self) -> Events {
        self.events.clone()
    }

    /// The rate limiter.
    pub fn limiter(&self) -> Arc<Limiter> {
        Arc::clone(&self.limiter)
    }

    /// Puts a backend in or out of rotation by hand, as the health checker would.
    #[cfg(feature = "test-util")]
    pub async fn set_health(&self, backend: usize, healthy: bool, reason: &str) -> bool {
        self.membership
            .set_health(backend, healthy, reason.to_owned())
            .await
    }

    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }
}

impl Balancer {
    pub fn handle(&self) -> BalancerHandle {
        self.handle.clone()
    }

    /// Adds work to do after the server stopped, in the order added.
    pub fn on_shutdown(&mut self, hook: ShutdownHook) {
        self.hooks.push(hook);
    }

    /// Serves until shut down, then runs the shutdown hooks.
    pub async fn run(self) -> io::Result<()> {
        let served = self.server.await;
        for hook in self.hooks {
            hook().await;
        }
        served
    }
}

/// The running domain: the actors' handles and the shared state the HTTP layer reads.
struct Domain {
    rotation: Arc<Rotation>,
    membership: Membership,
    events: Events,
    metrics: Arc<Metrics>,
    window: Arc<Mutex<StatsWindow>>,
    limiter: Arc<Limiter>,
    cluster: Option<Cluster>,
    simulation: Option<Simulation>,
    draining: Draining,
}

/// Starts the balancer on `listener` (plain HTTP only): opens the database, starts the actors
/// (and the simulated backends, if enabled), then the HTTP server. Must be called inside an
/// actix system.
pub fn start(settings: &Settings, listener: TcpListener) -> Result<Balancer, StartError> {
    start_listeners(settings, listener, None)
}

/// As [`start`], with a TLS listener as well when `settings.tls` is set and `tls` is given.
pub fn start_listeners(
    settings: &Settings,
    listener: TcpListener,
    tls: Option<TcpListener>,
) -> Result<Balancer, StartError> {
    let local_addr = listener.local_addr()?;
    let backend_tls = upstream::tls_config(
        settings.backends.ca_file.as_deref(),
        settings.backends.tls_verify,
    )?;
    if !settings.backends.tls_verify {
        log::warn!(
            "backends.tls_verify = false: https:// backends' certificates are NOT verified; \
             anyone on the path to them can read and change the traffic. For testing only."
        );
    }
    let tls = match (&settings.tls, tls) {
        (Some(tls_settings), Some(tls_listener)) => {
            let (config, reloader) = tls::server_config(tls_settings);
            Some((tls_listener, config, reloader))
        }
        _ => None,
    };
    let tls_addr = match &tls {
        Some((tls_listener, _, _)) => Some(tls_listener.local_addr()?),
        None => None,
    };
    let (database, saved) = open_database(settings)?;
    // Everything that can fail (the database above, the simulated ports here) happens before
    // the first actor starts, so a failed start leaves nothing running.
    let simulator = if settings.simulation.enabled {
        Some(Simulator::start_backends(
            &settings.backends.pool,
            &settings.simulation,
        )?)
    } else {
        None
    };
    let domain = start_actors(settings, database, saved, simulator, &backend_tls);
    let (tls_listener, reloader) = match tls {
        Some((tls_listener, config, reloader)) => (Some((tls_listener, config)), Some(reloader)),
        None => (None, None),
    };
    let tunnels = Arc::new(Tunnels::new(
        settings,
        Arc::clone(&backend_tls),
        domain.draining.clone(),
    ));
    let server = start_server(
        settings,
        listener,
        tls_listener,
        local_addr,
        &domain,
        backend_tls,
        Arc::clone(&tunnels),
    )?;
    if let Some(cluster) = &domain.cluster {
        cluster::start_agent(cluster, local_addr.to_string(), domain.limiter.replica());
    }
    let handle = BalancerHandle {
        server: server.handle(),
        draining: domain.draining.clone(),
        membership: domain.membership.clone(),
        events: domain.events.clone(),
        limiter: Arc::clone(&domain.limiter),
        shutdown_timeout: settings.server.shutdown_timeout,
        tls: reloader,
        tunnels,
    };
    let mut balancer = Balancer {
        local_addr,
        tls_addr,
        server,
        handle,
        hooks: Vec::new(),
    };
    let limiter = domain.limiter;
    balancer.on_shutdown(Box::new(move || {
        Box::pin(async move {
            limiter.flush().await;
            log::info!("token levels saved");
        })
    }));
    if let Some(cluster) = domain.cluster {
        balancer.on_shutdown(Box::new(move || {
            Box::pin(async move { cluster.leave().await })
        }));
    }
    if let Some(simulation) = domain.simulation {
        balancer.on_shutdown(Box::new(move || {
            Box::pin(async move { simulation.stop().await })
        }));
    }
    Ok(balancer)
}

/// Opens the database and reads the saved clients; afterwards only the Store's thread
/// touches SQLite.
fn open_database(settings: &Settings) -> Result<(Database, Vec<SavedClient>), DbError> {
    let database = Database::open(&settings.persistence.path)?;
    let saved = database.load_all()?;
    log::info!(
        "{} registered clients loaded from {}",
        saved.len(),
        settings.persistence.path.display()
    );
    Ok((database, saved))
}

fn start_actors(
    settings: &Settings,
    database: Database,
    saved: Vec<SavedClient>,
    simulator: Option<Simulator>,
    backend_tls: &Arc<rustls::ClientConfig>,
) -> Domain {
    let events = Events::start();
    let cluster = Cluster::new(&settings.cluster, events.clone());
    let limiter = Arc::new(Limiter::start(
        &settings.rate_limit,
        settings.persistence.flush_interval,
        Store::start(database),
        saved,
        settings.server.workers,
        cluster
            .clone()
            .map(|cluster| (cluster, settings.cluster.lease)),
    ));
    let members = settings
        .backends
        .pool
        .iter()
        .map(|entry| Member::new(entry.backend.clone(), entry.weight, true))
        .collect();
    let rotation = Arc::new(Rotation::new(members, settings.backends.strategy));
    let metrics = Arc::new(Metrics::default());
    let window = Arc::new(Mutex::new(StatsWindow::default()));
    StatsTicker::new(
        Arc::clone(&rotation),
        Arc::clone(&metrics),
        Arc::clone(&window),
        events.clone(),
    )
    .start();
    let simulation = simulator.map(|simulator| simulator.run(events.clone()));
    let membership = Membership::start(
        Arc::clone(&rotation),
        events.clone(),
        settings.health.passive_failures,
        PoolOptions {
            file: settings.backends.file.clone().map(PoolFile::new),
            watch: settings.backends.watch,
            drain_grace: settings.server.shutdown_timeout,
            follower: simulation.as_ref().map(Simulation::follower),
        },
    );
    HealthChecker::new(
        Arc::clone(&rotation),
        membership.clone(),
        settings.health.clone(),
        settings.backends.connect_timeout,
        backend_tls,
    )
    .start();
    Domain {
        rotation,
        membership,
        events,
        metrics,
        window,
        limiter,
        cluster,
        simulation,
        draining: Draining::default(),
    }
}

fn start_server(
    settings: &Settings,
    listener: TcpListener,
    tls: Option<(TcpListener, rustls::ServerConfig)>,
    local_addr: SocketAddr,
    domain: &Domain,
    backend_tls: Arc<rustls::ClientConfig>,
    tunnels: Arc<Tunnels>,
) -> io::Result<Server> {
    let api_state = web::Data::new(ApiState {
        rotation: Arc::clone(&domain.rotation),
        admin: settings.admin.clone(),
        draining: domain.draining.clone(),
        started: Instant::now(),
        simulation: domain.simulation.clone(),
        listen: local_addr,
        metrics: Arc::clone(&domain.metrics),
        window: Arc::clone(&domain.window),
        membership: domain.membership.clone(),
        limiter: Arc::clone(&domain.limiter),
        cluster: domain.cluster.clone(),
        events: domain.events.clone(),
    });
    let clients_state = web::Data::new(ClientsState::new(
        settings,
        Arc::clone(&domain.limiter),
        domain.events.clone(),
    ));
    let proxy_state = web::Data::new(ProxyState::new(
        settings,
        &domain.limiter,
        Arc::clone(&domain.metrics),
        domain.events.clone(),
        Arc::clone(&domain.rotation),
        domain.membership.clone(),
        tunnels,
    ));
    let draining = domain.draining.clone();
    let (connect_timeout, response_timeout) = (
        settings.backends.connect_timeout,
        settings.backends.response_timeout,
    );
    let server = HttpServer::new(move || {
        App::new()
            .app_data(proxy_state.clone())
            .app_data(api_state.clone())
            .app_data(clients_state.clone())
            // Built here, so once per worker thread: an awc Client is not Send.
            .app_data(web::Data::new(WorkerClients::new(
                connect_timeout,
                response_timeout,
                &backend_tls,
            )))
            .wrap(AccessLog::new(draining.clone()))
            .configure(clients::configure)
            .configure(api::configure)
            .default_service(web::to(proxy::forward))
    })
    .workers(settings.server.workers)
    .shutdown_timeout(settings.server.shutdown_timeout.as_secs())
    .client_request_timeout(settings.server.client_request_timeout)
    .keep_alive(
        settings
            .server
            .keep_alive
            .map_or(KeepAlive::Disabled, KeepAlive::Timeout),
    )
    .disable_signals();
    let server = match tls {
        // Only then do connections need telling apart (for X-Forwarded-Proto).
        Some((tls_listener, config)) => server
            .on_connect(tls::mark_tls)
            .listen(listener)?
            .listen_rustls_0_23(tls_listener, config)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

/// What the binary runs: bind `server.listen`, serve, drain on SIGINT/SIGTERM, run the hooks.
pub async fn run(settings: Settings) -> Result<(), StartError> {
    let listener = TcpListener::bind(settings.server.listen).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot listen on {}: {err}", settings.server.listen),
        )
    })?;
    let hangups = Hangups::install().map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot install the SIGHUP handler: {err}"),
        )
    })?;
    let tls_listener = match &settings.tls {
        Some(tls) => Some(TcpListener::bind(tls.listen).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot listen on {} (TLS): {err}", tls.listen),
            )
        })?),
        None => None,
    };
    let signals = Signals::install().map_err(|err| {
        io::Error::new(err.kind(), format!("cannot install signal handlers: {err}"))
    })?;
    let balancer = start_listeners(&settings, listener, tls_listener)?;
    if let Some(addr) = balancer.tls_addr {
        log::info!("TLS listening on {addr} (HTTP/2 and HTTP/1.1 by ALPN)");
    }
    let pool: Vec<String> = settings
        .backends
        .pool
        .iter()
        .map(|entry| {
            format!(
                "{} {} (weight {})",
                entry.backend.name, entry.backend.url, entry.weight
            )
        })
        .collect();
    log::info!(
        "listening on {} with {} workers; {} over backends: {}",
        balancer.local_addr,
        settings.server.workers,
        settings.backends.strategy,
        pool.join(", ")
    );
    let handle = balancer.handle();
    let reloader = handle.clone();
    actix_rt::spawn(hangups.reload_on_each(move || {
        let reloader = reloader.clone();
        async move {
            // The outcomes are logged (and the pool's published) where they happen.
            let _ = reloader.reload().await;
            let _ = reloader.reload_certificate().await;
        }
    }));
    actix_rt::spawn(
        signals.drain_on_signal(handle.shutdown_timeout(), async move {
            handle.shutdown().await;
        }),
    );
    balancer.run().await?;
    log::info!("shut down cleanly");
    Ok(())
}

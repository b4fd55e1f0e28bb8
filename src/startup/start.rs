//! [`start`]: open what can fail (the backends' TLS configuration, the database, the simulated
//! ports), start the domain, hand the HTTP layer what it serves from, and register what must run
//! after the server stopped.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use super::domain::{Domain, Opened};
use super::handle::{Balancer, BalancerHandle};
use crate::certs::CertError;
use crate::cluster;
use crate::http::access_log::AccessSink;
use crate::http::api::ApiState;
use crate::http::clients::ClientsState;
use crate::http::h2_drain::H2Connections;
use crate::http::proxy::{ProxyState, Tunnels};
use crate::http::server::{self, Listeners, Shared};
use crate::http::tls;
use crate::metrics::Metrics;
use crate::persistence::{Database, DbError};
use crate::settings::Settings;
use crate::simulation::Simulator;
use crate::trace::{TraceError, Tracing};
use crate::upstream::{self, Connector};

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
    /// `log.access_path` cannot be opened for appending: exit 2.
    #[error("{0}")]
    AccessLog(io::Error),
    /// Tracing cannot start: the OTLP headers variable is malformed. Exit 2.
    #[error("{0}")]
    Tracing(String),
}

impl From<TraceError> for StartError {
    fn from(err: TraceError) -> Self {
        match err {
            TraceError::Thread(err) => Self::Io(err),
            TraceError::Headers(_) => Self::Tracing(err.to_string()),
        }
    }
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
    let (tls, reloader) = match (&settings.tls, tls) {
        (Some(tls_settings), Some(tls_listener)) => {
            let (config, reloader) = tls::server_config(tls_settings);
            (Some((tls_listener, config)), Some(reloader))
        }
        _ => (None, None),
    };
    let tls_addr = match &tls {
        Some((tls_listener, _)) => Some(tls_listener.local_addr()?),
        None => None,
    };
    // Everything that can fail happens before the first actor starts, so a failed start
    // leaves nothing running.
    let opened = open(settings)?;
    let connector = Connector::new(
        Arc::clone(&opened.backend_tls),
        settings.backends.connect_timeout,
        settings.backends.response_timeout,
    );
    let domain = Domain::start(settings, opened);
    let tunnels = Arc::new(Tunnels::new(settings, domain.draining.clone()));
    let h2 = tls
        .is_some()
        .then(|| H2Connections::new(domain.draining.clone()));
    let shared = Shared {
        h2: h2.clone(),
        ..shared(settings, local_addr, &domain, connector, &tunnels)
    };
    let listeners = Listeners {
        plain: listener,
        tls,
    };
    let server = server::serve(settings, listeners, shared)?;
    if let Some(cluster) = &domain.cluster {
        cluster::start_agent(
            cluster,
            local_addr.to_string(),
            domain.limiter.replica(),
            domain.config_replica(),
        );
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
        access: domain.access.clone(),
        h2,
    };
    let mut balancer = Balancer {
        local_addr,
        tls_addr,
        server,
        handle,
        hooks: Vec::new(),
    };
    add_shutdown_hooks(&mut balancer, domain);
    Ok(balancer)
}

/// What can fail at start, done before anything runs: the backends' TLS configuration, the
/// database (read once here; afterwards only the Store's thread touches SQLite) and the
/// simulated backends' ports.
fn open(settings: &Settings) -> Result<Opened, StartError> {
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
    let database = Database::open(&settings.persistence.path)?;
    let saved = database.load_all()?;
    log::info!(
        "{} registered clients loaded from {}",
        saved.len(),
        settings.persistence.path.display()
    );
    let metrics = Arc::new(Metrics::default());
    let access = AccessSink::open(&settings.log, metrics.access_log_dropped())
        .map_err(StartError::AccessLog)?;
    let tracing = match &settings.tracing {
        Some(tracing) => Some(Tracing::start(
            tracing,
            &backend_tls,
            metrics.trace_spans_dropped(),
        )?),
        None => None,
    };
    let simulator = if settings.simulation.enabled {
        Some(Simulator::start_backends(
            settings.backends.entries(),
            &settings.simulation,
        )?)
    } else {
        None
    };
    Ok(Opened {
        database,
        saved,
        simulator,
        backend_tls,
        metrics,
        access,
        tracing,
    })
}

/// What the HTTP layer's handlers share, from the domain.
fn shared(
    settings: &Settings,
    listen: std::net::SocketAddr,
    domain: &Domain,
    connector: Connector,
    tunnels: &Arc<Tunnels>,
) -> Shared {
    Shared {
        proxy: ProxyState {
            tracing: domain.tracing.clone(),
            ..ProxyState::new(
                settings,
                &domain.limiter,
                Arc::clone(&domain.metrics),
                domain.events.clone(),
                Arc::clone(&domain.pools),
                domain.membership.clone(),
                Arc::clone(tunnels),
            )
        },
        api: ApiState {
            pools: Arc::clone(&domain.pools),
            strategy: settings.backends.strategy,
            admin: settings.admin.clone(),
            draining: domain.draining.clone(),
            started: Instant::now(),
            simulation: domain.simulation.clone(),
            listen,
            metrics: Arc::clone(&domain.metrics),
            window: Arc::clone(&domain.window),
            membership: domain.membership.clone(),
            limiter: Arc::clone(&domain.limiter),
            cluster: domain.cluster.clone(),
            events: domain.events.clone(),
        },
        clients: ClientsState::new(
            settings,
            Arc::clone(&domain.limiter),
            domain.events.clone(),
            Arc::clone(&domain.pools),
        ),
        connector,
        draining: domain.draining.clone(),
        access: domain.access.clone(),
        tracing: domain.tracing.clone(),
        h2: None,
    }
}

/// After the server stopped: token levels saved, the cluster left, the simulation stopped.
fn add_shutdown_hooks(balancer: &mut Balancer, domain: Domain) {
    let limiter = domain.limiter;
    balancer.on_shutdown(Box::new(move || {
        Box::pin(async move {
            limiter.flush().await;
            log::info!("token levels saved");
        })
    }));
    let (access, tracing) = (domain.access, domain.tracing);
    balancer.on_shutdown(Box::new(move || {
        Box::pin(async move {
            let flushed = actix_rt::task::spawn_blocking(move || {
                access.flush(std::time::Duration::from_secs(2));
                if let Some(tracing) = tracing {
                    tracing.flush(std::time::Duration::from_secs(2));
                }
            });
            let _ = flushed.await;
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
}

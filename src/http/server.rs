//! Wiring: the actix-web server with its routes, the registry actor, and the handle used to
//! drain it. [`start`] takes an already-bound listener so tests can bind `127.0.0.1:0`;
//! [`run`] is what the binary does.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::dev::{Server, ServerHandle, Service};
use actix_web::http::KeepAlive;
use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::FutureExt;

use crate::events::EventBus;
use crate::health::{probe_view, HealthChecker};
use crate::http::access_log::{self, RequestLine};
use crate::http::api::{self, ApiState};
use crate::http::clients::{self, ClientsState};
use crate::http::error::{self, json_response};
use crate::http::page;
use crate::http::proxy::{self, ProxyState};
use crate::http::shutdown::{self, Draining, ShutdownHook};
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::persistence::{Database, DbError, Store};
use crate::registry::Registry;
use crate::registry::Rotation;
use crate::settings::Settings;
use crate::simulation::{Simulator, StopAll};
use crate::stats::StatsWindow;

/// Why the balancer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database file is unusable (not SQLite, newer schema, cannot be created): exit 2.
    #[error("{0}")]
    Database(#[from] DbError),
    /// Listening or spawning failed (an address in use, ...).
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A started balancer: await [`Balancer::run`] to serve until it is shut down.
pub struct Balancer {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    server: Server,
    handle: BalancerHandle,
    hooks: Vec<ShutdownHook>,
}

/// Cheap to clone; controls a running balancer.
#[derive(Clone)]
pub struct BalancerHandle {
    server: ServerHandle,
    draining: Draining,
    registry: Addr<Registry>,
    events: Addr<EventBus>,
    limiter: Arc<Limiter>,
    shutdown_timeout: Duration,
}

impl BalancerHandle {
    /// Stops accepting and waits for in-flight requests (at most the shutdown timeout).
    /// actix-server closes idle kept-alive connections at once.
    pub async fn shutdown(&self) {
        self.begin_drain();
        self.server.stop(true).await;
    }

    /// Marks the balancer as draining without stopping it yet: `/lb/health` answers 503 and
    /// every response closes its connection. [`Self::shutdown`] starts with this.
    pub fn begin_drain(&self) {
        self.draining.begin();
    }

    /// The registry actor (for the health checker, the status API and tests).
    pub fn registry(&self) -> Addr<Registry> {
        self.registry.clone()
    }

    /// The rate limiter (for tests and the status API).
    pub fn limiter(&self) -> Arc<Limiter> {
        Arc::clone(&self.limiter)
    }

    /// The event bus (subscribe to see backends go down and up).
    pub fn events(&self) -> Addr<EventBus> {
        self.events.clone()
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

/// Starts the actors (and the simulated backends, if enabled) and the HTTP server on
/// `listener`. Must be called inside an actix system.
pub fn start(settings: &Settings, listener: TcpListener) -> Result<Balancer, StartError> {
    let local_addr = listener.local_addr()?;
    // Read once at start-up, before serving; afterwards only the Store's thread touches SQLite.
    let database = Database::open(&settings.persistence.path)?;
    let saved = database.load_all()?;
    log::info!(
        "{} registered clients loaded from {}",
        saved.len(),
        settings.persistence.path.display()
    );
    // Everything that can fail (the database above, the simulated ports here) happens before
    // the first actor starts, so a failed start leaves nothing running.
    let simulator = match settings.simulation.enabled {
        true => Some(Simulator::start_backends(
            &settings.backends.pool,
            &settings.simulation,
        )?),
        false => None,
    };
    let store = Store::start(database);
    let limiter = Arc::new(Limiter::start(
        &settings.rate_limit,
        settings.persistence.flush_interval,
        store,
        saved,
        settings.server.workers,
    ));
    let rotation = Arc::new(Rotation::new(settings.backends.pool.clone()));
    let metrics = Arc::new(Metrics::default());
    let window = Arc::new(Mutex::new(StatsWindow::default()));
    let events = EventBus::new(
        Arc::clone(&rotation),
        Arc::clone(&metrics),
        Arc::clone(&window),
    )
    .start();
    let simulation = simulator.map(|simulator| {
        let view = simulator.view();
        (simulator.publish_to(events.clone()).start(), view)
    });
    let registry = Registry::new(
        Arc::clone(&rotation),
        events.clone(),
        settings.health.passive_failures,
    )
    .start();
    let probes = probe_view(rotation.len());
    HealthChecker::new(
        rotation.clone(),
        registry.clone(),
        settings.health.clone(),
        settings.backends.connect_timeout,
        Arc::clone(&probes),
    )
    .start();
    let draining = Draining::default();
    let api_state = web::Data::new(ApiState {
        rotation: rotation.clone(),
        admin: settings.admin.clone(),
        draining: draining.clone(),
        started: std::time::Instant::now(),
        simulation: simulation.clone(),
        listen: local_addr,
        metrics: Arc::clone(&metrics),
        window,
        probes,
        limiter: Arc::clone(&limiter),
        events: events.clone(),
    });
    let clients_state = web::Data::new(ClientsState {
        events: events.clone(),
        limiter: Arc::clone(&limiter),
        admin: settings.admin.clone(),
        default_rate_per_sec: settings.rate_limit.default_rate_per_sec,
    });
    let state = web::Data::new(ProxyState {
        limiter: settings.rate_limit.enabled.then(|| Arc::clone(&limiter)),
        metrics: Arc::clone(&metrics),
        events: events.clone(),
        last_failover_event_ms: AtomicU64::new(0),
        rotation,
        registry: registry.clone(),
        retries: settings.backends.retries,
        retry_body_limit_bytes: settings.backends.retry_body_limit_bytes,
        max_request_body_bytes: settings.backends.max_request_body_bytes,
        send_timeout: settings.server.send_timeout,
    });
    let (connect_timeout, response_timeout) = (
        settings.backends.connect_timeout,
        settings.backends.response_timeout,
    );
    let app_draining = draining.clone();
    let server = HttpServer::new(move || {
        let draining = app_draining.clone();
        App::new()
            .app_data(state.clone())
            .app_data(api_state.clone())
            .app_data(clients_state.clone())
            // Built here, so once per worker thread: an awc Client is not Send.
            .app_data(web::Data::new(proxy::build_client(
                connect_timeout,
                response_timeout,
            )))
            .app_data(web::Data::new(draining.clone()))
            .wrap_fn(move |req, service| {
                let line = RequestLine::capture(&req);
                let draining = draining.clone();
                service.call(req).map(move |result| {
                    result.map(|mut res| {
                        access_log::close_if_draining(&mut res, &draining);
                        if let Some(line) = line {
                            line.write(&res);
                        }
                        res
                    })
                })
            })
            // Everything under /clients is the admin API's, never proxied: unknown paths there
            // (`/clients/`, `/clients/a/b`) are 404s.
            .service(
                web::scope("/clients")
                    .configure(clients::configure)
                    .default_service(web::to(error::not_found)),
            )
            .service(
                web::scope("/lb")
                    .service(web::scope("/api").configure(api::configure))
                    .service(
                        web::resource("/metrics")
                            .route(web::get().to(api::metrics))
                            .default_service(web::to(error::method_not_allowed)),
                    )
                    .configure(page::configure)
                    .service(
                        web::resource("/health")
                            .route(web::get().to(health))
                            .route(web::head().to(health))
                            .default_service(web::to(error::method_not_allowed)),
                    )
                    .default_service(web::to(error::not_found)),
            )
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
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = BalancerHandle {
        server: server.handle(),
        draining,
        registry,
        events,
        limiter: Arc::clone(&limiter),
        shutdown_timeout: settings.server.shutdown_timeout,
    };
    let mut balancer = Balancer {
        local_addr,
        server,
        handle,
        hooks: Vec::new(),
    };
    balancer.on_shutdown(Box::new(move || {
        Box::pin(async move {
            limiter.flush().await;
            log::info!("token levels saved");
        })
    }));
    if let Some((simulator, _)) = simulation {
        balancer.on_shutdown(Box::new(move || {
            Box::pin(async move {
                let _ = simulator.send(StopAll).await;
            })
        }));
    }
    Ok(balancer)
}

/// `/lb/health`: the balancer's own liveness, 503 while draining.
async fn health(draining: web::Data<Draining>) -> HttpResponse {
    match draining.is_draining() {
        false => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        true => json_response(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "Service is shutting down",
        ),
    }
}

/// What the binary runs: bind `server.listen`, serve, drain on SIGINT/SIGTERM, run the hooks.
pub async fn run(settings: Settings) -> Result<(), StartError> {
    let listener = TcpListener::bind(settings.server.listen).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot listen on {}: {err}", settings.server.listen),
        )
    })?;
    let balancer = start(&settings, listener)?;
    let pool: Vec<&str> = settings
        .backends
        .pool
        .iter()
        .map(|b| b.url.as_str())
        .collect();
    log::info!(
        "listening on {} with {} workers; backends: {}",
        balancer.local_addr,
        settings.server.workers,
        pool.join(", ")
    );
    let handle = balancer.handle();
    actix_rt::spawn(async move {
        if let Err(err) = shutdown::drain_on_signal(handle).await {
            log::error!("cannot install signal handlers: {err}");
        }
    });
    balancer.run().await?;
    log::info!("shut down cleanly");
    Ok(())
}

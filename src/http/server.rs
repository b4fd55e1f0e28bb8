//! The HTTP server: every worker's `App` (the `/clients` and `/lb` scopes, the proxy as the
//! default service, the access log around them) on the listeners it is handed. What the
//! handlers share is built by the start-up and handed over in [`Shared`]; this module only
//! speaks HTTP.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::KeepAlive;
use actix_web::{web, App, HttpServer};

use crate::draining::Draining;
use crate::http::access_log::{AccessLog, AccessSink};
use crate::http::api::{self, ApiState};
use crate::http::clients::{self, ClientsState};
use crate::http::h2_drain::H2Connections;
use crate::http::proxy::{self, ProxyState};
use crate::http::tls;
use crate::settings::Settings;
use crate::trace::Tracing;
use crate::upstream::{Connections, Connector};

/// The listeners to serve on: the plain one, and the TLS one with its configuration.
pub struct Listeners {
    pub plain: TcpListener,
    pub tls: Option<(TcpListener, rustls::ServerConfig)>,
}

/// What every worker's handlers share.
pub struct Shared {
    pub proxy: ProxyState,
    pub api: ApiState,
    pub clients: ClientsState,
    /// How each worker reaches backends (its own connections are kept on its thread).
    pub connector: Connector,
    pub draining: Draining,
    /// Where access records go.
    pub access: AccessSink,
    /// `None`: tracing off.
    pub tracing: Option<Tracing>,
    /// With a TLS listener: its HTTP/2 connections, for the drain.
    pub h2: Option<Arc<H2Connections>>,
}

/// Starts serving `shared` on `listeners` with the `[server]` settings; the server runs until
/// stopped through its handle.
pub fn serve(settings: &Settings, listeners: Listeners, shared: Shared) -> io::Result<Server> {
    let proxy_state = web::Data::new(shared.proxy);
    let api_state = web::Data::new(shared.api);
    let clients_state = web::Data::new(shared.clients);
    let (connector, draining) = (shared.connector, shared.draining);
    let (access, tracing) = (shared.access, shared.tracing);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(proxy_state.clone())
            .app_data(api_state.clone())
            .app_data(clients_state.clone())
            // Built here, so once per worker thread: a worker's connections are its own.
            .app_data(web::Data::new(Connections::new(connector.clone())))
            .wrap(AccessLog::new(
                draining.clone(),
                access.clone(),
                tracing.clone(),
            ))
            .configure(clients::configure)
            .configure(api::configure)
            .default_service(web::to(proxy::forward))
    });
    let server_settings = &settings.server;
    let keep_alive = server_settings
        .keep_alive
        .map_or(KeepAlive::Disabled, KeepAlive::Timeout);
    // actix-server's own signal handling is off: the start-up handles signals.
    let server = server
        .workers(server_settings.workers)
        .shutdown_timeout(server_settings.shutdown_timeout.as_secs())
        .client_request_timeout(server_settings.client_request_timeout)
        .keep_alive(keep_alive)
        .max_connections(server_settings.max_connections)
        // A client that closes its connection (or its sending half) is gone: its request is
        // dropped, leaving the pool's queue or cancelling its backend attempt, as nginx does
        // by default. (actix-http would otherwise keep serving a half-closed connection.)
        .h1_allow_half_closed(false)
        .disable_signals();
    let server = match listeners.tls {
        // Only then do connections need telling apart (for X-Forwarded-Proto).
        Some((tls_listener, config)) => {
            let h2 = shared.h2;
            server
                .on_connect(move |connection, extensions| {
                    tls::mark_tls(connection, extensions);
                    if let Some(h2) = &h2 {
                        h2.track(connection, extensions);
                    }
                })
                .listen(listeners.plain)?
                .listen_rustls_0_23(tls_listener, config)?
        }
        None => server.listen(listeners.plain)?,
    };
    Ok(server.run())
}

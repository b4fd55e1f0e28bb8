//! What the binary runs: bind the listeners, install the signal handlers, start, tell systemd
//! (when it runs the balancer), serve until a drain ends, run the shutdown hooks.

use std::io;
use std::net::{SocketAddr, TcpListener};

use super::handle::BalancerHandle;
use super::notify::notify;
use super::signals::{Hangups, Reopens, Signals};
use super::start::{start_listeners, StartError};
use crate::settings::Settings;

/// Binds `server.listen` (and `tls.listen`), serves, drains on SIGINT/SIGTERM, reloads on
/// SIGHUP, and runs the hooks.
pub async fn run(settings: Settings) -> Result<(), StartError> {
    let listener = bind(settings.server.listen, "")?;
    let hangups = Hangups::install().map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot install the SIGHUP handler: {err}"),
        )
    })?;
    let tls_listener = match &settings.tls {
        Some(tls) => Some(bind(tls.listen, " (TLS)")?),
        None => None,
    };
    let signals = Signals::install().map_err(|err| {
        io::Error::new(err.kind(), format!("cannot install signal handlers: {err}"))
    })?;
    let reopens = Reopens::install().map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot install the SIGUSR1 handler: {err}"),
        )
    })?;
    let balancer = start_listeners(&settings, listener, tls_listener)?;
    if let Some(addr) = balancer.tls_addr {
        log::info!("TLS listening on {addr} (HTTP/2 and HTTP/1.1 by ALPN)");
    }
    log_start(&settings, balancer.local_addr);
    let handle = balancer.handle();
    actix_rt::spawn(reopens.reopen_on_each(move || handle.reopen_access_log()));
    follow_signals(balancer.handle(), hangups, signals);
    notify("READY=1");
    balancer.run().await?;
    log::info!("shut down cleanly");
    Ok(())
}

fn bind(addr: SocketAddr, what: &str) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot listen on {addr}{what}: {err}")))
}

fn log_start(settings: &Settings, local_addr: SocketAddr) {
    let pool: Vec<String> = settings
        .backends
        .entries()
        .map(|entry| {
            let backend = &entry.backend;
            format!(
                "{}/{} {} (weight {})",
                backend.pool, backend.name, backend.url, entry.weight
            )
        })
        .chain(settings.backends.topology.pools.iter().flat_map(|pool| {
            pool.dns.iter().map(|entry| {
                format!(
                    "{}/{} {} (weight {}, found by DNS)",
                    pool.name, entry.name, entry.spec.url, entry.spec.weight
                )
            })
        }))
        .collect();
    log::info!(
        "listening on {local_addr} with {} workers; {} over backends: {}",
        settings.server.workers,
        settings.backends.strategy,
        pool.join(", ")
    );
}

/// SIGHUP reloads the pool file and the certificate; SIGINT or SIGTERM drains.
fn follow_signals(handle: BalancerHandle, hangups: Hangups, signals: Signals) {
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
            notify("STOPPING=1");
            handle.shutdown().await;
        }),
    );
}

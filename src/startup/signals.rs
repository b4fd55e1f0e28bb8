//! Signals: SIGINT and SIGTERM both start a drain (stop accepting, let in-flight requests
//! finish within `server.shutdown_timeout_secs`, answer `/lb/health` with 503, close kept-alive
//! connections after their current response); a second signal ends the process at once.
//! actix-server's own signal handling is disabled because it treats SIGINT as a forced stop.
//! SIGHUP reloads the pool file and the TLS certificate; SIGUSR1 reopens the access log's file
//! (logrotate's convention for nginx).

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::exit;

/// SIGTERM and SIGINT, installed.
pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    /// Installs the handlers (before serving, so a signal is never missed).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    /// Waits for the first signal and spawns `drain`; on a second one, exits at once.
    pub async fn drain_on_signal(
        mut self,
        grace: Duration,
        drain: impl Future<Output = ()> + 'static,
    ) {
        let first = self.next().await;
        log::info!(
            "received {first}: draining; in-flight requests have {} s to finish",
            grace.as_secs()
        );
        actix_rt::spawn(drain);
        let second = self.next().await;
        log::warn!("received {second} while draining: exiting now without waiting");
        std::process::exit(i32::from(exit::RUNTIME));
    }
}

/// SIGUSR1, installed (its default action would end the process): each one reopens the access
/// log's file.
pub struct Reopens(Signal);

impl Reopens {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self(signal(SignalKind::user_defined1())?))
    }

    /// Runs `reopen` on every SIGUSR1.
    pub async fn reopen_on_each(mut self, reopen: impl Fn()) {
        while self.0.recv().await.is_some() {
            log::info!("received SIGUSR1: reopening the access log");
            reopen();
        }
    }
}

/// SIGHUP, installed: each one reloads the pool file.
pub struct Hangups(Signal);

impl Hangups {
    /// Installs the handler (before serving: SIGHUP's default action would end the process).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self(signal(SignalKind::hangup())?))
    }

    /// Runs `reload` on every SIGHUP, one at a time.
    pub async fn reload_on_each<F: Future<Output = ()>>(mut self, mut reload: impl FnMut() -> F) {
        while self.0.recv().await.is_some() {
            log::info!("received SIGHUP: reloading the pool file");
            reload().await;
        }
    }
}

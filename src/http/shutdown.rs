//! Graceful shutdown: SIGINT and SIGTERM both start a drain (stop accepting, let in-flight
//! requests finish within `server.shutdown_timeout_secs`, answer `/lb/health` with 503, close
//! kept-alive connections after their current response), then the registered hooks run. A
//! second signal ends the process at once. actix-server's own signal handling is disabled
//! because it treats SIGINT as a forced stop.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use crate::http::server::BalancerHandle;

/// Exit code after a second signal cut the drain short.
pub const EXIT_FORCED: i32 = 1;

/// Set once a drain has begun; shared by every worker.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn begin(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Work that must run after the last request finished and before the process exits
/// (the rate limiter flushes its token levels to SQLite here).
pub type ShutdownHook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>>>;

/// Waits for SIGINT or SIGTERM and drains `balancer`; a second signal exits immediately.
/// Returns an error only if the signal handlers cannot be installed.
pub async fn drain_on_signal(balancer: BalancerHandle) -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let first = next_signal(&mut terminate, &mut interrupt).await;
    log::info!(
        "received {first}: draining; in-flight requests have {} s to finish",
        balancer.shutdown_timeout().as_secs()
    );
    let drain = balancer.clone();
    actix_rt::spawn(async move { drain.shutdown().await });
    let second = next_signal(&mut terminate, &mut interrupt).await;
    log::warn!("received {second} while draining: exiting now without waiting");
    std::process::exit(EXIT_FORCED);
}

async fn next_signal(
    terminate: &mut tokio::signal::unix::Signal,
    interrupt: &mut tokio::signal::unix::Signal,
) -> &'static str {
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}

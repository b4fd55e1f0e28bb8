//! A started balancer ([`Balancer`]: await its `run`) and the handle that controls it
//! ([`BalancerHandle`]: drain, reload, look inside).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};

use crate::certs::CertError;
use crate::draining::Draining;
use crate::events::Events;
use crate::http::access_log::AccessSink;
use crate::http::h2_drain::H2Connections;
use crate::http::proxy::Tunnels;
use crate::http::tls::TlsReloader;
use crate::limiter::Limiter;
use crate::registry::{MemberStatus, Membership, PoolError, ReloadReport, ReloadTrigger};

/// Work that must run after the last request finished and before the process exits.
pub type ShutdownHook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>>>;

/// How long before the end of a drain's grace open tunnels are closed.
const TUNNEL_CLOSE_MARGIN: Duration = Duration::from_millis(100);

/// A started balancer: await [`Balancer::run`] to serve until it is shut down.
pub struct Balancer {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// The TLS listener's address, when there is one.
    pub tls_addr: Option<SocketAddr>,
    pub(super) server: Server,
    pub(super) handle: BalancerHandle,
    pub(super) hooks: Vec<ShutdownHook>,
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

/// Cheap to clone; controls a running balancer.
#[derive(Clone)]
pub struct BalancerHandle {
    pub(super) server: ServerHandle,
    pub(super) draining: Draining,
    pub(super) membership: Membership,
    pub(super) events: Events,
    pub(super) limiter: Arc<Limiter>,
    pub(super) shutdown_timeout: Duration,
    /// Present with a TLS listener.
    pub(super) tls: Option<TlsReloader>,
    /// Ended when the drain's grace is over.
    pub(super) tunnels: Arc<Tunnels>,
    pub(super) access: AccessSink,
    /// With a TLS listener: its HTTP/2 connections, shut down as the drain empties them.
    pub(super) h2: Option<Arc<H2Connections>>,
}

impl BalancerHandle {
    /// Opens the access log's file again by its path (after logrotate renamed it).
    pub fn reopen_access_log(&self) {
        self.access.reopen();
    }

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
        if let Some(h2) = &self.h2 {
            let idle = h2.drain();
            log::info!("drain: {idle} idle HTTP/2 connections closed; busy ones close after their last response");
        }
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

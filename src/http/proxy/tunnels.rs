//! What every WebSocket tunnel shares: the idle limit, the count of open tunnels, and the signal
//! that ends them all when a drain's grace is over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::draining::Draining;
use crate::metrics::Metrics;
use crate::settings::Settings;

/// What every tunnel shares: the idle limit, and the signal that ends all tunnels at the end
/// of a drain.
pub struct Tunnels {
    pub(super) idle_timeout: Duration,
    pub(super) draining: Draining,
    closing: watch::Sender<bool>,
    open: AtomicUsize,
}

impl Tunnels {
    pub fn new(settings: &Settings, draining: Draining) -> Self {
        Self {
            idle_timeout: settings.server.tunnel_idle_timeout,
            draining,
            closing: watch::channel(false).0,
            open: AtomicUsize::new(0),
        }
    }

    /// Tunnels open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Ends every open tunnel (the end of a drain's grace); later ones are refused anyway,
    /// because a drain has begun.
    pub fn close_all(&self) {
        let open = self.open();
        if open > 0 {
            log::info!("closing {open} open WebSocket tunnel(s): the drain's grace is over");
        }
        self.closing.send_replace(true);
    }

    /// Changes to `true` when every tunnel is to end.
    pub(super) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Counts a tunnel as open until the guard is dropped (also when its task is).
    pub(super) fn opened(self: &Arc<Self>, metrics: &Arc<Metrics>) -> OpenTunnel {
        self.open.fetch_add(1, Ordering::Relaxed);
        metrics.tunnel_opened();
        OpenTunnel {
            tunnels: Arc::clone(self),
            metrics: Arc::clone(metrics),
        }
    }
}

/// One open tunnel, counted.
pub(super) struct OpenTunnel {
    tunnels: Arc<Tunnels>,
    metrics: Arc<Metrics>,
}

impl OpenTunnel {
    pub(super) fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }
}

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.tunnels.open.fetch_sub(1, Ordering::Relaxed);
        self.metrics.tunnel_closed();
    }
}

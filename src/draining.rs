//! The draining flag: set once when a graceful shutdown begins, read by every worker (the
//! `/lb/health` answer, `Connection: close` on responses, the end of event streams).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set once a drain has begun; cheap to clone and shared by every worker.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// Marks the balancer as draining; there is no way back.
    pub fn begin(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

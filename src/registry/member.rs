//! One backend's live entry in the pool: its weight, health and draining flags and its counters,
//! all atomics, shared by every view of the pool that contains it — so a reload that keeps a
//! URL keeps its health, counters and in-flight requests — and by the [`Lease`] of every
//! attempt on it, which therefore ends correctly even after the backend left the pool.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::capacity::Capacity;
pub use super::outcome::{FailureKind, Outcome};
use crate::backend::{Backend, BackendCounters, BackendId, BackendState, ProbeReport};

/// `ramp` of a member that takes all of its weight.
pub const FULL_RAMP: u32 = 10;

/// `own_limit` when the entry sets none.
const NO_OWN_LIMIT: u32 = u32::MAX;

/// One backend's live entry.
#[derive(Debug)]
pub struct Member {
    pub backend: Arc<Backend>,
    weight: AtomicU32,
    /// Requests in flight at most (its own, else its pool's); 0 = no limit.
    limit: AtomicU32,
    /// The entry's own `max_connections` as written ([`NO_OWN_LIMIT`]: none).
    own_limit: AtomicU32,
    healthy: AtomicBool,
    /// No new requests (PATCH `draining`, or on its way out).
    draining: AtomicBool,
    /// Deleted or dropped by a reload: leaves the pool when its last request ends.
    leaving: AtomicBool,
    /// Added at run time and not yet up: its first good probe brings it in.
    joining: AtomicBool,
    /// Out of rotation for answering 5xx in a row, until its ejection ends.
    ejected: AtomicBool,
    /// Tenths of its weight it takes while starting slowly (10 = all of it).
    ramp: AtomicU32,
    /// 5xx answers in a row (counted only while outlier ejection is on).
    consecutive_5xx: AtomicU32,
    /// Times ejected since it joined.
    ejections: AtomicU64,
    /// Its pool's line and retry budget, which its leases give back to. Set when it enters a
    /// pool; a member stays in one pool for life, and a pool keeps its capacity when its
    /// settings change.
    capacity: OnceLock<Arc<Capacity>>,
    /// Attempts sent to this backend.
    requests: AtomicU64,
    /// Attempts that failed before a response head.
    failures: AtomicU64,
    /// Attempts picked whose [`Lease`] is still alive (until the response body is sent).
    in_flight: AtomicU64,
    /// Failures since the last response.
    consecutive_failures: AtomicU32,
    /// Unix time (ms) of the last health change; 0 = never changed since it joined.
    changed_at_ms: AtomicU64,
    /// The health checker's last probe.
    last_probe: Mutex<Option<ProbeReport>>,
}

/// A copy of one member's state, for the APIs and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberStatus {
    pub backend: Arc<Backend>,
    pub weight: u32,
    /// Requests in flight at most; 0 = no limit.
    pub max_connections: u32,
    /// The entry's own limit, as the pool file writes it.
    pub own_max_connections: Option<u32>,
    pub healthy: bool,
    pub draining: bool,
    pub leaving: bool,
    pub ejected: bool,
    /// Times ejected since it joined.
    pub ejections: u64,
    pub requests: u64,
    pub failures: u64,
    pub in_flight: u64,
    pub consecutive_failures: u32,
    /// Unix time (ms) of the last health change; 0 = none since it joined.
    pub changed_at_ms: u64,
    pub last_probe: Option<ProbeReport>,
}

impl MemberStatus {
    /// The part of the status that the API and the event stream show.
    pub fn counters(&self) -> BackendCounters {
        BackendCounters {
            state: BackendState::from_healthy(self.healthy),
            weight: self.weight,
            draining: self.draining,
            ejected: self.ejected,
            requests: self.requests,
            failures: self.failures,
            in_flight: self.in_flight,
        }
    }
}

impl Member {
    /// A member in rotation at once (`healthy`), or waiting for its first good probe.
    pub fn new(backend: Backend, weight: u32, healthy: bool) -> Self {
        Self {
            backend: Arc::new(backend),
            weight: AtomicU32::new(weight),
            limit: AtomicU32::new(0),
            own_limit: AtomicU32::new(NO_OWN_LIMIT),
            healthy: AtomicBool::new(healthy),
            draining: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            joining: AtomicBool::new(!healthy),
            ejected: AtomicBool::new(false),
            ramp: AtomicU32::new(FULL_RAMP),
            consecutive_5xx: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
            capacity: OnceLock::new(),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            changed_at_ms: AtomicU64::new(0),
            last_probe: Mutex::new(None),
        }
    }

    pub fn id(&self) -> BackendId {
        self.backend.id
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Relaxed)
    }

    /// Added at run time and not up yet.
    pub fn is_joining(&self) -> bool {
        self.joining.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Whether a new request may go here: healthy, not draining, not ejected.
    pub fn takes_requests(&self) -> bool {
        self.is_healthy() && !self.is_draining() && !self.is_ejected()
    }

    /// The weight the strategies use, in tenths: all of it, or less while starting slowly.
    pub fn share(&self) -> u32 {
        self.weight() * self.ramp.load(Ordering::Relaxed)
    }

    /// Sets the tenths of its weight it takes (1–10); returns whether that changed.
    pub(super) fn set_ramp(&self, tenths: u32) -> bool {
        self.ramp.swap(tenths, Ordering::Relaxed) != tenths
    }

    /// Puts it out of rotation or back (its run of 5xx answers starts again); returns whether
    /// that changed.
    pub(super) fn set_ejected(&self, ejected: bool) -> bool {
        let changed = self.ejected.swap(ejected, Ordering::Relaxed) != ejected;
        if changed && ejected {
            self.ejections.fetch_add(1, Ordering::Relaxed);
        }
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        changed
    }

    /// Requests in flight at most; 0 = no limit.
    pub fn max_connections(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// The entry's own limit, as written.
    pub fn own_max_connections(&self) -> Option<u32> {
        let own = self.own_limit.load(Ordering::Relaxed);
        (own != NO_OWN_LIMIT).then_some(own)
    }

    /// Whether another request fits under its limit.
    pub fn has_room(&self) -> bool {
        let limit = self.max_connections();
        limit == 0 || self.in_flight() < u64::from(limit)
    }

    /// The member with the entry's own `max_connections`.
    pub fn with_own_limit(self, own: Option<u32>) -> Self {
        self.set_own_limit(own);
        self
    }

    /// Sets the entry's own limit (in effect once its pool applies it); returns whether it
    /// changed.
    pub(super) fn set_own_limit(&self, own: Option<u32>) -> bool {
        let own = own.unwrap_or(NO_OWN_LIMIT);
        self.own_limit.swap(own, Ordering::Relaxed) != own
    }

    /// Puts in effect its own limit, else its pool's `pool_limit`.
    pub(super) fn apply_limit(&self, pool_limit: u32) {
        let limit = self.own_max_connections().unwrap_or(pool_limit);
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// `(in_flight, share)`, the load the strategies compare.
    pub fn load(&self) -> (u64, u32) {
        (self.in_flight(), self.share())
    }

    pub(super) fn set_weight(&self, weight: u32) -> bool {
        self.weight.swap(weight, Ordering::Relaxed) != weight
    }

    pub(super) fn set_draining(&self, draining: bool) -> bool {
        self.draining.swap(draining, Ordering::Relaxed) != draining
    }

    /// Starts the way out: draining, and gone once idle.
    pub(super) fn mark_leaving(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.leaving.store(true, Ordering::Relaxed);
    }

    /// Cancels the way out (the pool file lists it again): takes requests again.
    pub(super) fn stay(&self) {
        self.leaving.store(false, Ordering::Relaxed);
        self.draining.store(false, Ordering::Relaxed);
    }

    /// Returns whether the state changed.
    pub(super) fn set_health(&self, healthy: bool) -> bool {
        let changed = self.healthy.swap(healthy, Ordering::Relaxed) != healthy;
        if healthy {
            self.joining.store(false, Ordering::Relaxed);
        }
        if changed {
            self.changed_at_ms
                .store(crate::clock::now_ms(), Ordering::Relaxed);
        }
        changed
    }

    /// Keeps the health checker's last probe for the status API.
    pub fn set_probe(&self, report: ProbeReport) {
        if let Ok(mut slot) = self.last_probe.lock() {
            *slot = Some(report);
        }
    }

    /// Enters the pool of `capacity` (once: later calls change nothing).
    pub(super) fn join(&self, capacity: &Arc<Capacity>) {
        let _ = self.capacity.set(Arc::clone(capacity));
    }

    /// Counts a new attempt and hands out its lease; `None` when the member is at its limit.
    /// `retry`: the attempt holds a place in its pool's retry budget, given back with the
    /// lease.
    pub(super) fn lease(self: &Arc<Self>, retry: bool) -> Option<Lease> {
        let limit = u64::from(self.max_connections());
        if limit == 0 {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
        } else {
            // Sequentially consistent: ordered against the queue's length (see `Capacity`).
            let taken = self
                .in_flight
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < limit).then_some(n + 1)
                });
            taken.ok()?;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            backend: Arc::clone(&self.backend),
            member: Arc::clone(self),
            limited: limit > 0,
            retry,
        })
    }

    /// Records how an attempt ended; returns the consecutive failures.
    fn record(&self, outcome: Outcome) -> u32 {
        match outcome {
            Outcome::Responded => {
                // Skip the write in the common case: keeps the cache line shared across cores.
                if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                    self.consecutive_failures.store(0, Ordering::Relaxed);
                }
                0
            }
            Outcome::Failed(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
            }
        }
    }

    /// A copy of the state.
    pub fn status(&self) -> MemberStatus {
        MemberStatus {
            backend: Arc::clone(&self.backend),
            weight: self.weight(),
            max_connections: self.max_connections(),
            own_max_connections: self.own_max_connections(),
            healthy: self.is_healthy(),
            draining: self.is_draining(),
            leaving: self.is_leaving(),
            ejected: self.is_ejected(),
            ejections: self.ejections.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            in_flight: self.in_flight(),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            changed_at_ms: self.changed_at_ms.load(Ordering::Relaxed),
            last_probe: self.last_probe.lock().ok().and_then(|p| p.clone()),
        }
    }
}

/// One attempt on a picked backend; it counts as in flight until the lease is dropped, which
/// the proxy does once the response body has been sent (or the client left, or the attempt
/// failed).
#[derive(Debug)]
pub struct Lease {
    pub backend: Arc<Backend>,
    member: Arc<Member>,
    /// Taken under a limit: its end may let a waiting request in.
    limited: bool,
    /// Holds a place in the retry budget.
    retry: bool,
}

impl Lease {
    /// Records how the attempt ended (once its response head arrived or it failed); returns the
    /// backend's run of consecutive failures.
    pub fn record(&self, outcome: Outcome) -> u32 {
        self.member.record(outcome)
    }

    /// Counts the answer's status towards outlier ejection; returns the backend's run of 5xx
    /// answers (0 after any other status).
    pub fn record_status(&self, status: u16) -> u32 {
        let run = &self.member.consecutive_5xx;
        if status >= 500 {
            run.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            // Skip the write in the common case, as `record` does.
            if run.load(Ordering::Relaxed) != 0 {
                run.store(0, Ordering::Relaxed);
            }
            0
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let capacity = self.member.capacity.get();
        let Some(capacity) = capacity.filter(|_| self.limited || self.retry) else {
            self.member.in_flight.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        if self.retry {
            capacity.retry_ended();
        }
        if self.limited {
            self.member.in_flight.fetch_sub(1, Ordering::SeqCst);
            capacity.slot_freed();
        } else {
            self.member.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

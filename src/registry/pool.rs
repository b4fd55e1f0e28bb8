//! The backend pool as plain data: who is in it, who is healthy, per-backend counters and the
//! round-robin cursor. Synchronous and actor-free, so the selection rules are unit-tested
//! exactly; the [`super::Registry`] actor is a thin shell around it.

use std::sync::Arc;

use crate::backend::{Backend, BackendId};

/// Why a proxied attempt on a backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Connection refused, unreachable, or the connect timed out.
    Connect,
    /// Connected, but the connection broke before a response head arrived.
    Reset,
    /// No response head within `backends.response_timeout_ms`.
    Timeout,
}

impl FailureKind {
    /// Short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Reset => "reset",
            FailureKind::Timeout => "timeout",
        }
    }
}

/// How an attempt on a backend ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head arrived (whatever its status).
    Responded,
    Failed(FailureKind),
}

/// Counters for one backend, as shown on the status page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Attempts sent to this backend.
    pub requests: u64,
    /// Attempts that failed before a response head.
    pub failures: u64,
    /// Attempts picked and not yet reported.
    pub in_flight: u64,
    /// Failures since the last response; reset by any response.
    pub consecutive_failures: u32,
}

/// One backend's entry in the pool.
#[derive(Debug, Clone)]
pub struct Member {
    pub backend: Arc<Backend>,
    pub healthy: bool,
    pub stats: BackendStats,
}

/// The pool with strict round-robin selection over its healthy members.
#[derive(Debug)]
pub struct Pool {
    members: Vec<Member>,
    /// Index where the next search for a healthy member starts.
    cursor: usize,
}

impl Pool {
    /// All backends start healthy: traffic flows at once, and health checks take out the dead.
    pub fn new(backends: Vec<Backend>) -> Self {
        let members = backends
            .into_iter()
            .map(|backend| Member {
                backend: Arc::new(backend),
                healthy: true,
                stats: BackendStats::default(),
            })
            .collect();
        Self { members, cursor: 0 }
    }

    /// The next healthy backend in pool order after the last one picked, skipping `exclude`
    /// (backends this request already tried). Members that are down are passed over without
    /// moving the others' turn, so A, B, C stays A, C, A, C while B is down and resumes
    /// A, B, C when it returns. `None` when no healthy backend is left.
    pub fn pick(&mut self, exclude: &[BackendId]) -> Option<Arc<Backend>> {
        let len = self.members.len();
        let index = (0..len)
            .map(|step| (self.cursor + step) % len)
            .find(|&i| self.members[i].healthy && !exclude.contains(&i))?;
        self.cursor = (index + 1) % len;
        let member = &mut self.members[index];
        member.stats.requests += 1;
        member.stats.in_flight += 1;
        Some(Arc::clone(&member.backend))
    }

    /// Records how an attempt picked earlier ended.
    pub fn report(&mut self, id: BackendId, outcome: Outcome) {
        let Some(member) = self.members.get_mut(id) else {
            return;
        };
        let stats = &mut member.stats;
        stats.in_flight = stats.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Responded => stats.consecutive_failures = 0,
            Outcome::Failed(_) => {
                stats.failures += 1;
                stats.consecutive_failures = stats.consecutive_failures.saturating_add(1);
            }
        }
    }

    /// Puts a backend in or out of rotation; returns whether its state changed.
    pub fn set_health(&mut self, id: BackendId, healthy: bool) -> bool {
        match self.members.get_mut(id) {
            Some(member) if member.healthy != healthy => {
                member.healthy = healthy;
                true
            }
            _ => false,
        }
    }

    /// Every member, in pool order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Number of members currently in rotation.
    pub fn healthy_count(&self) -> usize {
        self.members.iter().filter(|m| m.healthy).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        let backends = (0..n)
            .map(|i| Backend::parse(i, &format!("http://127.0.0.1:{}", 9001 + i)).expect("valid"))
            .collect();
        Pool::new(backends)
    }

    fn picks(pool: &mut Pool, n: usize) -> Vec<BackendId> {
        (0..n)
            .map(|_| {
                let backend = pool.pick(&[]).expect("a healthy backend");
                pool.report(backend.id, Outcome::Responded);
                backend.id
            })
            .collect()
    }

    /// Three healthy backends are used in strict rotation.
    #[test]
    fn rotates_strictly_over_healthy_backends() {
        let mut pool = pool(3);
        assert_eq!(picks(&mut pool, 7), [0, 1, 2, 0, 1, 2, 0]);
    }

    /// A backend that goes down is skipped; the others keep alternating; it rejoins in its place.
    #[test]
    fn skips_a_down_backend_and_takes_it_back_in_turn() {
        let mut pool = pool(3);
        assert_eq!(picks(&mut pool, 1), [0]);
        assert!(pool.set_health(1, false));
        assert_eq!(picks(&mut pool, 4), [2, 0, 2, 0]);
        assert!(pool.set_health(1, true));
        assert_eq!(picks(&mut pool, 6), [1, 2, 0, 1, 2, 0]);
    }

    /// Nothing healthy means no pick, and nothing is counted.
    #[test]
    fn picks_nothing_when_all_are_down() {
        let mut pool = pool(2);
        pool.set_health(0, false);
        pool.set_health(1, false);
        assert!(pool.pick(&[]).is_none());
        assert!(pool.members().iter().all(|m| m.stats.requests == 0));
        assert_eq!(pool.healthy_count(), 0);
    }

    /// A retry excludes the backends already tried, and gives up when they are all tried.
    #[test]
    fn excludes_backends_already_tried() {
        let mut pool = pool(3);
        let first = pool.pick(&[]).expect("first");
        let second = pool.pick(&[first.id]).expect("second");
        let third = pool.pick(&[first.id, second.id]).expect("third");
        assert_eq!([first.id, second.id, third.id], [0, 1, 2]);
        assert!(pool.pick(&[0, 1, 2]).is_none());
    }

    /// Counters follow picks and reports; setting the same health twice is no change.
    #[test]
    fn counts_requests_failures_and_in_flight() {
        let mut pool = pool(1);
        pool.pick(&[]).expect("pick");
        pool.pick(&[]).expect("pick");
        assert_eq!(pool.members()[0].stats.in_flight, 2);
        pool.report(0, Outcome::Failed(FailureKind::Connect));
        pool.report(0, Outcome::Failed(FailureKind::Timeout));
        let stats = &pool.members()[0].stats;
        assert_eq!((stats.requests, stats.failures, stats.in_flight), (2, 2, 0));
        assert_eq!(stats.consecutive_failures, 2);
        pool.pick(&[]).expect("pick");
        pool.report(0, Outcome::Responded);
        assert_eq!(pool.members()[0].stats.consecutive_failures, 0);
        assert!(!pool.set_health(0, true));
        assert!(!pool.set_health(7, false));
    }
}

//! Least connections: the member with the fewest requests in flight relative to its weight;
//! the scan starts one further each time, so ties go round in pool order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{eligible, Selection};
use crate::backend::BackendId;
use crate::registry::member::Member;

/// The scan's shared starting point.
#[derive(Debug)]
pub struct LeastConnections {
    cursor: Arc<AtomicUsize>,
}

impl LeastConnections {
    pub fn new(cursor: Arc<AtomicUsize>) -> Self {
        Self { cursor }
    }
}

impl Selection for LeastConnections {
    fn select(
        &self,
        members: &[Arc<Member>],
        exclude: &[BackendId],
        _key: Option<u64>,
    ) -> Option<usize> {
        let len = members.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<usize> = None;
        for step in 0..len {
            let at = (start + step) % len;
            let member = &members[at];
            if eligible(member, exclude)
                && best.is_none_or(|b| less_loaded(member.load(), members[b].load()))
            {
                best = Some(at);
            }
        }
        best
    }
}

/// Whether a backend with `a = (in_flight, weight)` is less loaded than one with `b`:
/// `a.0 / a.1 < b.0 / b.1`, compared without division.
pub fn less_loaded(a: (u64, u32), b: (u64, u32)) -> bool {
    u128::from(a.0) * u128::from(b.1) < u128::from(b.0) * u128::from(a.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Load is in flight per weight, compared exactly.
    #[test]
    fn compares_load_relative_to_weight() {
        assert!(less_loaded((1, 1), (2, 1)));
        assert!(less_loaded((3, 4), (1, 1)), "3/4 < 1");
        assert!(!less_loaded((2, 2), (1, 1)), "equal is not less");
        assert!(less_loaded((0, 1), (u64::MAX, 1000)));
    }
}

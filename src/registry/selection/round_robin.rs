//! Smooth weighted round-robin (nginx's): weights 3:1 give `a a b a`; equal weights give strict
//! order. One cycle over the members taking requests is computed when the pool changes; a
//! cursor shared by every published state walks it, so a change does not restart the order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{eligible, gcd, Selection};
use crate::backend::BackendId;
use crate::registry::member::Member;

/// The cycle of one state of the pool, and the shared cursor.
#[derive(Debug)]
pub struct RoundRobin {
    /// Positions of the members taking requests when it was built, in cycle order.
    cycle: Vec<u32>,
    /// Position in the cycle; kept across rebuilds (and the start of least-connections' scan).
    cursor: Arc<AtomicUsize>,
}

impl RoundRobin {
    pub fn new(members: &[Arc<Member>], cursor: Arc<AtomicUsize>) -> Self {
        let takers: Vec<(usize, u32)> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.takes_requests())
            .map(|(i, m)| (i, m.share()))
            .collect();
        let weights: Vec<u32> = takers.iter().map(|t| t.1).collect();
        let cycle = smooth_cycle(&weights)
            .into_iter()
            .map(|k| takers[k as usize].0 as u32)
            .collect();
        Self { cycle, cursor }
    }
}

impl Selection for RoundRobin {
    /// The next eligible member of the cycle after the last one picked. Concurrent picks are
    /// ordered by a compare-and-swap on the cursor, so the order is strict across workers.
    fn select(
        &self,
        members: &[Arc<Member>],
        exclude: &[BackendId],
        _key: Option<u64>,
    ) -> Option<usize> {
        let len = self.cycle.len();
        let mut start = self.cursor.load(Ordering::Relaxed);
        loop {
            let position = (0..len)
                .map(|step| (start + step) % len)
                .find(|&p| eligible(&members[self.cycle[p] as usize], exclude))?;
            match self.cursor.compare_exchange_weak(
                start,
                position + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(self.cycle[position] as usize),
                Err(now) => start = now,
            }
        }
    }
}

/// One cycle of nginx's smooth weighted round-robin over `weights` (indices into it): each step
/// adds every weight to its running total, picks the largest total (the first on ties) and
/// subtracts the sum of weights from it. Weights 3:1 give `0 0 1 0`; equal weights give strict
/// order. The cycle has `sum(weights) / gcd(weights)` steps.
pub fn smooth_cycle(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let reduced: Vec<i64> = weights.iter().map(|w| i64::from(w / divisor)).collect();
    let total: i64 = reduced.iter().sum();
    let mut current = vec![0_i64; reduced.len()];
    let mut cycle = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, weight) in reduced.iter().enumerate() {
            current[i] += weight;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        cycle.push(best as u32);
    }
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nginx's own example sequences: 3:1 interleaves, equal weights rotate strictly, and the
    /// share of each weight is exact over a cycle.
    #[test]
    fn smooth_cycle_interleaves_by_weight() {
        assert_eq!(smooth_cycle(&[3, 1]), [0, 0, 1, 0]);
        assert_eq!(smooth_cycle(&[1, 1, 1]), [0, 1, 2]);
        assert_eq!(smooth_cycle(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_cycle(&[6, 2]), [0, 0, 1, 0], "reduced by the gcd");
        let cycle = smooth_cycle(&[7, 3, 2]);
        assert_eq!(cycle.len(), 12);
        for (member, weight) in [(0, 7), (1, 3), (2, 2)] {
            assert_eq!(cycle.iter().filter(|m| **m == member).count(), weight);
        }
        assert!(smooth_cycle(&[]).is_empty());
    }
}

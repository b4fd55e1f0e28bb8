//! The arithmetic of the four strategies, as plain functions over weights, loads and hashes
//! with the randomness passed in, so each rule is tested exactly: the smooth weighted
//! round-robin cycle, the load comparison of least-connections and power-of-two, and the
//! consistent-hash ring. [`super::rotation`] applies them to the live pool.

/// Virtual nodes per unit of (gcd-reduced) weight on the consistent-hash ring.
pub const VNODES_PER_WEIGHT: u64 = 100;

/// The ring never holds more points than this; weights are scaled down to fit (each backend
/// keeps at least one point).
pub const MAX_RING_POINTS: u64 = 40_000;

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

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Whether a backend with `a = (in_flight, weight)` is less loaded than one with `b`:
/// `a.0 / a.1 < b.0 / b.1`, compared without division.
pub fn less_loaded(a: (u64, u32), b: (u64, u32)) -> bool {
    u128::from(a.0) * u128::from(b.1) < u128::from(b.0) * u128::from(a.1)
}

/// Two distinct positions out of `count >= 2`, from `random(n)` (uniform in `0..n`).
pub fn two_distinct(count: usize, random: &mut impl FnMut(usize) -> usize) -> (usize, usize) {
    let first = random(count);
    let mut second = random(count - 1);
    if second >= first {
        second += 1;
    }
    (first, second)
}

/// A stable 64-bit hash of `bytes` (FNV-1a, then the splitmix64 finalizer to spread the bits):
/// the same on every instance and every release, so a client keeps its backend across
/// restarts and across a cluster.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The consistent-hash ring: points `(hash, member)` sorted by hash. A key belongs to the first
/// point at or after its hash (wrapping around). Each member's points are hashes of its URL and
/// a counter, so they do not depend on the other members: removing one moves only its keys.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// A ring over `members` (identity, weight); member `i` gets points in proportion to its weight.
    pub fn build(members: &[(&str, u32)]) -> Self {
        let divisor = u64::from(members.iter().map(|m| m.1).fold(0, gcd).max(1));
        let wanted: u64 = members
            .iter()
            .map(|m| u64::from(m.1) / divisor * VNODES_PER_WEIGHT)
            .sum();
        let mut points = Vec::new();
        for (index, (identity, weight)) in members.iter().enumerate() {
            let own = u64::from(*weight) / divisor * VNODES_PER_WEIGHT;
            let count = if wanted > MAX_RING_POINTS {
                (own * MAX_RING_POINTS / wanted).max(1)
            } else {
                own
            };
            for n in 0..count {
                let hash = hash_bytes(format!("{identity}#{n}").as_bytes());
                points.push((hash, index as u32));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// Replaces each point's member `k` by `positions[k]`.
    pub fn renumber(&mut self, positions: &[u32]) {
        for point in &mut self.points {
            point.1 = positions[point.1 as usize];
        }
    }

    /// Members in the order a key visits them: its owner first, then clockwise (a member may
    /// repeat). Empty for an empty ring.
    pub fn walk(&self, key: u64) -> impl Iterator<Item = u32> + '_ {
        let start = self.points.partition_point(|p| p.0 < key);
        let (before, after) = self.points.split_at(start);
        after.iter().chain(before).map(|p| p.1)
    }

    /// The member that owns `key` among those `eligible` accepts.
    pub fn owner(&self, key: u64, mut eligible: impl FnMut(u32) -> bool) -> Option<u32> {
        self.walk(key).find(|m| eligible(*m))
    }
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

    /// Load is in flight per weight, compared exactly.
    #[test]
    fn compares_load_relative_to_weight() {
        assert!(less_loaded((1, 1), (2, 1)));
        assert!(less_loaded((3, 4), (1, 1)), "3/4 < 1");
        assert!(!less_loaded((2, 2), (1, 1)), "equal is not less");
        assert!(less_loaded((0, 1), (u64::MAX, 1000)));
    }

    /// The two positions are always distinct, whatever the random source says.
    #[test]
    fn two_distinct_never_repeats() {
        for first in 0..4 {
            for second in 0..3 {
                let mut answers = [first, second].into_iter();
                let (a, b) = two_distinct(4, &mut |_| answers.next().expect("two draws"));
                assert_ne!(a, b);
                assert!(a < 4 && b < 4);
            }
        }
    }

    fn owners(ring: &Ring, names: &[&str], keys: u64) -> Vec<String> {
        (0..keys)
            .map(|k| {
                let key = hash_bytes(format!("client-{k}").as_bytes());
                let owner = ring.owner(key, |_| true).expect("a member");
                names[owner as usize].to_owned()
            })
            .collect()
    }

    /// Removing one member moves exactly the keys it owned; the shares follow the weights.
    #[test]
    fn ring_moves_only_the_removed_members_keys() {
        let all = ["http://a:1", "http://b:1", "http://c:1", "http://d:1"];
        let ring = Ring::build(&all.map(|m| (m, 1)));
        let before = owners(&ring, &all, 10_000);
        let rest = ["http://a:1", "http://b:1", "http://d:1"];
        let after = owners(&Ring::build(&rest.map(|m| (m, 1))), &rest, 10_000);
        let mut moved = 0;
        for (was, is) in before.iter().zip(&after) {
            if was == "http://c:1" {
                moved += 1;
            } else {
                assert_eq!(was, is, "a key of a remaining member moved");
            }
        }
        assert!((1500..3500).contains(&moved), "c owned {moved} of 10000");
        let weighted = Ring::build(&[("http://a:1", 3), ("http://b:1", 1)]);
        let heavy = owners(&weighted, &["a", "b"], 10_000)
            .iter()
            .filter(|o| *o == "a")
            .count();
        assert!((6500..8500).contains(&heavy), "weight 3 of 4 owns {heavy}");
    }

    /// A key whose owner is not eligible goes to the next member clockwise, and comes back.
    #[test]
    fn ring_skips_ineligible_owners_clockwise() {
        let ring = Ring::build(&[("http://a:1", 1), ("http://b:1", 1), ("http://c:1", 1)]);
        for k in 0..200 {
            let key = hash_bytes(&[k]);
            let owner = ring.owner(key, |_| true).expect("owner");
            let next = ring.owner(key, |m| m != owner).expect("next");
            assert_ne!(next, owner);
            assert_eq!(ring.walk(key).find(|m| *m != owner), Some(next));
        }
        assert!(Ring::default().owner(1, |_| true).is_none());
        assert_eq!(hash_bytes(b"x"), hash_bytes(b"x"));
    }
}

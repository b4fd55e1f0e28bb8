//! Consistent hashing: the client's key on a ring of virtual nodes, so a client stays on one
//! backend, and removing a member moves only its keys. Every member not leaving is on the ring,
//! healthy or not, so a health flip moves no other backend's keys; a key whose owner cannot take
//! the request goes to the next member clockwise. Without a key it is round-robin.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::round_robin::RoundRobin;
use super::{eligible, gcd, Selection};
use crate::backend::BackendId;
use crate::registry::member::Member;

/// Virtual nodes per unit of (gcd-reduced) weight on the consistent-hash ring.
pub const VNODES_PER_WEIGHT: u64 = 100;

/// The ring never holds more points than this; weights are scaled down to fit (each backend
/// keeps at least one point).
pub const MAX_RING_POINTS: u64 = 40_000;

/// The ring of one state of the pool, and round-robin for requests without a key.
#[derive(Debug)]
pub struct ConsistentHash {
    ring: Ring,
    fallback: RoundRobin,
}

impl ConsistentHash {
    pub fn new(members: &[Arc<Member>], cursor: Arc<AtomicUsize>) -> Self {
        let staying: Vec<(&str, u32)> = members
            .iter()
            .filter(|m| !m.is_leaving())
            .map(|m| (m.backend.url.as_str(), m.weight()))
            .collect();
        let mut ring = Ring::build(&staying);
        // Ring indices count staying members; map them back to pool positions.
        let positions: Vec<u32> = (0..members.len() as u32)
            .filter(|i| !members[*i as usize].is_leaving())
            .collect();
        ring.renumber(&positions);
        Self {
            ring,
            fallback: RoundRobin::new(members, cursor),
        }
    }
}

impl Selection for ConsistentHash {
    fn select(
        &self,
        members: &[Arc<Member>],
        exclude: &[BackendId],
        key: Option<u64>,
    ) -> Option<usize> {
        let Some(key) = key else {
            return self.fallback.select(members, exclude, None);
        };
        self.ring
            .owner(key, |i| eligible(&members[i as usize], exclude))
            .map(|i| i as usize)
    }
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

//! How a pool's next backend is chosen: each strategy is a [`Selection`], built from the pool's
//! members whenever the pool changes (weights, health, drains, members) and asked to select by
//! an optional key, with the state it needs of its own — the smooth round-robin cycle
//! ([`round_robin`]), the scan's starting point ([`least_connections`]), nothing
//! ([`power_of_two`]), the hash ring ([`consistent_hash`]). The arithmetic of each is a plain
//! function with the randomness passed in, tested exactly in its file.

pub mod consistent_hash;
pub mod least_connections;
pub mod power_of_two;
pub mod round_robin;

use std::fmt;
use std::sync::Arc;

use super::member::Member;
use crate::backend::BackendId;

/// One strategy over one published state of the pool.
pub trait Selection: Send + Sync + fmt::Debug {
    /// The position in `members` (the pool it was built from) of the member for the next
    /// attempt, skipping `exclude` (backends this request already tried) and every member that
    /// takes no requests or is at its limit; `key` is the client's hash where the strategy uses one. `None`: no
    /// member can take it.
    fn select(
        &self,
        members: &[Arc<Member>],
        exclude: &[BackendId],
        key: Option<u64>,
    ) -> Option<usize>;
}

/// Whether `member` may take this request: in rotation, under its limit, not tried yet.
pub fn eligible(member: &Member, exclude: &[BackendId]) -> bool {
    member.takes_requests() && member.has_room() && !exclude.contains(&member.id())
}

/// The greatest common divisor, for reducing weights.
pub fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

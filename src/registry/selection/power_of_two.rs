//! Power of two choices: two random eligible members, the less loaded (in flight per weight)
//! wins, the first drawn on a tie.

use std::sync::Arc;

use super::least_connections::less_loaded;
use super::{eligible, Selection};
use crate::backend::BackendId;
use crate::registry::member::Member;

/// Keeps nothing: every pick draws anew.
#[derive(Debug, Default)]
pub struct PowerOfTwo;

impl Selection for PowerOfTwo {
    fn select(
        &self,
        members: &[Arc<Member>],
        exclude: &[BackendId],
        _key: Option<u64>,
    ) -> Option<usize> {
        pick(members, exclude, &mut |n| fastrand::usize(..n))
    }
}

/// Two eligible members drawn by `random(n)` (uniform in `0..n`); the less loaded one.
fn pick(
    members: &[Arc<Member>],
    exclude: &[BackendId],
    random: &mut impl FnMut(usize) -> usize,
) -> Option<usize> {
    let eligible_at = |n: usize| {
        members
            .iter()
            .enumerate()
            .filter(|(_, m)| eligible(m, exclude))
            .nth(n)
            .map(|(at, _)| at)
    };
    let count = members.iter().filter(|m| eligible(m, exclude)).count();
    match count {
        0 => None,
        1 => eligible_at(0),
        _ => {
            let (a, b) = two_distinct(count, random);
            let (a, b) = (eligible_at(a)?, eligible_at(b)?);
            Some(if less_loaded(members[b].load(), members[a].load()) {
                b
            } else {
                a
            })
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

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

    /// Of the two drawn, the one with less in flight per weight wins; the first drawn wins
    /// ties; members not eligible are never drawn.
    #[test]
    fn takes_the_less_loaded_of_two() {
        let members: Vec<Arc<Member>> = (0..3)
            .map(|i| {
                let url = format!("http://127.0.0.1:{}", 9001 + i);
                Arc::new(Member::new(
                    Backend::parse(i, &url).expect("valid"),
                    1,
                    true,
                ))
            })
            .collect();
        let busy = members[0].lease(false);
        let mut draws = [0, 0].into_iter();
        let chosen = pick(&members, &[], &mut |_| draws.next().expect("two draws"));
        assert_eq!(chosen, Some(1), "0 is busy, 1 is idle");
        let mut draws = [1, 1].into_iter();
        let chosen = pick(&members, &[], &mut |_| draws.next().expect("two draws"));
        assert_eq!(chosen, Some(1), "1 and 2 idle: the first drawn");
        drop(busy);
        let chosen = pick(&members, &[0, 1], &mut |_| unreachable!("one left"));
        assert_eq!(chosen, Some(2));
        assert!(pick(&members, &[0, 1, 2], &mut |_| 0).is_none());
    }
}

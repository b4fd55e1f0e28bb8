//! Outlier ejection's arithmetic: how long an ejection lasts (`health.eject_base_secs` × the
//! times the backend was ejected in a row, at most `eject_max_secs`; the count starts again after
//! `eject_max_secs` without an ejection), and whether a pool may lose one more backend to it
//! (`health.max_ejected_percent`, one always). Plain, with time passed in; the registry acts.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use crate::backend::BackendId;

/// `health.eject_*` and `max_ejected_percent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// 5xx answers in a row that eject a backend.
    pub after_5xx: NonZeroU32,
    pub base: Duration,
    pub max: Duration,
    pub max_percent: u32,
}

/// The ejections of every backend so far.
#[derive(Debug)]
pub struct Outliers {
    pub settings: Ejection,
    streaks: HashMap<BackendId, Streak>,
}

#[derive(Debug, Clone, Copy)]
struct Streak {
    /// Ejections in this streak.
    times: u32,
    /// When the last one ended (`None` while it lasts).
    ended: Option<Instant>,
}

impl Outliers {
    pub fn new(settings: Ejection) -> Self {
        Self {
            settings,
            streaks: HashMap::new(),
        }
    }

    /// Whether a pool of `members` with `ejected` of them out may eject one more.
    pub fn room(&self, members: usize, ejected: usize) -> bool {
        let most = (members * self.settings.max_percent as usize / 100).max(1);
        ejected < most
    }

    /// Ejects `id` at `now`: how long for, and the how-manieth ejection in a row it is.
    pub fn eject(&mut self, id: BackendId, now: Instant) -> (Duration, u32) {
        let settings = self.settings;
        let streak = self.streaks.entry(id).or_insert(Streak {
            times: 0,
            ended: None,
        });
        if streak
            .ended
            .is_some_and(|ended| now.duration_since(ended) >= settings.max)
        {
            streak.times = 0;
        }
        streak.times += 1;
        streak.ended = None;
        let lasts = settings.base.saturating_mul(streak.times).min(settings.max);
        (lasts, streak.times)
    }

    /// `id`'s ejection ended at `now`.
    pub fn ended(&mut self, id: BackendId, now: Instant) {
        if let Some(streak) = self.streaks.get_mut(&id) {
            streak.ended = Some(now);
        }
    }

    /// `id` left its pool.
    pub fn forget(&mut self, id: BackendId) {
        self.streaks.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outliers(max_percent: u32) -> Outliers {
        Outliers::new(Ejection {
            after_5xx: NonZeroU32::new(5).expect("nonzero"),
            base: Duration::from_secs(30),
            max: Duration::from_secs(100),
            max_percent,
        })
    }

    /// Each ejection in a row lasts one base longer, up to the maximum; after a quiet maximum
    /// the count starts again.
    #[test]
    fn ejections_grow_to_the_maximum_and_are_forgiven() {
        let mut outliers = outliers(50);
        let t0 = Instant::now();
        let secs = |d: Duration| d.as_secs();
        let (first, n) = outliers.eject(7, t0);
        assert_eq!((secs(first), n), (30, 1));
        outliers.ended(7, t0 + first);
        let (second, n) = outliers.eject(7, t0 + first);
        assert_eq!((secs(second), n), (60, 2));
        outliers.ended(7, t0 + Duration::from_secs(90));
        assert_eq!(secs(outliers.eject(7, t0 + Duration::from_secs(91)).0), 90);
        outliers.ended(7, t0 + Duration::from_secs(200));
        assert_eq!(
            secs(outliers.eject(7, t0 + Duration::from_secs(201)).0),
            100,
            "capped"
        );
        outliers.ended(7, t0 + Duration::from_secs(300));
        let quiet = t0 + Duration::from_secs(400);
        assert_eq!(outliers.eject(7, quiet), (Duration::from_secs(30), 1));
        assert_eq!(outliers.eject(8, quiet).1, 1, "streaks are per backend");
    }

    /// At most the share of the pool, and one backend always.
    #[test]
    fn a_pool_keeps_most_of_its_backends() {
        let half = outliers(50);
        assert!(half.room(4, 1));
        assert!(!half.room(4, 2));
        assert!(half.room(3, 0));
        assert!(!half.room(3, 1), "50% of 3 is 1");
        assert!(half.room(1, 0), "one may always be ejected");
        assert!(!outliers(0).room(10, 1));
        assert!(outliers(100).room(2, 1));
    }
}

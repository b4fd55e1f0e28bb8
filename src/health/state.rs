//! Rise/fall counting for one backend: a healthy backend is taken out after
//! `unhealthy_threshold` consecutive failed probes and put back after `healthy_threshold`
//! consecutive successes, so a single lost probe never makes it flap. Plain and synchronous;
//! only the caller logs or notifies, and only when [`HealthState::record`] reports a flip.

use std::num::NonZeroU32;

/// A change of a backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    WentDown,
    CameUp,
}

/// One backend's health as the probes see it.
#[derive(Debug, Clone)]
pub struct HealthState {
    healthy: bool,
    /// Consecutive results that disagree with `healthy`.
    streak: u32,
    healthy_threshold: NonZeroU32,
    unhealthy_threshold: NonZeroU32,
    /// A backend new to the pool: one good probe brings it in (it has no record to distrust).
    joining: bool,
    /// The last flip was the first coming up of a joining backend.
    joined: bool,
}

impl HealthState {
    /// Starts healthy, like the rotation: traffic flows at once.
    pub fn new(healthy_threshold: NonZeroU32, unhealthy_threshold: NonZeroU32) -> Self {
        Self {
            healthy: true,
            streak: 0,
            healthy_threshold,
            unhealthy_threshold,
            joining: false,
            joined: false,
        }
    }

    /// A backend added at run time: out of rotation until its first successful probe, then
    /// counted like any other.
    pub fn joining(healthy_threshold: NonZeroU32, unhealthy_threshold: NonZeroU32) -> Self {
        Self {
            healthy: false,
            joining: true,
            ..Self::new(healthy_threshold, unhealthy_threshold)
        }
    }

    /// Whether the last [`Self::record`] brought a joining backend in.
    pub fn joined_now(&self) -> bool {
        self.joined
    }

    #[cfg(test)]
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Counts one probe result; returns the transition when this result flips the state.
    pub fn record(&mut self, ok: bool) -> Option<Transition> {
        self.joined = false;
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.healthy {
            self.unhealthy_threshold
        } else if self.joining {
            NonZeroU32::MIN
        } else {
            self.healthy_threshold
        };
        if self.streak < needed.get() {
            return None;
        }
        self.healthy = ok;
        self.streak = 0;
        self.joined = ok && self.joining;
        self.joining = false;
        Some(if ok {
            Transition::CameUp
        } else {
            Transition::WentDown
        })
    }

    /// The backend was taken out by other means (passive ejection): from now on it needs
    /// `healthy_threshold` successful probes to come back.
    pub fn force_down(&mut self) {
        if self.healthy {
            self.healthy = false;
            self.streak = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(up: u32, down: u32) -> HealthState {
        HealthState::new(
            NonZeroU32::new(up).expect("nonzero"),
            NonZeroU32::new(down).expect("nonzero"),
        )
    }

    fn feed(state: &mut HealthState, results: &[bool]) -> Vec<Option<Transition>> {
        results.iter().map(|ok| state.record(*ok)).collect()
    }

    /// Three failures in a row take a healthy backend down, on the third exactly.
    #[test]
    fn goes_down_after_the_unhealthy_threshold() {
        let mut s = state(2, 3);
        let got = feed(&mut s, &[false, false, false]);
        assert_eq!(got, [None, None, Some(Transition::WentDown)]);
        assert!(!s.is_healthy());
    }

    /// A success between failures resets the count: no flap on scattered losses.
    #[test]
    fn scattered_failures_never_flip() {
        let mut s = state(2, 3);
        let got = feed(&mut s, &[false, false, true, false, false, true, false]);
        assert!(got.iter().all(Option::is_none));
        assert!(s.is_healthy());
    }

    /// Coming back needs the healthy threshold of consecutive successes.
    #[test]
    fn comes_back_after_the_healthy_threshold() {
        let mut s = state(2, 1);
        assert_eq!(s.record(false), Some(Transition::WentDown));
        let got = feed(&mut s, &[true, false, true, true]);
        assert_eq!(got, [None, None, None, Some(Transition::CameUp)]);
        assert!(s.is_healthy());
    }

    /// Thresholds of one flip on every disagreeing result.
    #[test]
    fn thresholds_of_one_follow_each_result() {
        let mut s = state(1, 1);
        let got = feed(&mut s, &[true, false, false, true, true]);
        assert_eq!(
            got,
            [
                None,
                Some(Transition::WentDown),
                None,
                Some(Transition::CameUp),
                None
            ]
        );
    }

    /// A joining backend comes up on its first good probe, and then counts like the others.
    #[test]
    fn a_joining_backend_comes_up_on_its_first_good_probe() {
        let mut s = HealthState::joining(NonZeroU32::new(3).expect("3"), NonZeroU32::MIN);
        assert!(!s.is_healthy());
        assert_eq!(s.record(false), None);
        assert_eq!(s.record(true), Some(Transition::CameUp));
        assert!(s.joined_now());
        assert_eq!(s.record(false), Some(Transition::WentDown));
        assert!(!s.joined_now());
        assert_eq!(
            feed(&mut s, &[true, true, true]),
            [None, None, Some(Transition::CameUp)]
        );
    }

    /// Every threshold pair from 1 to 5: exactly `threshold` disagreeing results flip.
    #[test]
    fn every_threshold_pair_flips_exactly_at_its_count() {
        for up in 1..=5 {
            for down in 1..=5 {
                let mut s = state(up, down);
                for i in 1..=down {
                    let flipped = s.record(false).is_some();
                    assert_eq!(flipped, i == down, "down {down}, failure {i}");
                }
                for i in 1..=up {
                    let flipped = s.record(true).is_some();
                    assert_eq!(flipped, i == up, "up {up}, success {i}");
                }
            }
        }
    }

    /// After a passive ejection the probes must earn the way back.
    #[test]
    fn forced_down_needs_the_healthy_threshold() {
        let mut s = state(2, 3);
        s.force_down();
        assert!(!s.is_healthy());
        assert_eq!(
            feed(&mut s, &[true, true]),
            [None, Some(Transition::CameUp)]
        );
    }
}

//! The simulation's fault schedule as plain data: each simulated backend alternates between up
//! and failing, for random durations around the configured means (uniform in 0.5–1.5× the
//! mean), in a failure mode drawn from the configured ones. Seeded, and driven by a clock the
//! caller passes in, so a seed reproduces the same story and tests never sleep. Unless total
//! outages are allowed, the last backend standing postpones its failure.

use std::time::Duration;

use crate::fault::{FaultMode, FaultPlan};

/// What the schedule wants changed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub backend: usize,
    /// `Some(mode)`: start failing; `None`: recover.
    pub to: Option<FaultMode>,
}

#[derive(Debug, Clone)]
struct Slot {
    failing: Option<FaultMode>,
    /// When the schedule next changes this backend (time since the schedule's start).
    next_change: Duration,
    /// Under manual control: the schedule leaves it alone.
    paused: bool,
    /// Its backend left the pool: never scheduled, not counted.
    retired: bool,
}

/// Up/down story for a set of simulated backends.
#[derive(Debug)]
pub struct FaultSchedule {
    rng: fastrand::Rng,
    plan: FaultPlan,
    slots: Vec<Slot>,
}

impl FaultSchedule {
    /// All backends start up, each with a first failure drawn from `mean_up` after `now`.
    pub fn new(count: usize, plan: FaultPlan, seed: u64, now: Duration) -> Self {
        let mut schedule = Self {
            rng: fastrand::Rng::with_seed(seed),
            plan,
            slots: Vec::with_capacity(count),
        };
        for _ in 0..count {
            schedule.add(now);
        }
        schedule
    }

    /// A backend that joined the pool: up, first failure drawn from `mean_up` after `now`.
    /// Returns its slot.
    pub fn add(&mut self, now: Duration) -> usize {
        let next_change = now + self.draw(self.plan.mean_up);
        self.slots.push(Slot {
            failing: None,
            next_change,
            paused: false,
            retired: false,
        });
        self.slots.len() - 1
    }

    /// A backend that left the pool: the schedule forgets it.
    pub fn retire(&mut self, backend: usize) {
        if let Some(slot) = self.slots.get_mut(backend) {
            slot.retired = true;
            slot.failing = None;
        }
    }

    /// Applies every change due by `now`, in backend order, and returns them.
    pub fn due(&mut self, now: Duration) -> Vec<Change> {
        let mut changes = Vec::new();
        for backend in 0..self.slots.len() {
            let slot = &self.slots[backend];
            if slot.paused || slot.retired || slot.next_change > now {
                continue;
            }
            if slot.failing.is_some() {
                self.slots[backend].failing = None;
                self.slots[backend].next_change = now + self.draw(self.plan.mean_up);
                changes.push(Change { backend, to: None });
            } else if !self.plan.allow_total_outage && self.up_count() <= 1 {
                // The last one up stays up; try again after another down period.
                self.slots[backend].next_change = now + self.draw(self.plan.mean_down);
            } else {
                let mode = self.plan.modes[self.rng.usize(..self.plan.modes.len())];
                self.slots[backend].failing = Some(mode);
                self.slots[backend].next_change = now + self.draw(self.plan.mean_down);
                changes.push(Change {
                    backend,
                    to: Some(mode),
                });
            }
        }
        changes
    }

    /// Manual failure: the backend fails in `mode` until [`Self::resume`].
    pub fn hold_failing(&mut self, backend: usize, mode: FaultMode) {
        if let Some(slot) = self.slots.get_mut(backend) {
            slot.failing = Some(mode);
            slot.paused = true;
        }
    }

    /// Manual recovery: the backend is up and back on the random schedule from `now`.
    pub fn resume(&mut self, backend: usize, now: Duration) {
        let next_change = now + self.draw(self.plan.mean_up);
        if let Some(slot) = self.slots.get_mut(backend) {
            slot.failing = None;
            slot.paused = false;
            slot.next_change = next_change;
        }
    }

    /// The current failure of each backend (`None` = up).
    #[cfg(test)]
    pub fn failing(&self, backend: usize) -> Option<FaultMode> {
        self.slots.get(backend).and_then(|slot| slot.failing)
    }

    pub fn is_paused(&self, backend: usize) -> bool {
        self.slots.get(backend).is_some_and(|slot| slot.paused)
    }

    fn up_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| !slot.retired && slot.failing.is_none())
            .count()
    }

    fn draw(&mut self, mean: Duration) -> Duration {
        mean.mul_f64(0.5 + self.rng.f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(allow_total_outage: bool) -> FaultPlan {
        FaultPlan {
            mean_up: Duration::from_secs(10),
            mean_down: Duration::from_secs(5),
            modes: vec![FaultMode::Refuse, FaultMode::Error, FaultMode::Hang],
            allow_total_outage,
        }
    }

    /// Runs a schedule for `seconds` of simulated time in 100 ms steps.
    fn story(seed: u64, seconds: u64, allow: bool) -> Vec<(u64, Change)> {
        let mut schedule = FaultSchedule::new(3, plan(allow), seed, Duration::ZERO);
        (0..seconds * 10)
            .flat_map(|tick| {
                let now = Duration::from_millis(tick * 100);
                schedule.due(now).into_iter().map(move |c| (tick, c))
            })
            .collect()
    }

    /// The same seed tells the same story; another seed another one.
    #[test]
    fn a_seed_reproduces_the_schedule() {
        let first = story(42, 600, false);
        assert!(
            first.len() > 20,
            "only {} changes in 10 minutes",
            first.len()
        );
        assert_eq!(first, story(42, 600, false));
        assert_ne!(first, story(43, 600, false));
    }

    /// Every backend fails and recovers, in every mode, with durations near the means.
    #[test]
    fn backends_alternate_around_the_means() {
        let changes = story(7, 3600, false);
        for backend in 0..3 {
            let mine: Vec<_> = changes
                .iter()
                .filter(|(_, c)| c.backend == backend)
                .collect();
            assert!(
                mine.len() > 50,
                "backend {backend}: {} changes in an hour",
                mine.len()
            );
            for pair in mine.windows(2) {
                assert_ne!(
                    pair[0].1.to.is_some(),
                    pair[1].1.to.is_some(),
                    "no alternation"
                );
            }
        }
        for mode in [FaultMode::Refuse, FaultMode::Error, FaultMode::Hang] {
            assert!(
                changes.iter().any(|(_, c)| c.to == Some(mode)),
                "{mode} never drawn"
            );
        }
    }

    /// Without allow_total_outage, at no moment are all backends failing.
    #[test]
    fn never_all_down_unless_allowed() {
        let mut schedule = FaultSchedule::new(3, plan(false), 99, Duration::ZERO);
        for tick in 0..36_000 {
            schedule.due(Duration::from_millis(tick * 100));
            assert!(
                (0..3).any(|b| schedule.failing(b).is_none()),
                "all down at tick {tick}"
            );
        }
        let mut allowed = FaultSchedule::new(3, plan(true), 99, Duration::ZERO);
        let total = (0..36_000).any(|tick| {
            allowed.due(Duration::from_millis(tick * 100));
            (0..3).all(|b| allowed.failing(b).is_some())
        });
        assert!(
            total,
            "with allow_total_outage an hour should see a total outage"
        );
    }

    /// Manual control holds a backend where the operator put it until resumed.
    #[test]
    fn manual_failure_pauses_the_schedule_until_resumed() {
        let mut schedule = FaultSchedule::new(2, plan(false), 1, Duration::ZERO);
        schedule.hold_failing(0, FaultMode::Hang);
        for tick in 0..6000 {
            let changes = schedule.due(Duration::from_millis(tick * 100));
            assert!(
                changes.iter().all(|c| c.backend != 0),
                "schedule touched a paused backend"
            );
        }
        assert_eq!(schedule.failing(0), Some(FaultMode::Hang));
        assert!(schedule.is_paused(0));
        schedule.resume(0, Duration::from_secs(600));
        assert_eq!(schedule.failing(0), None);
        assert!(!schedule.is_paused(0));
    }

    /// Modes parse from and print to their names; others are refused.
    #[test]
    fn fault_modes_round_trip() {
        for mode in [FaultMode::Refuse, FaultMode::Error, FaultMode::Hang] {
            assert_eq!(mode.to_string().parse::<FaultMode>(), Ok(mode));
        }
        assert!("explode".parse::<FaultMode>().is_err());
    }
}

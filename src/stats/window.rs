//! Request rates from counter samples: the stats tick samples the totals once a second and this
//! window answers "requests per second over the last N seconds". Plain and clock-injected.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::metrics::Totals;

/// How much history is kept.
pub const WINDOW: Duration = Duration::from_secs(10);

/// The last [`WINDOW`] of samples.
#[derive(Debug, Default)]
pub struct StatsWindow {
    samples: VecDeque<(Instant, Totals)>,
}

impl StatsWindow {
    pub fn push(&mut self, at: Instant, totals: Totals) {
        self.samples.push_back((at, totals));
        while self
            .samples
            .front()
            .is_some_and(|(first, _)| at.saturating_duration_since(*first) > WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Requests per second between the oldest and newest sample (0 with fewer than two).
    pub fn requests_per_sec(&self) -> f64 {
        self.rate(|t| t.requests)
    }

    /// Requests per second between the last two samples.
    pub fn last_second(&self) -> f64 {
        let n = self.samples.len();
        match n {
            0 | 1 => 0.0,
            _ => rate_between(&self.samples[n - 2], &self.samples[n - 1], |t| t.requests),
        }
    }

    fn rate(&self, field: impl Fn(&Totals) -> u64) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(first), Some(last)) if self.samples.len() > 1 => rate_between(first, last, field),
            _ => 0.0,
        }
    }
}

fn rate_between(
    first: &(Instant, Totals),
    last: &(Instant, Totals),
    field: impl Fn(&Totals) -> u64,
) -> f64 {
    let secs = last.0.saturating_duration_since(first.0).as_secs_f64();
    if secs > 0.0 {
        field(&last.1).saturating_sub(field(&first.1)) as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(requests: u64) -> Totals {
        Totals {
            requests,
            ..Totals::default()
        }
    }

    /// Rates come from the counter's growth over the samples kept, ten seconds at most.
    #[test]
    fn rates_over_the_window_and_the_last_second() {
        let start = Instant::now();
        let mut window = StatsWindow::default();
        assert_eq!(window.requests_per_sec(), 0.0);
        for s in 0..=20u64 {
            window.push(
                start + Duration::from_secs(s),
                totals(s * 100 + if s == 20 { 50 } else { 0 }),
            );
        }
        assert_eq!(window.last_second(), 150.0);
        assert!(
            (window.requests_per_sec() - 105.0).abs() < 1e-9,
            "{}",
            window.requests_per_sec()
        );
    }
}

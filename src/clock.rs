//! Wall-clock time as Unix milliseconds: the one place the crate reads `SystemTime` for
//! timestamps shown to people (event times, the last health change, saved token levels).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch of `at` (0 for a time before it).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Conversions round-trip, and times before the epoch clamp to 0.
    #[test]
    fn unix_ms_round_trips_and_clamps_before_the_epoch() {
        assert_eq!(unix_ms(from_unix_ms(1_700_000_000_123)), 1_700_000_000_123);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert!(now_ms() > 1_700_000_000_000);
    }
}

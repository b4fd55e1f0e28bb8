//! The balancing strategies a pool may use (`backends.strategy`, a pool's `strategy`), by the
//! names the settings, the pool file and the API spell them.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// How the next backend is chosen (`backends.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Smooth weighted round-robin (weights 3:1 give a a b a); strict order when weights are equal.
    #[default]
    RoundRobin,
    /// Fewest requests in flight relative to weight; ties in round-robin order.
    LeastConnections,
    /// Two random backends; the less loaded (in flight / weight) wins.
    PowerOfTwo,
    /// The client's key on a ring of virtual nodes: a client stays on one backend.
    ConsistentHash,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastConnections => "least_connections",
            Self::PowerOfTwo => "power_of_two",
            Self::ConsistentHash => "consistent_hash",
        }
    }
}

impl FromStr for Strategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        [
            Self::RoundRobin,
            Self::LeastConnections,
            Self::PowerOfTwo,
            Self::ConsistentHash,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| {
            format!("{text:?} is not one of \"round_robin\", \"least_connections\", \"power_of_two\", \"consistent_hash\"")
        })
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        assert_eq!("power_of_two".parse(), Ok(Strategy::PowerOfTwo));
        assert!("random".parse::<Strategy>().is_err());
    }
}

//! The simulation's vocabulary, shared by the settings that describe it and the simulation that
//! runs it: how a simulated backend fails, and the plan of its schedule.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

/// How a simulated backend fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// Listener closed: connection refused.
    Refuse,
    /// Answers every request with 500.
    Error,
    /// Accepts and never answers.
    Hang,
}

impl FaultMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::Error => "error",
            Self::Hang => "hang",
        }
    }
}

impl FromStr for FaultMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "refuse" => Ok(Self::Refuse),
            "error" => Ok(Self::Error),
            "hang" => Ok(Self::Hang),
            other => Err(format!(
                "{other:?} is not a fault mode (refuse, error, hang)"
            )),
        }
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parameters of a schedule (`[simulation]` in the settings).
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub mean_up: Duration,
    pub mean_down: Duration,
    /// Never empty.
    pub modes: Vec<FaultMode>,
    pub allow_total_outage: bool,
}

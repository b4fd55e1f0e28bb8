//! What the status API and the metrics show of cluster mode.

use serde::Serialize;

/// `cluster` in `/lb/api/status`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterStatus {
    /// `"single"` or `"redis"`.
    pub mode: &'static str,
    /// `"up"`, `"down"`, or `None` in single mode.
    pub redis: Option<&'static str>,
    /// `"single"` or `"sentinel"`; `None` in single mode.
    pub topology: Option<&'static str>,
    /// The Redis server this instance is connected to (the master, behind Sentinel), or was
    /// last; `None` before the first connection.
    pub server: Option<String>,
    /// The cluster's configuration version this instance runs (`cluster.share_config`); `None`
    /// when it shares none (yet).
    pub config_version: Option<u64>,
    pub instance: String,
    /// Instances that heartbeat into Redis, as last seen from here.
    pub instances: Vec<Instance>,
}

/// One live instance.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Instance {
    pub name: String,
    /// Its last heartbeat, unix ms on Redis's clock.
    pub last_seen_ms: u64,
    /// The cluster's configuration version it runs (`cluster.share_config`), if any.
    pub config_version: Option<u64>,
}

/// The counters `/lb/metrics` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterCounters {
    pub up: bool,
    /// Commands sent to Redis (a pipeline of n bucket asks counts n).
    pub calls: u64,
    /// Calls that failed or were slower than `cluster.redis_timeout_ms`.
    pub failed_calls: u64,
    /// Admissions decided without Redis because it was down.
    pub decided_locally: u64,
}

/// Single mode's `cluster` status.
pub fn single_status(instance: String) -> ClusterStatus {
    ClusterStatus {
        mode: "single",
        redis: None,
        topology: None,
        server: None,
        config_version: None,
        instance,
        instances: Vec::new(),
    }
}

//! What the event stream carries: [`LbEvent`]s, each stamped with a sequence number and a time
//! when the bus takes it ([`Stamped`]).

use serde::Serialize;

use crate::backend::BackendCounters;

/// One backend in a `stats` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendStat {
    pub pool: String,
    pub backend: String,
    #[serde(flatten)]
    pub counters: BackendCounters,
}

/// One route in a `stats` event: its counters so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteStat {
    pub route: String,
    pub requests: u64,
    pub rate_limited: u64,
}

/// One pool in a `stats` event: requests waiting in its queue now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStat {
    pub pool: String,
    pub queued: usize,
}

/// Something an operator would want to see happen.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LbEvent {
    /// Taken out of rotation.
    BackendDown {
        pool: String,
        backend: String,
        url: String,
        reason: String,
    },
    /// Back in rotation.
    BackendUp {
        pool: String,
        backend: String,
        url: String,
        reason: String,
    },
    /// Joined the pool (API or reload); it takes requests after its first good probe.
    BackendAdded {
        pool: String,
        backend: String,
        url: String,
        weight: u32,
    },
    /// Stopped (`draining: true`) or resumed taking new requests; a removed backend drains
    /// before it leaves.
    BackendDraining {
        pool: String,
        backend: String,
        url: String,
        draining: bool,
    },
    /// Out of rotation for answering 5xx in a row (`ejected`), or back after its ejection.
    BackendEjected {
        pool: String,
        backend: String,
        url: String,
        ejected: bool,
        /// Why, for people: `5 5xx answers in a row; ejection 2 of a streak, 60 s`.
        reason: String,
    },
    /// A `"discovery": "dns"` entry's lookup: its addresses changed (`ok`), or it failed or
    /// came back empty and the members found before stay (`ok: false`, `error`).
    Dns {
        pool: String,
        /// The entry's name; its members are `{backend}@{ip}`.
        backend: String,
        url: String,
        ok: bool,
        /// The addresses it has members at now.
        addresses: Vec<String>,
        error: Option<String>,
    },
    /// Left the pool (after draining).
    BackendRemoved {
        pool: String,
        backend: String,
        url: String,
        reason: String,
    },
    /// Its weight changed.
    BackendWeight {
        pool: String,
        backend: String,
        url: String,
        weight: u32,
    },
    /// The pool file was read again (`trigger`: `signal`, `api` or `watch`); `ok: false` means
    /// the file was refused and nothing changed (`error` says why).
    Reload {
        trigger: &'static str,
        ok: bool,
        added: Vec<String>,
        removed: Vec<String>,
        changed: Vec<String>,
        error: Option<String>,
    },
    /// A request moved from a failed backend to another (at most one event a second).
    Failover {
        from: String,
        to: String,
        reason: String,
        /// The request's id ([`crate::http::request_id`]).
        request_id: String,
    },
    /// A request got an error answer because its backend failed and no other was tried (at
    /// most one event a second).
    RequestFailed {
        status: u16,
        backend: String,
        reason: String,
        request_id: String,
    },
    /// A simulated backend started or stopped failing.
    Simulation {
        backend: String,
        pool: String,
        url: String,
        /// `up`, or the failure mode: `refuse`, `error`, `hang`.
        state: String,
        /// Whether an operator asked for it (else the random schedule did).
        manual: bool,
    },
    /// A pool was added, changed or removed through the pools API (`action`).
    Pool { action: &'static str, pool: String },
    /// The routes were replaced through the routes API; their names in order.
    Routes { routes: Vec<String> },
    /// A client was created, updated or deleted through `/clients`.
    Client {
        action: &'static str,
        client_id: String,
    },
    /// Cluster mode: Redis stopped answering (`down`) or this instance rejoined it (`up`).
    Redis { state: &'static str, reason: String },
    /// Cluster mode with `share_config`: this instance `published` its pools and routes as the
    /// cluster's configuration `version`, or `applied` a version another instance (`by`) wrote.
    Config {
        version: u64,
        by: String,
        action: &'static str,
    },
    /// Once a second: totals so far and per backend.
    Stats {
        requests: u64,
        /// Over the last second.
        requests_per_sec: f64,
        rate_limited: u64,
        errors: u64,
        backends: Vec<BackendStat>,
        routes: Vec<RouteStat>,
        pools: Vec<PoolStat>,
    },
}

impl LbEvent {
    /// Whether this is the once-a-second `stats` tick (kept in a history of its own).
    pub fn is_stats(&self) -> bool {
        matches!(self, Self::Stats { .. })
    }
}

/// An event as sent to subscribers: `{"id": 7, "at_ms": 1764..., "type": ..., ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stamped {
    /// Increases by one per event; the server-sent events' `id:`, so a reconnecting page
    /// resumes after the last one it saw.
    pub id: u64,
    /// When the bus took it (Unix ms).
    pub at_ms: u64,
    #[serde(flatten)]
    pub event: LbEvent,
}

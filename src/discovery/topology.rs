//! What the pool file describes: pools (each with its backends and settings) and the routes
//! between them. [`Topology`] is the validated content; [`NamedPool`] a pool at start, its
//! backends named and numbered.

pub use crate::backend::DEFAULT_POOL;
use crate::backend::{BackendId, BackendSpec, HostHeader, PoolEntry};
use crate::route::RouteSpec;
use crate::strategy::Strategy;

/// A pool's own settings; `None` = the `[backends]`/`[health]` setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSettings {
    pub strategy: Option<Strategy>,
    pub health_path: Option<String>,
    pub host_header: HostHeader,
    /// Requests in flight per backend at most (0 = none) where an entry sets none of its own.
    pub max_connections: Option<u32>,
}

/// A validated pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    pub name: String,
    pub settings: PoolSettings,
    pub backends: Vec<BackendSpec>,
}

/// A validated pool file: pools (the `default` one first, then by name) and routes (file order).
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub pools: Vec<PoolSpec>,
    pub routes: Vec<RouteSpec>,
}

/// An entry with `"discovery": "dns"`: its members are the addresses its host resolves to,
/// found at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEntry {
    /// Its own number from the backends' sequence (never a member's).
    pub id: BackendId,
    /// Its members are `{name}@{ip}`.
    pub name: String,
    pub spec: BackendSpec,
    /// Its index among the pool's entries, where the pool file lists it.
    pub position: usize,
}

/// A pool at start: its backends named and numbered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPool {
    pub name: String,
    pub settings: PoolSettings,
    pub entries: Vec<PoolEntry>,
    /// Entries whose members DNS finds.
    pub dns: Vec<DnsEntry>,
}

impl NamedPool {
    /// The `default` pool of `entries`, with the settings' strategy and probe path.
    pub fn default_of(entries: Vec<PoolEntry>) -> Self {
        Self {
            name: DEFAULT_POOL.to_owned(),
            settings: PoolSettings::default(),
            entries,
            dns: Vec::new(),
        }
    }
}

/// The pool file at start: pools with named and numbered backends, and the routes.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTopology {
    pub pools: Vec<NamedPool>,
    pub routes: Vec<RouteSpec>,
}

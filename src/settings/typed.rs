//! The validated settings of each section, as the rest of the crate reads them: typed values
//! (`Duration`, `SocketAddr`, `NonZeroU32`) that cannot hold an invalid setting.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::HeaderName;
use rustls::sign::CertifiedKey;

use crate::backend::PoolEntry;
use crate::discovery::NamedTopology;
use crate::fault::FaultPlan;
use crate::net::Cidr;
use crate::strategy::Strategy;

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address the listener binds.
    pub listen: SocketAddr,
    /// Worker threads; already resolved from 0 to the number of cores.
    pub workers: usize,
    /// Grace for in-flight requests after SIGINT/SIGTERM.
    pub shutdown_timeout: Duration,
    /// The whole request head must arrive within this (slowloris guard).
    pub client_request_timeout: Duration,
    /// Idle keep-alive connections are closed after this; `None` disables keep-alive.
    pub keep_alive: Option<Duration>,
    /// A client that takes no byte of a response for this long is cut off (stalled reader).
    pub send_timeout: Duration,
    /// An upgraded (WebSocket) connection with no byte either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// Open client connections per worker at most; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl BackendSettings {
    /// Every backend of every pool at start.
    pub fn entries(&self) -> impl Iterator<Item = &PoolEntry> {
        self.topology.pools.iter().flat_map(|p| &p.entries)
    }
}

/// `[backends]` and the pool from `config.json`.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// The file the pool was read from, and where the backends API writes it back; `None` when
    /// the pool was given in code ([`Settings::with_pool`]): changes then live in memory only.
    pub file: Option<PathBuf>,
    /// The pools and routes at start; pools named and numbered in file order, never without a
    /// backend.
    pub topology: NamedTopology,
    /// How the next backend is chosen.
    pub strategy: Strategy,
    /// Reload the pool when its file changes.
    pub watch: bool,
    /// TCP connect timeout per attempt.
    pub connect_timeout: Duration,
    /// Until the backend's response head arrives (the upload is included).
    pub response_timeout: Duration,
    /// Other backends tried after a failure that is safe to retry.
    pub retries: u32,
    /// Request bodies with a Content-Length up to this are held in memory so they can be retried.
    pub retry_body_limit_bytes: u64,
    /// Larger request bodies are refused with 413; `None` = unlimited.
    pub max_request_body_bytes: Option<u64>,
    /// Extra trust roots for `https://` backends (PEM), checked at start.
    pub ca_file: Option<PathBuf>,
    /// Verify `https://` backends' certificates (false only for testing).
    pub tls_verify: bool,
    /// Requests in flight per backend at most, where neither the pool nor the entry sets its
    /// own; 0 = no limit.
    pub max_connections: u32,
    /// Requests that may wait in each pool's queue (0 = none: busy at once), and how long.
    pub queue_size: usize,
    pub queue_timeout: Duration,
    /// Retries in flight at most this share (0–100) of a pool's requests in flight.
    pub retry_budget_percent: u32,
    /// `"discovery": "dns"` entries are looked up again this often.
    pub dns_refresh: Duration,
    /// The UDP resolvers they are asked; empty = the system's (`/etc/resolv.conf`).
    pub dns_servers: Vec<SocketAddr>,
}

/// `[health]` (used by the health checker).
#[derive(Debug, Clone)]
pub struct HealthSettings {
    pub interval: Duration,
    pub timeout: Duration,
    /// Path probed on each backend; starts with `/`.
    pub path: String,
    pub healthy_threshold: NonZeroU32,
    pub unhealthy_threshold: NonZeroU32,
    pub passive_failures: NonZeroU32,
    /// 5xx answers in a row that eject a backend; `None` = no outlier ejection.
    pub eject_consecutive_5xx: Option<NonZeroU32>,
    /// An ejection lasts `eject_base` × (times ejected), at most `eject_max`.
    pub eject_base: Duration,
    pub eject_max: Duration,
    /// Never more than this share (0–100) of a pool ejected; one backend may always be.
    pub max_ejected_percent: u32,
    /// A backend that comes up ramps from 10% to 100% of its weight over this; `None` = at once.
    pub slow_start: Option<Duration>,
}

/// `[rate_limit]` (used by the bucket store).
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Bucket size for clients without their own limits; at least 1.
    pub default_capacity: u64,
    /// Refill rate for them, tokens per second; finite and > 0.
    pub default_rate_per_sec: f64,
    pub api_key_header: HeaderName,
    pub trusted_proxies: Vec<Cidr>,
    pub max_tracked_clients: u64,
}

/// `[persistence]` (used by the store).
#[derive(Debug, Clone)]
pub struct PersistenceSettings {
    /// SQLite file; relative paths were resolved against the settings file's folder.
    pub path: PathBuf,
    pub flush_interval: Duration,
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Bearer token for `/clients` and `/lb/api`; `None` = loopback peers only.
    pub token: Option<String>,
}

/// `[simulation]`.
#[derive(Debug, Clone)]
pub struct SimulationSettings {
    /// Serve the pool in-process (every backend is on loopback then).
    pub enabled: bool,
    /// Means, modes and whether total outages may happen.
    pub plan: FaultPlan,
    /// `None` = draw one at start.
    pub seed: Option<u64>,
}

/// `[tls]`: a TLS listener next to the plain one.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub listen: SocketAddr,
    /// PEM certificate chain (relative paths resolved against the settings file's folder).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// The pair as read at start (checked to belong together); SIGHUP reads the files again.
    pub certified: Arc<CertifiedKey>,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    pub access: AccessFormat,
    /// `None`: with the process log on stderr; a file: appended to, reopened on SIGUSR1.
    pub access_path: Option<PathBuf>,
}

/// `[tracing]`, when `otlp_endpoint` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// Where spans are posted (OTLP/HTTP, protobuf), e.g. `http://127.0.0.1:4318/v1/traces`.
    pub otlp_endpoint: String,
    /// Share of new traces recorded, 0 to 1; an incoming `traceparent` decides for its own.
    pub sample_ratio: f64,
    /// The resource's `service.name`.
    pub service_name: String,
}

/// How access lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessFormat {
    /// One line per request (through `env_logger` on stderr, or into `access_path`).
    Text,
    /// One JSON object per line, the contract's keys.
    Json,
    Off,
}

/// `[cluster]`.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `None`: a single instance (SQLite alone); else where Redis is (checked for its form;
    /// nothing is connected yet).
    pub redis: Option<RedisTopology>,
    /// Consecutive failed or slow calls before Redis counts as down.
    pub redis_down_after: NonZeroU32,
    /// Pools and routes changed on one instance (API, reload, file) apply on every instance.
    pub share_config: bool,
    /// Every Redis key this balancer writes starts with it.
    pub key_prefix: String,
    /// Longest an instance holds tokens taken from Redis; zero = ask Redis for every admission.
    pub lease: Duration,
    pub on_redis_down: OnRedisDown,
    /// A Redis call slower than this counts as Redis down for that call.
    pub redis_timeout: Duration,
    /// Shown in status and in Redis's list of instances; `None` = the address the listener
    /// bound (resolved at start, so `127.0.0.1:0` becomes the port actually taken).
    pub instance_name: Option<String>,
}

/// How the instances reach Redis.
#[derive(Debug, Clone)]
pub enum RedisTopology {
    /// One server, `cluster.redis_url`.
    Single(redis::Client),
    /// The master named `master_name`, asked of these sentinels at every (re)connect, so a
    /// failover is followed.
    Sentinel {
        sentinels: Vec<redis::ConnectionInfo>,
        master_name: String,
    },
    /// A Redis Cluster, found through these seed nodes; keys carry hash tags.
    Cluster(Vec<redis::ConnectionInfo>),
}

/// What admissions do while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisDown {
    /// Each instance limits on its own, with the limits divided by the instances last seen.
    Local,
    /// Admit everything.
    Allow,
    /// Refuse everything with 503.
    Deny,
}

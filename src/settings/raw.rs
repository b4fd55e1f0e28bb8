//! The settings exactly as they are written in `Settings.toml` (or `LB__SECTION__KEY`
//! environment variables), before validation. Every field has its shipped default, so a file may
//! leave out any key or section; unknown keys and sections are rejected by serde.
//! `super::validate` turns these into the typed [`super::Settings`].

use serde::Deserialize;

/// `[server]` default: listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// `[server]` default: grace for in-flight requests on SIGINT/SIGTERM, in seconds.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;
/// `[server]` default: the request head must arrive within this many milliseconds.
pub const DEFAULT_CLIENT_REQUEST_TIMEOUT_MS: u64 = 5000;
/// `[server]` default: idle keep-alive connections are closed after this many seconds.
pub const DEFAULT_KEEP_ALIVE_SECS: u64 = 5;
/// `[server]` default: a client that takes no byte of a response for this many milliseconds is
/// cut off, and the backend connection feeding it is closed.
pub const DEFAULT_SEND_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT_SECS: u64 = 300;
/// `[server]` default: open client connections per worker at most (actix-web's own default).
pub const DEFAULT_MAX_CONNECTIONS: u64 = 25_000;
/// `[backends]` default: TCP connect timeout, in milliseconds.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1000;
/// `[backends]` default: time until the backend's response head arrives, in milliseconds.
pub const DEFAULT_RESPONSE_TIMEOUT_MS: u64 = 30_000;
/// `[backends]` default: other backends tried when one cannot be reached.
pub const DEFAULT_RETRIES: u32 = 2;
/// `[backends]` default: request bodies up to this many bytes are held so they can be retried.
pub const DEFAULT_RETRY_BODY_LIMIT_BYTES: u64 = 64 * 1024;
/// `[backends]` default: the longest a request waits in its pool's queue, in milliseconds.
pub const DEFAULT_QUEUE_TIMEOUT_MS: u64 = 1000;
/// `[backends]` default: retries in flight at most this share (percent) of the requests in flight.
pub const DEFAULT_RETRY_BUDGET_PERCENT: u32 = 20;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSettings {
    pub server: RawServer,
    pub backends: RawBackends,
    pub health: RawHealth,
    pub rate_limit: RawRateLimit,
    pub persistence: RawPersistence,
    pub admin: RawAdmin,
    pub simulation: RawSimulation,
    pub cluster: RawCluster,
    pub tls: RawTls,
    pub log: RawLog,
    pub tracing: RawTracing,
}

/// `[server]`: the listener and its connection limits.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawServer {
    pub listen: String,
    /// 0 = one worker per CPU core.
    pub workers: u64,
    pub shutdown_timeout_secs: u64,
    pub client_request_timeout_ms: u64,
    /// 0 disables keep-alive.
    pub keep_alive_secs: u64,
    pub send_timeout_ms: u64,
    /// An upgraded (WebSocket) connection with no byte either way for this long is closed.
    pub tunnel_idle_timeout_secs: u64,
    /// Open client connections per worker at most.
    pub max_connections: u64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            workers: 0,
            shutdown_timeout_secs: DEFAULT_SHUTDOWN_TIMEOUT_SECS,
            client_request_timeout_ms: DEFAULT_CLIENT_REQUEST_TIMEOUT_MS,
            keep_alive_secs: DEFAULT_KEEP_ALIVE_SECS,
            send_timeout_ms: DEFAULT_SEND_TIMEOUT_MS,
            tunnel_idle_timeout_secs: DEFAULT_TUNNEL_IDLE_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// `backends.dns_refresh_secs`.
const DEFAULT_DNS_REFRESH_SECS: u64 = 5;

/// `[backends]`: where the pool is listed and how it is reached.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBackends {
    pub file: String,
    pub strategy: String,
    pub watch: bool,
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
    pub retries: u32,
    pub retry_body_limit_bytes: u64,
    /// 0 = no limit on proxied request bodies.
    pub max_request_body_bytes: u64,
    pub ca_file: String,
    pub tls_verify: bool,
    /// Requests in flight per backend at most; 0 = no limit.
    pub max_connections: u32,
    /// Requests that may wait for a backend under its limit; 0 = none.
    pub queue_size: u32,
    pub queue_timeout_ms: u64,
    pub retry_budget_percent: u32,
    pub dns_refresh_secs: u64,
    /// `ip:port` (or `ip`, port 53) of UDP resolvers; empty = the system's.
    pub dns_servers: Vec<String>,
}

impl Default for RawBackends {
    fn default() -> Self {
        Self {
            file: "config.json".to_owned(),
            strategy: "round_robin".to_owned(),
            watch: true,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            response_timeout_ms: DEFAULT_RESPONSE_TIMEOUT_MS,
            retries: DEFAULT_RETRIES,
            retry_body_limit_bytes: DEFAULT_RETRY_BODY_LIMIT_BYTES,
            max_request_body_bytes: 0,
            ca_file: String::new(),
            tls_verify: true,
            max_connections: 0,
            queue_size: 0,
            queue_timeout_ms: DEFAULT_QUEUE_TIMEOUT_MS,
            retry_budget_percent: DEFAULT_RETRY_BUDGET_PERCENT,
            dns_refresh_secs: DEFAULT_DNS_REFRESH_SECS,
            dns_servers: Vec::new(),
        }
    }
}

/// `[health]`: active probes and passive ejection.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHealth {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub path: String,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub passive_failures: u32,
    /// 5xx answers in a row that eject a backend; 0 = off.
    pub eject_consecutive_5xx: u32,
    pub eject_base_secs: u64,
    pub eject_max_secs: u64,
    pub max_ejected_percent: u32,
    /// 0 = a backend that comes up takes its full weight at once.
    pub slow_start_secs: u64,
}

impl Default for RawHealth {
    fn default() -> Self {
        Self {
            interval_ms: 2000,
            timeout_ms: 1000,
            path: "/".to_owned(),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            passive_failures: 3,
            eject_consecutive_5xx: 0,
            eject_base_secs: 30,
            eject_max_secs: 300,
            max_ejected_percent: 50,
            slow_start_secs: 0,
        }
    }
}

/// `[rate_limit]`: per-client token buckets.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRateLimit {
    pub enabled: bool,
    pub default_capacity: u64,
    pub default_rate_per_sec: f64,
    pub api_key_header: String,
    pub trusted_proxies: Vec<String>,
    pub max_tracked_clients: u64,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            enabled: true,
            default_capacity: 100,
            default_rate_per_sec: 10.0,
            api_key_header: "X-API-Key".to_owned(),
            trusted_proxies: Vec::new(),
            max_tracked_clients: 1_000_000,
        }
    }
}

/// `[persistence]`: the SQLite file.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPersistence {
    pub path: String,
    pub flush_interval_ms: u64,
}

impl Default for RawPersistence {
    fn default() -> Self {
        Self {
            path: "data/loadbalancer.sqlite3".to_owned(),
            flush_interval_ms: 1000,
        }
    }
}

/// `[admin]`: access to `/clients` and `/lb/api`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAdmin {
    pub token: String,
}

/// `[log]`: the access log.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLog {
    pub access: String,
    pub access_path: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            access: "text".to_owned(),
            access_path: String::new(),
        }
    }
}

/// `[tracing]`: OpenTelemetry traces (an empty endpoint = off).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTracing {
    pub otlp_endpoint: String,
    pub sample_ratio: f64,
    pub service_name: String,
}

impl Default for RawTracing {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            sample_ratio: 1.0,
            service_name: "loadbalancer".to_owned(),
        }
    }
}

/// `[tls]`: the TLS listener (empty `listen` = none).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTls {
    pub listen: String,
    pub cert: String,
    pub key: String,
}

/// `[simulation]`: in-process simulated backends.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSimulation {
    pub enabled: bool,
    /// Mean time a simulated backend stays up, seconds.
    pub mean_up_secs: f64,
    /// Mean time it stays failing, seconds.
    pub mean_down_secs: f64,
    /// 0 = a random seed (logged at start, so a run can be replayed).
    pub seed: u64,
    /// Failure modes drawn from: "refuse", "error", "hang".
    pub modes: Vec<String>,
    /// Whether every backend may be failing at once.
    pub allow_total_outage: bool,
}

impl Default for RawSimulation {
    /// Off: a binary started without a settings file must not serve made-up backends. The
    /// shipped Settings.toml turns it on, so `cargo run` demonstrates failover with nothing
    /// else running. The modes leave out `hang` by default: it shows only as 504s after the response
    /// timeout, which makes a slow demo; it is one API call away.
    fn default() -> Self {
        Self {
            enabled: false,
            mean_up_secs: 20.0,
            mean_down_secs: 8.0,
            seed: 0,
            modes: vec!["refuse".to_owned(), "error".to_owned()],
            allow_total_outage: false,
        }
    }
}

/// `[cluster]`: several instances sharing clients and limits through Redis.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCluster {
    /// Empty (and no sentinels): a single instance on SQLite alone.
    pub redis_url: String,
    /// `host:port` of Redis Sentinels; the master named `redis_master_name` is found through them.
    pub redis_sentinels: Vec<String>,
    pub redis_master_name: String,
    /// `host:port` seed nodes of a Redis Cluster.
    pub redis_cluster_nodes: Vec<String>,
    /// Consecutive failed or slow calls before Redis counts as down.
    pub redis_down_after: u32,
    /// Pools and routes changed on one instance apply on every instance.
    pub share_config: bool,
    pub key_prefix: String,
    /// Longest an instance holds tokens taken from Redis; 0 = ask Redis for every admission.
    pub lease_ms: u64,
    /// "local", "allow" or "deny".
    pub on_redis_down: String,
    pub redis_timeout_ms: u64,
    /// Empty: host:port of `server.listen`.
    pub instance_name: String,
}

impl Default for RawCluster {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            redis_sentinels: Vec::new(),
            redis_master_name: "mymaster".to_owned(),
            redis_cluster_nodes: Vec::new(),
            redis_down_after: 3,
            share_config: true,
            key_prefix: "lb:".to_owned(),
            lease_ms: 100,
            on_redis_down: "local".to_owned(),
            redis_timeout_ms: 50,
            instance_name: String::new(),
        }
    }
}

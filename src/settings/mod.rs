//! Settings: `Settings.toml` (via the `config` crate) overlaid with `LB__SECTION__KEY`
//! environment variables, validated once into typed values so that an invalid value cannot be
//! represented past start-up. The pool at start comes from `config.json`, read through
//! [`crate::discovery`].
//! Every failure is a [`ConfigError`] naming the file (or variable), the key and the problem.

mod checker;
mod error;
mod raw;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::HeaderName;
use rustls::sign::CertifiedKey;

use crate::backend::{Backend, PoolEntry, Strategy};
use crate::certs;
pub use crate::certs::load as load_certificate;
use crate::discovery::PoolFile;
use crate::fault::{FaultMode, FaultPlan};
use crate::net::{is_loopback_authority, Cidr};
use checker::Checker;
pub use checker::ENV_PREFIX;
pub use error::ConfigError;
pub use raw::RawSettings;

/// Name of the settings file looked for in the working directory when none is given.
pub const DEFAULT_SETTINGS_FILE: &str = "Settings.toml";

/// Where to read from: the CLI's `--settings` and `--backends`.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// `--settings PATH`; when absent `./Settings.toml` is used if it exists, else the defaults.
    pub settings_path: Option<PathBuf>,
    /// `--backends PATH`; overrides `backends.file`.
    pub backends_path: Option<PathBuf>,
    /// `--simulate`: turns `simulation.enabled` on.
    pub simulate: bool,
}

/// The validated configuration of one balancer.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub backends: BackendSettings,
    pub health: HealthSettings,
    pub rate_limit: RateLimitSettings,
    pub persistence: PersistenceSettings,
    pub admin: AdminSettings,
    pub simulation: SimulationSettings,
    pub cluster: ClusterSettings,
    /// `None`: no TLS listener.
    pub tls: Option<TlsSettings>,
}

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
}

/// `[backends]` and the pool from `config.json`.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// The file the pool was read from, and where the backends API writes it back; `None` when
    /// the pool was given in code ([`Settings::with_pool`]): changes then live in memory only.
    pub file: Option<PathBuf>,
    /// The pool at start, in file order, named and numbered; never empty.
    pub pool: Vec<PoolEntry>,
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

/// `[cluster]`.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `None`: a single instance (SQLite alone); else the client for `cluster.redis_url` (the
    /// URL is checked; nothing is connected yet).
    pub redis: Option<redis::Client>,
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

/// Reads, overlays and validates everything; the caller turns an error into exit code 2.
pub fn load(options: &LoadOptions) -> Result<Settings, ConfigError> {
    let (mut raw, settings_file) = read_raw(options.settings_path.as_deref())?;
    raw.simulation.enabled |= options.simulate;
    let base_dir = settings_file
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let origin = settings_file
        .as_deref()
        .map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
    let backends_file = match &options.backends_path {
        Some(path) => path.clone(),
        None => base_dir.join(&raw.backends.file),
    };
    let pool = PoolFile::new(backends_file.clone()).load_pool()?;
    Settings::from_raw(raw, &origin, &base_dir, Some(backends_file), pool)
}

/// Layers the settings file (if any) and the environment into a [`RawSettings`].
fn read_raw(explicit: Option<&Path>) -> Result<(RawSettings, Option<PathBuf>), ConfigError> {
    let file = match explicit {
        Some(path) if !path.is_file() => {
            return Err(ConfigError::Unreadable {
                file: path.to_path_buf(),
                reason: "no such file".to_owned(),
            })
        }
        Some(path) => Some(path.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_SETTINGS_FILE)).filter(|p| p.is_file()),
    };
    let mut builder = config::Config::builder();
    if let Some(path) = &file {
        builder = builder.add_source(
            config::File::from(path.as_path())
                .format(config::FileFormat::Toml)
                .required(true),
        );
    }
    let environment = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("rate_limit.trusted_proxies");
    let origin = file.as_deref().map_or_else(
        || format!("{ENV_PREFIX}__* environment"),
        |p| format!("{} (or {ENV_PREFIX}__* environment)", p.display()),
    );
    let malformed = |err: config::ConfigError| ConfigError::Malformed {
        origin: origin.clone(),
        reason: one_line(&err.to_string()),
    };
    let raw = builder
        .add_source(environment)
        .build()
        .map_err(malformed)?
        .try_deserialize::<RawSettings>()
        .map_err(malformed)?;
    Ok((raw, file))
}

/// Folds a multi-line parser message (TOML errors draw a source excerpt) into one line,
/// leaving out the excerpt.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('|'))
        .filter(|line| !is_excerpt_line(line))
        .collect::<Vec<_>>()
        .join(": ")
}

/// `12 | key = value`: a numbered source line of a parser's excerpt.
fn is_excerpt_line(line: &str) -> bool {
    line.split_once(" | ")
        .is_some_and(|(n, _)| n.trim().parse::<u32>().is_ok())
}

impl Settings {
    /// Validates `raw`; `origin` names the settings file in messages, `base_dir` anchors its
    /// relative paths, and `pool` is the already-loaded `config.json`.
    pub fn from_raw(
        raw: RawSettings,
        origin: &str,
        base_dir: &Path,
        backends_file: Option<PathBuf>,
        pool: Vec<PoolEntry>,
    ) -> Result<Self, ConfigError> {
        let check = Checker { origin };
        let server = &raw.server;
        let backends = &raw.backends;
        let health = &raw.health;
        let limits = &raw.rate_limit;
        let simulation = simulation(&check, &raw.simulation, &pool)?;
        let cluster = cluster(&check, &raw.cluster)?;
        let tls = tls(&check, &raw.tls, base_dir)?;
        Ok(Self {
            server: ServerSettings {
                listen: check.socket_addr("server.listen", &server.listen)?,
                workers: match server.workers {
                    0 => std::thread::available_parallelism().map_or(1, usize::from),
                    n => check.at_most("server.workers", n, 1024)? as usize,
                },
                shutdown_timeout: Duration::from_secs(server.shutdown_timeout_secs),
                client_request_timeout: check.nonzero_ms(
                    "server.client_request_timeout_ms",
                    server.client_request_timeout_ms,
                )?,
                keep_alive: (server.keep_alive_secs > 0)
                    .then(|| Duration::from_secs(server.keep_alive_secs)),
                send_timeout: check.nonzero_ms("server.send_timeout_ms", server.send_timeout_ms)?,
                // A week at most: far past any sensible idle time, and instants stay in range.
                tunnel_idle_timeout: check.nonzero_secs(
                    "server.tunnel_idle_timeout_secs",
                    check.at_most(
                        "server.tunnel_idle_timeout_secs",
                        server.tunnel_idle_timeout_secs,
                        7 * 24 * 3600,
                    )?,
                )?,
            },
            backends: BackendSettings {
                file: backends_file,
                pool,
                strategy: backends
                    .strategy
                    .parse()
                    .map_err(|e| check.invalid("backends.strategy", e))?,
                watch: backends.watch,
                connect_timeout: check
                    .nonzero_ms("backends.connect_timeout_ms", backends.connect_timeout_ms)?,
                response_timeout: check
                    .nonzero_ms("backends.response_timeout_ms", backends.response_timeout_ms)?,
                retries: check.at_most("backends.retries", backends.retries.into(), 100)? as u32,
                retry_body_limit_bytes: check.at_most(
                    "backends.retry_body_limit_bytes",
                    backends.retry_body_limit_bytes,
                    16 * 1024 * 1024,
                )?,
                max_request_body_bytes: (backends.max_request_body_bytes > 0)
                    .then_some(backends.max_request_body_bytes),
                ca_file: ca_file(&check, &backends.ca_file, base_dir)?,
                tls_verify: backends.tls_verify,
            },
            health: HealthSettings {
                interval: check.nonzero_ms("health.interval_ms", health.interval_ms)?,
                timeout: check.nonzero_ms("health.timeout_ms", health.timeout_ms)?,
                path: check.path("health.path", &health.path)?,
                healthy_threshold: check
                    .nonzero("health.healthy_threshold", health.healthy_threshold)?,
                unhealthy_threshold: check
                    .nonzero("health.unhealthy_threshold", health.unhealthy_threshold)?,
                passive_failures: check
                    .nonzero("health.passive_failures", health.passive_failures)?,
            },
            rate_limit: RateLimitSettings {
                enabled: limits.enabled,
                default_capacity: check
                    .capacity("rate_limit.default_capacity", limits.default_capacity)?,
                default_rate_per_sec: check.rate(
                    "rate_limit.default_rate_per_sec",
                    limits.default_rate_per_sec,
                )?,
                api_key_header: HeaderName::try_from(limits.api_key_header.as_str()).map_err(
                    |_| {
                        check.invalid(
                            "rate_limit.api_key_header",
                            format!("{:?} is not a valid header name", limits.api_key_header),
                        )
                    },
                )?,
                trusted_proxies: limits
                    .trusted_proxies
                    .iter()
                    .map(|text| {
                        text.parse()
                            .map_err(|e| check.invalid("rate_limit.trusted_proxies", e))
                    })
                    .collect::<Result<_, _>>()?,
                max_tracked_clients: (limits.max_tracked_clients > 0)
                    .then_some(limits.max_tracked_clients)
                    .ok_or_else(|| {
                        check.invalid("rate_limit.max_tracked_clients", "must be at least 1")
                    })?,
            },
            persistence: PersistenceSettings {
                path: check.file_path("persistence.path", &raw.persistence.path, base_dir)?,
                flush_interval: check.nonzero_ms(
                    "persistence.flush_interval_ms",
                    raw.persistence.flush_interval_ms,
                )?,
            },
            admin: AdminSettings {
                token: Some(raw.admin.token.trim().to_owned()).filter(|t| !t.is_empty()),
            },
            simulation,
            cluster,
            tls,
        })
    }

    /// The shipped defaults around a given pool (weight 1 each, no pool file: API changes live
    /// in memory only), with simulation off (the pool may be anywhere): the starting point for
    /// tests and embedders.
    pub fn with_pool(pool: Vec<Backend>) -> Self {
        let mut raw = RawSettings::default();
        raw.simulation.enabled = false;
        let pool = pool.into_iter().map(PoolEntry::new).collect();
        Self::from_raw(raw, "defaults", Path::new(""), None, pool)
            .expect("the shipped defaults are valid")
    }
}

/// The simulation's plan; with simulation on, every backend must be on this machine.
fn simulation(
    check: &Checker,
    raw: &raw::RawSimulation,
    pool: &[PoolEntry],
) -> Result<SimulationSettings, ConfigError> {
    let mean = |key: &str, secs: f64| {
        if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(check.invalid(
                key,
                format!("{secs} must be a number of seconds > 0 and <= 86400"),
            ))
        }
    };
    let modes = raw
        .modes
        .iter()
        .map(|m| {
            m.parse::<FaultMode>()
                .map_err(|e| check.invalid("simulation.modes", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if modes.is_empty() {
        return Err(check.invalid(
            "simulation.modes",
            "list at least one of refuse, error, hang",
        ));
    }
    if raw.enabled {
        if let Some(secure) = pool.iter().map(|entry| &entry.backend).find(|b| b.tls) {
            let problem = format!(
                "backends[{}] {} is https://, and simulated backends speak plain HTTP; \
                 set simulation.enabled = false to use real backends",
                secure.id, secure.url
            );
            return Err(check.invalid("simulation.enabled", problem));
        }
        let remote = pool
            .iter()
            .map(|entry| &entry.backend)
            .find(|b| !is_loopback_authority(b.authority.as_str()));
        if let Some(remote) = remote {
            let problem = format!(
                "backends[{}] {} is not a loopback address, and simulated backends run on this machine; \
                 set simulation.enabled = false to use real backends",
                remote.id, remote.url
            );
            return Err(check.invalid("simulation.enabled", problem));
        }
    }
    Ok(SimulationSettings {
        enabled: raw.enabled,
        plan: FaultPlan {
            mean_up: mean("simulation.mean_up_secs", raw.mean_up_secs)?,
            mean_down: mean("simulation.mean_down_secs", raw.mean_down_secs)?,
            modes,
            allow_total_outage: raw.allow_total_outage,
        },
        seed: (raw.seed != 0).then_some(raw.seed),
    })
}

/// `backends.ca_file`: empty = none; else a readable PEM file with at least one certificate.
fn ca_file(check: &Checker, text: &str, base_dir: &Path) -> Result<Option<PathBuf>, ConfigError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let path = base_dir.join(text);
    certs::load_roots(&path).map_err(|err| check.invalid("backends.ca_file", err))?;
    Ok(Some(path))
}

/// The TLS section: with `listen` set, `cert` and `key` must name a certificate chain and its
/// private key; each problem names the key and the file.
fn tls(
    check: &Checker,
    raw: &raw::RawTls,
    base_dir: &Path,
) -> Result<Option<TlsSettings>, ConfigError> {
    if raw.listen.trim().is_empty() {
        return Ok(None);
    }
    let listen = check.socket_addr("tls.listen", &raw.listen)?;
    let cert = check.file_path("tls.cert", &raw.cert, base_dir)?;
    let key = check.file_path("tls.key", &raw.key, base_dir)?;
    let certified = certs::load(&cert, &key).map_err(|err| {
        let which = if err.file == cert {
            "tls.cert"
        } else {
            "tls.key"
        };
        check.invalid(which, err)
    })?;
    Ok(Some(TlsSettings {
        listen,
        cert,
        key,
        certified,
    }))
}

/// The cluster section; a malformed Redis URL is a configuration error, an unreachable Redis
/// is not (the instance starts and joins when Redis appears).
fn cluster(check: &Checker, raw: &raw::RawCluster) -> Result<ClusterSettings, ConfigError> {
    let url = raw.redis_url.trim();
    let redis = if url.is_empty() {
        None
    } else {
        Some(redis::Client::open(url).map_err(|e| {
            check.invalid(
                "cluster.redis_url",
                format!("{url:?} is not a Redis URL: {e}"),
            )
        })?)
    };
    let on_redis_down = match raw.on_redis_down.as_str() {
        "local" => OnRedisDown::Local,
        "allow" => OnRedisDown::Allow,
        "deny" => OnRedisDown::Deny,
        other => {
            return Err(check.invalid(
                "cluster.on_redis_down",
                format!("{other:?} is not one of \"local\", \"allow\", \"deny\""),
            ))
        }
    };
    if raw.key_prefix.is_empty() {
        return Err(check.invalid(
            "cluster.key_prefix",
            "must not be empty (every key of this balancer carries it)",
        ));
    }
    let name = raw.instance_name.trim();
    Ok(ClusterSettings {
        redis,
        key_prefix: raw.key_prefix.clone(),
        lease: Duration::from_millis(check.at_most("cluster.lease_ms", raw.lease_ms, 10_000)?),
        on_redis_down,
        redis_timeout: check.nonzero_ms("cluster.redis_timeout_ms", raw.redis_timeout_ms)?,
        instance_name: (!name.is_empty()).then(|| name.to_owned()),
    })
}

#[cfg(test)]
mod tests;

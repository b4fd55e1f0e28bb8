//! Validation of each raw section into its typed settings: every value checked once, every
//! failure a [`ConfigError`] naming the key ([`Checker`]).

use std::path::Path;
use std::time::Duration;

use actix_web::http::header::HeaderName;
use actix_web::http::Uri;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::{
    RawAdmin, RawLog, RawPersistence, RawRateLimit, RawServer, RawSimulation, RawTls, RawTracing,
};
use super::typed::{
    AccessFormat, AdminSettings, LogSettings, PersistenceSettings, RateLimitSettings,
    ServerSettings, SimulationSettings, TlsSettings, TracingSettings,
};
use crate::backend::DEFAULT_POOL;
use crate::certs;
use crate::discovery::NamedPool;
use crate::fault::{FaultMode, FaultPlan};
use crate::net::is_loopback_authority;

/// `[server]`.
pub fn server(check: &Checker, server: &RawServer) -> Result<ServerSettings, ConfigError> {
    Ok(ServerSettings {
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
        max_connections: check
            .nonzero(
                "server.max_connections",
                check.at_most("server.max_connections", server.max_connections, 10_000_000)? as u32,
            )?
            .get() as usize,
    })
}

/// `[rate_limit]`.
pub fn rate_limit(
    check: &Checker,
    limits: &RawRateLimit,
) -> Result<RateLimitSettings, ConfigError> {
    let api_key_header = HeaderName::try_from(limits.api_key_header.as_str()).map_err(|_| {
        check.invalid(
            "rate_limit.api_key_header",
            format!("{:?} is not a valid header name", limits.api_key_header),
        )
    })?;
    let trusted_proxies = limits
        .trusted_proxies
        .iter()
        .map(|text| {
            text.parse()
                .map_err(|e| check.invalid("rate_limit.trusted_proxies", e))
        })
        .collect::<Result<_, _>>()?;
    Ok(RateLimitSettings {
        enabled: limits.enabled,
        default_capacity: check.capacity("rate_limit.default_capacity", limits.default_capacity)?,
        default_rate_per_sec: check.rate(
            "rate_limit.default_rate_per_sec",
            limits.default_rate_per_sec,
        )?,
        api_key_header,
        trusted_proxies,
        max_tracked_clients: (limits.max_tracked_clients > 0)
            .then_some(limits.max_tracked_clients)
            .ok_or_else(|| check.invalid("rate_limit.max_tracked_clients", "must be at least 1"))?,
    })
}

/// `[persistence]`.
pub fn persistence(
    check: &Checker,
    persistence: &RawPersistence,
    base_dir: &Path,
) -> Result<PersistenceSettings, ConfigError> {
    Ok(PersistenceSettings {
        path: check.file_path("persistence.path", &persistence.path, base_dir)?,
        flush_interval: check.nonzero_ms(
            "persistence.flush_interval_ms",
            persistence.flush_interval_ms,
        )?,
    })
}

/// `[log]`: the access log's format and where it goes (a relative path is next to the
/// settings file).
pub fn log(check: &Checker, raw: &RawLog, base_dir: &Path) -> Result<LogSettings, ConfigError> {
    let access = match raw.access.as_str() {
        "text" => AccessFormat::Text,
        "json" => AccessFormat::Json,
        "off" => AccessFormat::Off,
        other => {
            return Err(check.invalid(
                "log.access",
                format!("{other:?} is not one of \"text\", \"json\", \"off\""),
            ))
        }
    };
    let access_path = (!raw.access_path.trim().is_empty())
        .then(|| check.file_path("log.access_path", &raw.access_path, base_dir))
        .transpose()?;
    Ok(LogSettings {
        access,
        access_path,
    })
}

/// `[tracing]`: `None` without an endpoint (tracing off).
pub fn tracing(check: &Checker, raw: &RawTracing) -> Result<Option<TracingSettings>, ConfigError> {
    let endpoint = raw.otlp_endpoint.trim();
    if endpoint.is_empty() {
        return Ok(None);
    }
    let uri: Uri = endpoint.parse().map_err(|err| {
        check.invalid(
            "tracing.otlp_endpoint",
            format!("{endpoint:?} is not a URL: {err}"),
        )
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(check.invalid(
            "tracing.otlp_endpoint",
            format!("{endpoint:?} is not an http:// or https:// URL with a host"),
        ));
    }
    if !(0.0..=1.0).contains(&raw.sample_ratio) {
        return Err(check.invalid(
            "tracing.sample_ratio",
            format!("{} is not between 0 and 1", raw.sample_ratio),
        ));
    }
    let service_name = raw.service_name.trim();
    if service_name.is_empty() {
        return Err(check.invalid("tracing.service_name", "must not be empty"));
    }
    Ok(Some(TracingSettings {
        otlp_endpoint: endpoint.to_owned(),
        sample_ratio: raw.sample_ratio,
        service_name: service_name.to_owned(),
    }))
}

/// `[admin]`: an empty token is none.
pub fn admin(admin: &RawAdmin) -> AdminSettings {
    AdminSettings {
        token: Some(admin.token.trim().to_owned()).filter(|t| !t.is_empty()),
    }
}

/// The simulation's plan; with simulation on, every backend must be on this machine.
pub fn simulation(
    check: &Checker,
    raw: &RawSimulation,
    pools: &[NamedPool],
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
        simulable(check, pools)?;
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

/// With simulation on, every backend must be one this process can serve: plain HTTP on
/// loopback. A backend is named by its path in the pool file (`pools.api.backends[0]`).
fn simulable(check: &Checker, pools: &[NamedPool]) -> Result<(), ConfigError> {
    for pool in pools {
        let path = if pool.name == DEFAULT_POOL {
            "backends".to_owned()
        } else {
            format!("pools.{}.backends", pool.name)
        };
        if let Some(entry) = pool.dns.first() {
            let problem = format!(
                "{path}[{}] {} is found by DNS, and simulated backends run on this machine; set simulation.enabled = false to use real backends",
                entry.position, entry.spec.url
            );
            return Err(check.invalid("simulation.enabled", problem));
        }
        for (index, entry) in pool.entries.iter().enumerate() {
            let backend = &entry.backend;
            let problem = if backend.tls {
                "is https://, and simulated backends speak plain HTTP"
            } else if !is_loopback_authority(backend.authority.as_str()) {
                "is not a loopback address, and simulated backends run on this machine"
            } else {
                continue;
            };
            let problem = format!(
                "{path}[{index}] {} {problem}; set simulation.enabled = false to use real backends",
                backend.url
            );
            return Err(check.invalid("simulation.enabled", problem));
        }
    }
    Ok(())
}

/// The TLS section: with `listen` set, `cert` and `key` must name a certificate chain and its
/// private key; each problem names the key and the file.
pub fn tls(
    check: &Checker,
    raw: &RawTls,
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

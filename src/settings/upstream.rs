//! Validation of the sections about reaching backends: `[backends]` (timeouts, retries, limits,
//! the queue, trust roots) and `[health]` (probes, passive and outlier ejection, slow start).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::{RawBackends, RawHealth};
use super::typed::{BackendSettings, HealthSettings};
use crate::backend::MAX_CONNECTIONS;
use crate::certs;
use crate::discovery::NamedTopology;

/// `[backends]`, around the pool read from `file`.
pub fn backends(
    check: &Checker,
    backends: &RawBackends,
    base_dir: &Path,
    file: Option<PathBuf>,
    topology: NamedTopology,
) -> Result<BackendSettings, ConfigError> {
    Ok(BackendSettings {
        file,
        topology,
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
        ca_file: ca_file(check, &backends.ca_file, base_dir)?,
        tls_verify: backends.tls_verify,
        max_connections: check.at_most(
            "backends.max_connections",
            backends.max_connections.into(),
            MAX_CONNECTIONS.into(),
        )? as u32,
        queue_size: check.at_most("backends.queue_size", backends.queue_size.into(), 1_000_000)?
            as usize,
        queue_timeout: check.nonzero_ms(
            "backends.queue_timeout_ms",
            check.at_most(
                "backends.queue_timeout_ms",
                backends.queue_timeout_ms,
                3_600_000,
            )?,
        )?,
        retry_budget_percent: check.at_most(
            "backends.retry_budget_percent",
            backends.retry_budget_percent.into(),
            100,
        )? as u32,
        dns_refresh: check.nonzero_secs(
            "backends.dns_refresh_secs",
            check.at_most(
                "backends.dns_refresh_secs",
                backends.dns_refresh_secs,
                86_400,
            )?,
        )?,
        dns_servers: backends
            .dns_servers
            .iter()
            .map(|text| dns_server(check, text))
            .collect::<Result<_, _>>()?,
    })
}

/// A resolver of `backends.dns_servers`: `ip:port`, or an `ip` (port 53); never a name, which
/// would need a resolver itself.
fn dns_server(check: &Checker, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| {
            let problem = format!("{text:?} is not an ip:port address of a DNS server");
            check.invalid("backends.dns_servers", problem)
        })
}

/// `[health]`.
pub fn health(check: &Checker, health: &RawHealth) -> Result<HealthSettings, ConfigError> {
    Ok(HealthSettings {
        interval: check.nonzero_ms("health.interval_ms", health.interval_ms)?,
        timeout: check.nonzero_ms("health.timeout_ms", health.timeout_ms)?,
        path: check.path("health.path", &health.path)?,
        healthy_threshold: check.nonzero("health.healthy_threshold", health.healthy_threshold)?,
        unhealthy_threshold: check
            .nonzero("health.unhealthy_threshold", health.unhealthy_threshold)?,
        passive_failures: check.nonzero("health.passive_failures", health.passive_failures)?,
        eject_consecutive_5xx: NonZeroU32::new(health.eject_consecutive_5xx),
        eject_base: check.nonzero_secs(
            "health.eject_base_secs",
            check.at_most("health.eject_base_secs", health.eject_base_secs, 86_400)?,
        )?,
        eject_max: eject_max(check, health)?,
        max_ejected_percent: check.at_most(
            "health.max_ejected_percent",
            health.max_ejected_percent.into(),
            100,
        )? as u32,
        slow_start: (health.slow_start_secs > 0)
            .then(|| check.at_most("health.slow_start_secs", health.slow_start_secs, 3600))
            .transpose()?
            .map(Duration::from_secs),
    })
}

/// `health.eject_max_secs`: at least the base, at most a day.
fn eject_max(check: &Checker, health: &RawHealth) -> Result<Duration, ConfigError> {
    let max = check.at_most("health.eject_max_secs", health.eject_max_secs, 86_400)?;
    if max < health.eject_base_secs {
        return Err(check.invalid(
            "health.eject_max_secs",
            format!(
                "{max} is below health.eject_base_secs ({})",
                health.eject_base_secs
            ),
        ));
    }
    Ok(Duration::from_secs(max))
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

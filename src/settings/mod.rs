//! Settings: `Settings.toml` (via the `config` crate) overlaid with `LB__SECTION__KEY`
//! environment variables ([`read`]), validated once ([`sections`]) into typed values
//! ([`typed`]) so that an invalid value cannot be represented past start-up. The pool at start comes from `config.json`, read through
//! [`crate::discovery`].
//! Every failure is a [`ConfigError`] naming the file (or variable), the key and the problem.

mod checker;
mod cluster;
mod error;
mod raw;
mod read;
mod sections;
mod typed;
mod upstream;

use std::path::{Path, PathBuf};

use crate::backend::{Backend, PoolEntry};
pub use crate::certs::load as load_certificate;
use crate::discovery::{NamedPool, NamedTopology, PoolFile};
use checker::Checker;
pub use checker::ENV_PREFIX;
pub use error::ConfigError;
pub use raw::RawSettings;
pub use read::DEFAULT_SETTINGS_FILE;
pub use typed::{
    AccessFormat, AdminSettings, BackendSettings, ClusterSettings, HealthSettings, LogSettings,
    OnRedisDown, PersistenceSettings, RateLimitSettings, RedisTopology, ServerSettings,
    SimulationSettings, TlsSettings, TracingSettings,
};

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
    pub log: LogSettings,
    /// `None`: tracing off.
    pub tracing: Option<TracingSettings>,
    pub simulation: SimulationSettings,
    pub cluster: ClusterSettings,
    /// `None`: no TLS listener.
    pub tls: Option<TlsSettings>,
}

/// Reads, overlays and validates everything; the caller turns an error into exit code 2.
pub fn load(options: &LoadOptions) -> Result<Settings, ConfigError> {
    let (mut raw, settings_file) = read::read_raw(options.settings_path.as_deref())?;
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
    let topology = PoolFile::new(backends_file.clone()).load_named()?;
    Settings::from_raw(raw, &origin, &base_dir, Some(backends_file), topology)
}

impl Settings {
    /// Validates `raw`; `origin` names the settings file in messages, `base_dir` anchors its
    /// relative paths, and `topology` is the already-loaded `config.json`.
    pub fn from_raw(
        raw: RawSettings,
        origin: &str,
        base_dir: &Path,
        backends_file: Option<PathBuf>,
        topology: NamedTopology,
    ) -> Result<Self, ConfigError> {
        let check = Checker { origin };
        let simulation = sections::simulation(&check, &raw.simulation, &topology.pools)?;
        let cluster = cluster::cluster(&check, &raw.cluster)?;
        let tls = sections::tls(&check, &raw.tls, base_dir)?;
        Ok(Self {
            server: sections::server(&check, &raw.server)?,
            backends: upstream::backends(&check, &raw.backends, base_dir, backends_file, topology)?,
            health: upstream::health(&check, &raw.health)?,
            rate_limit: sections::rate_limit(&check, &raw.rate_limit)?,
            persistence: sections::persistence(&check, &raw.persistence, base_dir)?,
            admin: sections::admin(&raw.admin),
            log: sections::log(&check, &raw.log, base_dir)?,
            tracing: sections::tracing(&check, &raw.tracing)?,
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
        let topology = NamedTopology {
            pools: vec![NamedPool::default_of(
                pool.into_iter().map(PoolEntry::new).collect(),
            )],
            routes: Vec::new(),
        };
        Self::from_raw(raw, "defaults", Path::new(""), None, topology)
            .expect("the shipped defaults are valid")
    }
}

#[cfg(test)]
mod tests;

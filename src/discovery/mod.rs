//! Discovery: which pools and backends exist and how requests are routed to them. Today that is
//! the pool file, `config.json`, and everything done with it happens here: reading and
//! validating it as a whole ([`PoolFile::load`]), writing it back after an API change
//! ([`PoolFile::write`]) and watching it for edits ([`PoolFile::watch`]). The settings read it
//! once at start; the registry consumes it at run time and decides what a change means for the
//! running pools. Health is not its business.

pub mod dns;
mod names;
mod parse;
mod topology;
mod watch;
mod write;

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::route::RouteEntry;

pub use names::fill_names;
pub use parse::{check_routes, parse, parse_pool, parse_pool_settings, resolve};
pub use topology::{DnsEntry, NamedPool, NamedTopology, PoolSettings, PoolSpec, Topology};
pub use watch::FileWatch;
pub use write::{render, FileEntry, FilePool};

/// Why the pool file could not be used; each renders as one line naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolFileError {
    /// The file cannot be read.
    #[error("{}: cannot read: {reason}", file.display())]
    Unreadable { file: PathBuf, reason: String },
    /// The file is not a valid pool: `key` names the entry (`backends[1].weight`).
    #[error("{}: {key}: {problem}", file.display())]
    Invalid {
        file: PathBuf,
        key: String,
        problem: String,
    },
}

/// The pool file at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFile {
    path: PathBuf,
}

impl PoolFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Reads and validates the file. Blocking.
    pub fn load(&self) -> Result<Topology, PoolFileError> {
        let text = fs::read_to_string(&self.path).map_err(|err| PoolFileError::Unreadable {
            file: self.path.clone(),
            reason: err.to_string(),
        })?;
        parse(&text).map_err(|(key, problem)| self.invalid(key, problem))
    }

    /// Reads the file for the start: validated, backends named and numbered in file order.
    /// Blocking.
    pub fn load_named(&self) -> Result<NamedTopology, PoolFileError> {
        let topology = self.load()?;
        let pools = resolve(topology.pools).map_err(|(key, problem)| self.invalid(key, problem))?;
        Ok(NamedTopology {
            pools,
            routes: topology.routes,
        })
    }

    /// The error for `key` of this file.
    pub fn invalid(&self, key: String, problem: String) -> PoolFileError {
        PoolFileError::Invalid {
            file: self.path.clone(),
            key,
            problem,
        }
    }

    /// Replaces the file with `pools` and `routes`, atomically (see [`write`]). Blocking.
    pub fn write(&self, pools: &[FilePool], routes: &[RouteEntry]) -> io::Result<()> {
        write::write_atomically(&self.path, &write::render(pools, routes))
    }

    /// Replaces the file with `text` (another instance's, already validated), atomically.
    /// Blocking.
    pub fn replace(&self, text: &str) -> io::Result<()> {
        write::write_atomically(&self.path, text)
    }

    /// Calls `touched` (on the watch's thread) whenever the file may have changed, until the
    /// returned watch is dropped.
    pub fn watch(&self, touched: impl Fn() + Send + 'static) -> notify::Result<FileWatch> {
        FileWatch::start(&self.path, touched)
    }
}

impl std::fmt::Display for PoolFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.path.display().fmt(f)
    }
}

//! Discovery: which backends exist. Today that is the pool file, `config.json`, and everything
//! done with it happens here: reading and validating it ([`PoolFile::load`]), writing it back
//! after an API change ([`PoolFile::write`]) and watching it for edits ([`PoolFile::watch`]). The
//! settings read it once at start; the registry consumes it at run time and decides what a
//! change means for the running pool. Health is not its business.

mod parse;
mod watch;
mod write;

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::backend::{BackendSpec, PoolEntry};
pub use parse::{parse_pool, resolve};
pub use watch::FileWatch;
pub use write::FileEntry;

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
    pub fn load(&self) -> Result<Vec<BackendSpec>, PoolFileError> {
        let text = fs::read_to_string(&self.path).map_err(|err| PoolFileError::Unreadable {
            file: self.path.clone(),
            reason: err.to_string(),
        })?;
        parse_pool(&text).map_err(|(key, problem)| self.invalid(key, problem))
    }

    /// Reads the file for the start: validated, named, numbered in file order. Blocking.
    pub fn load_pool(&self) -> Result<Vec<PoolEntry>, PoolFileError> {
        resolve(self.load()?).map_err(|(key, problem)| self.invalid(key, problem))
    }

    /// The error for `key` of this file.
    pub fn invalid(&self, key: String, problem: String) -> PoolFileError {
        PoolFileError::Invalid {
            file: self.path.clone(),
            key,
            problem,
        }
    }

    /// Replaces the file with `entries`, atomically (see [`write`]). Blocking.
    pub fn write(&self, entries: &[FileEntry]) -> io::Result<()> {
        write::write_atomically(&self.path, &write::render(entries))
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

//! The one error type of loading the configuration.

use std::path::PathBuf;

use crate::discovery::PoolFileError;

/// Anything wrong with the configuration; each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file that must exist cannot be read.
    #[error("{}: cannot read: {reason}", file.display())]
    Unreadable { file: PathBuf, reason: String },
    /// A file (or the environment) is not well-formed, or a key is unknown or of the wrong type.
    #[error("{origin}: {reason}")]
    Malformed { origin: String, reason: String },
    /// A key parsed but its value is not acceptable.
    #[error("{origin}: {key}: {problem}")]
    Invalid {
        origin: String,
        key: String,
        problem: String,
    },
}

impl From<PoolFileError> for ConfigError {
    fn from(err: PoolFileError) -> Self {
        match err {
            PoolFileError::Unreadable { file, reason } => Self::Unreadable { file, reason },
            PoolFileError::Invalid { file, key, problem } => Self::Invalid {
                origin: file.display().to_string(),
                key,
                problem,
            },
        }
    }
}

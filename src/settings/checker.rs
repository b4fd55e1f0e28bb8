//! Checks of single values while raw settings are validated: each failure is a
//! [`ConfigError::Invalid`] naming the key and where it came from (the file, or the
//! environment variable that set it).

use std::env;
use std::fmt::Display;
use std::net::{SocketAddr, ToSocketAddrs};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::ConfigError;

/// Prefix of environment overrides: `LB__SERVER__LISTEN` sets `server.listen`.
pub const ENV_PREFIX: &str = "LB";

/// Builds [`ConfigError::Invalid`] values that name where a key came from.
pub(super) struct Checker<'a> {
    /// The settings file's name, used unless the key was set from the environment.
    pub origin: &'a str,
}

impl Checker<'_> {
    pub fn invalid(&self, key: &str, problem: impl Display) -> ConfigError {
        let var = format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase());
        let origin = if env::var_os(&var).is_some() {
            format!("environment variable {var}")
        } else {
            self.origin.to_owned()
        };
        ConfigError::Invalid {
            origin,
            key: key.to_owned(),
            problem: problem.to_string(),
        }
    }

    pub fn socket_addr(&self, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        text.to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| self.invalid(key, format!("{text:?} is not a host:port address")))
    }

    pub fn nonzero_ms(&self, key: &str, ms: u64) -> Result<Duration, ConfigError> {
        match ms {
            0 => Err(self.invalid(key, "must be greater than 0")),
            ms => Ok(Duration::from_millis(ms)),
        }
    }

    pub fn nonzero_secs(&self, key: &str, secs: u64) -> Result<Duration, ConfigError> {
        match secs {
            0 => Err(self.invalid(key, "must be greater than 0")),
            secs => Ok(Duration::from_secs(secs)),
        }
    }

    pub fn nonzero(&self, key: &str, n: u32) -> Result<NonZeroU32, ConfigError> {
        NonZeroU32::new(n).ok_or_else(|| self.invalid(key, "must be at least 1"))
    }

    pub fn at_most(&self, key: &str, n: u64, max: u64) -> Result<u64, ConfigError> {
        if n <= max {
            Ok(n)
        } else {
            Err(self.invalid(key, format!("{n} is more than the maximum {max}")))
        }
    }

    pub fn capacity(&self, key: &str, n: u64) -> Result<u64, ConfigError> {
        match n {
            0 => Err(self.invalid(key, "must be at least 1")),
            n => self.at_most(key, n, 1_000_000_000),
        }
    }

    pub fn rate(&self, key: &str, rate: f64) -> Result<f64, ConfigError> {
        if rate.is_finite() && rate > 0.0 && rate <= 1e9 {
            Ok(rate)
        } else {
            Err(self.invalid(key, format!("{rate} must be a number > 0 and <= 1e9")))
        }
    }

    pub fn path(&self, key: &str, text: &str) -> Result<String, ConfigError> {
        let ok = text.starts_with('/') && text.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(text.to_owned())
        } else {
            Err(self.invalid(
                key,
                format!("{text:?} must be an absolute path like \"/health\""),
            ))
        }
    }

    pub fn file_path(
        &self,
        key: &str,
        text: &str,
        base_dir: &Path,
    ) -> Result<PathBuf, ConfigError> {
        if text.trim().is_empty() {
            Err(self.invalid(key, "must not be empty"))
        } else {
            Ok(base_dir.join(text))
        }
    }
}

//! Reading the settings: `Settings.toml` (through the `config` crate) overlaid with
//! `LB__SECTION__KEY` environment variables, into the raw structs.

use std::path::{Path, PathBuf};

use super::checker::ENV_PREFIX;
use super::error::ConfigError;
use super::raw::RawSettings;

/// Name of the settings file looked for in the working directory when none is given.
pub const DEFAULT_SETTINGS_FILE: &str = "Settings.toml";

/// Layers the settings file (if any) and the environment into a [`RawSettings`].
pub fn read_raw(explicit: Option<&Path>) -> Result<(RawSettings, Option<PathBuf>), ConfigError> {
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

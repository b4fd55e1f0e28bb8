//! Command-line arguments: `loadbalancer [--settings PATH] [--backends PATH] [--simulate]
//! [--check]`, and the summary `--check` prints.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::settings::{LoadOptions, Settings};

/// Shown by `--help` and after an argument error.
pub const USAGE: &str = "usage: loadbalancer [--settings PATH] [--backends PATH] [--simulate] [--check]

  --settings PATH   settings file (default: ./Settings.toml if present, else built-in defaults)
  --backends PATH   backend pool file (default: backends.file from the settings)
  --simulate        serve the pool's (loopback) backends in-process and make them fail and recover
  --check           validate the settings and the pool file, print what would run, exit (0 ok, 2 not)
  --help            show this text

Every setting can be overridden as LB__SECTION__KEY, e.g. LB__SERVER__LISTEN=127.0.0.1:18080.";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(LoadOptions),
    /// Validate and describe, serve nothing.
    Check(LoadOptions),
    Help,
}

/// Parses the arguments after the program name; an error is a one-line message.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut options = LoadOptions::default();
    let mut check = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        let (flag, inline) = match text.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(PathBuf::from(value))),
            None => (text.into_owned(), None),
        };
        let slot = match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--simulate" if inline.is_none() => {
                options.simulate = true;
                continue;
            }
            "--check" if inline.is_none() => {
                check = true;
                continue;
            }
            "--settings" => &mut options.settings_path,
            "--backends" => &mut options.backends_path,
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        let value = inline
            .or_else(|| args.next().map(PathBuf::from))
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| format!("{flag} needs a PATH"))?;
        *slot = Some(value);
    }
    Ok(if check {
        Command::Check(options)
    } else {
        Command::Run(options)
    })
}

/// What `--check` prints: the settings that matter, resolved, and the pool.
pub fn describe(settings: &Settings) -> String {
    let mut lines = vec![
        format!(
            "listen {} with {} workers; drain grace {} s",
            settings.server.listen,
            settings.server.workers,
            settings.server.shutdown_timeout.as_secs()
        ),
        format!(
            "pool file {}{}; strategy {}",
            settings
                .backends
                .file
                .as_ref()
                .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string()),
            if settings.backends.watch {
                " (watched)"
            } else {
                ""
            },
            settings.backends.strategy
        ),
    ];
    for entry in &settings.backends.pool {
        lines.push(format!(
            "  {} {} weight {}",
            entry.backend.name, entry.backend.url, entry.weight
        ));
    }
    if let Some(tls) = &settings.tls {
        lines.push(format!(
            "TLS on {} with {} (key {})",
            tls.listen,
            tls.cert.display(),
            tls.key.display()
        ));
    }
    let limits = &settings.rate_limit;
    lines.push(if limits.enabled {
        format!(
            "rate limit: capacity {}, {}/s per client; key header {}",
            limits.default_capacity, limits.default_rate_per_sec, limits.api_key_header
        )
    } else {
        "rate limit: off".to_owned()
    });
    lines.push(format!(
        "database {}; admin {}; simulation {}; {}",
        settings.persistence.path.display(),
        if settings.admin.token.is_some() {
            "token set"
        } else {
            "loopback only"
        },
        if settings.simulation.enabled {
            "on"
        } else {
            "off"
        },
        if settings.cluster.redis.is_some() {
            "cluster mode through Redis"
        } else {
            "single instance"
        }
    ));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    /// Both flags, in both spellings, fill the options.
    #[test]
    fn parses_both_flags() {
        let Ok(Command::Run(options)) = parse(args(&["--settings", "a.toml", "--backends=b.json"]))
        else {
            panic!("expected Run");
        };
        assert_eq!(options.settings_path, Some(PathBuf::from("a.toml")));
        assert_eq!(options.backends_path, Some(PathBuf::from("b.json")));
    }

    /// Unknown flags and missing values are errors that name the flag.
    #[test]
    fn rejects_unknown_and_incomplete_arguments() {
        assert!(parse(args(&["--nope"]))
            .expect_err("unknown")
            .contains("--nope"));
        assert!(parse(args(&["--settings"]))
            .expect_err("missing")
            .contains("--settings"));
        assert!(matches!(parse(args(&["--help"])), Ok(Command::Help)));
        assert!(matches!(parse(args(&["--check"])), Ok(Command::Check(_))));
        assert!(parse(args(&["--check=yes"])).is_err());
    }
}

//! Command-line arguments: `loadbalancer [--settings PATH] [--backends PATH] [--simulate]`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::settings::LoadOptions;

/// Shown by `--help` and after an argument error.
pub const USAGE: &str = "usage: loadbalancer [--settings PATH] [--backends PATH] [--simulate]

  --settings PATH   settings file (default: ./Settings.toml if present, else built-in defaults)
  --backends PATH   backend pool file (default: backends.file from the settings)
  --simulate        serve the pool's (loopback) backends in-process and make them fail and recover
  --help            show this text

Every setting can be overridden as LB__SECTION__KEY, e.g. LB__SERVER__LISTEN=127.0.0.1:18080.";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(LoadOptions),
    Help,
}

/// Parses the arguments after the program name; an error is a one-line message.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut options = LoadOptions::default();
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
    Ok(Command::Run(options))
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
    }
}

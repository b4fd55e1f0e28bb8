//! The process's exit codes, in one place (docs/configuration.md lists them for users).

/// A clean shutdown (also `--help`).
pub const CLEAN: u8 = 0;
/// A runtime failure: the listen address in use, a simulated port taken, signal handlers that
/// cannot be installed, or a second signal that cut the drain short.
pub const RUNTIME: u8 = 1;
/// Bad arguments, configuration or database file: the message names the file, key and problem.
pub const CONFIG: u8 = 2;

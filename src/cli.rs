//! Command-line arguments: `loadbalancer [--settings PATH] [--backends PATH] [--simulate]
//! [--check] [--version] [--help]`, parsed with clap, and the summary `--check` prints.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::Parser;

use crate::backend::{HostHeader, DEFAULT_POOL};
use crate::route::RouteSpec;
use crate::routing::in_selection_order;
use crate::settings::{LoadOptions, RedisTopology, Settings};

/// The command's synopsis: the usage line of `--help`, and shown after an argument error.
pub const SYNOPSIS: &str =
    "loadbalancer [--settings PATH] [--backends PATH] [--simulate] [--check] [--version] [--help]";

/// An HTTP load balancer with per-client rate limiting.
#[derive(Debug, Parser)]
#[command(
    name = "loadbalancer",
    version,
    override_usage = SYNOPSIS,
    after_help = "Every setting can be overridden as LB__SECTION__KEY, e.g. LB__SERVER__LISTEN=127.0.0.1:18080."
)]
struct Arguments {
    /// Settings file (default: ./Settings.toml if present, else built-in defaults)
    #[arg(long, value_name = "PATH", value_parser = non_empty_path)]
    settings: Option<PathBuf>,
    /// Backend pool file (default: backends.file from the settings)
    #[arg(long, value_name = "PATH", value_parser = non_empty_path)]
    backends: Option<PathBuf>,
    /// Serve the pool's (loopback) backends in-process and make them fail and recover
    #[arg(long)]
    simulate: bool,
    /// Validate the settings and the pool file, print what would run, exit (0 ok, 2 not)
    #[arg(long)]
    check: bool,
}

fn non_empty_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        Err("a PATH is needed".to_owned())
    } else {
        Ok(PathBuf::from(text))
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(LoadOptions),
    /// Validate and describe, serve nothing.
    Check(LoadOptions),
    /// Print this text to stdout and exit 0 (`--help`, `--version`).
    Print(String),
}

/// Parses the arguments after the program name; an error is a one-line message.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let program = std::iter::once(OsString::from("loadbalancer"));
    let arguments = match Arguments::try_parse_from(program.chain(args)) {
        Ok(arguments) => arguments,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            return Ok(Command::Print(err.to_string().trim_end().to_owned()))
        }
        Err(err) => return Err(first_line(&err.to_string())),
    };
    let options = LoadOptions {
        settings_path: arguments.settings,
        backends_path: arguments.backends,
        simulate: arguments.simulate,
    };
    Ok(if arguments.check {
        Command::Check(options)
    } else {
        Command::Run(options)
    })
}

/// clap's message without its `error: ` label, usage and hints: one line.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message);
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
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
        describe_pool_file(settings),
    ];
    lines.extend(describe_pools(settings));
    lines.extend(describe_routes(settings));
    if let Some(tls) = &settings.tls {
        lines.push(format!(
            "TLS on {} with {} (key {})",
            tls.listen,
            tls.cert.display(),
            tls.key.display()
        ));
    }
    if let Some(tracing) = &settings.tracing {
        lines.push(format!(
            "traces to {} as {:?}, {}% of new traces sampled",
            tracing.otlp_endpoint,
            tracing.service_name,
            tracing.sample_ratio * 100.0
        ));
    }
    lines.push(describe_limits(settings));
    lines.push(describe_resilience(settings));
    lines.push(describe_state(settings));
    lines.join("\n")
}

fn describe_pool_file(settings: &Settings) -> String {
    let backends = &settings.backends;
    let file = backends
        .file
        .as_ref()
        .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string());
    let watched = if backends.watch { " (watched)" } else { "" };
    format!("pool file {file}{watched}; strategy {}", backends.strategy)
}

/// Each pool with its settings in effect, then its backends.
fn describe_pools(settings: &Settings) -> Vec<String> {
    let mut lines = Vec::new();
    for pool in &settings.backends.topology.pools {
        let written = &pool.settings;
        let host = match written.host_header {
            HostHeader::Client => "the client's Host",
            HostHeader::Backend => "the backend's Host",
        };
        let pool_limit = written
            .max_connections
            .unwrap_or(settings.backends.max_connections);
        lines.push(format!(
            "pool {}: {}, probes {}, {host}{}",
            pool.name,
            written.strategy.unwrap_or(settings.backends.strategy),
            written
                .health_path
                .as_deref()
                .unwrap_or(&settings.health.path),
            in_flight_limit(pool_limit),
        ));
        for entry in &pool.entries {
            let own = entry.max_connections.filter(|l| *l != pool_limit);
            lines.push(format!(
                "  {} {} weight {}{}",
                entry.backend.name,
                entry.backend.url,
                entry.weight,
                own.map(in_flight_limit).unwrap_or_default()
            ));
        }
        for entry in &pool.dns {
            let own = entry.spec.max_connections.filter(|l| *l != pool_limit);
            lines.push(format!(
                "  {} {} weight {}{}, a member per address DNS finds (every {} s)",
                entry.name,
                entry.spec.url,
                entry.spec.weight,
                own.map(in_flight_limit).unwrap_or_default(),
                settings.backends.dns_refresh.as_secs()
            ));
        }
    }
    lines
}

/// `, at most N in flight per backend`, or nothing for no limit (0).
fn in_flight_limit(limit: u32) -> String {
    match limit {
        0 => String::new(),
        n => format!(", at most {n} in flight per backend"),
    }
}

/// The queue, the retry budget, outlier ejection and slow start.
fn describe_resilience(settings: &Settings) -> String {
    let (backends, health) = (&settings.backends, &settings.health);
    let queue = match backends.queue_size {
        0 => "no queue for busy backends".to_owned(),
        n => format!(
            "queue of {n} per pool for busy backends, {} ms at most",
            backends.queue_timeout.as_millis()
        ),
    };
    let ejection = match health.eject_consecutive_5xx {
        None => "no outlier ejection".to_owned(),
        Some(n) => format!(
            "ejection after {n} 5xx in a row for {}-{} s, at most {}% of a pool",
            health.eject_base.as_secs(),
            health.eject_max.as_secs(),
            health.max_ejected_percent
        ),
    };
    let slow = health.slow_start.map_or_else(
        || "no slow start".to_owned(),
        |d| format!("slow start over {} s", d.as_secs()),
    );
    format!(
        "{queue}; retries within {}% of requests in flight; {ejection}; {slow}",
        backends.retry_budget_percent
    )
}

/// The routes in the order they are chosen, and where the rest goes.
fn describe_routes(settings: &Settings) -> Vec<String> {
    let topology = &settings.backends.topology;
    if topology.routes.is_empty() {
        return Vec::new();
    }
    let mut lines = vec!["routes, in the order they are chosen:".to_owned()];
    for (place, index) in in_selection_order(&topology.routes).into_iter().enumerate() {
        lines.push(format!(
            "  {}. {}",
            place + 1,
            describe_route(&topology.routes[index])
        ));
    }
    let rest = if topology.pools.iter().any(|p| p.name == DEFAULT_POOL) {
        "pool default"
    } else {
        "404 (there is no default pool)"
    };
    lines.push(format!("  otherwise: {rest}"));
    lines
}

fn describe_route(route: &RouteSpec) -> String {
    let entry = &route.entry;
    let mut parts = Vec::new();
    if !entry.hosts.is_empty() {
        parts.push(format!("hosts {}", entry.hosts.join(", ")));
    }
    if let Some(prefix) = &entry.path_prefix {
        let stripped = if entry.strip_prefix {
            " (stripped)"
        } else {
            ""
        };
        parts.push(format!("path {prefix}{stripped}"));
    }
    if !entry.methods.is_empty() {
        parts.push(format!("methods {}", entry.methods.join(", ")));
    }
    for (name, value) in &entry.headers {
        parts.push(format!("header {name}: {value}"));
    }
    if route.priority != 0 {
        parts.push(format!("priority {}", route.priority));
    }
    let matchers = if parts.is_empty() {
        "every request".to_owned()
    } else {
        parts.join("; ")
    };
    let limits = route.limits.map_or_else(String::new, |l| {
        format!(", its own bucket {} + {}/s", l.capacity, l.rate_per_sec)
    });
    format!(
        "{}: {matchers} -> pool {}; cost {}{limits}",
        route.name, route.pool, route.cost
    )
}

fn describe_limits(settings: &Settings) -> String {
    let limits = &settings.rate_limit;
    if limits.enabled {
        format!(
            "rate limit: capacity {}, {}/s per client; key header {}",
            limits.default_capacity, limits.default_rate_per_sec, limits.api_key_header
        )
    } else {
        "rate limit: off".to_owned()
    }
}

/// Where state lives and who may change it.
fn describe_state(settings: &Settings) -> String {
    let admin = if settings.admin.token.is_some() {
        "token set"
    } else {
        "loopback only"
    };
    let simulation = if settings.simulation.enabled {
        "on"
    } else {
        "off"
    };
    let mode = match &settings.cluster.redis {
        Some(RedisTopology::Sentinel { master_name, .. }) => {
            format!("cluster mode through Redis (master {master_name:?} behind Sentinel)")
        }
        Some(RedisTopology::Single(_)) => "cluster mode through Redis".to_owned(),
        Some(RedisTopology::Cluster(nodes)) => format!(
            "cluster mode through a Redis Cluster ({} seed nodes)",
            nodes.len()
        ),
        None => "single instance".to_owned(),
    };
    format!(
        "database {}; admin {admin}; simulation {simulation}; {mode}",
        settings.persistence.path.display()
    )
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
        let Ok(Command::Check(options)) = parse(args(&["--simulate", "--check"])) else {
            panic!("expected Check");
        };
        assert!(options.simulate);
    }

    /// Unknown flags and missing values are one-line errors that name the flag.
    #[test]
    fn rejects_unknown_and_incomplete_arguments() {
        for (list, word) in [
            (&["--nope"][..], "--nope"),
            (&["--settings"][..], "--settings"),
            (&["--settings", ""][..], "--settings"),
            (&["--check=yes"][..], "--check"),
            (&["extra"][..], "extra"),
        ] {
            let err = parse(args(list)).expect_err(word);
            assert!(err.contains(word), "{list:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{list:?}: {err}");
        }
    }

    /// `--help` and `--version` are texts to print, not errors.
    #[test]
    fn help_and_version_are_printed() {
        for (flag, word) in [
            ("--help", "--backends <PATH>"),
            ("-h", "LB__SECTION__KEY"),
            ("--version", env!("CARGO_PKG_VERSION")),
            ("-V", "loadbalancer"),
        ] {
            let Ok(Command::Print(text)) = parse(args(&[flag])) else {
                panic!("{flag}: expected a text to print");
            };
            assert!(text.contains(word), "{flag}: {text}");
        }
    }
}

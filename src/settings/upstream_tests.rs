//! Validation of the `[backends]` and `[health]` keys of the resilience work, and
//! `server.max_connections`.

use super::{check_cases, validate, Case};

/// A bad limit, queue, budget, ejection or slow-start value names its key.
#[test]
fn resilience_values_name_their_key() {
    let cases: Vec<Case> = vec![
        (
            "server.max_connections",
            Box::new(|r| r.server.max_connections = 0),
            "at least 1",
        ),
        (
            "backends.max_connections",
            Box::new(|r| r.backends.max_connections = 2_000_000),
            "more than the maximum",
        ),
        (
            "backends.queue_timeout_ms",
            Box::new(|r| r.backends.queue_timeout_ms = 0),
            "greater than 0",
        ),
        (
            "backends.retry_budget_percent",
            Box::new(|r| r.backends.retry_budget_percent = 101),
            "more than the maximum",
        ),
        (
            "backends.dns_refresh_secs",
            Box::new(|r| r.backends.dns_refresh_secs = 0),
            "greater than 0",
        ),
        (
            "backends.dns_servers",
            Box::new(|r| r.backends.dns_servers = vec!["ns.example:53".to_owned()]),
            "not an ip:port",
        ),
        (
            "health.eject_base_secs",
            Box::new(|r| r.health.eject_base_secs = 0),
            "greater than 0",
        ),
        (
            "health.eject_max_secs",
            Box::new(|r| r.health.eject_max_secs = 10),
            "below health.eject_base_secs",
        ),
        (
            "health.max_ejected_percent",
            Box::new(|r| r.health.max_ejected_percent = 150),
            "more than the maximum",
        ),
        (
            "health.slow_start_secs",
            Box::new(|r| r.health.slow_start_secs = 100_000),
            "more than the maximum",
        ),
    ];
    check_cases(cases);
}

/// DNS servers are `ip:port`, or an `ip` on port 53; the refresh is in whole seconds.
#[test]
fn dns_servers_take_the_default_port() {
    let settings = validate(|r| {
        r.backends.dns_servers = vec!["127.0.0.1:5353".to_owned(), "::1".to_owned()];
        r.backends.dns_refresh_secs = 30;
    })
    .expect("valid");
    let servers: Vec<String> = settings
        .backends
        .dns_servers
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(servers, ["127.0.0.1:5353", "[::1]:53"]);
    assert_eq!(settings.backends.dns_refresh.as_secs(), 30);
}

//! Validation of raw settings into typed ones.

use std::time::Duration;

use super::*;
use crate::fault::FaultMode;
use crate::strategy::Strategy;

/// One bad-value case: the key, how to break it, and words the message must contain.
type Case = (
    &'static str,
    Box<dyn FnOnce(&mut RawSettings)>,
    &'static str,
);

/// The pool file of one `default` pool of `pool`.
fn of(pool: Vec<PoolEntry>) -> crate::discovery::NamedTopology {
    crate::discovery::NamedTopology {
        pools: vec![crate::discovery::NamedPool::default_of(pool)],
        routes: Vec::new(),
    }
}

fn validate(edit: impl FnOnce(&mut RawSettings)) -> Result<Settings, ConfigError> {
    let mut raw = RawSettings::default();
    edit(&mut raw);
    let pool = vec![PoolEntry::new(
        Backend::parse(0, "http://127.0.0.1:9001").expect("valid"),
    )];
    Settings::from_raw(
        raw,
        "Settings.toml",
        Path::new("/etc/lb"),
        Some(PathBuf::from("config.json")),
        of(pool),
    )
}

/// Each case's edit makes validation fail naming its key, with words of its problem.
fn check_cases(cases: Vec<Case>) {
    for (key, edit, problem) in cases {
        match validate(edit) {
            Err(ConfigError::Invalid {
                origin,
                key: got,
                problem: said,
            }) => {
                assert_eq!(got, key);
                assert_eq!(origin, "Settings.toml");
                assert!(said.contains(problem), "{key}: {said}");
            }
            other => panic!("{key}: expected Invalid, got {other:?}"),
        }
    }
}

/// The defaults are those of the settings table in docs/configuration.md.
#[test]
fn defaults_match_the_contract() {
    let s = validate(|_| {}).expect("defaults are valid");
    assert_eq!(s.server.listen, "0.0.0.0:8080".parse().expect("addr"));
    assert_eq!(s.server.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(s.server.client_request_timeout, Duration::from_millis(5000));
    assert_eq!(s.server.keep_alive, Some(Duration::from_secs(5)));
    assert_eq!(s.server.send_timeout, Duration::from_millis(60_000));
    assert_eq!(s.server.tunnel_idle_timeout, Duration::from_secs(300));
    assert_eq!(s.backends.connect_timeout, Duration::from_millis(1000));
    assert_eq!(s.backends.response_timeout, Duration::from_millis(30_000));
    assert_eq!(s.backends.retries, 2);
    assert_eq!(s.backends.strategy, Strategy::RoundRobin);
    assert!(s.backends.watch);
    assert_eq!(s.health.path, "/");
    assert_eq!(s.rate_limit.default_capacity, 100);
    assert_eq!(s.rate_limit.api_key_header, "x-api-key");
    assert_eq!(
        s.persistence.path,
        Path::new("/etc/lb/data/loadbalancer.sqlite3")
    );
    assert!(s.admin.token.is_none());
    assert!(
        !s.simulation.enabled,
        "a binary without Settings.toml must not start the demo"
    );
    assert_eq!(s.simulation.plan.mean_up, Duration::from_secs(20));
    assert_eq!(
        s.simulation.plan.modes,
        [FaultMode::Refuse, FaultMode::Error]
    );
    assert!(s.simulation.seed.is_none());
    assert!(s.cluster.redis.is_none(), "single instance unless told");
    assert_eq!(s.cluster.key_prefix, "lb:");
    assert_eq!(s.cluster.lease, Duration::from_millis(100));
    assert_eq!(s.cluster.on_redis_down, OnRedisDown::Local);
    assert_eq!(s.cluster.redis_timeout, Duration::from_millis(50));
    assert!(s.cluster.instance_name.is_none());
    assert!(s.cluster.share_config, "one configuration for the cluster");
    assert_eq!(s.cluster.redis_down_after.get(), 3);
    assert!(s.tracing.is_none(), "no endpoint: tracing off");
    assert_eq!(s.backends.max_connections, 0, "no limit");
    assert_eq!(s.server.max_connections, 25_000);
    assert_eq!(s.backends.queue_size, 0, "no queue");
    assert_eq!(s.backends.queue_timeout, Duration::from_millis(1000));
    assert_eq!(s.backends.retry_budget_percent, 20);
    assert!(
        s.health.eject_consecutive_5xx.is_none(),
        "no outlier ejection"
    );
    assert_eq!(s.health.eject_base, Duration::from_secs(30));
    assert_eq!(s.health.eject_max, Duration::from_secs(300));
    assert_eq!(s.health.max_ejected_percent, 50);
    assert!(s.health.slow_start.is_none());
}

/// An endpoint turns tracing on with the ratio and name given, or the defaults.
#[test]
fn an_endpoint_turns_tracing_on() {
    let s = validate(|r| r.tracing.otlp_endpoint = " https://otel.example:4318/v1/traces ".into())
        .expect("valid");
    let tracing = s.tracing.expect("on");
    assert_eq!(tracing.otlp_endpoint, "https://otel.example:4318/v1/traces");
    assert_eq!(tracing.sample_ratio, 1.0);
    assert_eq!(tracing.service_name, "loadbalancer");
}

/// Each bad value names its key and says what is wrong.
#[test]
fn bad_values_name_their_key() {
    let cases: Vec<Case> = vec![
        (
            "server.listen",
            Box::new(|r| r.server.listen = "nowhere".into()),
            "host:port",
        ),
        (
            "server.client_request_timeout_ms",
            Box::new(|r| r.server.client_request_timeout_ms = 0),
            "greater than 0",
        ),
        (
            "server.send_timeout_ms",
            Box::new(|r| r.server.send_timeout_ms = 0),
            "greater than 0",
        ),
        (
            "server.tunnel_idle_timeout_secs",
            Box::new(|r| r.server.tunnel_idle_timeout_secs = 0),
            "greater than 0",
        ),
        (
            "server.tunnel_idle_timeout_secs",
            Box::new(|r| r.server.tunnel_idle_timeout_secs = 1 << 40),
            "maximum 604800",
        ),
        (
            "backends.connect_timeout_ms",
            Box::new(|r| r.backends.connect_timeout_ms = 0),
            "greater than 0",
        ),
        (
            "backends.response_timeout_ms",
            Box::new(|r| r.backends.response_timeout_ms = 0),
            "greater than 0",
        ),
        (
            "health.unhealthy_threshold",
            Box::new(|r| r.health.unhealthy_threshold = 0),
            "at least 1",
        ),
        (
            "health.path",
            Box::new(|r| r.health.path = "health".into()),
            "absolute path",
        ),
        (
            "rate_limit.default_capacity",
            Box::new(|r| r.rate_limit.default_capacity = 0),
            "at least 1",
        ),
        (
            "rate_limit.default_rate_per_sec",
            Box::new(|r| r.rate_limit.default_rate_per_sec = f64::NAN),
            "> 0",
        ),
        (
            "rate_limit.api_key_header",
            Box::new(|r| r.rate_limit.api_key_header = "bad header".into()),
            "header name",
        ),
        (
            "rate_limit.trusted_proxies",
            Box::new(|r| r.rate_limit.trusted_proxies = vec!["10.0.0.0/99".into()]),
            "prefix length",
        ),
        (
            "log.access",
            Box::new(|r| r.log.access = "xml".into()),
            "not one of",
        ),
        (
            "persistence.flush_interval_ms",
            Box::new(|r| r.persistence.flush_interval_ms = 0),
            "greater than 0",
        ),
        (
            "tracing.otlp_endpoint",
            Box::new(|r| r.tracing.otlp_endpoint = "127.0.0.1:4318".into()),
            "http:// or https://",
        ),
        (
            "tracing.otlp_endpoint",
            Box::new(|r| r.tracing.otlp_endpoint = "http://bad host/v1/traces".into()),
            "not a URL",
        ),
        (
            "tracing.sample_ratio",
            Box::new(|r| {
                r.tracing.otlp_endpoint = "http://127.0.0.1:4318/v1/traces".into();
                r.tracing.sample_ratio = 1.5;
            }),
            "between 0 and 1",
        ),
        (
            "tracing.service_name",
            Box::new(|r| {
                r.tracing.otlp_endpoint = "http://127.0.0.1:4318/v1/traces".into();
                r.tracing.service_name = " ".into();
            }),
            "must not be empty",
        ),
    ];
    check_cases(cases);
}

/// With simulation on, a backend off this machine is refused, naming it; off, it is fine.
#[test]
fn simulation_requires_loopback_backends() {
    let pool = vec![
        PoolEntry::new(Backend::parse(0, "http://127.0.0.1:9001").expect("valid")),
        PoolEntry::new(Backend::parse(1, "http://10.0.0.5:80").expect("valid")),
    ];
    let mut simulated = RawSettings::default();
    simulated.simulation.enabled = true;
    let err = Settings::from_raw(
        simulated,
        "Settings.toml",
        Path::new(""),
        None,
        of(pool.clone()),
    )
    .expect_err("non-loopback with simulation");
    let text = err.to_string();
    assert!(
        text.contains("simulation.enabled")
            && text.contains("backends[1]")
            && text.contains("10.0.0.5"),
        "{text}"
    );
    let mut raw = RawSettings::default();
    raw.simulation.enabled = false;
    assert!(Settings::from_raw(raw, "Settings.toml", Path::new(""), None, of(pool)).is_ok());
    let secure = vec![PoolEntry::new(
        Backend::parse(0, "https://127.0.0.1:9443").expect("valid"),
    )];
    let mut simulated = RawSettings::default();
    simulated.simulation.enabled = true;
    let err = Settings::from_raw(simulated, "Settings.toml", Path::new(""), None, of(secure))
        .expect_err("https with simulation");
    assert!(err.to_string().contains("speak plain HTTP"), "{err}");
    let err = validate(|r| r.backends.ca_file = "missing.pem".into()).expect_err("no CA file");
    assert!(
        err.to_string().contains("backends.ca_file") && err.to_string().contains("missing.pem"),
        "{err}"
    );
    for host in ["localhost:1", "127.0.0.2:80", "[::1]:80"] {
        assert!(crate::net::is_loopback_authority(host), "{host}");
    }
    assert!(!crate::net::is_loopback_authority("example.test:80"));
}

/// Simulation means must be positive and modes known.
#[test]
fn simulation_values_are_checked() {
    let err = validate(|r| r.tls.listen = "127.0.0.1:8443".into()).expect_err("no certificate");
    assert!(
        err.to_string().contains("tls.cert: must not be empty"),
        "{err}"
    );
    let err = validate(|r| {
        r.tls.listen = "127.0.0.1:8443".into();
        r.tls.cert = "server.crt".into();
        r.tls.key = "server.key".into();
    })
    .expect_err("missing files");
    assert!(
        err.to_string().contains("/etc/lb/server.crt"),
        "relative to the settings: {err}"
    );
    assert!(validate(|_| {}).expect("defaults").tls.is_none());
    let err = validate(|r| r.backends.strategy = "random".into()).expect_err("bad strategy");
    assert!(err.to_string().contains("backends.strategy"), "{err}");
    let s = validate(|r| r.backends.strategy = "least_connections".into()).expect("valid");
    assert_eq!(s.backends.strategy, Strategy::LeastConnections);
    let err = validate(|r| r.simulation.modes = vec!["explode".into()]).expect_err("bad mode");
    assert!(err.to_string().contains("simulation.modes"), "{err}");
    let err = validate(|r| r.simulation.modes.clear()).expect_err("no modes");
    assert!(err.to_string().contains("at least one"), "{err}");
    let err = validate(|r| r.simulation.mean_up_secs = 0.0).expect_err("zero mean");
    assert!(err.to_string().contains("simulation.mean_up_secs"), "{err}");
    let s = validate(|r| r.simulation.seed = 7).expect("valid");
    assert_eq!(s.simulation.seed, Some(7));
}

/// Zero workers means one per core; zero keep-alive disables it; an empty token is no token.
#[test]
fn zero_means_automatic_or_off() {
    let s = validate(|r| {
        r.server.keep_alive_secs = 0;
        r.admin.token = "  ".into();
    })
    .expect("valid");
    assert!(s.server.workers >= 1);
    assert!(s.server.keep_alive.is_none());
    assert!(s.admin.token.is_none());
}

/// The shipped Settings.toml turns the simulation on, so `cargo run --release` shows the demo.
#[test]
fn shipped_settings_turn_the_simulation_on() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("Settings.toml");
    let options = LoadOptions {
        settings_path: Some(shipped),
        ..LoadOptions::default()
    };
    let settings = load(&options).expect("the shipped settings are valid");
    assert!(settings.simulation.enabled);
}

#[path = "cluster_tests.rs"]
mod cluster;
#[path = "upstream_tests.rs"]
mod upstream;

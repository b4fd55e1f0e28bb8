//! The real `loadbalancer` binary: exit codes for bad configuration, and graceful shutdown on
//! SIGTERM and SIGINT with a request in flight.

mod common;

use common::process::{
    http, launch_logged, ok_backend, run_to_exit, signal, slow_backend, start_binary,
    wait_with_deadline, write, write_config,
};

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// A bad-configuration case: arguments, environment, words the message must contain.
type Case = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

/// Every kind of bad configuration ends with exit code 2 and one line naming file, key, problem.
#[test]
fn bad_configuration_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "good.json", r#"{"backends": ["http://127.0.0.1:9"]}"#);
    write(
        d,
        "remote.json",
        r#"{"backends": ["http://127.0.0.1:9", "http://10.0.0.5:80"]}"#,
    );
    write(
        d,
        "nosim.toml",
        "[simulation]\nenabled = false\nmodes = [\"explode\"]\n",
    );
    write(d, "empty.json", r#"{"backends": []}"#);
    write(d, "badurl.json", r#"{"backends": ["ftp://127.0.0.1:9"]}"#);
    write(d, "malformed.json", r#"{"backends": ["#);
    write(
        d,
        "badport.json",
        r#"{"backends": ["http://127.0.0.1:9", "http://127.0.0.1:80abc"]}"#,
    );
    write(d, "broken.toml", "[server\nlisten = 1");
    write(
        d,
        "unknown.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\ncolour = \"blue\"\n",
    );
    write(d, "zero.toml", "[backends]\nconnect_timeout_ms = 0\n");
    let cases: &[Case] = &[
        (
            &["--settings", "missing.toml"],
            &[],
            &["missing.toml", "cannot read"],
        ),
        (
            &["--settings", "broken.toml", "--backends", "good.json"],
            &[],
            &["broken.toml", "TOML parse error"],
        ),
        (
            &["--settings", "unknown.toml", "--backends", "good.json"],
            &[],
            &["unknown.toml", "colour", "server"],
        ),
        (
            &["--backends", "good.json"],
            &[
                ("LB__SERVER__LISTEN", "127.0.0.1:0"),
                ("LB__SIMULATION__ENABLED", "false"),
                ("LB__TRACING__OTLP_ENDPOINT", "http://127.0.0.1:9/v1/traces"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key"),
                ("RUST_LOG", "warn"),
            ],
            &["OTEL_EXPORTER_OTLP_HEADERS", "`api-key` is not name=value"],
        ),
        (
            &["--settings", "zero.toml", "--backends", "good.json"],
            &[],
            &["zero.toml", "backends.connect_timeout_ms", "greater than 0"],
        ),
        (
            &["--backends", "empty.json"],
            &[],
            &["empty.json", "backends", "empty"],
        ),
        (
            &["--backends", "badurl.json"],
            &[],
            &[
                "badurl.json",
                "backends[0]",
                "http://host[:port] or https://",
            ],
        ),
        (
            &["--backends", "malformed.json"],
            &[],
            &["malformed.json", "not a valid pool file"],
        ),
        (
            &["--backends", "badport.json"],
            &[],
            &["badport.json", "backends[1]", "80abc", "1 to 65535"],
        ),
        (
            &["--backends", "nope.json"],
            &[],
            &["nope.json", "cannot read"],
        ),
        (
            &["--backends", "good.json"],
            &[("LB__SERVER__LISTEN", "nowhere")],
            &["LB__SERVER__LISTEN", "server.listen", "host:port"],
        ),
        (
            &["--backends", "good.json"],
            &[("LB__HEALTH__NOPE", "1")],
            &["nope", "health"],
        ),
        (
            &["--backends", "remote.json", "--simulate"],
            &[],
            &["simulation.enabled", "backends[1]", "10.0.0.5", "loopback"],
        ),
        (
            &["--settings", "nosim.toml", "--backends", "good.json"],
            &[],
            &["nosim.toml", "simulation.modes", "explode"],
        ),
        (
            &["--backends", "good.json"],
            &[("LB__CLUSTER__REDIS_URL", "redis//nowhere")],
            &[
                "LB__CLUSTER__REDIS_URL",
                "cluster.redis_url",
                "not a Redis URL",
            ],
        ),
        (&["--frobnicate"], &[], &["--frobnicate", "usage"]),
    ];
    for (args, env, expected) in cases {
        let (code, stderr) = run_to_exit(d, args, env);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        for word in *expected {
            assert!(
                stderr.contains(word),
                "{args:?}: {word:?} not in {stderr:?}"
            );
        }
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        if !args.contains(&"--frobnicate") {
            assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr:?}");
        }
    }
}

/// `--version` and `--help` print to stdout and exit 0 without reading any configuration; a
/// bad argument is exit 2 with one line naming it, then the usage.
#[test]
fn version_and_help_exit_0_and_a_bad_argument_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        std::process::Command::new(common::process::BIN)
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run the binary")
    };
    let version = run(&["--version"]);
    let stdout = String::from_utf8_lossy(&version.stdout);
    assert_eq!(version.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout.trim(),
        format!("loadbalancer {}", env!("CARGO_PKG_VERSION"))
    );
    let help = run(&["--help"]);
    let stdout = String::from_utf8_lossy(&help.stdout);
    assert_eq!(help.status.code(), Some(0), "{stdout}");
    for flag in [
        "--settings",
        "--backends",
        "--simulate",
        "--check",
        "--version",
    ] {
        assert!(stdout.contains(flag), "{flag} not in {stdout}");
    }
    let bad = run(&["--check", "--settings"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].contains("--settings"), "{stderr}");
    assert!(lines[1].starts_with("usage: loadbalancer"), "{stderr}");
}

/// With simulation on, a backend port that is already taken is a clear start-up error (exit 1).
#[test]
fn simulated_backend_on_a_taken_port_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    write(
        dir.path(),
        "pool.json",
        &format!(r#"{{"backends": ["http://{addr}"]}}"#),
    );
    let (code, stderr) = run_to_exit(
        dir.path(),
        &["--backends", "pool.json", "--simulate"],
        &[("LB__SERVER__LISTEN", "127.0.0.1:0")],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("simulated backend-1 cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(taken);
}

/// A signal during a 2-second request: the request completes with 200, new connections are
/// refused meanwhile, and the process exits 0.
fn drains_on(signal_name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (backend, started) = slow_backend(Duration::from_secs(2));
    let (mut child, addr) = start_binary(dir.path(), backend);
    let in_flight = thread::spawn(move || {
        common::raw_exchange(
            addr,
            b"GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            Duration::from_secs(15),
        )
    });
    started
        .recv_timeout(Duration::from_secs(10))
        .expect("request reached the backend");
    signal(&child, signal_name);
    let until = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < until,
            "still accepting connections after {signal_name}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let reply = in_flight.join().expect("client thread");
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "in-flight request after {signal_name}: {text:?}"
    );
    assert!(text.ends_with("slow"), "{text:?}");
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit after {signal_name}");
}

/// SIGTERM drains gracefully.
#[test]
fn sigterm_lets_the_in_flight_request_finish_and_exits_0() {
    drains_on("TERM");
}

/// SIGINT drains gracefully too (actix would otherwise stop at once).
#[test]
fn sigint_lets_the_in_flight_request_finish_and_exits_0() {
    drains_on("INT");
}

/// Access lines (target `loadbalancer::access`, logged at info) name the backend that
/// answered a proxied request, and `-` for an answer the balancer gave itself; and the
/// request's id.
#[test]
fn access_lines_name_the_backend_that_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), ok_backend(), "", "");
    let (mut child, addr, log) = launch_logged(dir.path(), &[]);
    let id = [("X-Request-Id", "line-7")];
    assert_eq!(http(addr, "GET", "/hello?x=1", &id, None).0, 200);
    assert_eq!(http(addr, "GET", "/lb/nothing-here", &[], None).0, 404);
    let wanted = [
        "\"GET /hello\" 200 backend-1 ",
        "\"GET /lb/nothing-here\" 404 - ",
        "ms id=line-7",
    ];
    let mut seen = [false; 3];
    let until = Instant::now() + Duration::from_secs(10);
    while seen.contains(&false) {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(line) = log.recv_timeout(left) else {
            panic!("access lines {wanted:?} not all logged (seen: {seen:?})");
        };
        for (found, text) in seen.iter_mut().zip(wanted) {
            *found |= line.contains(text);
        }
    }
    signal(&child, "TERM");
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

/// `--check` prints each pool with its settings in effect (connection limits too), the
/// resilience settings, then the routes in the order they
/// are chosen (priority, exact host, wildcard, no host, longer prefix, more conditions, file
/// order) and where the rest goes; a file with a route to a missing pool is exit 2 naming it.
#[test]
fn check_prints_pools_and_routes_in_selection_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = r#"{"backends": ["http://127.0.0.1:9001"],
        "pools": {"api": {"backends": ["http://127.0.0.1:9002",
                                       {"url": "http://127.0.0.1:9003", "max_connections": 5},
                                       {"url": "http://api.internal:8080", "discovery": "dns",
                                        "name": "found"}],
                          "strategy": "least_connections", "max_connections": 20,
                          "health_path": "/healthz", "host_header": "backend"}},
        "routes": [
            {"name": "any", "path_prefix": "/", "pool": "default"},
            {"name": "wild", "hosts": ["*.example.com"], "pool": "api"},
            {"name": "exact", "hosts": ["api.example.com"], "pool": "api"},
            {"name": "long", "path_prefix": "/v1/deep", "pool": "api"},
            {"name": "urgent", "path_prefix": "/x", "priority": 5, "pool": "api", "cost": 3,
             "limits": {"capacity": 2, "rate_per_sec": 0.5}}
        ]}"#;
    write(dir.path(), "pool.json", file);
    let run = |pool: &str| {
        std::process::Command::new(common::process::BIN)
            .args(["--backends", pool, "--check"])
            .current_dir(dir.path())
            .output()
            .expect("run the binary")
    };
    let checked = run("pool.json");
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("pool api: least_connections, probes /healthz, the backend's Host, at most 20 in flight per backend"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("backend-2 http://127.0.0.1:9003 weight 1, at most 5 in flight per backend"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "found http://api.internal:8080 weight 1, a member per address DNS finds (every 5 s)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("no queue for busy backends; retries within 20% of requests in flight; no outlier ejection; no slow start"),
        "{stdout}"
    );
    let order: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.trim().split_once(". ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split(':').next())
        .collect();
    assert_eq!(
        order,
        ["urgent", "exact", "wild", "long", "any"],
        "{stdout}"
    );
    assert!(
        stdout.contains("cost 3, its own bucket 2 + 0.5/s"),
        "{stdout}"
    );
    assert!(stdout.contains("otherwise: pool default"), "{stdout}");
    write(
        dir.path(),
        "bad.json",
        r#"{"backends": ["http://127.0.0.1:9001"], "routes": [{"name": "r", "pool": "nope"}]}"#,
    );
    let bad = run("bad.json");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("routes[0].pool") && stderr.contains("nope"),
        "{stderr}"
    );
}

/// Run as a systemd `Type=notify` service (`NOTIFY_SOCKET` set to a datagram socket of the
/// test's own): `READY=1` once it serves, `STOPPING=1` when SIGTERM starts the drain.
#[test]
fn tells_systemd_when_ready_and_when_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), ok_backend(), "", "");
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let variable = format!("NOTIFY_SOCKET={}", socket_path.display());
    let (mut child, addr, _log) = launch_logged(dir.path(), &["env", &variable]);
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    assert_eq!(http(addr, "GET", "/lb/health", &[], None).0, 200);
    signal(&child, "TERM");
    assert_eq!(next(), "STOPPING=1");
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

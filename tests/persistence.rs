//! Persistence through the real binary: restarts, SIGKILL, and a file that is not ours.

mod common;

use std::time::Duration;

use common::process::{
    http, ok_backend, run_to_exit, signal, start_binary, wait_with_deadline, write,
};

const CLIENT: &str =
    r#"{"client_id": "keep", "name": "Keeper", "capacity": 10, "rate_per_sec": 0.001}"#;

fn tokens_of(addr: std::net::SocketAddr, id: &str) -> (u16, f64) {
    let (status, body) = http(addr, "GET", &format!("/clients/{id}"), &[], None);
    let tokens = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["tokens"].as_f64())
        .unwrap_or(-1.0);
    (status, tokens)
}

/// A client and its token level survive a SIGTERM restart (credited only the tiny refill
/// for the time the balancer was down).
#[test]
fn restart_keeps_clients_and_token_levels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = ok_backend();
    let (mut child, addr) = start_binary(dir.path(), backend);
    assert_eq!(http(addr, "POST", "/clients", &[], Some(CLIENT)).0, 201);
    for _ in 0..7 {
        assert_eq!(
            http(addr, "GET", "/work", &[("X-API-Key", "keep")], None).0,
            200
        );
    }
    signal(&child, "TERM");
    assert_eq!(
        wait_with_deadline(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );

    let (mut child, addr) = start_binary(dir.path(), backend);
    let (status, tokens) = tokens_of(addr, "keep");
    assert_eq!(status, 200);
    assert!(
        (3.0..3.05).contains(&tokens),
        "tokens after restart: {tokens}"
    );
    let (_, body) = http(addr, "GET", "/clients/keep", &[], None);
    assert!(body.contains(r#""name":"Keeper""#), "{body}");
    signal(&child, "TERM");
    wait_with_deadline(&mut child, Duration::from_secs(10));
}

/// A 201 means committed: SIGKILL right after it loses nothing.
#[test]
fn sigkill_right_after_201_keeps_the_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = ok_backend();
    let (mut child, addr) = start_binary(dir.path(), backend);
    assert_eq!(http(addr, "POST", "/clients", &[], Some(CLIENT)).0, 201);
    signal(&child, "KILL");
    wait_with_deadline(&mut child, Duration::from_secs(10));

    let (mut child, addr) = start_binary(dir.path(), backend);
    assert_eq!(tokens_of(addr, "keep"), (200, 10.0));
    signal(&child, "TERM");
    wait_with_deadline(&mut child, Duration::from_secs(10));
}

/// A database file that is not SQLite stops start-up with exit 2 naming it, untouched.
#[test]
fn foreign_database_file_stops_startup_and_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
    let junk = b"Quarterly report\nnot a database\n".repeat(200);
    write(
        dir.path(),
        "data/loadbalancer.sqlite3",
        std::str::from_utf8(&junk).expect("text"),
    );
    write(
        dir.path(),
        "pool.json",
        r#"{"backends": ["http://127.0.0.1:9"]}"#,
    );
    let (code, stderr) = run_to_exit(
        dir.path(),
        &["--backends", "pool.json"],
        &[
            ("LB__SERVER__LISTEN", "127.0.0.1:0"),
            ("LB__SIMULATION__ENABLED", "false"),
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("data/loadbalancer.sqlite3")
            && stderr.contains("not a usable SQLite database"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("data/loadbalancer.sqlite3")).expect("read"),
        junk
    );
}

//! Persistence through the real binary: restarts, SIGKILL, a read-only database folder, and a
//! file that is not ours.

mod common;

use std::time::Duration;

use common::process::{
    http, launch, ok_backend, run_to_exit, signal, start_binary, wait_with_deadline, write,
    write_config,
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

/// The database's folder made read-only while the balancer runs (as a non-root user: root
/// ignores permissions, so when the test runs as root the balancer runs as `nobody`). SQLite in
/// WAL mode keeps writing through the files it holds open, so admin writes may go on
/// succeeding; what must hold is that every answer is honest — a 201 is durable (there after a
/// restart), a refusal is a 503 JSON that changed nothing — that the proxy keeps serving, and
/// that writes succeed again once the folder is writable.
#[test]
fn read_only_database_folder_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = ok_backend();
    write_config(dir.path(), backend, "", "");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let as_root = command_output("id", &["-u"]) == "0";
    let runner: &[&str] = match as_root {
        true => &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ],
        false => &[],
    };
    if as_root {
        let path = dir.path().to_str().expect("utf-8 path");
        command_output("chown", &["-R", "65534:65534", path]);
    }
    let chmod = |mode: &str| command_output("chmod", &[mode, data.to_str().expect("utf-8")]);
    let register = |addr, id: &str| {
        let body = format!(r#"{{"client_id": "{id}", "capacity": 5, "rate_per_sec": 1}}"#);
        http(addr, "POST", "/clients", &[], Some(&body))
    };

    let (mut child, addr) = launch(dir.path(), runner);
    assert_eq!(register(addr, "before").0, 201);
    chmod("555");
    let mut acknowledged = vec!["before".to_owned()];
    for id in ["during-1", "during-2", "during-3"] {
        let (status, body) = register(addr, id);
        match status {
            201 => acknowledged.push(id.to_owned()),
            503 => {
                assert!(body.contains(r#""code":503"#), "{body}");
                let path = format!("/clients/{id}");
                assert_eq!(http(addr, "GET", &path, &[], None).0, 404);
            }
            other => panic!("registering {id} while read-only: {other} {body}"),
        }
        let key = [("X-API-Key", "before")];
        assert_eq!(http(addr, "GET", "/work", &key, None).0, 200);
    }
    chmod("755");
    assert_eq!(register(addr, "after").0, 201);
    acknowledged.push("after".to_owned());
    signal(&child, "TERM");
    assert_eq!(
        wait_with_deadline(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );

    let (mut child, addr) = launch(dir.path(), runner);
    let (_, body) = http(addr, "GET", "/clients", &[], None);
    for id in &acknowledged {
        assert!(
            body.contains(&format!(r#""client_id":"{id}""#)),
            "{id} lost: {body}"
        );
    }
    signal(&child, "TERM");
    wait_with_deadline(&mut child, Duration::from_secs(10));
}

/// Runs a small command to completion and returns its trimmed standard output.
fn command_output(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .expect("run command");
    assert!(out.status.success(), "{program} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

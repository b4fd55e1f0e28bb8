//! The access log in its file forms, with real backends and clients: the JSON record's exact
//! keys and values for each kind of answer, whole lines under concurrent load, `text` into a
//! file, `off`; and with the real binary, SIGUSR1 reopening the file after logrotate's rename
//! and a file that cannot be opened stopping the start with exit 2.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::backend::TestBackend;
use common::process::{http, launch, signal, wait_with_deadline, write_config};
use common::{call, client, fresh_dir, settings_from_files, start_balancer, TestBalancer};
use loadbalancer::settings::{AccessFormat, LogSettings};
use serde_json::{json, Value};

/// The contract's keys, in its order.
const KEYS: [&str; 21] = [
    "ts",
    "request_id",
    "trace_id",
    "client",
    "client_ip",
    "method",
    "host",
    "path",
    "protocol",
    "tls",
    "status",
    "route",
    "pool",
    "backend",
    "attempts",
    "duration_ms",
    "upstream_ms",
    "bytes_in",
    "bytes_out",
    "limited",
    "user_agent",
];

/// Polls `path` until it holds at least `n` lines; answers them.
fn lines_of(path: &Path, n: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < until,
            "{n} lines in {}: {text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Parses a JSON record and checks it has exactly the contract's keys.
fn record(line: &str) -> Value {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = KEYS.to_vec();
    want.sort_unstable();
    let mut have = keys.clone();
    have.sort_unstable();
    assert_eq!(have, want, "{line}");
    value
}

/// A balancer writing JSON records to a file, on a pool file with a route and a limit of
/// three requests per address.
fn json_balancer(app: &TestBackend) -> (TestBalancer, PathBuf) {
    let file = json!({
        "backends": [app.url()],
        "routes": [{"name": "api", "pool": "default", "path_prefix": "/api"}]
    });
    let (mut settings, _) = settings_from_files(&file, "");
    let path = fresh_dir().join("access.log");
    settings.log = LogSettings {
        access: AccessFormat::Json,
        access_path: Some(path.clone()),
    };
    settings.rate_limit.default_capacity = 3;
    settings.rate_limit.default_rate_per_sec = 0.001;
    (start_balancer(&settings), path)
}

#[actix_web::test]
async fn json_records_have_the_contracts_keys_and_values() {
    let app = TestBackend::start("app");
    let (lb, path) = json_balancer(&app);
    let mut res = client()
        .post(lb.url("/api/orders?secret=1"))
        .insert_header(("User-Agent", "tester/1"))
        .insert_header(("X-Request-Id", "rec-1"))
        .send_body("twelve bytes")
        .await
        .expect("response");
    assert_eq!(res.status(), 200);
    let answered = res.body().await.expect("body").len() as u64;
    assert_eq!(call(&lb, "GET", "/lb/nothing", None).await.0, 404);
    for _ in 0..3 {
        client()
            .get(lb.url("/other"))
            .send()
            .await
            .expect("response");
    }

    let lines = lines_of(&path, 5);
    let proxied = record(&lines[0]);
    assert_eq!(proxied["request_id"], "rec-1");
    assert_eq!(proxied["trace_id"], Value::Null);
    assert_eq!(
        proxied["client"],
        Value::Null,
        "an address, not a registered client"
    );
    assert_eq!(proxied["client_ip"], "127.0.0.1");
    assert_eq!(proxied["method"], "POST");
    assert_eq!(proxied["host"], lb.addr.to_string());
    assert_eq!(proxied["path"], "/api/orders", "no query");
    assert_eq!(proxied["protocol"], "HTTP/1.1");
    assert_eq!(proxied["tls"], false);
    assert_eq!(proxied["status"], 200);
    assert_eq!(proxied["route"], "api");
    assert_eq!(proxied["pool"], "default");
    assert_eq!(proxied["backend"], "backend-1");
    assert_eq!(proxied["attempts"], 1);
    assert_eq!(proxied["bytes_in"], 12);
    assert_eq!(proxied["bytes_out"], answered);
    assert_eq!(proxied["limited"], false);
    assert_eq!(proxied["user_agent"], "tester/1");
    let (total, upstream) = (
        proxied["duration_ms"].as_f64().expect("duration"),
        proxied["upstream_ms"].as_f64().expect("upstream"),
    );
    assert!(upstream > 0.0 && upstream <= total, "{upstream} of {total}");
    let ts = proxied["ts"].as_str().expect("ts");
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );

    let own = record(&lines[1]);
    assert_eq!(
        (own["status"].clone(), own["path"].clone()),
        (json!(404), json!("/lb/nothing"))
    );
    for key in ["route", "pool", "backend", "upstream_ms"] {
        assert_eq!(own[key], Value::Null, "{key} of the balancer's own answer");
    }
    assert_eq!(own["attempts"], 0);
    assert!(own["request_id"].as_str().is_some_and(|id| id.len() == 32));

    let limited = record(&lines[4]);
    assert_eq!(
        (limited["status"].clone(), limited["limited"].clone()),
        (json!(429), json!(true))
    );
    assert_eq!(limited["backend"], Value::Null);
    assert_eq!(limited["pool"], "default", "the pool it was headed for");
}

/// Under concurrent load every line is one whole record: as many lines as requests, each a
/// JSON object with exactly the contract's keys and its own request id.
#[actix_web::test]
async fn concurrent_records_are_whole_lines() {
    let app = TestBackend::start("app");
    let file = json!({"backends": [app.url()]});
    let (mut settings, _) = settings_from_files(&file, "");
    let path = fresh_dir().join("access.log");
    settings.log = LogSettings {
        access: AccessFormat::Json,
        access_path: Some(path.clone()),
    };
    settings.rate_limit.enabled = false;
    let lb = start_balancer(&settings);
    let clients = (0..8).map(|_| async {
        let mut ok = 0;
        for _ in 0..100 {
            ok += usize::from(common::get_status(&lb, "/load").await == 200);
        }
        ok
    });
    let ok: usize = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .sum();
    assert_eq!(ok, 800);
    let lines = lines_of(&path, 800);
    assert_eq!(lines.len(), 800);
    let ids: std::collections::HashSet<String> = lines
        .iter()
        .map(|line| record(line)["request_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 800);
    let mut res = client()
        .get(lb.url("/lb/metrics"))
        .send()
        .await
        .expect("metrics");
    let metrics = String::from_utf8(res.body().await.expect("body").to_vec()).expect("text");
    assert!(
        metrics.contains("lb_access_log_dropped_total 0"),
        "{metrics}"
    );
}

/// `text` into a file: the line after a timestamp; `off` with a path writes nothing at all.
#[actix_web::test]
async fn text_goes_to_the_file_and_off_writes_nothing() {
    let app = TestBackend::start("app");
    let file = json!({"backends": [app.url()]});
    let (mut settings, _) = settings_from_files(&file, "");
    let text_path = fresh_dir().join("access.log");
    settings.log = LogSettings {
        access: AccessFormat::Text,
        access_path: Some(text_path.clone()),
    };
    let lb = start_balancer(&settings);
    let res = client()
        .get(lb.url("/page"))
        .insert_header(("X-Request-Id", "txt-1"))
        .send()
        .await
        .expect("response");
    assert_eq!(res.status(), 200);
    let line = lines_of(&text_path, 1).remove(0);
    let (ts, rest) = line.split_once(' ').expect("a timestamp first");
    assert!(ts.ends_with('Z'), "{line}");
    assert!(
        rest.starts_with("127.0.0.1 \"GET /page\" 200 backend-1 "),
        "{line}"
    );
    assert!(rest.ends_with("ms id=txt-1"), "{line}");

    let off_path = fresh_dir().join("access.log");
    settings.log = LogSettings {
        access: AccessFormat::Off,
        access_path: Some(off_path.clone()),
    };
    let quiet = start_balancer(&settings);
    assert_eq!(common::get_status(&quiet, "/page").await, 200);
    quiet.handle.shutdown().await;
    assert!(!off_path.exists(), "off opens no file");
}

/// The real binary: SIGUSR1 after logrotate renamed the file sends new records to a new file
/// at the path, the renamed one keeping the earlier ones.
#[test]
fn sigusr1_reopens_the_file_after_a_rename() {
    let (backend_addr, _) = common::cluster::counting_backend();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = "[log]\naccess = \"json\"\naccess_path = \"access.log\"\n";
    write_config(dir.path(), backend_addr, "", log);
    let (mut child, addr) = launch(dir.path(), &[]);
    let path = dir.path().join("access.log");
    assert_eq!(http(addr, "GET", "/before", &[], None).0, 200);
    assert_eq!(record(&lines_of(&path, 1)[0])["path"], "/before");
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&path, &rotated).expect("rename");
    signal(&child, "USR1");
    // Until the writer has reopened, records still go to the renamed file: send until one
    // lands in a new file at the path.
    let until = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < until, "no new file after SIGUSR1");
        assert_eq!(http(addr, "GET", "/after", &[], None).0, 200);
        std::thread::sleep(Duration::from_millis(20));
    }
    let new = lines_of(&path, 1);
    assert!(new.iter().all(|l| record(l)["path"] == "/after"));
    let old = lines_of(&rotated, 1);
    assert_eq!(record(&old[0])["path"], "/before");
    signal(&child, "TERM");
    assert_eq!(
        wait_with_deadline(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );
}

/// A file that cannot be opened (its folder does not exist) stops the start: exit 2, naming it.
#[test]
fn an_unopenable_file_is_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = "[log]\naccess = \"json\"\naccess_path = \"missing/folder/access.log\"\n";
    write_config(dir.path(), "127.0.0.1:9".parse().expect("addr"), "", log);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadbalancer"))
        .args(["--settings", "Settings.toml"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("log.access_path") && stderr.contains("missing/folder"),
        "{stderr}"
    );
}

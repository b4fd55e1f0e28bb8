//! The pool at run time, through a real balancer in front of real backends: weights and the
//! strategies as clients see them, the backends API (validation, add, weight, drain, delete
//! while a request is in flight), the pool file written back, reloads through the API and the
//! file watch, and a broken file that changes nothing.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::backend::TestBackend;
use common::{call, client, eventually, fresh_dir, settings_for, start_balancer, TestBalancer};
use loadbalancer::{LbEvent, Settings};
use serde_json::{json, Value};

/// Settings in front of `backends` with the pool in a real file (not watched unless asked),
/// quick probes, and the pool file's path.
fn with_pool_file(backends: &[&TestBackend], entries: Value) -> (Settings, PathBuf) {
    let urls: Vec<String> = backends.iter().map(|b| b.url()).collect();
    let mut settings = settings_for(&urls);
    let path = fresh_dir().join("config.json");
    let entries = if entries == json!([]) {
        json!(urls)
    } else {
        entries
    };
    std::fs::write(&path, json!({ "backends": entries }).to_string()).expect("write pool");
    settings.backends.file = Some(path.clone());
    settings.backends.watch = false;
    settings.health.interval = Duration::from_millis(100);
    (settings, path)
}

fn pool_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read pool")).expect("pool JSON")
}

/// The `X-Backend` of a GET through the balancer, with optional headers.
async fn served_by(lb: &TestBalancer, path: &str, headers: &[(&str, &str)]) -> String {
    let mut req = client().get(lb.url(path));
    for header in headers {
        req = req.insert_header(*header);
    }
    let res = req.send().await.expect("response");
    assert_eq!(res.status(), 200, "{path}");
    let name = res.headers().get("x-backend").expect("X-Backend");
    name.to_str().expect("name").to_owned()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|b| b["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Weights 3:1 through the proxy: 400 requests give exactly 300 and 100, never a run over 3.
#[actix_web::test]
async fn weights_give_exact_shares_through_the_proxy() {
    let (a, b) = (TestBackend::start("a"), TestBackend::start("b"));
    let (mut settings, _) =
        with_pool_file(&[&a, &b], json!([{"url": a.url(), "weight": 3}, b.url()]));
    settings.backends.topology.pools[0].entries[0].weight = 3;
    settings.rate_limit.enabled = false;
    let lb = start_balancer(&settings);
    let mut order = Vec::new();
    for _ in 0..400 {
        order.push(served_by(&lb, "/", &[]).await);
    }
    assert_eq!(order.iter().filter(|n| *n == "a").count(), 300);
    let longest = order.chunk_by(|x, y| x == y).map(<[String]>::len).max();
    assert!(longest <= Some(3), "a run of {longest:?}");
    let (status, list) = call(&lb, "GET", "/lb/api/backends", None).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["weight"], 3);
    assert_eq!(list[0]["requests"], 300);
    let (_, status) = call(&lb, "GET", "/lb/api/status", None).await;
    assert_eq!(status["strategy"], "round_robin");
}

/// Least-connections with one slow backend: while its requests hang on, the fast one takes
/// nearly all the rest.
#[actix_web::test]
async fn least_connections_sends_less_to_a_slow_backend() {
    let (slow, started_on_slow) = common::process::slow_backend(Duration::from_millis(300));
    let fast = TestBackend::start("fast");
    let mut settings = settings_for(&[format!("http://{slow}"), fast.url()]);
    settings.backends.strategy = "least_connections".parse().expect("strategy");
    settings.rate_limit.enabled = false;
    let lb = start_balancer(&settings);
    // Eight clients at once, ten requests each in a row.
    let clients = (0..8).map(|_| async {
        for _ in 0..10 {
            let res = client()
                .get(lb.url("/work"))
                .send()
                .await
                .expect("response");
            assert_eq!(res.status(), 200);
        }
    });
    futures_util::future::join_all(clients).await;
    let to_slow = started_on_slow
        .try_iter()
        .filter(|line| line.starts_with("GET /work "))
        .count();
    assert_eq!(to_slow + fast.requests().len(), 80);
    assert!(to_slow < 20, "the slow backend got {to_slow} of 80");
}

/// Consistent hashing: each API key stays on one backend; after a backend is deleted only its
/// keys move.
#[actix_web::test]
async fn consistent_hash_is_sticky_and_a_removal_moves_only_its_keys() {
    let backends = [
        TestBackend::start("a"),
        TestBackend::start("b"),
        TestBackend::start("c"),
    ];
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let (mut settings, _) = with_pool_file(&refs, json!([]));
    settings.backends.strategy = "consistent_hash".parse().expect("strategy");
    settings.rate_limit.enabled = false;
    let lb = start_balancer(&settings);
    let mut owner = HashMap::new();
    for key in 0..60 {
        let key = format!("key-{key}");
        let first = served_by(&lb, "/", &[("X-API-Key", &key)]).await;
        for _ in 0..3 {
            assert_eq!(
                served_by(&lb, "/", &[("X-API-Key", &key)]).await,
                first,
                "{key}"
            );
        }
        owner.insert(key, first);
    }
    assert_eq!(
        owner
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3,
        "keys spread over all three"
    );
    let (status, _) = call(&lb, "DELETE", "/lb/api/backends/backend-2", None).await;
    assert_eq!(status, 202);
    for (key, was) in &owner {
        let now = served_by(&lb, "/", &[("X-API-Key", key)]).await;
        if was == "b" {
            assert_ne!(now, "b", "{key} still went to the deleted backend");
        } else {
            assert_eq!(&now, was, "{key} moved although its backend stayed");
        }
    }
}

/// The API checks its input and names the problem: bad fields 400, taken URL or name 409,
/// unknown backend 404; nothing changes.
#[actix_web::test]
async fn the_backends_api_refuses_bad_input_with_the_field_named() {
    let a = TestBackend::start("a");
    let (settings, path) = with_pool_file(&[&a], json!([a.url()]));
    let before = std::fs::read_to_string(&path).expect("read");
    let lb = start_balancer(&settings);
    let cases = [
        ("POST", "/lb/api/backends", r#"{"weight": 2}"#, 400, "url"),
        (
            "POST",
            "/lb/api/backends",
            r#"{"url": "ftp://x:1"}"#,
            400,
            "url",
        ),
        (
            "POST",
            "/lb/api/backends",
            r#"{"url": "http://x:1", "weight": 0}"#,
            400,
            "weight",
        ),
        (
            "POST",
            "/lb/api/backends",
            r#"{"url": "http://x:1", "name": "a b"}"#,
            400,
            "name",
        ),
        (
            "POST",
            "/lb/api/backends",
            r#"{"url": "http://x:1", "colour": 1}"#,
            400,
            "colour",
        ),
        ("POST", "/lb/api/backends", r#"[1]"#, 400, "object"),
        ("POST", "/lb/api/backends", r#"{"url": "#, 400, "malformed"),
        (
            "POST",
            "/lb/api/backends",
            &format!(r#"{{"url": "{}/"}}"#, a.url()),
            409,
            "already",
        ),
        (
            "POST",
            "/lb/api/backends",
            r#"{"url": "http://x:1", "name": "backend-1"}"#,
            409,
            "taken",
        ),
        (
            "PATCH",
            "/lb/api/backends/backend-1",
            r#"{"weight": 1001}"#,
            400,
            "weight",
        ),
        (
            "PATCH",
            "/lb/api/backends/backend-1",
            r#"{"draining": "yes"}"#,
            400,
            "draining",
        ),
        (
            "PATCH",
            "/lb/api/backends/backend-1",
            r#"{}"#,
            400,
            "weight",
        ),
        (
            "PATCH",
            "/lb/api/backends/nobody",
            r#"{"weight": 2}"#,
            404,
            "nobody",
        ),
        ("DELETE", "/lb/api/backends/nobody", "", 404, "nobody"),
    ];
    for (method, path_, body, code, word) in cases {
        let body = (!body.is_empty()).then_some(body);
        let (status, answer) = call(&lb, method, path_, body).await;
        assert_eq!(status, code, "{method} {path_} {body:?}: {answer}");
        let message = answer["message"].as_str().expect("message");
        assert!(message.contains(word), "{method} {body:?}: {message}");
    }
    assert_eq!(std::fs::read_to_string(&path).expect("read"), before);
    assert_eq!(
        names(&call(&lb, "GET", "/lb/api/backends", None).await.1),
        ["backend-1"]
    );
}

/// A backend URL whose port is not 1–65535 in digits (or that carries user info) is refused
/// by the API and by a reload, naming the entry; nothing changes and nothing connects to the
/// scheme's default port instead.
#[actix_web::test]
async fn a_url_with_a_bad_port_is_refused_by_the_api_and_by_a_reload() {
    let a = TestBackend::start("a");
    let (settings, path) = with_pool_file(&[&a], json!([a.url()]));
    let lb = start_balancer(&settings);
    let bad = [
        ("http://127.0.0.1:notaport", "port"),
        ("http://127.0.0.1:99999", "port"),
        ("http://127.0.0.1:80abc", "port"),
        ("http://user:pw@127.0.0.1:80", "user info"),
    ];
    for (url, problem) in bad {
        let body = json!({ "url": url }).to_string();
        let (status, answer) = call(&lb, "POST", "/lb/api/backends", Some(&body)).await;
        assert_eq!(status, 400, "{url}: {answer}");
        let message = answer["message"].as_str().expect("message");
        assert!(
            message.contains("url") && message.contains(problem),
            "{url}: {message}"
        );
        std::fs::write(&path, json!({ "backends": [a.url(), url] }).to_string()).expect("write");
        let (status, answer) = call(&lb, "POST", "/lb/api/reload", None).await;
        assert_eq!(status, 400, "{url}: {answer}");
        let message = answer["message"].as_str().expect("message");
        assert!(
            message.contains("backends[1]") && message.contains(problem),
            "{url}: {message}"
        );
    }
    let members = lb.handle.members();
    assert_eq!(members.len(), 1, "the pool is unchanged");
    assert_eq!(members[0].backend.url, a.url());
}

/// When the pool file cannot be written, a change is refused with 503 and nothing changes.
#[actix_web::test]
async fn a_change_the_file_cannot_take_is_refused_and_changes_nothing() {
    let (a, b) = (TestBackend::start("a"), TestBackend::start("b"));
    let (mut settings, _) = with_pool_file(&[&a], json!([a.url()]));
    // A folder that does not exist: the temporary file cannot be created.
    settings.backends.file = Some(fresh_dir().join("gone").join("config.json"));
    let lb = start_balancer(&settings);
    let body = json!({"url": b.url()}).to_string();
    for (method, path, body) in [
        ("POST", "/lb/api/backends", Some(body.as_str())),
        (
            "PATCH",
            "/lb/api/backends/backend-1",
            Some(r#"{"weight": 2}"#),
        ),
        ("DELETE", "/lb/api/backends/backend-1", None),
    ] {
        let (status, answer) = call(&lb, method, path, body).await;
        assert_eq!(status, 503, "{method}: {answer}");
        let message = answer["message"].as_str().expect("message");
        assert!(
            message.contains("nothing was changed") && message.contains("gone"),
            "{message}"
        );
    }
    let members = lb.handle.members();
    assert_eq!(members.len(), 1);
    assert_eq!((members[0].weight, members[0].draining), (1, false));
    // Draining is not written to the file, so it still works.
    let (status, _) = call(
        &lb,
        "PATCH",
        "/lb/api/backends/backend-1",
        Some(r#"{"draining": true}"#),
    )
    .await;
    assert_eq!(status, 200);
}

/// A backend added through the API is probed at once and takes traffic within one probe
/// interval; weight changes and drains apply at once; every change is in the pool file.
#[actix_web::test]
async fn added_backends_take_traffic_and_changes_reach_the_file() {
    let (a, b) = (TestBackend::start("a"), TestBackend::start("b"));
    let (mut settings, path) = with_pool_file(&[&a], json!([a.url()]));
    // One probe interval is the bound: a new backend must not wait for healthy_threshold (2)
    // probes, which would take a whole interval more.
    settings.health.interval = Duration::from_secs(1);
    let lb = start_balancer(&settings);
    let body = json!({"url": b.url(), "weight": 2, "name": "bee"}).to_string();
    let added_at = Instant::now();
    let (status, added) = call(&lb, "POST", "/lb/api/backends", Some(&body)).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(
        (added["name"].as_str(), added["weight"].as_u64()),
        (Some("bee"), Some(2))
    );
    assert_eq!(
        pool_file(&path),
        json!({"backends": [a.url(), {"url": b.url(), "weight": 2, "name": "bee"}]})
    );
    let mut seen_b = false;
    while !seen_b {
        assert!(
            added_at.elapsed() < Duration::from_millis(400),
            "no traffic reached it"
        );
        seen_b = served_by(&lb, "/", &[]).await == "b";
    }
    let (status, patched) = call(
        &lb,
        "PATCH",
        "/lb/api/backends/bee",
        Some(r#"{"weight": 5}"#),
    )
    .await;
    assert_eq!((status, patched["weight"].as_u64()), (200, Some(5)));
    assert_eq!(pool_file(&path)["backends"][1]["weight"], 5);
    let (status, drained) = call(
        &lb,
        "PATCH",
        "/lb/api/backends/backend-1",
        Some(r#"{"draining": true}"#),
    )
    .await;
    assert_eq!((status, drained["draining"].as_bool()), (200, Some(true)));
    for _ in 0..5 {
        assert_eq!(served_by(&lb, "/", &[]).await, "b");
    }
    call(
        &lb,
        "PATCH",
        "/lb/api/backends/backend-1",
        Some(r#"{"draining": false}"#),
    )
    .await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..12 {
        seen.insert(served_by(&lb, "/", &[]).await);
    }
    assert_eq!(seen.len(), 2, "backend-1 takes requests again");
}

/// Deleting a backend while a slow request is in flight on it: that request completes with
/// 200, the backend gets no new request, and it leaves the pool (and the file) afterwards.
#[actix_web::test]
async fn a_deleted_backend_finishes_its_request_and_gets_no_new_one() {
    let (a, b) = (TestBackend::start("a"), TestBackend::start("b"));
    let (settings, path) = with_pool_file(&[&a, &b], json!([a.url(), b.url()]));
    let lb = start_balancer(&settings);
    // Round-robin: the first request goes to backend-1 (a).
    let slow = actix_rt::spawn({
        let url = lb.url("/slow/600");
        async move {
            let mut res = client().get(url).send().await.expect("response");
            (res.status().as_u16(), res.body().await.expect("body"))
        }
    });
    eventually("the slow request reaches a", Duration::from_secs(5), || {
        (!a.requests().is_empty()).then_some(())
    })
    .await;
    let (status, leaving) = call(&lb, "DELETE", "/lb/api/backends/backend-1", None).await;
    assert_eq!(status, 202, "{leaving}");
    assert_eq!(leaving["draining"], true);
    assert_eq!(leaving["in_flight"], 1);
    assert_eq!(
        pool_file(&path),
        json!({"backends": [{"url": b.url(), "name": "backend-2"}]})
    );
    for _ in 0..6 {
        assert_eq!(served_by(&lb, "/", &[]).await, "b");
    }
    let (status, list) = call(&lb, "GET", "/lb/api/backends", None).await;
    assert_eq!(
        (status, names(&list)),
        (200, vec!["backend-2".to_owned(), "backend-1".to_owned()])
    );
    let (code, body) = slow.await.expect("slow request");
    assert_eq!(code, 200, "{body:?}");
    assert_eq!(a.requests().len(), 1, "a got a new request while draining");
    let gone = eventually("backend-1 leaves", Duration::from_secs(3), || {
        let members = lb.handle.members();
        (members.len() == 1).then_some(members)
    })
    .await;
    assert_eq!(gone[0].backend.name, "backend-2");
    let history = lb
        .handle
        .events()
        .subscribe(None)
        .await
        .expect("subscribe")
        .history;
    let said = |wanted: fn(&LbEvent) -> bool| history.iter().any(|e| wanted(&e.event));
    assert!(said(
        |e| matches!(e, LbEvent::BackendDraining { backend, draining: true, .. } if backend == "backend-1")
    ));
    assert!(said(
        |e| matches!(e, LbEvent::BackendRemoved { backend, .. } if backend == "backend-1")
    ));
}

/// A removed backend whose request outlasts the drain grace (`server.shutdown_timeout_secs`)
/// leaves the pool when the grace ends; the request itself is not cut and still completes.
#[actix_web::test]
async fn a_removed_backend_leaves_when_the_drain_grace_ends() {
    let (a, b) = (TestBackend::start("a"), TestBackend::start("b"));
    let (mut settings, _) = with_pool_file(&[&a, &b], json!([]));
    settings.server.shutdown_timeout = Duration::from_secs(1);
    let lb = start_balancer(&settings);
    let slow = actix_rt::spawn({
        let url = lb.url("/slow/2500");
        async move {
            client()
                .get(url)
                .send()
                .await
                .expect("response")
                .status()
                .as_u16()
        }
    });
    eventually("the slow request reaches a", Duration::from_secs(5), || {
        (!a.requests().is_empty()).then_some(())
    })
    .await;
    let removed_at = Instant::now();
    assert_eq!(
        call(&lb, "DELETE", "/lb/api/backends/backend-1", None)
            .await
            .0,
        202
    );
    eventually(
        "backend-1 leaves at the grace's end",
        Duration::from_secs(3),
        || (lb.handle.members().len() == 1).then_some(()),
    )
    .await;
    let waited = removed_at.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "left after {waited:?}, before the grace"
    );
    assert_eq!(slow.await.expect("slow request"), 200);
}

/// `POST /lb/api/reload` applies the file's difference (kept members keep their counters); a
/// broken file answers 400 naming the problem and leaves the pool as it was.
#[actix_web::test]
async fn reload_applies_the_difference_and_a_broken_file_changes_nothing() {
    let (a, b, c) = (
        TestBackend::start("a"),
        TestBackend::start("b"),
        TestBackend::start("c"),
    );
    let (settings, path) = with_pool_file(&[&a, &b], json!([a.url(), b.url()]));
    let lb = start_balancer(&settings);
    for _ in 0..4 {
        served_by(&lb, "/", &[]).await;
    }
    let next = json!({"backends": [{"url": a.url(), "weight": 3}, c.url()]});
    std::fs::write(&path, next.to_string()).expect("write");
    let (status, report) = call(&lb, "POST", "/lb/api/reload", None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report,
        json!({"added": ["backend-3"], "removed": ["backend-2"], "changed": ["backend-1"]})
    );
    let members = lb.handle.members();
    assert_eq!(
        (members[0].requests, members[0].weight),
        (2, 3),
        "a kept its counters"
    );
    eventually("c joins", Duration::from_secs(3), || {
        lb.handle
            .members()
            .iter()
            .any(|m| m.backend.name == "backend-3" && m.healthy)
            .then_some(())
    })
    .await;
    // b drains out on its own; the broken files below must find the pool settled.
    eventually("b leaves", Duration::from_secs(3), || {
        lb.handle.members().iter().all(|m| !m.leaving).then_some(())
    })
    .await;
    for broken in [
        "{\"backends\": [",
        "{\"backends\": []}",
        &json!({"backends": [a.url(), {"url": c.url(), "weight": 0}]}).to_string(),
    ] {
        std::fs::write(&path, broken).expect("write");
        let before = lb.handle.members();
        let (status, answer) = call(&lb, "POST", "/lb/api/reload", None).await;
        assert_eq!(status, 400, "{broken}: {answer}");
        let message = answer["message"].as_str().expect("message");
        assert!(
            message.contains("config.json") && message.contains("backends"),
            "{message}"
        );
        let after = lb.handle.members();
        let shape = |m: &[loadbalancer::MemberStatus]| {
            m.iter()
                .map(|m| (m.backend.name.clone(), m.weight, m.draining))
                .collect::<Vec<_>>()
        };
        assert_eq!(shape(&before), shape(&after), "{broken}");
    }
}

/// With `backends.watch`, an edited pool file is reloaded by itself.
#[actix_web::test]
async fn an_edited_pool_file_is_reloaded_by_the_watch() {
    let (a, b) = (TestBackend::start("a"), TestBackend::start("b"));
    let (mut settings, path) = with_pool_file(&[&a], json!([a.url()]));
    settings.backends.watch = true;
    let lb = start_balancer(&settings);
    // Replace the file the way editors do: write elsewhere, rename over it.
    let temporary = path.with_extension("new");
    std::fs::write(
        &temporary,
        json!({"backends": [a.url(), b.url()]}).to_string(),
    )
    .expect("write");
    std::fs::rename(&temporary, &path).expect("rename");
    eventually("the watch adds b", Duration::from_secs(3), || {
        let members = lb.handle.members();
        (members.len() == 2 && members[1].healthy).then_some(())
    })
    .await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(served_by(&lb, "/", &[]).await);
    }
    assert_eq!(seen.len(), 2);
}

/// With the simulation on, a loopback backend added at run time is simulated too.
#[actix_web::test]
async fn the_simulation_serves_backends_added_at_run_time() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let first = free.local_addr().expect("addr");
    let free2 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let second = free2.local_addr().expect("addr");
    drop((free, free2));
    let mut settings = settings_for(&[format!("http://{first}")]);
    settings.simulation.enabled = true;
    settings.simulation.plan.mean_up = Duration::from_secs(3600);
    settings.health.interval = Duration::from_millis(100);
    let lb = start_balancer(&settings);
    let body = json!({"url": format!("http://{second}")}).to_string();
    let (status, added) = call(&lb, "POST", "/lb/api/backends", Some(&body)).await;
    assert_eq!(status, 201, "{added}");
    let reply = eventually(
        "the simulated backend answers",
        Duration::from_secs(3),
        || std::net::TcpStream::connect(second).ok(),
    )
    .await;
    drop(reply);
    let (_, status) = call(&lb, "GET", "/lb/api/status", None).await;
    assert_eq!(status["backends"][1]["simulated"], true, "{status}");
}

/// Eight clients in a loop while the pool is reloaded six times (members added, removed,
/// re-weighted): not one request fails.
#[actix_web::test]
async fn eight_clients_see_no_failure_while_the_pool_is_reloaded_six_times() {
    let backends: Vec<TestBackend> = (0..4)
        .map(|i| TestBackend::start(&format!("b{i}")))
        .collect();
    let urls: Vec<String> = backends.iter().map(TestBackend::url).collect();
    let (mut settings, path) = with_pool_file(&[&backends[0], &backends[1]], json!([]));
    settings.rate_limit.enabled = false;
    let lb = start_balancer(&settings);
    let pools = [
        json!([urls[0], urls[1], urls[2]]),
        json!([urls[1], urls[2]]),
        json!([{"url": urls[2], "weight": 3}, urls[3]]),
        json!([urls[0], urls[3]]),
        json!([urls[0], {"url": urls[1], "weight": 2}, urls[3]]),
        json!([urls[1]]),
    ];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (url, stop) = (lb.url("/slow/5"), std::sync::Arc::clone(&stop));
            actix_rt::spawn(async move {
                let (mut ok, mut failed) = (0, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match client().get(&url).send().await {
                        Ok(res) if res.status() == 200 => ok += 1,
                        Ok(res) => failed.push(res.status().to_string()),
                        Err(err) => failed.push(err.to_string()),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    for pool in &pools {
        actix_rt::time::sleep(Duration::from_millis(250)).await;
        std::fs::write(&path, json!({ "backends": pool }).to_string()).expect("write");
        let (status, report) = call(&lb, "POST", "/lb/api/reload", None).await;
        assert_eq!(status, 200, "{report}");
    }
    actix_rt::time::sleep(Duration::from_millis(250)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let (ok, failed) = client.await.expect("client task");
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        total += ok;
    }
    assert!(total > 100, "only {total} requests were made");
    let last = lb.handle.members();
    assert!(last.iter().any(|m| m.backend.url == urls[1] && !m.leaving));
}

/// `--check` prints what would run and exits 0; a broken pool file is exit 2 naming it.
#[test]
fn check_validates_and_exits_without_serving() {
    use common::process::{write, BIN};
    let dir = fresh_dir();
    write(
        &dir,
        "pool.json",
        r#"{"backends": ["http://127.0.0.1:9", {"url": "http://127.0.0.1:10", "weight": 4, "name": "big"}]}"#,
    );
    write(&dir, "Settings.toml", "[server]\nlisten = \"127.0.0.1:1\"\n[backends]\nfile = \"pool.json\"\nstrategy = \"power_of_two\"\n[simulation]\nenabled = false\n");
    let run = || {
        std::process::Command::new(BIN)
            .args(["--settings", "Settings.toml", "--check"])
            .current_dir(&dir)
            .output()
            .expect("run")
    };
    let ok = run();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("configuration ok") && stdout.contains("power_of_two"),
        "{stdout}"
    );
    assert!(
        stdout.contains("big http://127.0.0.1:10 weight 4"),
        "{stdout}"
    );
    write(
        &dir,
        "pool.json",
        r#"{"backends": [{"url": "http://127.0.0.1:9", "weight": 5000}]}"#,
    );
    let bad = run();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pool.json") && stderr.contains("backends[0].weight"),
        "{stderr}"
    );
    assert!(bad.stdout.is_empty());
}

/// SIGHUP reloads the pool file of the running binary (and does not end it).
#[test]
fn sighup_reloads_the_pool_file() {
    use common::process::{http, launch, signal, write, write_config};
    let dir = fresh_dir();
    let (first, second) = (common::process::ok_backend(), common::process::ok_backend());
    write_config(&dir, first, "", "[health]\ninterval_ms = 100\n");
    let (mut child, addr) = launch(&dir, &[]);
    write(
        &dir,
        "pool.json",
        &json!({"backends": [format!("http://{first}"), format!("http://{second}")]}).to_string(),
    );
    signal(&child, "HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = http(addr, "GET", "/lb/api/backends", &[], None);
        assert_eq!(status, 200, "{body}");
        let list: Value = serde_json::from_str(&body).expect("JSON");
        if list
            .as_array()
            .is_some_and(|l| l.len() == 2 && l[1]["state"] == "up")
        {
            break;
        }
        assert!(Instant::now() < deadline, "not reloaded: {list}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().expect("wait").is_none(),
        "SIGHUP ended the process"
    );
    signal(&child, "TERM");
    let status = common::process::wait_with_deadline(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

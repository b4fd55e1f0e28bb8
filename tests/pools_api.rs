//! The pools and routes APIs through a real balancer: a pool added, routed to, changed, refused
//! removal while a route names it, then removed with its backends draining; every change
//! written back to the pool file; bad bodies refused with the field's path and nothing changed.

mod common;

use std::path::Path;
use std::time::Duration;

use common::backend::TestBackend;
use common::{call, client, eventually, fresh_dir, settings_for, start_balancer};
use serde_json::{json, Value};

fn pool_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("pool JSON")
}

/// `(status, body)` of a JSON call with a body.
async fn send(lb: &common::TestBalancer, method: &str, path: &str, body: &Value) -> (u16, Value) {
    call(lb, method, path, Some(&body.to_string())).await
}

#[actix_web::test]
async fn pools_and_routes_change_at_run_time_and_are_written_back() {
    let (main, api) = (TestBackend::start("main"), TestBackend::start("api"));
    let mut settings = settings_for(&[main.url()]);
    let path = fresh_dir().join("config.json");
    std::fs::write(&path, json!({"backends": [main.url()]}).to_string()).expect("write");
    settings.backends.file = Some(path.clone());
    settings.backends.watch = false;
    let lb = start_balancer(&settings);

    let bad = json!({"name": "api", "backends": [api.url(), "nope"]});
    let (status, body) = send(&lb, "POST", "/lb/api/pools", &bad).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .starts_with("backends[1]"),
        "{body}"
    );
    let pool = json!({"name": "api", "backends": [api.url()], "health_path": "/healthz"});
    let (status, body) = send(&lb, "POST", "/lb/api/pools", &pool).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["name"].as_str(), body["health_path"].as_str()),
        (Some("api"), Some("/healthz"))
    );
    assert_eq!(body["backends"][0]["pool"], "api");
    let (status, _) = send(&lb, "POST", "/lb/api/pools", &pool).await;
    assert_eq!(status, 409, "a second pool of the name");
    assert_eq!(pool_file(&path)["pools"]["api"]["health_path"], "/healthz");

    let wrong = json!([{"name": "api", "path_prefix": "/api/", "pool": "nope"}]);
    let (status, body) = send(&lb, "PUT", "/lb/api/routes", &wrong).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("routes[0].pool"),
        "{body}"
    );
    let routes =
        json!([{"name": "api", "path_prefix": "/api/", "pool": "api", "strip_prefix": true}]);
    let (status, body) = send(&lb, "PUT", "/lb/api/routes", &routes).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(pool_file(&path)["routes"], routes);
    let res = client()
        .get(lb.url("/api/users"))
        .send()
        .await
        .expect("response");
    assert_eq!(res.headers().get("x-backend").expect("backend"), "api");
    assert_eq!(api.targets(), ["/users"]);

    let (status, body) = call(&lb, "DELETE", "/lb/api/pools/api", None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("Route \"api\""),
        "{body}"
    );
    let patch = json!({"host_header": "backend", "strategy": "least_connections"});
    let (status, body) = send(&lb, "PATCH", "/lb/api/pools/api", &patch).await;
    assert_eq!(
        (status, body["strategy"].as_str()),
        (200, Some("least_connections")),
        "{body}"
    );
    client()
        .get(lb.url("/api/again"))
        .send()
        .await
        .expect("response");
    let host = api.requests()[1]
        .headers
        .get("host")
        .cloned()
        .expect("host");
    assert_eq!(host.to_str().expect("host"), api.addr.to_string());
    assert_eq!(pool_file(&path)["pools"]["api"]["host_header"], "backend");
    let (status, _) = send(&lb, "PATCH", "/lb/api/pools/api", &json!({"colour": "red"})).await;
    assert_eq!(status, 400);

    let (status, _) = send(&lb, "PUT", "/lb/api/routes", &json!([])).await;
    assert_eq!(status, 200);
    let (status, body) = call(&lb, "DELETE", "/lb/api/pools/api", None).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        pool_file(&path).get("pools").is_none(),
        "{}",
        pool_file(&path)
    );
    eventually("the removed pool is gone", Duration::from_secs(5), || {
        lb.handle
            .members()
            .iter()
            .all(|m| &*m.backend.pool == "default")
            .then_some(())
    })
    .await;
    let (status, list) = call(&lb, "GET", "/lb/api/pools", None).await;
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(1)));
    for (method, path) in [
        ("GET", "/lb/api/pools/nope"),
        ("GET", "/lb/api/routes/x"),
        ("POST", "/lb/api/routes"),
    ] {
        let (status, body) = call(&lb, method, path, None).await;
        assert!(status == 404 || status == 405, "{method} {path}: {status}");
        assert!(body["code"].is_number(), "{method} {path}: {body}");
    }
    assert_eq!(main.requests().len(), 0, "nothing of /lb/ was proxied");
}

//! Routes and pools through a real balancer in front of real backends: each matcher (host,
//! wildcard host, path prefix, method, header), the order between them, `strip_prefix`,
//! `host_header`, a pool's own probe path, the 404 without a default pool, the balancer's own
//! paths never routed, the status's pools and routes, and a reload that swaps routes while
//! traffic flows.

mod common;

use std::time::Duration;

use common::backend::TestBackend;
use common::{call, client, eventually, settings_from_files, start_balancer, TestBalancer};
use serde_json::{json, Value};

/// Sends `method path` with `headers`; the status and the answering backend's name.
async fn send(
    lb: &TestBalancer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>) {
    let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client().request(method, lb.url(path));
    for header in headers {
        req = req.insert_header(*header);
    }
    let res = req.send().await.expect("response");
    let backend = res
        .headers()
        .get("x-backend")
        .map(|v| v.to_str().expect("name").to_owned());
    (res.status().as_u16(), backend)
}

async fn served_by(
    lb: &TestBalancer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> String {
    let (status, backend) = send(lb, method, path, headers).await;
    assert_eq!(status, 200, "{method} {path} {headers:?}");
    backend.expect("X-Backend")
}

/// A request (method, path, headers) and the backend that must answer it.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// Every matcher sends its requests to its pool, in the contract's order; the rest go to the
/// default pool.
#[actix_web::test]
async fn each_matcher_chooses_its_pool() {
    let (main, api, canary, shop, writes) = (
        TestBackend::start("main"),
        TestBackend::start("api"),
        TestBackend::start("canary"),
        TestBackend::start("shop"),
        TestBackend::start("writes"),
    );
    let file = json!({
        "backends": [main.url()],
        "pools": {
            "api": {"backends": [api.url()]},
            "canary": {"backends": [canary.url()]},
            "shop": {"backends": [shop.url()]},
            "writes": {"backends": [writes.url()]}
        },
        "routes": [
            {"name": "api", "path_prefix": "/api/", "pool": "api"},
            {"name": "canary", "path_prefix": "/api/", "headers": {"X-Canary": "1"}, "pool": "canary"},
            {"name": "writes", "path_prefix": "/api/", "methods": ["POST", "PUT"], "pool": "writes"},
            {"name": "shop", "hosts": ["shop.test", "*.shop.test"], "pool": "shop"}
        ]
    });
    let (settings, _) = settings_from_files(&file, "");
    let lb = start_balancer(&settings);
    let cases: &[Case] = &[
        ("GET", "/", &[], "main"),
        ("GET", "/api", &[], "main"),
        ("GET", "/api/users", &[], "api"),
        ("GET", "/api/users", &[("X-Canary", "1")], "canary"),
        ("GET", "/api/users", &[("X-Canary", "2")], "api"),
        ("POST", "/api/users", &[], "writes"),
        ("GET", "/api/users", &[("Host", "shop.test")], "shop"),
        ("GET", "/x", &[("Host", "EU.Shop.Test:8080")], "shop"),
        ("GET", "/x", &[("Host", "notshop.test")], "main"),
    ];
    for (method, path, headers, pool) in cases {
        let got = served_by(&lb, method, path, headers).await;
        assert_eq!(got, *pool, "{method} {path} {headers:?}");
    }
    let (status, status_body) = call(&lb, "GET", "/lb/api/status", None).await;
    assert_eq!(status, 200);
    let routes = status_body["routes"].as_array().expect("routes");
    let requests: Vec<u64> = routes
        .iter()
        .map(|r| r["requests"].as_u64().expect("requests"))
        .collect();
    assert_eq!(requests, [2, 1, 1, 2], "{routes:?}");
    let pools: Vec<&str> = status_body["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(pools, ["default", "api", "canary", "shop", "writes"]);
    let backend_pools: Vec<&str> = status_body["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| b["pool"].as_str().expect("pool"))
        .collect();
    assert_eq!(backend_pools, pools, "one backend per pool, each naming it");
}

/// `strip_prefix` forwards the rest of the path (a leading `/` kept, the query too);
/// `host_header: backend` sends the backend's own `host:port`, `client` the client's.
#[actix_web::test]
async fn strips_the_prefix_and_sets_the_host() {
    let (v1, v2) = (TestBackend::start("v1"), TestBackend::start("v2"));
    let file = json!({
        "pools": {
            "v1": {"backends": [v1.url()], "host_header": "backend"},
            "v2": {"backends": [v2.url()]}
        },
        "routes": [
            {"name": "v1", "path_prefix": "/v1", "strip_prefix": true, "pool": "v1"},
            {"name": "v2", "path_prefix": "/v2/", "pool": "v2"}
        ]
    });
    let (settings, _) = settings_from_files(&file, "");
    let lb = start_balancer(&settings);
    let host = ("Host", "www.example.com");
    for path in ["/v1/users?page=2", "/v1", "/v1?x=/v1"] {
        served_by(&lb, "GET", path, &[host]).await;
    }
    served_by(&lb, "GET", "/v2/users?page=2", &[host]).await;
    assert_eq!(v1.targets(), ["/users?page=2", "/", "/?x=/v1"]);
    assert_eq!(v2.targets(), ["/v2/users?page=2"]);
    let sent_host = |b: &TestBackend| {
        b.requests()[0]
            .headers
            .get("host")
            .map(|v| v.to_str().expect("host").to_owned())
    };
    assert_eq!(sent_host(&v1), Some(v1.addr.to_string()));
    assert_eq!(sent_host(&v2).as_deref(), Some("www.example.com"));
    assert_eq!(
        v1.requests()[0]
            .headers
            .get("x-forwarded-host")
            .map(|v| v.as_bytes()),
        Some(&b"www.example.com"[..]),
        "the client's host still goes as X-Forwarded-Host"
    );
}

/// Without a default pool, a request no route takes is a JSON 404 naming it; the balancer's own
/// paths are answered by the balancer even under a route for `/`.
#[actix_web::test]
async fn no_default_pool_is_a_404_and_namespaces_are_never_routed() {
    let api = TestBackend::start("api");
    let file = json!({
        "pools": {"api": {"backends": [api.url()]}},
        "routes": [
            {"name": "api", "hosts": ["api.test"], "path_prefix": "/", "pool": "api"}
        ]
    });
    let (settings, _) = settings_from_files(&file, "");
    let lb = start_balancer(&settings);
    let res = client()
        .get(lb.url("/orders?id=1"))
        .insert_header(("Host", "other.test"))
        .send()
        .await;
    let mut res = res.expect("response");
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(
        body["message"], "No route matches GET other.test/orders",
        "{body}"
    );
    assert_eq!(
        served_by(&lb, "GET", "/orders", &[("Host", "api.test")]).await,
        "api"
    );
    for (path, code) in [
        ("/lb/health", 200),
        ("/lb/nothing", 404),
        ("/clients/x", 404),
    ] {
        let (status, backend) = send(&lb, "GET", path, &[("Host", "api.test")]).await;
        assert!(backend.is_none(), "{path} was proxied");
        assert_eq!(status, code, "{path}");
    }
    let (status, _) = call(&lb, "GET", "/lb/api/backends", None).await;
    assert_eq!(status, 404, "no default pool: /lb/api/backends is 404");
    let (status, list) = call(&lb, "GET", "/lb/api/pools/api/backends", None).await;
    assert_eq!((status, list[0]["pool"].as_str()), (200, Some("api")));
    assert_eq!(api.targets(), ["/orders"]);
}

/// Each pool's backends are probed on that pool's `health_path`; a URL in two pools is two
/// members with their own counters.
#[actix_web::test]
async fn pools_probe_their_own_path_and_count_apart() {
    let shared = TestBackend::start("shared");
    let file = json!({
        "backends": [shared.url()],
        "pools": {"api": {"backends": [shared.url()], "health_path": "/healthz"}},
        "routes": [{"name": "api", "path_prefix": "/api/", "pool": "api"}]
    });
    let (settings, _) = settings_from_files(&file, "");
    let lb = start_balancer(&settings);
    eventually("probes on both paths", Duration::from_secs(5), || {
        let paths = shared.probe_paths.lock().expect("lock").clone();
        (paths.iter().any(|p| p == "/healthz") && paths.iter().any(|p| p == "/")).then_some(())
    })
    .await;
    for _ in 0..3 {
        served_by(&lb, "GET", "/api/x", &[]).await;
    }
    served_by(&lb, "GET", "/x", &[]).await;
    let counts: Vec<(String, u64)> = lb
        .handle
        .members()
        .iter()
        .map(|m| (m.backend.pool.to_string(), m.requests))
        .collect();
    assert_eq!(counts, [("default".to_owned(), 1), ("api".to_owned(), 3)]);
}

/// A reload swaps pools and routes together while requests flow, and none of them fails; a
/// broken file changes nothing and names the path of its problem.
#[actix_web::test]
async fn a_reload_swaps_routes_under_load_and_a_bad_file_changes_nothing() {
    let (old, new) = (TestBackend::start("old"), TestBackend::start("new"));
    let file = |pool: &str| {
        json!({
            "backends": [old.url()],
            "pools": {pool: {"backends": [new.url()]}},
            "routes": [{"name": "moving", "path_prefix": "/m/", "pool": pool}]
        })
    };
    let (mut settings, path) = settings_from_files(&file("first"), "");
    settings.rate_limit.enabled = false;
    let lb = start_balancer(&settings);
    assert_eq!(served_by(&lb, "GET", "/m/1", &[]).await, "new");
    let load = async {
        let mut codes = Vec::new();
        for i in 0..200 {
            let (status, _) = send(&lb, "GET", &format!("/m/{i}"), &[]).await;
            codes.push(status);
        }
        codes
    };
    let swap = async {
        std::fs::write(&path, file("second").to_string()).expect("write");
        let (status, report) = call(&lb, "POST", "/lb/api/reload", None).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["pools_added"], json!(["second"]), "{report}");
        assert_eq!(report["pools_removed"], json!(["first"]), "{report}");
        assert_eq!(report["routes_changed"], json!(true), "{report}");
    };
    let (codes, ()) = futures_util::future::join(load, swap).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let bad = json!({"backends": [old.url()], "routes": [{"name": "r", "pool": "gone"}]});
    std::fs::write(&path, bad.to_string()).expect("write");
    let (status, body) = call(&lb, "POST", "/lb/api/reload", None).await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("routes[0].pool"), "{message}");
    assert_eq!(served_by(&lb, "GET", "/m/x", &[]).await, "new", "unchanged");
    let (_, status_body) = call(&lb, "GET", "/lb/api/status", None).await;
    assert_eq!(status_body["routes"][0]["pool"], "second");
}

/// A GET of `path`; the status, the JSON body of a refusal and the RateLimit headers.
async fn limited(lb: &TestBalancer, path: &str) -> (u16, Value, String, String) {
    let mut res = client().get(lb.url(path)).send().await.expect("response");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map_or(String::new(), |v| v.to_str().expect("text").to_owned())
    };
    let (policy, left) = (header("ratelimit-policy"), header("ratelimit"));
    let status = res.status().as_u16();
    let body = if status == 429 {
        res.json().await.expect("JSON")
    } else {
        Value::Null
    };
    (status, body, policy, left)
}

/// `cost` takes that many tokens from the client's bucket; a route with `limits` has a bucket
/// per client, and under concurrency a request is admitted only when both buckets have the
/// tokens, neither charged otherwise; a 429 names the bucket that refused, and
/// `RateLimit-Policy` names both policies.
#[actix_web::test]
async fn limits_per_route_take_both_buckets_or_neither() {
    let app = TestBackend::start("app");
    let file = json!({
        "backends": [app.url()],
        "routes": [
            {"name": "search", "path_prefix": "/search", "pool": "default",
             "limits": {"capacity": 3, "rate_per_sec": 0.001}},
            {"name": "export", "path_prefix": "/export", "pool": "default", "cost": 5},
            {"name": "free", "path_prefix": "/free", "pool": "default", "cost": 0}
        ]
    });
    let limits = "[rate_limit]\ndefault_capacity = 20\ndefault_rate_per_sec = 0.001\n";
    let (settings, _) = settings_from_files(&file, limits);
    let lb = start_balancer(&settings);
    let searches = (0..10).map(|_| limited(&lb, "/search"));
    let answers = futures_util::future::join_all(searches).await;
    let admitted = answers.iter().filter(|a| a.0 == 200).count();
    assert_eq!(admitted, 3, "the route's bucket holds 3");
    let refused = answers.iter().find(|a| a.0 == 429).expect("a refusal");
    assert_eq!(refused.1["limit"], "route:search", "{}", refused.1);
    assert_eq!(refused.2, "\"default\";q=20;w=20000, \"search\";q=3;w=3000");
    assert!(refused.3.starts_with("\"search\";r=0;"), "{}", refused.3);
    // 17 tokens left in the client's bucket: three exports of 5 go, the fourth does not.
    for _ in 0..3 {
        assert_eq!(limited(&lb, "/export").await.0, 200);
    }
    let (status, body, _, left) = limited(&lb, "/export").await;
    assert_eq!((status, &body["limit"]), (429, &json!("client")), "{body}");
    assert!(left.starts_with("\"default\";r=2;"), "{left}");
    let (status, _, _, left) = limited(&lb, "/free").await;
    assert_eq!(status, 200, "cost 0 is not counted");
    assert!(left.starts_with("\"default\";r=2;"), "{left}");
    let (_, status_body) = call(&lb, "GET", "/lb/api/status", None).await;
    let rate_limited: Vec<u64> = status_body["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| r["rate_limited"].as_u64().expect("count"))
        .collect();
    assert_eq!(rate_limited, [7, 1, 0]);
    let mut res = client()
        .get(lb.url("/lb/metrics"))
        .send()
        .await
        .expect("metrics");
    let text = String::from_utf8(res.body().await.expect("body").to_vec()).expect("text");
    for line in [
        r#"lb_route_rate_limited_total{route="search"} 7"#,
        r#"lb_route_requests_total{route="search",code="429"} 7"#,
        r#"lb_route_requests_total{route="export",code="200"} 3"#,
        r#"lb_requests_total{pool="default",backend="backend-1",code="200"} 7"#,
    ] {
        assert!(text.contains(line), "{line} not in {text}");
    }
    assert_eq!(app.targets().len(), 3 + 3 + 1);
}

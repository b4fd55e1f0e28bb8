//! The Grafana dashboard (`docs/grafana/loadbalancer.json`) against a real Prometheus scraping a
//! real balancer under traffic: every query of every panel must return data through
//! Prometheus's HTTP API, so the dashboard cannot name a metric or label that does not exist.
//! The balancer runs in cluster mode on a real `redis-server` (for the Redis panel), with a
//! route that has limits, a registered client held at its limit, a backend answering 500 and a
//! pool whose backend refuses connections.

mod common;

use std::time::{Duration, Instant};

use common::backend::TestBackend;
use common::prometheus::Prometheus;
use common::redis::RedisServer;
use common::{call, client, refused_addr, settings_from_files, start_balancer, TestBalancer};
use serde_json::{json, Value};

const DASHBOARD: &str = include_str!("../docs/grafana/loadbalancer.json");

/// Every PromQL expression of the dashboard, with Grafana's `$__rate_interval` as one minute.
fn queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("a title");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            queries.push((title.to_owned(), expr.replace("$__rate_interval", "1m")));
        }
    }
    queries
}

/// Requests of every kind the dashboard shows, once.
async fn traffic(lb: &TestBalancer) {
    let send = |path: &str, key: Option<&str>| {
        let mut req = client().get(lb.url(path));
        if let Some(key) = key {
            req = req.insert_header(("X-API-Key", key.to_owned()));
        }
        req.send()
    };
    for (path, key) in [
        ("/", None),
        ("/export/report", None),
        ("/status/500", None),
        ("/spare/x", None),
        ("/", Some("acme")),
    ] {
        let _ = send(path, key).await;
    }
}

/// Whether `expr` returns at least one sample now.
async fn has_data(prometheus: &Prometheus, expr: &str) -> bool {
    let Ok(mut res) = client()
        .get(format!("{}/api/v1/query", prometheus.url))
        .query(&[("query", expr)])
        .expect("query string")
        .send()
        .await
    else {
        return false;
    };
    let Ok(answer) = res.json::<Value>().limit(1 << 20).await else {
        return false;
    };
    assert_ne!(answer["status"], "error", "{expr}: {answer}");
    answer["data"]["result"]
        .as_array()
        .is_some_and(|result| !result.is_empty())
}

#[actix_web::test]
async fn every_dashboard_query_returns_data() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = TestBackend::start("app");
    let file = json!({
        "backends": [app.url()],
        "pools": {"spare": {"backends": [format!("http://{}", refused_addr())]}},
        "routes": [
            {"name": "export", "pool": "default", "path_prefix": "/export",
             "limits": {"capacity": 2, "rate_per_sec": 0.001}},
            {"name": "spare", "pool": "spare", "path_prefix": "/spare"}
        ]
    });
    let cluster = format!("[cluster]\nredis_url = \"{}\"\n", redis.url());
    let (settings, _) = settings_from_files(&file, &cluster);
    let lb = start_balancer(&settings);
    let Some(prometheus) = Prometheus::scraping(&lb.addr.to_string()) else {
        return;
    };
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = call(&lb, "GET", "/lb/api/status", None).await;
        if status == 200 && body["cluster"]["redis"] == "up" {
            break;
        }
        assert!(Instant::now() < until, "Redis up: {body}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let acme = json!({"client_id": "acme", "capacity": 1, "rate_per_sec": 0.001}).to_string();
    assert_eq!(call(&lb, "POST", "/clients", Some(&acme)).await.0, 201);

    let mut waiting = queries();
    assert!(waiting.len() >= 15, "the dashboard's queries: {waiting:?}");
    let until = Instant::now() + Duration::from_secs(90);
    while !waiting.is_empty() {
        traffic(&lb).await;
        let mut still = Vec::new();
        for (title, expr) in waiting {
            if !has_data(&prometheus, &expr).await {
                still.push((title, expr));
            }
        }
        waiting = still;
        let log = std::fs::read_to_string(prometheus.dir.join("log")).unwrap_or_default();
        assert!(
            Instant::now() < until,
            "no data after 90 s for {waiting:#?}\nprometheus log:\n{log}"
        );
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    }
}

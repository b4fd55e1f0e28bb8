//! What an operator reads: /lb/api/status, /lb/metrics (Prometheus text) and the server-sent
//! events of /lb/api/events, from real clients.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use common::backend::TestBackend;
use common::{client, get_status, refused_addr, settings_for, start_balancer, TestBalancer};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Samples of a Prometheus text exposition: `name{labels}` → value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn metrics(lb: &TestBalancer) -> HashMap<String, f64> {
    let mut res = client()
        .get(lb.url("/lb/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(res.status(), 200);
    let body = res.body().await.expect("body");
    parse_metrics(std::str::from_utf8(&body).expect("utf-8"))
}

/// Counters move with traffic: requests by backend and code, 429s, failures, gauges.
#[actix_web::test]
async fn metrics_count_what_happened() {
    let live = TestBackend::start("live");
    let mut settings = settings_for(&[format!("http://{}", refused_addr()), live.url()]);
    settings.rate_limit.default_capacity = 5;
    settings.rate_limit.default_rate_per_sec = 0.001;
    settings.health.interval = Duration::from_secs(600);
    let lb = start_balancer(&settings);
    let before = metrics(&lb).await;
    assert_eq!(before.get("lb_rate_limited_total"), Some(&0.0));
    for _ in 0..8 {
        get_status(&lb, "/m").await;
    }
    let after = metrics(&lb).await;
    assert_eq!(
        after.get(r#"lb_requests_total{backend="backend-2",code="200"}"#),
        Some(&5.0),
        "{after:?}"
    );
    assert_eq!(
        after.get(r#"lb_requests_total{backend="none",code="429"}"#),
        Some(&3.0)
    );
    assert_eq!(after.get("lb_rate_limited_total"), Some(&3.0));
    assert!(after[r#"lb_upstream_failures_total{backend="backend-1",kind="connect"}"#] >= 1.0);
    assert_eq!(after.get("lb_request_duration_seconds_count"), Some(&8.0));
    assert_eq!(
        after.get(r#"lb_backend_up{backend="backend-2"}"#),
        Some(&1.0)
    );
    assert_eq!(
        after.get(r#"lb_backend_in_flight{backend="backend-2"}"#),
        Some(&0.0)
    );
    assert_eq!(after.get("lb_tracked_buckets"), Some(&1.0));
    assert_eq!(after.get("lb_clients"), Some(&0.0));
}

/// The status document has the totals, per-backend probe and change data, and clients.
#[actix_web::test]
async fn status_reports_totals_backends_and_clients() {
    let live = TestBackend::start("live");
    let mut settings = settings_for(&[live.url()]);
    settings.health.interval = Duration::from_millis(100);
    settings.rate_limit.default_capacity = 2;
    settings.rate_limit.default_rate_per_sec = 0.001;
    let lb = start_balancer(&settings);
    for _ in 0..4 {
        get_status(&lb, "/s").await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let status: Value = client()
            .get(lb.url("/lb/api/status"))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        if !status["backends"][0]["last_probe"].is_null() {
            break status;
        }
        assert!(Instant::now() < deadline, "no probe reported: {status}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["totals"]["requests"], json!(4));
    assert_eq!(status["totals"]["rate_limited"], json!(2));
    assert_eq!(status["draining"], json!(false));
    assert_eq!(status["backends"][0]["last_probe"]["ok"], json!(true));
    assert_eq!(status["backends"][0]["last_change_ms"], Value::Null);
    assert_eq!(
        status["clients"]["top_rejected"],
        json!([{"client": "127.0.0.1", "rejected": 2}])
    );
}

/// Reads server-sent events until one satisfies `wanted`.
async fn wait_for_event(
    stream: &mut (impl futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin),
    deadline: Duration,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let until = Instant::now() + deadline;
    let mut buffer = String::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let chunk = actix_rt::time::timeout(left, stream.next())
            .await
            .expect("no such event in time")
            .expect("stream open")
            .expect("chunk");
        buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            for line in message.lines() {
                if let Some(data) = line.strip_prefix("data: ") {
                    let event: Value = serde_json::from_str(data).expect("event JSON");
                    if wanted(&event) {
                        return event;
                    }
                }
            }
        }
    }
}

/// A browser-like client on the event stream sees stats ticks and a backend going down.
#[actix_web::test]
async fn event_stream_reports_a_backend_going_down() {
    let b1 = TestBackend::start("b1");
    let b2 = TestBackend::start("b2");
    let mut settings = settings_for(&[b1.url(), b2.url()]);
    settings.health.interval = Duration::from_millis(100);
    let lb = start_balancer(&settings);
    let res = awc::Client::builder()
        .disable_timeout()
        .finish()
        .get(lb.url("/lb/api/events"))
        .send()
        .await
        .expect("events");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers().get("content-type").expect("type"),
        "text/event-stream"
    );
    let mut stream = res;
    let stats = wait_for_event(&mut stream, Duration::from_secs(5), |e| {
        e["type"] == "stats"
    })
    .await;
    assert_eq!(stats["backends"].as_array().expect("backends").len(), 2);
    b2.stop().await;
    let down = wait_for_event(&mut stream, Duration::from_secs(5), |e| {
        e["type"] == "backend_down"
    })
    .await;
    assert_eq!(down["backend"], json!("backend-2"));
    assert!(
        down["reason"]
            .as_str()
            .expect("reason")
            .contains("failed probes"),
        "{down}"
    );
}

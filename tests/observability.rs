//! What an operator reads: /lb/api/status, /lb/metrics (Prometheus text) and the server-sent
//! events of /lb/api/events, from real clients.

mod common;

use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use common::backend::TestBackend;
use common::{
    call, client, get_status, metrics, refused_addr, settings_for, start_balancer, TestBalancer,
};
use futures_util::StreamExt;
use serde_json::{json, Value};

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
        after.get(r#"lb_requests_total{pool="default",backend="backend-2",code="200"}"#),
        Some(&5.0),
        "{after:?}"
    );
    assert_eq!(
        after.get(r#"lb_requests_total{pool="none",backend="none",code="429"}"#),
        Some(&3.0)
    );
    assert_eq!(after.get("lb_rate_limited_total"), Some(&3.0));
    assert!(
        after[r#"lb_upstream_failures_total{pool="default",backend="backend-1",kind="connect"}"#]
            >= 1.0
    );
    assert_eq!(after.get("lb_request_duration_seconds_count"), Some(&8.0));
    assert_eq!(
        after.get(r#"lb_backend_up{pool="default",backend="backend-2"}"#),
        Some(&1.0)
    );
    assert_eq!(
        after.get(r#"lb_backend_in_flight{pool="default",backend="backend-2"}"#),
        Some(&0.0)
    );
    assert_eq!(after.get("lb_tracked_buckets"), Some(&1.0));
    assert_eq!(after.get("lb_clients"), Some(&0.0));
    assert_eq!(
        after.get(r#"lb_backend_response_seconds_count{pool="default",backend="backend-2"}"#),
        Some(&5.0),
        "a histogram per backend that answered"
    );
    assert!(
        !after
            .keys()
            .any(|k| k.starts_with("lb_client_requests_total")),
        "an address never becomes a label value"
    );
}

/// A registered client's requests are counted by decision; only registered clients.
#[actix_web::test]
async fn registered_clients_are_counted_by_decision() {
    let live = TestBackend::start("live");
    let lb = start_balancer(&settings_for(&[live.url()]));
    let acme = json!({"client_id": "acme", "capacity": 2, "rate_per_sec": 0.001}).to_string();
    assert_eq!(call(&lb, "POST", "/clients", Some(&acme)).await.0, 201);
    for _ in 0..5 {
        client()
            .get(lb.url("/c"))
            .insert_header(("X-API-Key", "acme"))
            .send()
            .await
            .expect("response");
    }
    get_status(&lb, "/anonymous").await;
    let after = metrics(&lb).await;
    let counted = |decision: &str| {
        after
            .get(&format!(
                r#"lb_client_requests_total{{client="acme",decision="{decision}"}}"#
            ))
            .copied()
    };
    assert_eq!(
        (counted("admitted"), counted("limited")),
        (Some(2.0), Some(3.0))
    );
    let series = after
        .keys()
        .filter(|k| k.starts_with("lb_client_requests_total"))
        .count();
    assert_eq!(series, 2, "{after:?}");
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
        json!([{"client": "127.0.0.1", "route": null, "rejected": 2}])
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

/// Reads server-sent events until the ones read so far satisfy `done`; returns them all.
async fn collect_events(
    stream: &mut (impl futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin),
    deadline: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let until = Instant::now() + deadline;
    let mut buffer = String::new();
    let mut seen = Vec::new();
    while !done(&seen) {
        let left = until.saturating_duration_since(Instant::now());
        let chunk = actix_rt::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("not all events in time; got {seen:?}"))
            .expect("stream open")
            .expect("chunk");
        buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            for data in message.lines().filter_map(|l| l.strip_prefix("data: ")) {
                seen.push(serde_json::from_str(data).expect("event JSON"));
            }
        }
    }
    seen
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

/// Opens the event stream, with `Last-Event-ID` when given.
async fn open_events(
    lb: &TestBalancer,
    last_event_id: Option<u64>,
) -> impl futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin {
    let mut req = awc::Client::builder()
        .disable_timeout()
        .finish()
        .get(lb.url("/lb/api/events"));
    if let Some(id) = last_event_id {
        req = req.insert_header(("Last-Event-ID", id.to_string()));
    }
    let res = req.send().await.expect("events");
    assert_eq!(res.status(), 200);
    res
}

/// A stream opened after things happened starts with them: the client registered before
/// and the stats ticks sent before come first, stamped before the connection; a reconnect
/// with `Last-Event-ID` gets only what came after that event.
#[actix_web::test]
async fn event_stream_starts_with_the_recent_history() {
    let backend = TestBackend::start("b");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let body = r#"{"client_id": "early", "capacity": 5}"#;
    assert_eq!(call(&lb, "POST", "/clients", Some(body)).await.0, 201);
    // Two stats ticks happen before anyone listens.
    let events = lb.handle.events();
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let kept = events.subscribe(None).await.expect("bus").history;
        if kept.iter().filter(|e| e.event.is_stats()).count() >= 2 {
            break;
        }
        assert!(Instant::now() < until, "no two stats ticks: {kept:?}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let connected_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;

    let mut stream = open_events(&lb, None).await;
    let is_early = |e: &Value| e["type"] == "client" && e["client_id"] == "early";
    let seen = collect_events(&mut stream, Duration::from_secs(2), |seen| {
        seen.iter().any(is_early) && seen.iter().filter(|e| e["type"] == "stats").count() >= 2
    })
    .await;
    let early = seen.iter().find(|e| is_early(e)).expect("early").clone();
    assert_eq!(early["action"], "created");
    // Millisecond stamps: an event of the very millisecond the clock was read is still before.
    let before = |e: &Value| e["at_ms"].as_u64().is_some_and(|at| at <= connected_ms);
    assert!(before(&early), "{early}");
    let ticks: Vec<&Value> = seen.iter().filter(|e| e["type"] == "stats").collect();
    assert!(
        ticks[..2].iter().all(|t| before(t)),
        "live ticks, not history: {ticks:?}"
    );
    let ids: Vec<u64> = seen.iter().filter_map(|e| e["id"].as_u64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");

    let early_id = early["id"].as_u64().expect("id");
    let mut resumed = open_events(&lb, Some(early_id)).await;
    let next = wait_for_event(&mut resumed, Duration::from_secs(2), |_| true).await;
    assert_eq!(next["id"].as_u64(), Some(early_id + 1), "{next}");
}

/// Failure events name the request they happened to: a failover carries the id of the
/// request that moved, and a request that failed with nothing left to try gets a
/// `request_failed` event with its status and id.
#[actix_web::test]
async fn failure_events_carry_the_request_id() {
    let live = TestBackend::start("live");
    let mut settings = settings_for(&[format!("http://{}", refused_addr()), live.url()]);
    settings.health.interval = Duration::from_secs(600);
    let lb = start_balancer(&settings);
    let mut stream = open_events(&lb, None).await;
    // Round robin: one of the first two requests meets the refusing backend first.
    for id in ["move-1", "move-2"] {
        let res = client()
            .get(lb.url("/x"))
            .insert_header(("X-Request-Id", id))
            .send()
            .await
            .expect("response");
        assert_eq!(res.status(), 200);
    }
    let failover = wait_for_event(&mut stream, Duration::from_secs(5), |e| {
        e["type"] == "failover"
    })
    .await;
    assert!(
        failover["request_id"] == "move-1" || failover["request_id"] == "move-2",
        "{failover}"
    );

    let dead = start_balancer(&settings_for(&[format!("http://{}", refused_addr())]));
    let mut stream = open_events(&dead, None).await;
    let res = client()
        .get(dead.url("/y"))
        .insert_header(("X-Request-Id", "lost-1"))
        .send()
        .await
        .expect("response");
    assert_eq!(res.status(), 502);
    let failed = wait_for_event(&mut stream, Duration::from_secs(5), |e| {
        e["type"] == "request_failed"
    })
    .await;
    assert_eq!(
        (&failed["status"], &failed["request_id"], &failed["backend"]),
        (&json!(502), &json!("lost-1"), &json!("backend-1"))
    );
}

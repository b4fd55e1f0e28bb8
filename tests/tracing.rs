//! OpenTelemetry traces end to end: a real balancer exporting over OTLP/HTTP to a real receiver
//! that decodes the protobuf, real backends that record the `traceparent` they are sent, real
//! clients continuing their own traces. What the contract says: a SERVER span per proxied
//! request, a CLIENT span per attempt named in the backend's `traceparent`, parent-based
//! sampling, the made request id = the trace id, `trace_id` in the JSON record, nothing for the
//! balancer's own paths, WebSocket handshakes traced like requests, spans a missing collector
//! never got counted, and with tracing off the client's `traceparent` untouched.

mod common;

use std::time::Duration;

use common::backend::TestBackend;
use common::otlp::{Receiver, Span};
use common::process;
use common::{client, eventually, refused_addr, settings_for, start_balancer, TestBalancer};
use loadbalancer::settings::{AccessFormat, LogSettings, TracingSettings};
use loadbalancer::Settings;
use serde_json::Value;

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn traced(urls: &[String], receiver_endpoint: String, sample_ratio: f64) -> Settings {
    let mut settings = settings_for(urls);
    settings.tracing = Some(TracingSettings {
        otlp_endpoint: receiver_endpoint,
        sample_ratio,
        service_name: "lb-under-test".to_owned(),
    });
    settings
}

/// A GET of `path` with `traceparent` (if any): status and the answered `X-Request-Id`.
async fn get(lb: &TestBalancer, path: &str, traceparent: Option<&str>) -> (u16, String) {
    let mut req = client().get(lb.url(path));
    if let Some(traceparent) = traceparent {
        req = req.insert_header(("traceparent", traceparent));
    }
    let mut res = req.send().await.expect("response");
    let _ = res.body().await.expect("body");
    let id = res.headers().get("x-request-id").expect("an id");
    (
        res.status().as_u16(),
        id.to_str().expect("ASCII").to_owned(),
    )
}

/// The `traceparent` the backend received with its `n`th request, split in its four fields.
fn sent_traceparent(backend: &TestBackend, n: usize) -> Vec<String> {
    let requests = backend.requests();
    let value = requests[n]
        .headers
        .get("traceparent")
        .expect("a traceparent");
    let value = value.to_str().expect("ASCII");
    value.split('-').map(str::to_owned).collect()
}

/// Waits until trace `trace_id` has `count` spans at the receiver.
async fn spans_of(receiver: &Receiver, trace_id: &str, count: usize) -> Vec<Span> {
    let what = format!("{count} spans of trace {trace_id}");
    eventually(&what, Duration::from_secs(15), || {
        let spans = receiver.trace(trace_id);
        (spans.len() >= count).then_some(spans)
    })
    .await
}

fn one_of_kind(spans: &[Span], kind: i32) -> &Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.kind == kind).collect();
    assert_eq!(found.len(), 1, "one span of kind {kind}: {spans:#?}");
    found[0]
}

/// A client's sampled trace is continued: the SERVER span is the client's span's child and
/// carries the request's attributes, the CLIENT span is its child and is the parent the backend
/// was sent; the made request id is the trace id, and so is the JSON record's `trace_id`. The
/// balancer's own paths make no span.
#[actix_web::test]
async fn a_client_trace_is_continued_to_the_backend() {
    let receiver = Receiver::start();
    let app = TestBackend::start("app");
    let mut settings = traced(&[app.url()], receiver.endpoint(), 1.0);
    let log_path = common::fresh_dir().join("access.log");
    settings.log = LogSettings {
        access: AccessFormat::Json,
        access_path: Some(log_path.clone()),
    };
    let lb = start_balancer(&settings);

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let own = "5bf92f3577b34da6a3ce929d0e0e4736";
    let (status, _) = get(
        &lb,
        "/lb/api/status",
        Some(&format!("00-{own}-{parent}-01")),
    )
    .await;
    assert_eq!(status, 200);
    let (status, id) = get(&lb, "/hello", Some(&format!("00-{trace_id}-{parent}-01"))).await;
    assert_eq!(status, 200);
    assert_eq!(id, trace_id, "the made request id is the trace id");

    let sent = sent_traceparent(&app, 0);
    let headers = &app.requests()[0].headers;
    assert_eq!(
        headers.get_all("traceparent").count(),
        1,
        "the client's is replaced"
    );
    assert_eq!(sent[0], "00");
    assert_eq!(sent[1], trace_id);
    assert_ne!(
        sent[2], parent,
        "the backend's parent is the attempt's span"
    );
    assert_eq!(sent[3], "01");

    let spans = spans_of(&receiver, trace_id, 2).await;
    let server = one_of_kind(&spans, SERVER);
    let attempt = one_of_kind(&spans, CLIENT);
    assert_eq!(server.parent_span_id, parent);
    assert_eq!(server.name, "GET default");
    assert_eq!(server.service, "lb-under-test");
    assert_eq!(server.attribute("http.request.method"), Some("GET"));
    assert_eq!(server.attribute("url.path"), Some("/hello"));
    assert_eq!(server.attribute("http.response.status_code"), Some("200"));
    assert_eq!(server.attribute("client.address"), Some("127.0.0.1"));
    assert_eq!(server.attribute("lb.rate_limited"), Some("false"));
    assert_eq!(attempt.parent_span_id, server.span_id);
    assert_eq!(attempt.span_id, sent[2]);
    assert_eq!(attempt.attribute("server.address"), Some("127.0.0.1"));
    let port = app.url().rsplit(':').next().expect("port").to_owned();
    assert_eq!(attempt.attribute("server.port"), Some(port.as_str()));
    assert_eq!(attempt.attribute("http.response.status_code"), Some("200"));
    assert!(receiver.trace(own).is_empty(), "no span for /lb/");
    assert!(receiver.refused().is_empty());

    let record: Value = eventually("the access record", Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&log_path).ok()?;
        let line = text.lines().find(|l| l.contains("/hello"))?;
        Some(serde_json::from_str(line).expect("JSON line"))
    })
    .await;
    assert_eq!(record["trace_id"], trace_id);
    assert_eq!(record["request_id"], trace_id);
}

/// A new trace for a request without one: the backend is sent the trace the response's id
/// names; a failover shows as two CLIENT spans, the failed one with `error.type`; a refused
/// request is a SERVER span saying so, with no attempt.
#[actix_web::test]
async fn new_traces_record_every_attempt_and_refusals() {
    let receiver = Receiver::start();
    let app = TestBackend::start("app");
    let dead = format!("http://{}", refused_addr());
    let mut settings = traced(&[dead, app.url()], receiver.endpoint(), 1.0);
    settings.rate_limit.default_capacity = 2;
    settings.rate_limit.default_rate_per_sec = 0.001;
    let lb = start_balancer(&settings);

    // Round robin starts at the dead backend: this request fails over.
    let (status, trace_id) = get(&lb, "/first", None).await;
    assert_eq!(status, 200);
    assert_eq!(sent_traceparent(&app, 0)[1], trace_id);
    let spans = spans_of(&receiver, &trace_id, 3).await;
    let server = one_of_kind(&spans, SERVER);
    assert!(server.parent_span_id.is_empty(), "a new trace's root");
    let attempts: Vec<&Span> = spans.iter().filter(|s| s.kind == CLIENT).collect();
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    let failed = attempts
        .iter()
        .find(|s| s.attribute("error.type").is_some())
        .expect("the failed attempt");
    assert_eq!(failed.attribute("error.type"), Some("connect"));
    assert_eq!(failed.status, 2, "an error status");
    assert!(attempts.iter().all(|s| s.parent_span_id == server.span_id));

    let _ = get(&lb, "/second", None).await;
    let (status, limited) = get(&lb, "/third", None).await;
    assert_eq!(status, 429);
    let spans = spans_of(&receiver, &limited, 1).await;
    let server = one_of_kind(&spans, SERVER);
    assert_eq!(server.attribute("lb.rate_limited"), Some("true"));
    assert_eq!(server.attribute("http.response.status_code"), Some("429"));
    assert!(
        spans.iter().all(|s| s.kind != CLIENT),
        "no attempt: {spans:#?}"
    );
}

/// Parent-based sampling at ratio 0: a new trace and a client's unsampled one are not recorded
/// but still travel (the backend gets the trace with the sampled flag off); a client's sampled
/// one is recorded.
#[actix_web::test]
async fn sampling_follows_the_ratio_and_the_client() {
    let receiver = Receiver::start();
    let app = TestBackend::start("app");
    let lb = start_balancer(&traced(&[app.url()], receiver.endpoint(), 0.0));

    let (_, new_trace) = get(&lb, "/new", None).await;
    let unsampled = "11111111111111111111111111111111";
    let parent = "2222222222222222";
    let _ = get(
        &lb,
        "/unsampled",
        Some(&format!("00-{unsampled}-{parent}-00")),
    )
    .await;
    let sampled = "33333333333333333333333333333333";
    let _ = get(&lb, "/sampled", Some(&format!("00-{sampled}-{parent}-01"))).await;

    let first = sent_traceparent(&app, 0);
    assert_eq!(
        (first[1].as_str(), first[3].as_str()),
        (new_trace.as_str(), "00")
    );
    let second = sent_traceparent(&app, 1);
    assert_eq!((second[1].as_str(), second[3].as_str()), (unsampled, "00"));
    assert_eq!(sent_traceparent(&app, 2)[3], "01");

    spans_of(&receiver, sampled, 2).await;
    let traces: Vec<String> = receiver.spans().into_iter().map(|s| s.trace_id).collect();
    assert!(
        traces.iter().all(|t| t == sampled),
        "only the sampled trace: {traces:?}"
    );
}

/// With tracing off, a client's `traceparent` reaches the backend exactly as sent, and the
/// request id is not taken from it.
#[actix_web::test]
async fn off_passes_the_client_traceparent_through() {
    let app = TestBackend::start("app");
    let lb = start_balancer(&settings_for(&[app.url()]));
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, id) = get(&lb, "/hello", Some(traceparent)).await;
    assert_eq!(status, 200);
    assert_ne!(id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(sent_traceparent(&app, 0).join("-"), traceparent);
    let headers = &app.requests()[0].headers;
    assert_eq!(headers.get_all("traceparent").count(), 1);
}

/// A collector that cannot be reached delays no request; the spans it never got are counted
/// in `lb_trace_spans_dropped_total`.
#[actix_web::test]
async fn an_absent_collector_costs_requests_nothing_and_drops_are_counted() {
    let app = TestBackend::start("app");
    let endpoint = format!("http://{}/v1/traces", refused_addr());
    let lb = start_balancer(&traced(&[app.url()], endpoint, 1.0));
    for n in 0..20 {
        let (status, _) = get(&lb, &format!("/r{n}"), None).await;
        assert_eq!(status, 200);
    }
    let mut dropped = 0.0;
    for _ in 0..300 {
        let mut res = client()
            .get(lb.url("/lb/metrics"))
            .send()
            .await
            .expect("metrics");
        let text = String::from_utf8(res.body().await.expect("body").to_vec()).expect("utf-8");
        dropped = text
            .lines()
            .find_map(|l| l.strip_prefix("lb_trace_spans_dropped_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("the metric");
        if dropped >= 40.0 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dropped, 40.0, "two spans per request, none delivered");
}

/// A WebSocket handshake is an attempt like any other: the backend's handshake carries the
/// attempt's `traceparent`, and the request's SERVER span (status 101) ends with the tunnel.
#[actix_web::test]
async fn a_websocket_handshake_is_traced_to_its_backend() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    let receiver = Receiver::start();
    let backend = common::ws::WsBackend::start();
    let lb = start_balancer(&traced(&[backend.url()], receiver.endpoint(), 1.0));
    let trace_id = "6bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = format!("ws://{}/chat", lb.addr)
        .into_client_request()
        .expect("request");
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    request.headers_mut().insert(
        "traceparent",
        HeaderValue::from_str(&traceparent).expect("value"),
    );
    let tcp = tokio::net::TcpStream::connect(lb.addr)
        .await
        .expect("connect");
    let (mut socket, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("handshake through the balancer");
    let (_, headers) = backend.handshakes.lock().expect("lock")[0].clone();
    let sent: Vec<&str> = headers["traceparent"]
        .to_str()
        .expect("ASCII")
        .split('-')
        .collect();
    assert_eq!(sent[1], trace_id);
    socket.close(None).await.expect("close");

    let spans = spans_of(&receiver, trace_id, 2).await;
    let server = one_of_kind(&spans, SERVER);
    let attempt = one_of_kind(&spans, CLIENT);
    assert_eq!(server.attribute("http.response.status_code"), Some("101"));
    assert_eq!(attempt.attribute("http.response.status_code"), Some("101"));
    assert_eq!(attempt.span_id, sent[2]);
    assert_eq!(attempt.parent_span_id, server.span_id);
}

/// A collector that answers 503 is asked again (the exporter backs off and retries), and
/// nothing is lost: the spans arrive with the third post.
#[actix_web::test]
async fn a_busy_collector_is_posted_to_again() {
    let app = TestBackend::start("app");
    let receiver = Receiver::start();
    receiver.answer_unavailable(2);
    let lb = start_balancer(&traced(&[app.url()], receiver.endpoint(), 1.0));
    let (status, trace_id) = get(&lb, "/busy", None).await;
    assert_eq!(status, 200);
    let spans = spans_of(&receiver, &trace_id, 2).await;
    one_of_kind(&spans, SERVER);
    let posts = receiver.header_values("content-type");
    assert!(
        posts.len() >= 3,
        "two refused posts, then the one taken: {posts:?}"
    );
}

/// The standard `OTEL_EXPORTER_OTLP_HEADERS` goes with every post, its values percent-decoded
/// (the real binary: it is read from the environment).
#[actix_web::test]
async fn headers_from_the_environment_go_with_every_post() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let sections = format!("[tracing]\notlp_endpoint = \"{}\"\n", receiver.endpoint());
    process::write_config(dir.path(), process::ok_backend(), "", &sections);
    let headers = "OTEL_EXPORTER_OTLP_HEADERS=api-key=s%20t, x-tenant=blue";
    let (mut child, addr) = process::launch(dir.path(), &["env", headers]);
    let (status, _) = process::http(addr, "GET", "/with-headers", &[], None);
    assert_eq!(status, 200);
    eventually("a post at the collector", Duration::from_secs(15), || {
        (!receiver.header_values("api-key").is_empty()).then_some(())
    })
    .await;
    assert!(receiver.header_values("api-key").iter().all(|v| v == "s t"));
    assert_eq!(
        receiver
            .header_values("x-tenant")
            .first()
            .map(String::as_str),
        Some("blue")
    );
    let _ = child.kill();
    let _ = child.wait();
}

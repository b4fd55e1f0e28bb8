//! Failures on the way to a backend: retry elsewhere when safe, JSON errors otherwise.

mod common;

use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use common::backend::{pattern, TestBackend};
use common::{
    capture_logs, client, eventually, logged, refused_addr, settings_for, silent_backend,
    start_balancer,
};

async fn json_error(
    res: &mut awc::ClientResponse<
        impl futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
    >,
) -> serde_json::Value {
    assert_eq!(
        res.headers().get("content-type").expect("content-type"),
        "application/json"
    );
    let body = res.body().await.expect("body");
    serde_json::from_slice(&body).expect("JSON error body")
}

/// A refused backend costs nothing visible: the request is served by the next one, and the
/// switch is logged as a warning naming both.
#[actix_web::test]
async fn refused_backend_is_retried_on_the_next_and_logged() {
    capture_logs();
    let dead = format!("http://{}", refused_addr());
    let live = TestBackend::start("live");
    let lb = start_balancer(&settings_for(&[dead.clone(), live.url()]));
    let client = client();
    for _ in 0..4 {
        let res = client.get(lb.url("/x")).send().await.expect("response");
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers().get("x-backend").expect("x-backend"), "live");
    }
    assert!(logged(&[
        "WARN",
        &format!("backend {dead} failed (connect"),
        &format!("retrying on {}", live.url())
    ]));
    let members = lb.handle.members();
    assert!(members[0].failures >= 1);
}

/// A POST body (small, held in memory) and a large streamed upload both survive a refused
/// first backend and arrive intact at the second.
#[actix_web::test]
async fn request_bodies_survive_a_retry_after_a_refused_connect() {
    let live = TestBackend::start("live");
    let lb = start_balancer(&settings_for(&[
        format!("http://{}", refused_addr()),
        live.url(),
    ]));
    let client = client();
    let small = Bytes::from_static(b"{\"order\": 1}");
    let large = Bytes::from(pattern(512 * 1024));
    for body in [small, large] {
        // Each request starts on the refused backend: after a retry the cursor is back on it.
        let res = client
            .post(lb.url("/echo"))
            .send_body(body.clone())
            .await
            .expect("response");
        assert_eq!(res.status(), 200);
        let seen = live.requests();
        let last = seen.last().expect("received");
        assert!(
            last.body == body,
            "body changed on the way ({} bytes)",
            last.body.len()
        );
        assert_eq!(
            last.headers.get("content-length").expect("length"),
            &body.len().to_string()
        );
    }
}

/// When every backend refuses, the client gets one 502 JSON error.
#[actix_web::test]
async fn all_backends_refusing_gives_json_502() {
    let urls: Vec<String> = (0..3)
        .map(|_| format!("http://{}", refused_addr()))
        .collect();
    let lb = start_balancer(&settings_for(&urls));
    let mut res = client().get(lb.url("/")).send().await.expect("response");
    assert_eq!(res.status(), 502);
    let body = json_error(&mut res).await;
    assert_eq!(body["code"], 502);
    assert!(body["message"]
        .as_str()
        .expect("message")
        .contains("Bad gateway"));
    let members = lb.handle.members();
    assert!(
        members.iter().all(|m| m.failures == 1),
        "each backend tried once"
    );
}

/// A backend that accepts and never answers yields 504 JSON once the response timeout passes,
/// and a POST is not retried elsewhere.
#[actix_web::test]
async fn silent_backend_gives_json_504_after_the_response_timeout() {
    let live = TestBackend::start("live");
    let mut settings = settings_for(&[format!("http://{}", silent_backend()), live.url()]);
    settings.backends.response_timeout = Duration::from_millis(400);
    let lb = start_balancer(&settings);
    let started = Instant::now();
    let mut res = client()
        .post(lb.url("/order"))
        .send_body("once")
        .await
        .expect("response");
    let waited = started.elapsed();
    assert_eq!(res.status(), 504);
    assert_eq!(json_error(&mut res).await["code"], 504);
    assert!(
        waited >= Duration::from_millis(400),
        "answered after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    assert!(
        live.requests().is_empty(),
        "the POST was sent a second time"
    );
}

/// With every backend out of rotation the answer is an immediate 503 JSON error.
#[actix_web::test]
async fn no_healthy_backend_gives_json_503() {
    let live = TestBackend::start("live");
    let lb = start_balancer(&settings_for(&[live.url()]));
    lb.handle.set_health(0, false, "test").await;
    let mut res = client().get(lb.url("/")).send().await.expect("response");
    assert_eq!(res.status(), 503);
    let id = res.headers().get("x-request-id").cloned().expect("an id");
    let body = json_error(&mut res).await;
    assert_eq!(
        body,
        serde_json::json!({"code": 503, "message": "No healthy backend available",
                           "request_id": id.to_str().expect("ASCII")})
    );
    assert!(live.requests().is_empty());
}

/// The balancer's own routes: /lb/health is JSON 200, unknown /lb/ paths are JSON 404, and a
/// wrong method is JSON 405; none of them reach a backend.
#[actix_web::test]
async fn own_routes_answer_json() {
    let live = TestBackend::start("live");
    let lb = start_balancer(&settings_for(&[live.url()]));
    let client = client();
    let mut res = client
        .get(lb.url("/lb/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.expect("json"),
        serde_json::json!({"status": "ok"})
    );
    let mut res = client.get(lb.url("/lb/nothing")).send().await.expect("404");
    assert_eq!(res.status(), 404);
    assert_eq!(json_error(&mut res).await["code"], 404);
    let mut res = client.post(lb.url("/lb/health")).send().await.expect("405");
    assert_eq!(res.status(), 405);
    assert_eq!(json_error(&mut res).await["code"], 405);
    assert!(live.requests().is_empty());
}

/// A configured body limit answers 413 JSON for a declared length over it.
#[actix_web::test]
async fn body_over_the_configured_limit_gets_json_413() {
    let live = TestBackend::start("live");
    let mut settings = settings_for(&[live.url()]);
    settings.backends.max_request_body_bytes = Some(1000);
    let lb = start_balancer(&settings);
    let mut res = client()
        .post(lb.url("/up"))
        .send_body(Bytes::from(pattern(1001)))
        .await
        .expect("response");
    assert_eq!(res.status(), 413);
    assert_eq!(json_error(&mut res).await["code"], 413);
    assert!(live.requests().is_empty());
}

/// A backend that promises 1000 bytes, sends 10 and closes: the client sees its connection
/// closed after those bytes, not a hang and not a second status line; the balancer logs it.
#[actix_web::test]
async fn backend_failing_mid_response_closes_the_client_connection() {
    capture_logs();
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let backend = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
            // Let those bytes reach the client before the connection breaks.
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let lb = start_balancer(&settings_for(&[format!("http://{backend}")]));
    let addr = lb.addr;
    let reply = actix_web::rt::task::spawn_blocking(move || {
        let started = Instant::now();
        let reply = common::raw_exchange(
            addr,
            b"GET /cut HTTP/1.1\r\nHost: t\r\n\r\n",
            Duration::from_secs(10),
        );
        (reply, started.elapsed())
    })
    .await
    .expect("raw exchange");
    let (bytes, took) = reply;
    let text = String::from_utf8_lossy(&bytes).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("0123456789"), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    assert!(
        took < Duration::from_secs(5),
        "the connection hung for {took:?}"
    );
    eventually("the broken response logged", Duration::from_secs(5), || {
        logged(&["WARN", "broke off its response"]).then_some(())
    })
    .await;
}

//! Backend protections through a real balancer in front of real backends: connection limits
//! with the pool's queue (never more in flight than the limit, first come first served, the
//! 503 with `Retry-After: 1` when the queue is full or the wait runs out, a client that leaves
//! the queue), and the retry budget under a failing pool.

mod common;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use common::held::HeldBackend;
use common::{
    client, eventually, metrics, refused_addr, settings_from_files, start_balancer, TestBalancer,
};
use futures_util::future::join_all;
use loadbalancer::Settings;
use serde_json::{json, Value};

async fn queued(lb: &TestBalancer) -> f64 {
    metrics(lb).await[r#"lb_queue_length{pool="default"}"#]
}

/// Polls the queue's length until it is `n`.
async fn wait_queued(lb: &TestBalancer, n: f64) {
    let until = Instant::now() + Duration::from_secs(10);
    while queued(lb).await != n {
        assert!(Instant::now() < until, "the queue never held {n}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settings for the pool file `file` with `backends.max_connections`, `queue_size` and
/// `queue_timeout_ms` set so.
fn limited(file: &Value, max_connections: u32, queue_size: usize, timeout_ms: u64) -> Settings {
    let (mut settings, _) = settings_from_files(file, "");
    settings.backends.max_connections = max_connections;
    settings.backends.queue_size = queue_size;
    settings.backends.queue_timeout = Duration::from_millis(timeout_ms);
    settings
}

/// `(status, Retry-After, body)` of a GET of `path`.
async fn get(lb: &TestBalancer, path: &str) -> (u16, Option<String>, Value) {
    let mut res = client().get(lb.url(path)).send().await.expect("response");
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = res.body().limit(1 << 20).await.expect("body");
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (res.status().as_u16(), retry_after, value)
}

/// Two backends with a limit of 2 each and a queue: 40 concurrent requests all succeed, and
/// neither backend ever has more than 2 at once (each counts its own).
#[actix_web::test]
async fn never_more_in_flight_than_the_limit_and_the_queue_absorbs_the_rest() {
    let (a, b) = (HeldBackend::start(), HeldBackend::start());
    let file = json!({"backends": [a.url(), b.url()]});
    let settings = limited(&file, 2, 100, 20_000);
    let lb = start_balancer(&settings);
    let requests = join_all((0..40).map(|i| {
        let lb = &lb;
        async move { get(lb, &format!("/r/{i}")).await.0 }
    }));
    let releaser = async {
        // Release one request at a time while any are held, so the queue keeps turning.
        let until = Instant::now() + Duration::from_secs(30);
        while a.arrived().len() + b.arrived().len() < 40 {
            assert!(Instant::now() < until, "requests stopped arriving");
            if a.in_flight() + b.in_flight() > 0 {
                a.release(1);
                b.release(1);
            }
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        a.release(100);
        b.release(100);
    };
    let (statuses, ()) = futures_util::join!(requests, releaser);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!((a.most_in_flight(), b.most_in_flight()), (2, 2));
    let samples = metrics(&lb).await;
    let waited = samples[r#"lb_queue_wait_seconds_count{pool="default"}"#];
    assert!(waited >= 1.0, "some requests waited: {waited}");
}

/// One backend with a limit of 1 and a queue of 2: waiting requests are served in arrival
/// order; one more is refused at once (queue full); a wait that runs out is refused too; both
/// with the contract's 503 and `Retry-After: 1`.
#[actix_web::test]
async fn the_queue_is_first_come_first_served_and_bounded_in_size_and_time() {
    let backend = HeldBackend::start();
    let file = json!({"backends": [backend.url()]});
    let settings = limited(&file, 1, 2, 1500);
    let lb = start_balancer(&settings);
    let lb = &lb;

    let first = actix_rt::spawn(fetch(lb.addr, "/0"));
    eventually("the first request held", Duration::from_secs(10), || {
        (backend.in_flight() == 1).then_some(())
    })
    .await;
    let second = actix_rt::spawn(fetch(lb.addr, "/1"));
    wait_queued(lb, 1.0).await;
    let third = actix_rt::spawn(fetch(lb.addr, "/2"));
    wait_queued(lb, 2.0).await;

    let started = Instant::now();
    let (status, retry_after, body) = get(lb, "/full").await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")), "{body}");
    assert_eq!(body["message"], "All backends are busy");
    assert!(body["request_id"].is_string(), "{body}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "refused at once"
    );

    backend.release(3);
    for request in [first, second, third] {
        assert_eq!(request.await.expect("request ran"), 200);
    }
    assert_eq!(backend.arrived(), ["/0", "/1", "/2"], "arrival order");

    let held = hold_one(lb, &backend).await;
    let started = Instant::now();
    let (status, retry_after, _) = get(lb, "/late").await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "it waited the timeout"
    );
    assert_eq!(queued(lb).await, 0.0);
    backend.release(1);
    assert_eq!(held.await.expect("request ran"), 200);
    assert!(!backend.arrived().contains(&"/late".to_owned()));
}

/// Without a queue, a request finding every backend at its limit is refused at once.
#[actix_web::test]
async fn without_a_queue_a_busy_pool_refuses_at_once() {
    let backend = HeldBackend::start();
    let file = json!({"backends": [{"url": backend.url(), "max_connections": 1}]});
    let settings = limited(&file, 0, 0, 60_000);
    let lb = start_balancer(&settings);
    let held = hold_one(&lb, &backend).await;
    let (_, status) = common::call(&lb, "GET", "/lb/api/status", None).await;
    assert_eq!(status["backends"][0]["max_connections"], 1, "{status}");
    assert_eq!(status["pools"][0]["max_connections"], 0, "{status}");
    let started = Instant::now();
    let (status, retry_after, body) = get(&lb, "/busy").await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "not after a wait"
    );
    backend.release(2);
    assert_eq!(held.await.expect("request ran"), 200);
    assert_eq!(get(&lb, "/free").await.0, 200, "room again");
}

/// A queued request whose client closes its connection leaves the queue, and the slot goes
/// to the next in line; the one that left never reaches the backend.
#[actix_web::test]
async fn a_client_that_goes_away_leaves_the_queue() {
    let backend = HeldBackend::start();
    let file = json!({"backends": [backend.url()]});
    let settings = limited(&file, 1, 5, 30_000);
    let lb = start_balancer(&settings);
    let held = hold_one(&lb, &backend).await;
    let mut leaving = std::net::TcpStream::connect(lb.addr).expect("connect");
    std::io::Write::write_all(&mut leaving, b"GET /gone HTTP/1.1\r\nHost: lb\r\n\r\n")
        .expect("send");
    wait_queued(&lb, 1.0).await;
    drop(leaving);
    wait_queued(&lb, 0.0).await;
    let next = actix_rt::spawn(fetch(lb.addr, "/next"));
    wait_queued(&lb, 1.0).await;
    backend.release(2);
    assert_eq!(held.await.expect("ran"), 200);
    assert_eq!(next.await.expect("ran"), 200);
    assert_eq!(backend.arrived(), ["/held", "/next"]);
}

/// A backend on its own threads (one per connection) that reads each request's head and
/// then does `answer(head, connection)`.
fn raw_backend(answer: fn(&[u8], &mut std::net::TcpStream)) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0_u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match std::io::Read::read(&mut stream, &mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                answer(&head, &mut stream);
            });
        }
    });
    url
}

/// A backend that closes each connection after the request's head, without answering.
fn resetting_backend() -> String {
    raw_backend(|_, _| {})
}

/// Settings for `file` with a retry budget of 0% (3 retries at once), no probes within the
/// test and no passive removal: the failing backend stays in rotation.
fn zero_budget(file: &Value) -> Settings {
    let (mut settings, _) = settings_from_files(file, "");
    settings.backends.retry_budget_percent = 0;
    settings.health.interval = Duration::from_secs(600);
    settings.health.passive_failures = NonZeroU32::new(1000).expect("nonzero");
    settings
}

/// 20 GETs at once; their statuses.
async fn twenty_gets(lb: &TestBalancer) -> Vec<u16> {
    join_all((0..20).map(|i| async move { get(lb, &format!("/r/{i}")).await.0 })).await
}

/// A pool whose one backend breaks every connection after the request: retries go to the held
/// one only while the budget allows (at 0% only the 3 always allowed); the rest end at once
/// with the failure, counted in `lb_retries_budget_exhausted_total`. (A refused connect is
/// moved on outside the budget: see `refused_connects_are_retried_outside_the_budget`.)
#[actix_web::test]
async fn the_retry_budget_caps_retries_in_flight() {
    let good = HeldBackend::start();
    let file = json!({"backends": [resetting_backend(), good.url()]});
    let lb = start_balancer(&zero_budget(&file));
    let requests = twenty_gets(&lb);
    let releaser = async {
        // Hold the good backend's answers until every request has either reached it or
        // been refused (the refused ones answer at once).
        let until = Instant::now() + Duration::from_secs(20);
        let counts = loop {
            let samples = metrics(&lb).await;
            let failed = samples
                .get(r#"lb_upstream_failures_total{pool="default",backend="backend-1",kind="reset"}"#)
                .copied()
                .unwrap_or(0.0) as usize;
            let refused = samples[r#"lb_retries_budget_exhausted_total{pool="default"}"#] as usize;
            if good.arrived().len() + refused == 20 {
                break (failed, refused, failed.saturating_sub(refused));
            }
            assert!(Instant::now() < until, "requests stopped arriving");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        };
        good.release(100);
        counts
    };
    let (statuses, (failed, refused, retried)) = futures_util::join!(requests, releaser);
    assert_eq!(
        retried, 3,
        "{failed} broken attempts, {refused} not retried"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 502).count(), refused);
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 20 - refused);
    assert!(refused > 0);
}

/// With the budget at 0%, requests whose first backend refuses connections are all moved on to
/// the other one while it holds them: a refused connect never reached a backend, so moving it
/// adds no load and takes nothing of the budget.
#[actix_web::test]
async fn refused_connects_are_retried_outside_the_budget() {
    let good = HeldBackend::start();
    let dead = format!("http://{}", refused_addr());
    let file = json!({"backends": [dead, good.url()]});
    let lb = start_balancer(&zero_budget(&file));
    let requests = twenty_gets(&lb);
    let releaser = async {
        eventually(
            "every request at the good backend",
            Duration::from_secs(20),
            || (good.arrived().len() == 20).then_some(()),
        )
        .await;
        good.release(20);
    };
    let (statuses, ()) = futures_util::join!(requests, releaser);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let samples = metrics(&lb).await;
    assert_eq!(
        samples[r#"lb_retries_budget_exhausted_total{pool="default"}"#],
        0.0
    );
}

/// Sends `GET /held` and waits until `backend` holds it; the request's task.
async fn hold_one(lb: &TestBalancer, backend: &HeldBackend) -> actix_rt::task::JoinHandle<u16> {
    let held = actix_rt::spawn(fetch(lb.addr, "/held"));
    eventually("a request held", Duration::from_secs(10), || {
        (backend.in_flight() == 1).then_some(())
    })
    .await;
    held
}

/// The status of a GET of `path` on a fresh connection.
async fn fetch(addr: std::net::SocketAddr, path: &'static str) -> u16 {
    client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .expect("response")
        .status()
        .as_u16()
}

/// A backend that answers every upload's head at once with a complete 413 and never reads the
/// body (probes, `GET /`, get a 200).
fn impatient_backend() -> String {
    raw_backend(|head, stream| {
        let answer: &[u8] = if head.starts_with(b"GET / ") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        } else {
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo much"
        };
        let _ = std::io::Write::write_all(stream, answer);
        // Never reads the body; holds the connection a while.
        std::thread::sleep(Duration::from_secs(10));
    })
}

/// An upload of 5 MB sent slowly (1 KB every 100 ms) gets the backend's early 413 within a
/// second of its head, whole, and its connection is closed after it.
#[actix_web::test]
async fn an_early_answer_reaches_the_client_at_once() {
    let file = json!({"backends": [impatient_backend()]});
    let (settings, _) = settings_from_files(&file, "");
    let lb = start_balancer(&settings);
    let addr = lb.addr;
    let (took, answer, closed) = actix_web::rt::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        let head = b"POST /upload HTTP/1.1\r\nHost: lb\r\ncontent-length: 5000000\r\n\r\n";
        std::io::Write::write_all(&mut stream, head).expect("head");
        let started = Instant::now();
        let mut uploader = stream.try_clone().expect("clone");
        std::thread::spawn(move || {
            for _ in 0..50 {
                if std::io::Write::write_all(&mut uploader, &[b'x'; 1024]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let mut reader = common::RawConnection::from_stream(stream);
        let (head, body) = reader.read_response(false);
        let took = started.elapsed();
        let closed = reader.closed_within(Duration::from_secs(3));
        (
            took,
            format!("{head}\r\n\r\n{}", String::from_utf8_lossy(&body)),
            closed,
        )
    })
    .await
    .expect("client ran");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.ends_with("too much"), "{answer}");
    assert!(took < Duration::from_secs(1), "after {took:?}");
    assert!(
        closed,
        "the client connection is closed after the early answer"
    );
}

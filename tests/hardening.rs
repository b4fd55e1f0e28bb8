//! Hostile and broken clients against a balancer in this process, over raw sockets: malformed
//! and smuggling-shaped requests, requests naming other hosts, slow and stalled clients. The
//! backend is a real HTTP server that records every request it parsed, so "never forwarded in a
//! form the backend would read differently" is checked on what a backend actually saw.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::backend::TestBackend;
use common::{
    capture_logs, eventually, logged, raw_exchange, settings_for, start_balancer, RawConnection,
    TestBalancer,
};

/// Sends each request on its own connection (off the async thread) and returns the replies.
async fn exchange_each(addr: SocketAddr, requests: Vec<Vec<u8>>) -> Vec<String> {
    actix_web::rt::task::spawn_blocking(move || {
        requests
            .iter()
            .map(|r| {
                let reply = raw_exchange(addr, r, Duration::from_secs(5));
                String::from_utf8_lossy(&reply).to_string()
            })
            .collect()
    })
    .await
    .expect("raw exchanges")
}

/// A request through a fresh connection that must succeed: once the backend has recorded it,
/// anything sent before it on other connections has been dealt with as well.
async fn canary(lb: &TestBalancer, backend: &TestBackend) {
    let replies = exchange_each(
        lb.addr,
        vec![b"GET /canary HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec()],
    )
    .await;
    assert!(replies[0].starts_with("HTTP/1.1 200"), "{}", replies[0]);
    eventually("the canary at the backend", Duration::from_secs(5), || {
        backend
            .requests()
            .iter()
            .any(|r| r.target == "/canary")
            .then_some(())
    })
    .await;
}

fn head_of_size(filler: usize) -> Vec<u8> {
    let mut head = b"GET /big HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', filler));
    head.extend_from_slice(b"\r\n\r\n");
    head
}

/// Every malformed head is refused with 400 (431 for size limits) and the connection closed,
/// and nothing of it — in particular no request hidden after it — reaches the backend.
#[actix_web::test]
async fn malformed_heads_are_refused_and_reach_no_backend() {
    let backend = TestBackend::start("pool");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut many_headers = b"GET /many HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..100 {
        many_headers.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many_headers.extend_from_slice(b"\r\n");
    let mut long_line = b"GET /".to_vec();
    long_line.extend(std::iter::repeat_n(b'a', 70_000));
    long_line.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\n\r\n");
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("Content-Length with Transfer-Encoding", "400", format!("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}").into_bytes()),
        ("differing Content-Lengths", "400", format!("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd{smuggled}").into_bytes()),
        ("Content-Length list", "400", format!("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 4, 40\r\n\r\nabcd{smuggled}").into_bytes()),
        ("signed Content-Length", "400", format!("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: +4\r\n\r\nabcd{smuggled}").into_bytes()),
        ("chunked not last", "400", format!("POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}").into_bytes()),
        ("unknown coding before chunked", "400", format!("POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{smuggled}").into_bytes()),
        ("space before colon", "400", format!("POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}").into_bytes()),
        ("Transfer-Encoding in HTTP/1.0", "400", format!("POST /a HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}").into_bytes()),
        ("NUL in a header value", "400", b"GET /a HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n".to_vec()),
        ("CR in a header value", "400", b"GET /a HTTP/1.1\r\nHost: t\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n".to_vec()),
        ("folded header line", "400", b"GET /a HTTP/1.1\r\nHost: t\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n".to_vec()),
        ("two Host headers", "400", b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec()),
        ("no Host in HTTP/1.1", "400", b"GET /a HTTP/1.1\r\nX-A: b\r\n\r\n".to_vec()),
        ("unknown version", "400", b"GET /a HTTP/2.7\r\nHost: t\r\n\r\n".to_vec()),
        ("overlong request line", "400", long_line),
        ("more than 96 headers", "431", many_headers),
        ("head over 128 KiB", "431", head_of_size(140 * 1024)),
    ];
    let requests = cases.iter().map(|(_, _, r)| r.clone()).collect();
    let replies = exchange_each(lb.addr, requests).await;
    for ((name, status, _), reply) in cases.iter().zip(&replies) {
        let expected = format!("HTTP/1.1 {status} ");
        assert!(reply.starts_with(&expected), "{name}: {reply:?}");
        assert!(
            reply.to_ascii_lowercase().contains("connection: close"),
            "{name}: {reply:?}"
        );
        assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{name}: {reply:?}");
    }
    // The limits are limits, not accidents: a 40 KiB header is fine.
    let fine = exchange_each(lb.addr, vec![head_of_size(40 * 1024)]).await;
    assert!(fine[0].starts_with("HTTP/1.1 200"), "{}", fine[0]);
    canary(&lb, &backend).await;
    let seen = backend.targets();
    assert_eq!(
        seen,
        ["/big", "/canary"],
        "the backend saw more than it should"
    );
}

/// A chunked body whose framing breaks (bad size, negative or overflowing size, data longer
/// than its size, bare LF in chunk lines): the client gets no success, the connection is closed,
/// the backend never receives the request as complete, and the bytes after it never become a
/// request of their own.
#[actix_web::test]
async fn broken_chunked_bodies_never_complete_at_the_backend() {
    let backend = TestBackend::start("pool");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let bodies = [
        "zz\r\nabcd\r\n0\r\n\r\n",
        "4\r\nabcd\r\nzz\r\nabcd\r\n0\r\n\r\n",
        "-4\r\nabcd\r\n0\r\n\r\n",
        "fffffffffffffffff1\r\nabcd\r\n0\r\n\r\n",
        "4\r\nabcdXX\r\n0\r\n\r\n",
        "4\nabcd\n0\n\n",
    ];
    let requests = bodies
        .iter()
        .map(|body| {
            format!(
                "POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}\
                 GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .into_bytes()
        })
        .collect();
    let started = Instant::now();
    let replies = exchange_each(lb.addr, requests).await;
    assert!(
        started.elapsed() < Duration::from_secs(5 * bodies.len() as u64),
        "a connection was left hanging"
    );
    for (body, reply) in bodies.iter().zip(&replies) {
        assert!(!reply.starts_with("HTTP/1.1 2"), "{body:?}: {reply:?}");
        assert!(!reply.contains("HTTP/1.1 2"), "{body:?}: {reply:?}");
    }
    canary(&lb, &backend).await;
    for seen in backend.requests() {
        assert_ne!(seen.target, "/smuggled", "a smuggled request got through");
        if seen.target == "/chunked" {
            assert!(!seen.complete, "a broken body arrived complete: {seen:?}");
        }
    }
}

/// Bare LF line ends are read as line ends (RFC 9112 §2.2 allows it) and the request goes on
/// re-framed with CRLF, so the backend reads the same fields and the same body as the balancer.
#[actix_web::test]
async fn bare_line_feeds_are_read_as_line_ends_and_forwarded_canonically() {
    let backend = TestBackend::start("pool");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let replies = exchange_each(
        lb.addr,
        vec![
            b"POST /lf HTTP/1.1\nHost: t\nContent-Length: 5\nConnection: close\n\nhello".to_vec(),
            b"POST /mixed HTTP/1.1\r\nHost: t\r\nX-A: b\nContent-Length: 5\r\nConnection: close\r\n\r\nworld"
                .to_vec(),
        ],
    )
    .await;
    for reply in &replies {
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    let seen = backend.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].target.as_str(), &seen[0].body[..]),
        ("/lf", &b"hello"[..])
    );
    assert_eq!(
        (seen[1].target.as_str(), &seen[1].body[..]),
        ("/mixed", &b"world"[..])
    );
    assert_eq!(seen[1].headers.get("x-a").expect("x-a"), "b");
    assert!(seen.iter().all(|r| r.complete));
}

/// A listener on loopback that must never be connected to: counts whatever arrives.
fn outsider() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for _ in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, hits)
}

/// Absolute-form targets, a Host naming another site, CONNECT and the like: the balancer only
/// ever connects to its pool, and the outsider's listener receives nothing.
#[actix_web::test]
async fn requests_naming_other_hosts_only_ever_reach_the_pool() {
    let backend = TestBackend::start("pool");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let (other, hits) = outsider();
    let requests: Vec<Vec<u8>> = [
        format!("GET http://{other}/abs HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n"),
        format!("GET https://{other}/tls HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n"),
        format!("GET /host HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n"),
        format!("GET //{other}/double HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        format!(
            "GET /fwd HTTP/1.1\r\nHost: t\r\nX-Forwarded-Host: {other}\r\nConnection: close\r\n\r\n"
        ),
        format!("CONNECT {other} HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n"),
        format!("OPTIONS * HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n"),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    let replies = exchange_each(lb.addr, requests).await;
    for reply in &replies[..5] {
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("x-backend: pool"), "{reply}");
    }
    assert!(replies[5].starts_with("HTTP/1.1 405"), "{}", replies[5]);
    assert!(
        replies[5].contains(r#"{"code":405,"message":"Method not allowed","request_id":""#),
        "{}",
        replies[5]
    );
    assert!(!replies[6].is_empty(), "OPTIONS * got no answer");
    let targets = backend.targets();
    assert_eq!(
        &targets[..5],
        [
            "/abs",
            "/tls",
            "/host",
            &format!("//{other}/double"),
            "/fwd"
        ]
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the balancer connected elsewhere"
    );
}

/// An idle keep-alive connection is closed after `server.keep_alive_secs`.
#[actix_web::test]
async fn idle_keep_alive_connections_are_closed() {
    let backend = TestBackend::start("pool");
    let mut settings = settings_for(&[backend.url()]);
    settings.server.keep_alive = Some(Duration::from_secs(1));
    let lb = start_balancer(&settings);
    let addr = lb.addr;
    let (head, closed, idle) = actix_web::rt::task::spawn_blocking(move || {
        let mut conn = RawConnection::open(addr);
        let (head, _) = conn.exchange(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", false);
        let started = Instant::now();
        let closed = conn.closed_within(Duration::from_secs(5));
        (head, closed, started.elapsed())
    })
    .await
    .expect("raw connection");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(closed, "the idle connection stayed open");
    assert!(idle >= Duration::from_millis(900), "closed early: {idle:?}");
}

/// A head trickled a byte at a time is cut off with 408 once `server.client_request_timeout_ms`
/// has passed since its first byte, however steadily the bytes come.
#[actix_web::test]
async fn a_trickled_head_gets_408_when_its_time_is_up() {
    let backend = TestBackend::start("pool");
    let mut settings = settings_for(&[backend.url()]);
    settings.server.client_request_timeout = Duration::from_millis(800);
    let lb = start_balancer(&settings);
    let addr = lb.addr;
    let (reply, took) = actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let started = Instant::now();
        let head = b"GET /slow-head HTTP/1.1\r\nHost: t\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for byte in head {
            if stream.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        (String::from_utf8_lossy(&reply).to_string(), started.elapsed())
    })
    .await
    .expect("trickle");
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(backend.requests().is_empty());
}

/// A client that asks for a large body and then reads nothing is cut off after
/// `server.send_timeout_ms`: its backend connection and lease are released and it is logged.
#[actix_web::test]
async fn a_client_that_stops_reading_releases_its_backend() {
    capture_logs();
    let backend = TestBackend::start("pool");
    let mut settings = settings_for(&[backend.url()]);
    settings.server.send_timeout = Duration::from_millis(600);
    let lb = start_balancer(&settings);
    let mut stalled = TcpStream::connect(lb.addr).expect("connect");
    stalled
        .write_all(b"GET /bytes/67108864 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let in_flight = || async {
        let members = lb.handle.members();
        members.iter().map(|m| m.in_flight).sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while in_flight().await == 0 {
        assert!(Instant::now() < deadline, "the request never started");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    while in_flight().await > 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled client still holds its backend"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logged(&["WARN", "client stopped reading"]));
    // The balancer serves others meanwhile, and the stalled socket is still ours to drop.
    let replies = exchange_each(
        lb.addr,
        vec![b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec()],
    )
    .await;
    assert!(replies[0].starts_with("HTTP/1.1 200"), "{}", replies[0]);
    drop(stalled);
}

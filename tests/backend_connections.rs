//! The proxy's own kept-alive connections to plain backends: reused from one request to the
//! next; one the backend dropped while idle (or drops on the next request) replaced without
//! counting against the backend when the request may be sent again; bodies that end when the
//! backend closes passed on whole.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{client, eventually, settings_for, start_balancer};
use loadbalancer::Settings;

/// How the raw backend treats its connections.
#[derive(Clone, Copy)]
enum Manner {
    /// Answers every request with a length and keeps the connection.
    KeepAlive,
    /// Answers the first request on a connection, then closes it without answering the second
    /// (as a backend whose idle timeout ran out just as the request arrived).
    DropsSecond,
    /// Answers with neither a length nor chunks, and closes to end the body.
    CloseDelimited,
}

/// A backend on plain threads; returns its address and how many connections it accepted.
fn raw_backend(manner: Manner) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || serve(stream, manner));
        }
    });
    (addr, connections)
}

fn serve(mut stream: TcpStream, manner: Manner) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    for served in 0.. {
        while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        let end = pending
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head")
            + 4;
        let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
        pending.drain(..end);
        if head.contains("user-agent: loadbalancer") {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            continue;
        }
        let answer: &[u8] = match manner {
            Manner::DropsSecond if served >= 1 => return,
            Manner::KeepAlive | Manner::DropsSecond => {
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
            }
            Manner::CloseDelimited => {
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end"
            }
        };
        if stream.write_all(answer).is_err() {
            return;
        }
        if matches!(manner, Manner::CloseDelimited) {
            return;
        }
    }
}

/// One worker (so one pool of connections) in front of `backend`, probes far apart.
fn one_worker_in_front_of(backend: SocketAddr) -> Settings {
    let mut settings = settings_for(&[format!("http://{backend}")]);
    settings.server.workers = 1;
    settings.health.interval = Duration::from_secs(3600);
    settings
}

async fn get(url: &str) -> (u16, String) {
    let mut res = client().get(url).send().await.expect("response");
    let body = res.body().await.expect("body");
    (
        res.status().as_u16(),
        String::from_utf8_lossy(&body).to_string(),
    )
}

/// Requests one after another share one backend connection per worker.
#[actix_web::test]
async fn backend_connections_are_kept_alive_and_reused() {
    let (addr, connections) = raw_backend(Manner::KeepAlive);
    let lb = start_balancer(&one_worker_in_front_of(addr));
    for _ in 0..20 {
        assert_eq!(get(&lb.url("/again")).await, (200, "hello".to_owned()));
    }
    // The health checker's first probe has a connection of its own.
    let used = connections.load(Ordering::SeqCst);
    assert!(used <= 2, "{used} connections for 20 requests in a row");
}

/// A kept-alive connection the backend drops when the next request comes: a GET goes again on
/// a new connection and succeeds, and the backend is not counted as failing; a POST is not
/// sent again (502, as nginx does without `non_idempotent`).
#[actix_web::test]
async fn a_connection_dropped_by_the_backend_is_replaced_for_requests_that_may_be_resent() {
    let (addr, connections) = raw_backend(Manner::DropsSecond);
    let lb = start_balancer(&one_worker_in_front_of(addr));
    for _ in 0..5 {
        assert_eq!(get(&lb.url("/resent")).await, (200, "hello".to_owned()));
    }
    assert!(connections.load(Ordering::SeqCst) >= 5);
    let member = &lb.handle.members()[0];
    assert_eq!(
        member.failures, 0,
        "a stale connection is not the backend's failure"
    );
    assert!(member.healthy);

    // The last GET left its (fresh) connection in the pool: a POST there finds it dropped and
    // is not sent again, since the backend may have taken it; the next POST gets a new one.
    let post = || async {
        client()
            .post(lb.url("/once"))
            .send_body("payload")
            .await
            .expect("response")
            .status()
            .as_u16()
    };
    assert_eq!(post().await, 502);
    assert_eq!(post().await, 200);
}

/// A body with neither a length nor chunks, ended by the backend closing, reaches the client
/// whole (awc's decoder would read it as no body).
#[actix_web::test]
async fn a_body_ended_by_closing_is_passed_on_whole() {
    let (addr, _) = raw_backend(Manner::CloseDelimited);
    let lb = start_balancer(&one_worker_in_front_of(addr));
    for _ in 0..3 {
        assert_eq!(
            get(&lb.url("/to-close")).await,
            (200, "until the end".to_owned())
        );
    }
    eventually("no request left in flight", Duration::from_secs(5), || {
        (lb.handle.members()[0].in_flight == 0).then_some(())
    })
    .await;
}

//! The proxy's kept-alive connections to backends, plain and TLS alike (one connector, one
//! pool): reused from one request to the next; one the backend dropped while idle (or drops on
//! the next request) replaced without counting against the backend when the request may be
//! sent again; bodies that end when the backend closes passed on whole; an answer head over the
//! one limit (64 KiB) refused with a 502.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::tls::TestCa;
use common::{client, eventually, fresh_dir, settings_for, start_balancer};
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
    /// Answers with a head of this many bytes of headers.
    HeadOf(usize),
}

/// A raw backend on plain threads, speaking TLS (with a certificate of `ca`) or not.
struct RawBackend {
    addr: SocketAddr,
    /// Connections accepted so far.
    connections: Arc<AtomicUsize>,
    /// For TLS: the CA that signed its certificate.
    ca: Option<TestCa>,
}

impl RawBackend {
    fn start(manner: Manner, tls: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let ca = tls.then(|| TestCa::new("raw backend CA"));
        let config = ca.as_ref().map(|ca| Arc::new(ca.server_config()));
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::SeqCst);
                let config = config.clone();
                thread::spawn(move || match config {
                    None => serve(stream, manner),
                    Some(config) => {
                        let session = rustls::ServerConnection::new(config).expect("session");
                        let mut tls = rustls::StreamOwned::new(session, stream);
                        serve(&mut tls, manner);
                        // A TLS body that ends with the connection ends with close_notify.
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                    }
                });
            }
        });
        Self {
            addr,
            connections,
            ca,
        }
    }

    /// One worker (so one pool of connections) in front of this backend, probes far apart.
    fn settings(&self) -> Settings {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        let mut settings = settings_for(&[format!("{scheme}://{}", self.addr)]);
        settings.server.workers = 1;
        settings.health.interval = Duration::from_secs(3600);
        if let Some(ca) = &self.ca {
            settings.backends.ca_file = Some(ca.ca_file(&fresh_dir(), "ca"));
        }
        settings
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn serve(mut stream: impl Read + Write, manner: Manner) {
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
        let answer: Vec<u8> = match manner {
            Manner::DropsSecond if served >= 1 => return,
            Manner::KeepAlive | Manner::DropsSecond => {
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec()
            }
            Manner::CloseDelimited => {
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end".to_vec()
            }
            Manner::HeadOf(bytes) => {
                let mut head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n".to_vec();
                // Headers of 1000 bytes each, up to `bytes`.
                for n in 0..bytes / 1000 {
                    head.extend_from_slice(format!("x-filler-{n:04}: ").as_bytes());
                    head.extend_from_slice(&[b'a'; 1000 - 18]);
                    head.extend_from_slice(b"\r\n");
                }
                head.extend_from_slice(b"\r\nhello");
                head
            }
        };
        if stream
            .write_all(&answer)
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
        if matches!(manner, Manner::CloseDelimited) {
            return;
        }
    }
}

async fn get(url: &str) -> (u16, String) {
    let mut res = client().get(url).send().await.expect("response");
    let body = res.body().await.expect("body");
    (
        res.status().as_u16(),
        String::from_utf8_lossy(&body).to_string(),
    )
}

/// Requests one after another share one backend connection per worker, TLS or not.
#[actix_web::test]
async fn backend_connections_are_kept_alive_and_reused() {
    for tls in [false, true] {
        let backend = RawBackend::start(Manner::KeepAlive, tls);
        let lb = start_balancer(&backend.settings());
        for _ in 0..20 {
            assert_eq!(get(&lb.url("/again")).await, (200, "hello".to_owned()));
        }
        // The health checker's first probe has a connection of its own.
        let used = backend.connections();
        assert!(
            used <= 2,
            "tls {tls}: {used} connections for 20 requests in a row"
        );
    }
}

/// A kept-alive connection the backend drops when the next request comes: a GET goes again on
/// a new connection and succeeds, and the backend is not counted as failing; a POST is not
/// sent again (502, as nginx does without `non_idempotent`). TLS or not.
#[actix_web::test]
async fn a_connection_dropped_by_the_backend_is_replaced_for_requests_that_may_be_resent() {
    for tls in [false, true] {
        let backend = RawBackend::start(Manner::DropsSecond, tls);
        let lb = start_balancer(&backend.settings());
        for _ in 0..5 {
            assert_eq!(get(&lb.url("/resent")).await, (200, "hello".to_owned()));
        }
        assert!(backend.connections() >= 5, "tls {tls}");
        let member = &lb.handle.members()[0];
        assert_eq!(
            member.failures, 0,
            "tls {tls}: a stale connection is not the backend's failure"
        );
        assert!(member.healthy);

        // The last GET left its (fresh) connection in the pool: a POST there finds it dropped
        // and is not sent again, since the backend may have taken it; the next POST gets a new
        // one.
        let post = || async {
            client()
                .post(lb.url("/once"))
                .send_body("payload")
                .await
                .expect("response")
                .status()
                .as_u16()
        };
        assert_eq!(post().await, 502, "tls {tls}");
        assert_eq!(post().await, 200, "tls {tls}");
    }
}

/// A body with neither a length nor chunks, ended by the backend closing, reaches the client
/// whole (actix-http's client codec would read it as no body), TLS or not.
#[actix_web::test]
async fn a_body_ended_by_closing_is_passed_on_whole() {
    for tls in [false, true] {
        let backend = RawBackend::start(Manner::CloseDelimited, tls);
        let lb = start_balancer(&backend.settings());
        for _ in 0..3 {
            assert_eq!(
                get(&lb.url("/to-close")).await,
                (200, "until the end".to_owned()),
                "tls {tls}"
            );
        }
        eventually("no request left in flight", Duration::from_secs(5), || {
            (lb.handle.members()[0].in_flight == 0).then_some(())
        })
        .await;
    }
}

/// An answer head up to the limit (64 KiB) passes; a larger one is a 502, TLS or not.
#[actix_web::test]
async fn an_answer_head_over_64_kib_is_a_bad_gateway() {
    for tls in [false, true] {
        let fits = RawBackend::start(Manner::HeadOf(60_000), tls);
        let lb = start_balancer(&fits.settings());
        assert_eq!(
            get(&lb.url("/big")).await,
            (200, "hello".to_owned()),
            "tls {tls}"
        );
        let over = RawBackend::start(Manner::HeadOf(70_000), tls);
        let lb = start_balancer(&over.settings());
        let (status, body) = get(&lb.url("/big")).await;
        assert_eq!(status, 502, "tls {tls}: {body}");
    }
}

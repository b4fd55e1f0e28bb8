//! The real binary under load and attack: slowloris connections beside normal traffic, SIGTERM
//! in the middle of a load, and SIGKILL in the middle of one followed by a restart.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::header_value;
use common::process::{
    http, ok_backend, signal, slow_backend, start_binary, start_binary_with, wait_with_deadline,
};

/// Every load here comes from 127.0.0.1: a limit nobody reaches keeps 429s out of the counts.
const UNLIMITED: &str =
    "[rate_limit]\ndefault_capacity = 1000000000\ndefault_rate_per_sec = 1000000000";

/// How one request of a load ended.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// A complete 2xx answer.
    ok: u64,
    /// Any other answer, or an answer cut short: a request the balancer took and failed.
    failed: u64,
    /// Refused, or reset before a single byte came back: never taken by the balancer (the
    /// listener had closed, or the connection was still in the kernel's accept queue).
    not_taken: u64,
}

/// One `Connection: close` GET; classifies how it ended. False once connections are refused.
fn one_request(addr: SocketAddr, path: &str, tally: &mut Tally) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        tally.not_taken += 1;
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        tally.not_taken += 1;
        return true;
    }
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    if reply.is_empty() {
        tally.not_taken += 1;
        return true;
    }
    let text = String::from_utf8_lossy(&reply);
    let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
        header_value(head, "content-length").and_then(|v| v.parse::<usize>().ok())
            == Some(body.len())
    });
    if text.starts_with("HTTP/1.1 2") && complete {
        tally.ok += 1;
    } else {
        tally.failed += 1;
    }
    true
}

/// `threads` clients sending requests back to back until stopped or refused.
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Tally>>,
}

impl Load {
    fn start(addr: SocketAddr, threads: usize, path: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..threads)
            .map(|_| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) && one_request(addr, path, &mut tally) {}
                    tally
                })
            })
            .collect();
        Self { stop, workers }
    }

    /// Stops the clients (each finishes the request it is on) and sums what happened.
    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.workers
            .into_iter()
            .map(|w| w.join().expect("load thread"))
            .fold(Tally::default(), |a, b| Tally {
                ok: a.ok + b.ok,
                failed: a.failed + b.failed,
                not_taken: a.not_taken + b.not_taken,
            })
    }
}

/// Waits until the balancer answers its health route.
fn wait_for_traffic(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if http(addr, "GET", "/lb/health", &[], None).0 == 200 {
            return;
        }
        assert!(Instant::now() < until, "the balancer never answered");
        thread::sleep(Duration::from_millis(20));
    }
}

/// 500 connections that send half a head and stop hold nothing up: normal requests keep
/// getting answered promptly, and every one of the 500 is closed with 408 once
/// `client_request_timeout_ms` has passed.
#[test]
fn five_hundred_slowloris_connections_do_not_hold_up_normal_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, addr) = start_binary_with(
        dir.path(),
        ok_backend(),
        "client_request_timeout_ms = 3000",
        "",
    );
    let opened = Instant::now();
    let mut slow: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .expect("half a head");
            stream
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let started = Instant::now();
        assert_eq!(http(addr, "GET", "/normal", &[], None).0, 200);
        slowest = slowest.max(started.elapsed());
    }
    // A liveness bound, not a benchmark: answers take about a millisecond here.
    assert!(
        slowest < Duration::from_secs(1),
        "a normal request took {slowest:?} beside the slowloris connections"
    );
    let mut timed_out = 0;
    for stream in &mut slow {
        let left = (opened + Duration::from_secs(15)).saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        if reply.starts_with(b"HTTP/1.1 408") {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 500, "every slowloris connection gets 408");
    signal(&child, "TERM");
    assert_eq!(
        wait_with_deadline(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );
}

/// SIGTERM in the middle of a load of slow requests: every request the balancer took is
/// answered in full with 200 (as many answers as requests reached the backend), new
/// connections are refused, and the process exits 0.
#[test]
fn sigterm_under_load_fails_no_request_it_took_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (backend, started) = slow_backend(Duration::from_millis(50));
    let (mut child, addr) = start_binary_with(dir.path(), backend, "", UNLIMITED);
    wait_for_traffic(addr);
    let load = Load::start(addr, 16, "/work");
    thread::sleep(Duration::from_millis(1500));
    signal(&child, "TERM");
    let status = wait_with_deadline(&mut child, Duration::from_secs(15));
    let tally = load.finish();
    let forwarded = started
        .try_iter()
        .filter(|line| line.starts_with("GET /work "))
        .count() as u64;
    eprintln!("SIGTERM under load: {tally:?}, {forwarded} reached the backend");
    assert_eq!(status.code(), Some(0), "{tally:?}");
    assert_eq!(tally.failed, 0, "{tally:?}");
    // Requests in flight when the signal came were answered too, not dropped unanswered.
    assert_eq!(tally.ok, forwarded, "{tally:?}");
    assert!(tally.ok > 50, "too little load to mean anything: {tally:?}");
}

/// SIGKILL in the middle of a load while clients are being registered: after a restart on
/// the same database, every client whose registration was answered 201 is there.
#[test]
fn sigkill_under_load_keeps_every_registered_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = ok_backend();
    let (mut child, addr) = start_binary_with(dir.path(), backend, "", UNLIMITED);
    wait_for_traffic(addr);
    let load = Load::start(addr, 8, "/work");
    let registered = Arc::new(Mutex::new(Vec::new()));
    let registrar = {
        let registered = Arc::clone(&registered);
        thread::spawn(move || {
            for i in 0.. {
                let id = format!("client-{i}");
                let body = format!(r#"{{"client_id": "{id}", "capacity": 5, "rate_per_sec": 1}}"#);
                let mut stream = match TcpStream::connect(addr) {
                    Ok(stream) => stream,
                    Err(_) => return,
                };
                let request = format!(
                    "POST /clients HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let mut reply = Vec::new();
                let _ = stream.write_all(request.as_bytes());
                let _ = stream.read_to_end(&mut reply);
                if reply.starts_with(b"HTTP/1.1 201") {
                    registered.lock().expect("lock").push(id);
                } else if reply.is_empty() {
                    return;
                }
            }
        })
    };
    let until = Instant::now() + Duration::from_secs(20);
    while registered.lock().expect("lock").len() < 20 {
        assert!(Instant::now() < until, "registrations did not get through");
        thread::sleep(Duration::from_millis(10));
    }
    signal(&child, "KILL");
    wait_with_deadline(&mut child, Duration::from_secs(10));
    registrar.join().expect("registrar");
    let tally = load.finish();
    assert!(tally.ok > 0, "{tally:?}");

    let (mut child, addr) = start_binary(dir.path(), backend);
    let (status, body) = http(addr, "GET", "/clients", &[], None);
    assert_eq!(status, 200, "{body}");
    let listed: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
        .expect("JSON list")
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["client_id"].as_str().expect("id").to_owned())
        .collect();
    let registered = registered.lock().expect("lock").clone();
    let missing: Vec<&String> = registered
        .iter()
        .filter(|id| !listed.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "lost {missing:?} of {}",
        registered.len()
    );
    signal(&child, "TERM");
    assert_eq!(
        wait_with_deadline(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );
}

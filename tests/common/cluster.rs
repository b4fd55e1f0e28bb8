//! Cluster mode's fixtures: balancer processes sharing one real `redis-server`, a backend
//! counting what reaches it, load from plain threads, and the contract's bound.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::{http, launch, signal, wait_with_deadline, write, write_config};
use super::redis::RedisServer;

/// Generous against a loaded CI machine (a slower answer counts as Redis down, and a flap
/// would give each instance a fresh local bucket); the paused-Redis test shows the timeout holds.
pub const REDIS_TIMEOUT_MS: u64 = 200;

/// The tests of this file run one at a time: each starts Redis and up to four balancers, and
/// the deadlines of the contract (1 s, 2 s) are about the balancer, not about a starved machine.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A backend on plain threads that answers `200 ok` with keep-alive and counts the requests
/// to `/work` (health probes go to `/health`).
pub fn counting_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let counted = Arc::clone(&counted);
            thread::spawn(move || serve(stream, &counted));
        }
    });
    (addr, count)
}

pub fn serve(stream: TcpStream, counted: &AtomicUsize) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
        }
        if request_line.contains(" /work") {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if writer.write_all(reply).is_err() {
            return;
        }
    }
}

/// One balancer process in cluster mode.
pub struct Instance {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Instance {
    pub fn start(redis_url: &str, backend: SocketAddr, limits: (u64, f64), extra: &str) -> Self {
        let dir = super::fresh_dir();
        Self::start_in(dir, redis_url, backend, limits, extra)
    }

    pub fn start_in(
        dir: PathBuf,
        redis_url: &str,
        backend: SocketAddr,
        limits: (u64, f64),
        extra: &str,
    ) -> Self {
        write_config(&dir, backend, "", &sections(redis_url, limits, extra));
        let (child, addr) = launch(&dir, &[]);
        Self { child, addr }
    }

    /// As [`Self::start`], on the pool file `pool` (JSON) instead of one backend.
    pub fn start_with_pool(redis_url: &str, pool: &str, limits: (u64, f64)) -> Self {
        Self::start_with_pool_and(redis_url, pool, limits, "")
    }

    /// As [`Self::start_with_pool`], with `extra` lines in `[cluster]`.
    pub fn start_with_pool_and(
        redis_url: &str,
        pool: &str,
        limits: (u64, f64),
        extra: &str,
    ) -> Self {
        let dir = super::fresh_dir();
        let unused = SocketAddr::from(([127, 0, 0, 1], 9));
        write_config(&dir, unused, "", &sections(redis_url, limits, extra));
        write(&dir, "pool.json", pool);
        let (child, addr) = launch(&dir, &[]);
        Self { child, addr }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(self.addr, method, path, &[], body)
    }

    pub fn cluster(&self) -> Value {
        let (status, body) = self.call("GET", "/lb/api/status", None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).expect("JSON")["cluster"].clone()
    }

    pub fn stop(mut self) {
        signal(&self.child, "TERM");
        let status = wait_with_deadline(&mut self.child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(0));
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The settings of an instance in cluster mode with these default limits.
fn sections(redis_url: &str, (capacity, rate): (u64, f64), extra: &str) -> String {
    format!(
        "[rate_limit]\ndefault_capacity = {capacity}\ndefault_rate_per_sec = {rate}\n\
         [persistence]\npath = \"lb.sqlite3\"\n[health]\npath = \"/health\"\n\
         [cluster]\nredis_url = \"{redis_url}\"\nredis_timeout_ms = {REDIS_TIMEOUT_MS}\n{extra}\n"
    )
}

/// Polls `check` every 20 ms until it holds; the time it took, or a panic naming `what`.
pub fn within(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Sends `GET /work` from `threads` threads per instance until `duration` has passed;
/// answers each status with its count, and how long the load ran (first send to last answer).
pub fn load(
    instances: &[&Instance],
    threads: usize,
    duration: Duration,
    api_key: Option<&str>,
) -> (Vec<u16>, Duration) {
    load_path(instances, threads, duration, api_key, "/work")
}

/// As [`load`], to `path`.
pub fn load_path(
    instances: &[&Instance],
    threads: usize,
    duration: Duration,
    api_key: Option<&str>,
    path: &str,
) -> (Vec<u16>, Duration) {
    let started = Instant::now();
    let until = started + duration;
    let mut workers = Vec::new();
    for instance in instances {
        for _ in 0..threads {
            let addr = instance.addr;
            let key = api_key.map(str::to_owned);
            let path = path.to_owned();
            workers.push(thread::spawn(move || {
                let mut statuses = Vec::new();
                while Instant::now() < until {
                    let headers: Vec<(&str, &str)> =
                        key.iter().map(|k| ("X-API-Key", k.as_str())).collect();
                    statuses.push(http(addr, "GET", &path, &headers, None).0);
                }
                statuses
            }));
        }
    }
    let statuses = workers
        .into_iter()
        .flat_map(|w| w.join().expect("load thread"))
        .collect();
    (statuses, started.elapsed())
}

/// The value of metric `name` (without labels) on one instance.
pub fn metric(instance: &Instance, name: &str) -> u64 {
    let (_, metrics) = instance.call("GET", "/lb/metrics", None);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {metrics}"))
}

pub fn count(statuses: &[u16], code: u16) -> usize {
    statuses.iter().filter(|s| **s == code).count()
}

/// The contract's bound for one client over `elapsed`: capacity + rate * (T + lease), and
/// not more than a few tokens under capacity + rate * T.
pub fn assert_within_bound(admitted: usize, capacity: f64, rate: f64, elapsed: Duration) {
    let t = elapsed.as_secs_f64();
    let upper = capacity + rate * (t + 0.1);
    let lower = capacity + rate * t - 8.0;
    eprintln!("admitted {admitted} in {t:.2} s; bound {lower:.1}..={upper:.1}");
    assert!(
        (admitted as f64) <= upper,
        "admitted {admitted} > {upper:.1}"
    );
    assert!(
        (admitted as f64) >= lower,
        "admitted {admitted} < {lower:.1}"
    );
}

/// Reads `/lb/api/events` of the balancer at `addr` (history first, then live) until `done`
/// says so for an event; answers every event read. Panics after `deadline`.
pub fn read_events(
    addr: SocketAddr,
    deadline: Duration,
    mut done: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(deadline)).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    writer
        .write_all(b"GET /lb/api/events HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let started = Instant::now();
    let mut events = Vec::new();
    for line in BufReader::new(stream).lines() {
        assert!(
            started.elapsed() < deadline,
            "events: timed out after {events:?}"
        );
        let line = line.expect("the event stream");
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let event: Value = serde_json::from_str(data).expect("JSON");
        let finished = done(&event);
        events.push(event);
        if finished {
            return events;
        }
    }
    panic!("the event stream ended");
}

pub fn is_client_event(event: &Value, action: &str, id: &str) -> bool {
    event["type"] == "client" && event["action"] == action && event["client_id"] == id
}

/// Registers a client through the first instance and waits until every instance knows it.
pub fn register_everywhere(instances: &[Instance], id: &str, capacity: u64, rate: u64) {
    let body =
        format!(r#"{{"client_id": "{id}", "capacity": {capacity}, "rate_per_sec": {rate}}}"#);
    assert_eq!(instances[0].call("POST", "/clients", Some(&body)).0, 201);
    let path = format!("/clients/{id}");
    for instance in instances {
        within("the client everywhere", Duration::from_secs(1), || {
            instance.call("GET", &path, None).0 == 200
        });
    }
}

pub fn three(redis: &RedisServer, backend: SocketAddr, limits: (u64, f64)) -> Vec<Instance> {
    let instances: Vec<Instance> = (0..3)
        .map(|_| Instance::start(&redis.url(), backend, limits, ""))
        .collect();
    for instance in &instances {
        within("Redis up everywhere", Duration::from_secs(5), || {
            instance.cluster()["redis"] == "up"
        });
    }
    instances
}

//! Shared test fixtures: real backends on `127.0.0.1:0`, a balancer in front of them, raw
//! HTTP over TCP, a log capture, and polling with a deadline instead of sleeps.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod backend;
pub mod cluster;
pub mod dns;
pub mod held;
pub mod otlp;
pub mod process;
pub mod prometheus;
pub mod redis;
pub mod redis_cluster;
pub mod sentinel;
pub mod tls;
pub mod webdriver;
pub mod ws;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use loadbalancer::Backend;
use loadbalancer::{Balancer, BalancerHandle, Settings};
use serde_json::Value;

/// A balancer serving on a random loopback port.
pub struct TestBalancer {
    pub addr: SocketAddr,
    pub handle: BalancerHandle,
}

impl TestBalancer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// A test client: redirects are the client's business, so they are not followed.
pub fn client() -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(30))
        .finish()
}

/// Sends a JSON request; returns status and parsed body (Null for an empty body).
pub async fn call(lb: &TestBalancer, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
    let req = client().request(method, lb.url(path));
    let mut res = match body {
        Some(body) => req
            .insert_header(("Content-Type", "application/json"))
            .send_body(body.to_owned()),
        None => req.send(),
    }
    .await
    .expect("response");
    let bytes = res.body().await.expect("body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON")
    };
    (res.status().as_u16(), value)
}

/// Status of a GET of `path` through the balancer.
pub async fn get_status(lb: &TestBalancer, path: &str) -> u16 {
    client()
        .get(lb.url(path))
        .send()
        .await
        .expect("response")
        .status()
        .as_u16()
}

/// Settings for a balancer in front of `urls`, with simulation off.
pub fn settings_for(urls: &[String]) -> Settings {
    let pool = urls
        .iter()
        .enumerate()
        .map(|(i, url)| Backend::parse(i, url).expect("test backend URL"))
        .collect();
    let mut settings = Settings::with_pool(pool);
    settings.simulation.enabled = false;
    settings.server.workers = 2;
    settings.persistence.path = fresh_dir().join("lb.sqlite3");
    settings
}

/// Settings read from a real `Settings.toml` (two workers, quick probes, no simulation, no
/// watch, the database beside it, then `more` lines) and `config.json` (`file`) in a fresh
/// folder; and the pool file's path.
pub fn settings_from_files(file: &Value, more: &str) -> (Settings, std::path::PathBuf) {
    let dir = fresh_dir();
    let toml = format!(
        "[server]\nworkers = 2\n[simulation]\nenabled = false\n\
         [health]\ninterval_ms = 100\n[backends]\nwatch = false\n\
         [persistence]\npath = \"lb.sqlite3\"\n{more}"
    );
    std::fs::write(dir.join("Settings.toml"), toml).expect("write settings");
    let path = dir.join("config.json");
    std::fs::write(&path, file.to_string()).expect("write pool file");
    let settings = loadbalancer::settings::load(&loadbalancer::settings::LoadOptions {
        settings_path: Some(dir.join("Settings.toml")),
        backends_path: None,
        simulate: false,
    })
    .expect("valid settings");
    (settings, path)
}

/// Whether `binary` runs (`--version`); without it a local run skips the test with one line
/// naming the Debian `package`, and a CI run (`CI` set) fails, since `.ci/run` installs it.
pub fn installed(binary: &str, package: &str) -> bool {
    let found = std::process::Command::new(binary)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs this test: {binary} is missing (apt-get install {package})"
        );
        // Straight to the process's stderr: the harness captures eprintln! of passing tests.
        let line = format!("skipped: this test needs {binary} (apt-get install {package})\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }
    found
}

/// A new temporary folder that outlives the test (the balancer's database lives there).
pub fn fresh_dir() -> std::path::PathBuf {
    tempfile::tempdir().expect("tempdir").keep()
}

/// Starts a balancer (inside the current actix system) and lets it serve in the background.
pub fn start_balancer(settings: &Settings) -> TestBalancer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let balancer: Balancer = loadbalancer::start(settings, listener).expect("balancer starts");
    let addr = balancer.local_addr;
    let handle = balancer.handle();
    actix_rt::spawn(async move {
        let _ = balancer.run().await;
    });
    TestBalancer { addr, handle }
}

/// An address on which nothing listens: bound, then released. On 127.0.0.2, because every
/// test server binds 127.0.0.1:0: a port released there could be handed to another test's
/// backend running in parallel, which would then receive this address's traffic.
pub fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2:0");
    listener.local_addr().expect("addr")
}

/// A listener that accepts connections and never answers; they stay open while it lives.
pub fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

/// Sends raw bytes and reads until the peer closes or `timeout` passes.
pub fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    stream.write_all(request).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// One client connection spoken to in raw HTTP/1.1, a request at a time (no pipelining).
pub struct RawConnection {
    stream: TcpStream,
    /// Bytes read past the end of the last response.
    pending: Vec<u8>,
}

impl RawConnection {
    pub fn open(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// A connection already spoken on (its reads time out after 10 s).
    pub fn from_stream(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    /// Sends `request` and reads one response: its head, then a body framed by Content-Length
    /// unless `bodiless` (answers to HEAD, 204, 304). Returns (head, body).
    pub fn exchange(&mut self, request: &[u8], bodiless: bool) -> (String, Vec<u8>) {
        self.stream.write_all(request).expect("write");
        self.read_response(bodiless)
    }

    /// Reads one response, as [`Self::exchange`] does after sending.
    pub fn read_response(&mut self, bodiless: bool) -> (String, Vec<u8>) {
        let head_end = loop {
            if let Some(i) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill();
        };
        let head = String::from_utf8_lossy(&self.pending[..head_end]).to_string();
        self.pending.drain(..head_end);
        let length = match bodiless {
            true => 0,
            false => {
                header_value(&head, "content-length").map_or(0, |v| v.parse().expect("length"))
            }
        };
        while self.pending.len() < length {
            self.fill();
        }
        let body = self.pending.drain(..length).collect();
        (head, body)
    }

    /// Whatever else arrives before the peer closes or goes quiet.
    pub fn rest(&mut self) -> Vec<u8> {
        self.stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = self.stream.read(&mut buf) {
            self.pending.extend_from_slice(&buf[..n]);
        }
        std::mem::take(&mut self.pending)
    }

    /// Whether the peer closes the connection within `deadline` (sending nothing more).
    pub fn closed_within(&mut self, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        self.stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut buf = [0u8; 1024];
        while Instant::now() < until {
            match self.stream.read(&mut buf) {
                Ok(0) => return self.pending.is_empty(),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => continue,
            }
        }
        false
    }

    fn fill(&mut self) {
        let mut buf = [0u8; 65536];
        let n = self.stream.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "connection closed early; have {:?}",
            String::from_utf8_lossy(&self.pending)
        );
        self.pending.extend_from_slice(&buf[..n]);
    }
}

/// The balancer's `/lb/metrics` now, as samples: `name{labels}` → value.
pub async fn metrics(lb: &TestBalancer) -> std::collections::HashMap<String, f64> {
    let mut res = client()
        .get(lb.url("/lb/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(res.status(), 200);
    let body = res.body().limit(1 << 22).await.expect("body");
    std::str::from_utf8(&body)
        .expect("utf-8")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of header `name` (lower-case) in a raw response head.
pub fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Polls `check` until it returns `Some`, or panics after `deadline` naming `what`.
pub async fn eventually<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Log lines captured in this test process (each test binary is its own process).
static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Installs a logger that keeps every info-or-worse line; returns the shared buffer.
pub fn capture_logs() -> &'static Mutex<Vec<String>> {
    static INSTALL: OnceLock<()> = OnceLock::new();
    INSTALL.get_or_init(|| {
        log::set_boxed_logger(Box::new(Capture)).expect("only this logger");
        log::set_max_level(log::LevelFilter::Info);
    });
    &LOGS
}

/// Whether a captured line contains every one of `parts`.
pub fn logged(parts: &[&str]) -> bool {
    LOGS.lock()
        .expect("log lock")
        .iter()
        .any(|line| parts.iter().all(|p| line.contains(p)))
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.level(), record.args());
        LOGS.lock().expect("log lock").push(line);
    }

    fn flush(&self) {}
}

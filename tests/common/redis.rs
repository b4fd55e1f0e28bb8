//! A real `redis-server` for the cluster tests: on a free loopback port (never 6379), in a
//! directory of its own, without persistence; it can be killed, restarted on the same port,
//! paused (SIGSTOP) and resumed. Without the binary a local run skips with one line; with `CI`
//! set it fails (`.ci/run` installs Debian's `redis-server`). `LB_REDIS_SERVER` overrides the
//! binary's path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// Arguments before the usual ones (a config file, `--sentinel`) and after them.
    pub args_before: Vec<String>,
    pub args_after: Vec<String>,
    child: Option<Child>,
}

fn binary() -> String {
    std::env::var("LB_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

impl RedisServer {
    /// Starts one, or `None` (after one line on stderr) when there is no `redis-server` and
    /// `CI` is unset.
    pub fn start() -> Option<Self> {
        let mut server = Self::unstarted()?;
        server.restart();
        Some(server)
    }

    /// A free port and a directory, not started yet (for arguments of its own; then
    /// [`Self::restart`]), or `None` as [`Self::start`].
    pub fn unstarted() -> Option<Self> {
        if !super::installed(&binary(), "redis-server") {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        assert_ne!(port, 6379, "never the default port");
        let dir = super::fresh_dir();
        Some(Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            args_before: Vec::new(),
            args_after: Vec::new(),
            child: None,
        })
    }

    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// In-process balancer settings for `urls` in cluster mode on this Redis.
    pub fn settings_for(&self, urls: &[String]) -> loadbalancer::Settings {
        let mut settings = super::settings_for(urls);
        let mut raw = loadbalancer::settings::RawSettings::default();
        raw.cluster.redis_url = self.url();
        let pool = settings.backends.topology.clone();
        let clustered = loadbalancer::Settings::from_raw(
            raw,
            "test",
            std::path::Path::new(""),
            settings.backends.file.clone(),
            pool,
        )
        .expect("valid");
        settings.cluster = clustered.cluster;
        settings
    }

    /// Starts the server (again) on its port, and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new(binary())
            .args(&self.args_before)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.addr.port().to_string(),
            ])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args_after)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while self.command("PING").as_deref() != Some("+PONG") {
            assert!(Instant::now() < until, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (as a crash would); its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the socket stays open and nothing answers.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{name} {pid}")])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// One inline command; the first line of the answer, or `None` if Redis did not answer.
    pub fn command(&self, line: &str) -> Option<String> {
        self.exchange(line)?.into_iter().next()
    }

    /// The whole answer of an inline command, every line (for KEYS and the like).
    pub fn lines(&self, line: &str) -> Vec<String> {
        self.exchange(line).expect("Redis answers")
    }

    /// Sends one inline command and reads its whole answer (a simple reply, a bulk string, or
    /// an array of bulk strings), as lines.
    fn exchange(&self, line: &str) -> Option<Vec<String>> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer).to_string();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if text.ends_with("\r\n") && lines.len() >= expected_lines(&lines[0]) {
                return Some(lines);
            }
        }
    }
}

/// `host:port` of each server as a TOML list (`cluster.redis_sentinels`, `redis_cluster_nodes`).
pub fn toml_list(servers: &[RedisServer]) -> String {
    let quoted: Vec<String> = servers.iter().map(|s| format!("\"{}\"", s.addr)).collect();
    format!("[{}]", quoted.join(", "))
}

/// How many lines a RESP answer starting with `first` has: `*N` an array of N bulk strings
/// (two lines each), `$N` one bulk string, anything else (or a nil) one line.
fn expected_lines(first: &str) -> usize {
    let count = |rest: &str| rest.parse::<usize>().ok();
    match first.split_at(first.len().min(1)) {
        ("*", rest) => count(rest).map_or(1, |n| 1 + 2 * n),
        ("$", rest) => count(rest).map_or(1, |_| 2),
        _ => 1,
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.resume();
        }
        self.kill();
    }
}

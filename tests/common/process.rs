//! Running the real binary: to completion, or in the background with its address read from
//! its log, and sending it signals.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_loadbalancer");

/// Runs the binary to completion (it must exit by itself) and returns (exit code, stderr).
pub fn run_to_exit(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    (status.code(), stderr)
}

pub fn wait_with_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the balancer did not exit within {deadline:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write file");
}

/// Starts the binary on 127.0.0.1:0 and returns it with the address it logged.
pub fn start_binary(dir: &Path, backend: SocketAddr) -> (Child, SocketAddr) {
    start_binary_with(dir, backend, "", "")
}

/// As [`start_binary`], with more `[server]` keys (one `key = value` per line) and more
/// sections after the shipped ones.
pub fn start_binary_with(
    dir: &Path,
    backend: SocketAddr,
    server: &str,
    sections: &str,
) -> (Child, SocketAddr) {
    write_config(dir, backend, server, sections);
    launch(dir, &[])
}

/// Writes `pool.json` and `Settings.toml` for [`start_binary_with`].
pub fn write_config(dir: &Path, backend: SocketAddr, server: &str, sections: &str) {
    write(
        dir,
        "pool.json",
        &format!(r#"{{"backends": ["http://{backend}"]}}"#),
    );
    write(
        dir,
        "Settings.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\nshutdown_timeout_secs = 10\n{server}\n\
             [backends]\nfile = \"pool.json\"\n[simulation]\nenabled = false\n{sections}\n"
        ),
    );
}

/// Starts the binary in `dir` on its `Settings.toml`, through `runner` (a command and its
/// arguments that runs the binary, e.g. to drop privileges) unless that is empty.
pub fn launch(dir: &Path, runner: &[&str]) -> (Child, SocketAddr) {
    let (child, addr, _log) = launch_logged(dir, runner);
    (child, addr)
}

/// As [`launch`], and every line the binary logs (at `RUST_LOG=info`) comes out of the receiver.
pub fn launch_logged(dir: &Path, runner: &[&str]) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let mut command = match runner {
        [] => Command::new(BIN),
        [program, args @ ..] => {
            let mut command = Command::new(program);
            command.args(args).arg(BIN);
            command
        }
    };
    let mut child = command
        .args(["--settings", "Settings.toml"])
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (address_tx, address_rx) = mpsc::channel();
    let (line_tx, line_rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = address_tx.send(addr);
            }
            // Keep reading (and so keep the pipe drained) when nobody listens any more.
            let _ = line_tx.send(line);
        }
    });
    let addr = address_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the balancer logged its address")
        .parse()
        .expect("socket address");
    (child, addr, line_rx)
}

/// Sends SIGname through the shell's built-in `kill` (no extra package needed).
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -{name} {}", child.id())])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// A backend on a plain thread that answers every request `200 ok` and closes.
pub fn ok_backend() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let mut out = &stream;
                let _ = std::io::Write::write_all(
                    &mut out,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    addr
}

/// One request with `Connection: close`; returns (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    let reply = super::raw_exchange(addr, request.as_bytes(), Duration::from_secs(10));
    status_and_body(&reply)
}

/// The status (0 when there was no answer) and body text of a raw `Connection: close` reply.
pub fn status_and_body(reply: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(reply).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// A backend that answers every request after `delay`, and reports the request line of each
/// request it starts; health probes are answered at once and not reported (a probe's `GET /`
/// must not pass for the request a test waits for).
pub fn slow_backend(delay: Duration) -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (started, notices) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let started = started.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                let mut request_line = None;
                let mut probe = false;
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let mut out = &stream;
                    if line == "\r\n" && probe {
                        let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                        (request_line, probe) = (None, false);
                    } else if line == "\r\n" {
                        let _ = started.send(request_line.take().unwrap_or_default());
                        thread::sleep(delay);
                        let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
                    } else if request_line.is_none() {
                        request_line = Some(line.trim_end().to_owned());
                    } else if line
                        .to_ascii_lowercase()
                        .starts_with("user-agent: loadbalancer-health-check")
                    {
                        probe = true;
                    }
                    line.clear();
                }
            });
        }
    });
    (addr, notices)
}

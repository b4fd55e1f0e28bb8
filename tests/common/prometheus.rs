//! A real Prometheus (Debian's `prometheus`) scraping one balancer's `/lb/metrics` every second,
//! on a free loopback port, with its storage in a directory of its own; stopped when dropped.
//! Without the binary a local run skips with one line; with `CI` set it fails (`.ci/run`
//! installs it).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Prometheus {
    pub url: String,
    child: Child,
    pub dir: PathBuf,
}

impl Prometheus {
    /// Starts one scraping `target` (`host:port`), or `None` when there is no `prometheus`
    /// binary and `CI` is unset.
    pub fn scraping(target: &str) -> Option<Self> {
        if !super::installed("prometheus", "prometheus") {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = super::fresh_dir();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: loadbalancer\n    metrics_path: /lb/metrics\n\
             \x20   static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).expect("log file"))
            .spawn()
            .expect("spawn prometheus");
        Some(Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

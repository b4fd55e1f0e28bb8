//! A real Redis Sentinel setup for the cluster tests: a master, a replica of it and three
//! sentinels (`redis-server --sentinel`) watching it as `mymaster`, each on a free loopback
//! port in a directory of its own. A master that stops answering is failed over after about a
//! second (`down-after-milliseconds 1000`).

use std::collections::HashMap;
use std::time::Duration;

use super::cluster::within;
use super::redis::RedisServer;

pub const MASTER_NAME: &str = "mymaster";

pub struct Sentinels {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<RedisServer>,
}

impl Sentinels {
    /// Starts the five servers and waits until every sentinel knows the replica and the other
    /// two sentinels (so that a failover can be agreed), or `None` as [`RedisServer::start`].
    pub fn start() -> Option<Self> {
        let master = RedisServer::start()?;
        let mut replica = RedisServer::unstarted()?;
        replica.args_after = vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.addr.port().to_string(),
        ];
        replica.restart();
        let sentinels = (0..3)
            .map(|_| sentinel_of(&master))
            .collect::<Option<Vec<_>>>()?;
        let setup = Self {
            master,
            replica,
            sentinels,
        };
        within("replica in sync", Duration::from_secs(10), || {
            setup
                .master
                .lines("INFO replication")
                .iter()
                .any(|line| line.starts_with("slave0:") && line.contains("state=online"))
        });
        for sentinel in &setup.sentinels {
            within("sentinels know each other", Duration::from_secs(15), || {
                let master = fields(sentinel, &format!("SENTINEL MASTER {MASTER_NAME}"));
                master.get("num-other-sentinels").map(String::as_str) == Some("2")
                    && master.get("num-slaves").map(String::as_str) == Some("1")
            });
        }
        Some(setup)
    }

    /// `host:port` of every sentinel, as `cluster.redis_sentinels` takes them (TOML).
    pub fn toml_list(&self) -> String {
        super::redis::toml_list(&self.sentinels)
    }

    /// The master's address as the first sentinel sees it now.
    pub fn master_now(&self) -> Option<String> {
        let lines =
            self.sentinels[0].lines(&format!("SENTINEL GET-MASTER-ADDR-BY-NAME {MASTER_NAME}"));
        let values: Vec<&String> = lines
            .iter()
            .filter(|l| !l.starts_with(['*', '$']))
            .collect();
        match values.as_slice() {
            [host, port] => Some(format!("{host}:{port}")),
            _ => None,
        }
    }
}

/// A sentinel watching `master`, started.
fn sentinel_of(master: &RedisServer) -> Option<RedisServer> {
    let mut sentinel = RedisServer::unstarted()?;
    let config = sentinel.dir.join("sentinel.conf");
    let port = master.addr.port();
    std::fs::write(
        &config,
        format!(
            "sentinel monitor {MASTER_NAME} 127.0.0.1 {port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n"
        ),
    )
    .expect("sentinel.conf");
    sentinel.args_before = vec![config.display().to_string(), "--sentinel".into()];
    sentinel.restart();
    Some(sentinel)
}

/// A command answering a flat array of names and values, as a map.
fn fields(server: &RedisServer, command: &str) -> HashMap<String, String> {
    let values: Vec<String> = server
        .lines(command)
        .into_iter()
        .skip(1)
        .filter(|l| !l.starts_with('$'))
        .collect();
    values
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect()
}

//! A real three-master Redis Cluster for the cluster tests: three `redis-server
//! --cluster-enabled yes` on free loopback ports (their bus ports free ones too, through
//! `cluster-port`), each in a directory of its own, joined by `redis-cli --cluster create`. A
//! node can be killed and started again on its port; it rejoins from its `nodes.conf`.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::cluster::within;
use super::redis::RedisServer;

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster (slots split in three, no replicas) and waits
    /// until every node says it is ok; `None` as [`RedisServer::start`].
    pub fn start() -> Option<Self> {
        if !super::installed("redis-cli", "redis-tools") {
            return None;
        }
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let mut node = RedisServer::unstarted()?;
            node.args_after = vec![
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                node.dir.join("nodes.conf").display().to_string(),
                "--cluster-node-timeout".into(),
                "1000".into(),
                "--cluster-port".into(),
                free_port().to_string(),
            ];
            node.restart();
            nodes.push(node);
        }
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| n.addr.to_string()))
            .arg("--cluster-yes")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(status.success(), "redis-cli --cluster create");
        let cluster = Self { nodes };
        for node in &cluster.nodes {
            within("the Redis Cluster ok", Duration::from_secs(15), || {
                cluster_ok(node)
            });
        }
        Some(cluster)
    }

    /// `host:port` of every node, as `cluster.redis_cluster_nodes` takes them (TOML).
    pub fn toml_list(&self) -> String {
        super::redis::toml_list(&self.nodes)
    }

    /// Every key of every node, with the node's index.
    pub fn keys(&self) -> Vec<(usize, String)> {
        let mut all = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let lines = node.lines("KEYS *");
            all.extend(
                lines
                    .into_iter()
                    .skip(1)
                    .filter(|l| !l.starts_with('$'))
                    .map(|key| (i, key)),
            );
        }
        all
    }
}

/// The node answers and says the whole cluster is ok.
pub fn cluster_ok(node: &RedisServer) -> bool {
    node.command("PING").as_deref() == Some("+PONG")
        && node
            .lines("CLUSTER INFO")
            .iter()
            .any(|l| l.trim() == "cluster_state:ok")
}

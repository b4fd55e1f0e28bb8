//! Cluster mode on a Redis Cluster, with real parts: three masters (`common/redis_cluster.rs`),
//! three real balancer processes given the nodes as seeds, a real backend counting what
//! reaches it, and load from plain threads. Without `redis-server` or `redis-cli` a local run
//! skips with one line.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::cluster::*;
use common::process::http;
use common::redis_cluster::{cluster_ok, RedisCluster};

/// Three instances on the Redis Cluster, with a route that has a bucket per client.
fn three_on(cluster: &RedisCluster, backend: SocketAddr) -> Vec<Instance> {
    let pool = format!(
        r#"{{"backends": ["http://{backend}"], "routes": [
            {{"name": "export", "pool": "default", "path_prefix": "/work/export",
              "limits": {{"capacity": 5, "rate_per_sec": 0.01}}}}]}}"#
    );
    let nodes = format!("redis_cluster_nodes = {}", cluster.toml_list());
    let instances: Vec<Instance> = (0..3)
        .map(|_| Instance::start_with_pool_and("", &pool, (1000, 1000.0), &nodes))
        .collect();
    for instance in &instances {
        within("Redis up everywhere", Duration::from_secs(10), || {
            instance.cluster()["redis"] == "up"
        });
        assert_eq!(instance.cluster()["topology"], "cluster");
    }
    instances
}

/// Clients registered on one instance are limited across all three, each within the bound;
/// their buckets spread over the nodes by hash tag, a route bucket shares its client's slot
/// (one script takes from both: exactly the route's capacity is admitted), and no call failed —
/// no CROSSSLOT, no MOVED surfacing.
#[test]
fn three_instances_on_a_redis_cluster_hold_every_bound() {
    let _serial = serial();
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (backend, reached) = counting_backend();
    let instances = three_on(&cluster, backend);
    let ids: Vec<String> = (0..6).map(|i| format!("hot-{i}")).collect();
    for id in &ids {
        register_everywhere(&instances, id, 20, 10);
    }
    let all: Vec<&Instance> = instances.iter().collect();
    let mut total = 0;
    for id in &ids {
        let (statuses, elapsed) = load(&all, 1, Duration::from_millis(700), Some(id));
        let admitted = count(&statuses, 200);
        assert_eq!(admitted + count(&statuses, 429), statuses.len(), "{id}");
        assert_within_bound(admitted, 20.0, 10.0, elapsed);
        total += admitted;
    }
    assert_eq!(reached.load(Ordering::SeqCst), total);
    let keys = cluster.keys();
    let holding: std::collections::BTreeSet<usize> = keys
        .iter()
        .filter(|(_, key)| key.contains("bucket:client:{hot-"))
        .map(|(node, _)| *node)
        .collect();
    assert!(
        holding.len() >= 2,
        "buckets spread over the nodes: {keys:?}"
    );
    let mut admitted = 0;
    for round in 0..12 {
        let addr = instances[round % 3].addr;
        let headers = [("X-API-Key", "hot-0")];
        if http(addr, "GET", "/work/export", &headers, None).0 == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5, "the route's capacity, across three instances");
    let route_key = keys_now(&cluster, "bucket:route:export:client:{hot-0}");
    let client_key = keys_now(&cluster, "bucket:client:{hot-0}");
    assert_eq!(
        route_key, client_key,
        "one node holds both of hot-0's buckets"
    );
    for instance in &instances {
        assert_eq!(metric(instance, "lb_redis_failed_calls_total"), 0);
        assert_eq!(metric(instance, "lb_redis_up"), 1);
    }
}

/// The nodes holding a key containing `part` now.
fn keys_now(cluster: &RedisCluster, part: &str) -> Vec<usize> {
    cluster
        .keys()
        .into_iter()
        .filter(|(_, key)| key.contains(part))
        .map(|(node, _)| node)
        .collect()
}

/// A node killed under traffic and started again (empty, rejoining from its `nodes.conf`): the
/// instances treat it as a Redis outage — no request fails under `local`, Redis counts down,
/// then up again, and admin writes work.
#[test]
fn a_node_restart_is_an_outage_not_a_failure() {
    let _serial = serial();
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let (backend, _) = counting_backend();
    let instances = three_on(&cluster, backend);
    register_everywhere(&instances, "kept", 1_000_000, 1_000_000);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let addrs: Vec<SocketAddr> = instances.iter().map(|i| i.addr).collect();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for addr in &addrs {
                    let headers = [("X-API-Key", "kept")];
                    statuses.push(http(*addr, "GET", "/work", &headers, None).0);
                }
            }
            statuses
        })
    };
    thread::sleep(Duration::from_millis(300));
    cluster.nodes[1].kill();
    for instance in &instances {
        within("Redis down", Duration::from_secs(10), || {
            instance.cluster()["redis"] == "down"
        });
    }
    cluster.nodes[1].restart();
    for node in &cluster.nodes {
        within(
            "the Redis Cluster ok again",
            Duration::from_secs(15),
            || cluster_ok(node),
        );
    }
    for instance in &instances {
        within("Redis up again", Duration::from_secs(10), || {
            instance.cluster()["redis"] == "up"
        });
    }
    stop.store(true, Ordering::SeqCst);
    let statuses = traffic.join().expect("traffic");
    assert!(statuses.len() > 100, "{} requests", statuses.len());
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(failed.is_empty(), "every request admitted: {failed:?}");
    let write = r#"{"client_id": "after", "capacity": 5}"#;
    assert_eq!(instances[0].call("POST", "/clients", Some(write)).0, 201);
    within("the client everywhere", Duration::from_secs(1), || {
        instances[2].call("GET", "/clients/after", None).0 == 200
    });
}

/// Every slot of one master moves to another under load (`redis-cli --cluster reshard`),
/// with the buckets of the clients in use: the client follows `ASK` and `MOVED` itself — no
/// request fails and no Redis call fails.
#[test]
fn a_reshard_under_load_never_surfaces() {
    let _serial = serial();
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (backend, _) = counting_backend();
    let instances = three_on(&cluster, backend);
    // Clients whose buckets live on the first node (slots 0-5460, as `--cluster create` gives
    // it), all of whose slots move to the second below.
    let slot = |key: &str| -> u64 {
        let answer = cluster.nodes[0].command(&format!("CLUSTER KEYSLOT {key}"));
        answer
            .and_then(|a| a.trim_start_matches(':').parse().ok())
            .expect("a slot")
    };
    let ids: Vec<String> = (0..100)
        .map(|i| format!("moving-{i}"))
        .filter(|id| slot(id) <= 5460)
        .take(8)
        .collect();
    assert_eq!(ids.len(), 8);
    for id in &ids {
        register_everywhere(&instances, id, 1_000_000, 1_000_000);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let addrs: Vec<SocketAddr> = instances.iter().map(|i| i.addr).collect();
        let (stop, ids) = (Arc::clone(&stop), ids.clone());
        thread::spawn(move || {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for (n, id) in ids.iter().enumerate() {
                    let headers = [("X-API-Key", id.as_str())];
                    statuses.push(http(addrs[n % 3], "GET", "/work", &headers, None).0);
                }
            }
            statuses
        })
    };
    let node_id = |n: usize| cluster.nodes[n].lines("CLUSTER MYID")[1].clone();
    let (from, to) = (node_id(0), node_id(1));
    let moved = std::process::Command::new("redis-cli")
        .args(["--cluster", "reshard", &cluster.nodes[0].addr.to_string()])
        .args(["--cluster-from", &from, "--cluster-to", &to])
        .args(["--cluster-slots", "5461", "--cluster-yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("redis-cli");
    assert!(moved.success(), "redis-cli --cluster reshard");
    for node in &cluster.nodes {
        within("the Redis Cluster ok", Duration::from_secs(10), || {
            cluster_ok(node)
        });
    }
    stop.store(true, Ordering::SeqCst);
    let statuses = traffic.join().expect("traffic");
    assert!(statuses.len() > 100, "{} requests", statuses.len());
    assert!(statuses.iter().all(|s| *s == 200), "every request admitted");
    for instance in &instances {
        assert_eq!(metric(instance, "lb_redis_failed_calls_total"), 0);
        assert_eq!(instance.cluster()["redis"], "up");
    }
    let nodes = cluster.nodes[0].lines("CLUSTER NODES");
    let myself = nodes.iter().find(|l| l.contains("myself")).expect("itself");
    // id, address, flags, master, ping, pong, epoch, link state — and no slot ranges.
    assert_eq!(myself.split_whitespace().count(), 8, "slots left: {myself}");
}

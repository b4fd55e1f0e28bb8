//! Cluster mode behind Redis Sentinel, with real parts: a master, a replica and three sentinels
//! (`common/sentinel.rs`), two real balancer processes finding the master through the
//! sentinels, a real backend, and load from plain threads. Without `redis-server` a local run
//! skips with one line.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::process::http;
use common::sentinel::Sentinels;

/// Two instances on the sentinels' master; it is SIGKILLed under traffic. No request fails
/// meanwhile (`on_redis_down = "local"`), both follow the failover to the promoted replica
/// without a restart, the registry survived it, and a client registered afterwards is limited
/// across both instances again.
#[test]
fn a_failover_is_followed_without_a_restart() {
    let _serial = serial();
    let Some(mut setup) = Sentinels::start() else {
        return;
    };
    let (backend, _) = counting_backend();
    let sentinels = format!("redis_sentinels = {}", setup.toml_list());
    let instances: Vec<Instance> = (0..2)
        .map(|_| Instance::start("", backend, (1_000_000, 1_000_000.0), &sentinels))
        .collect();
    let master = setup.master.addr.to_string();
    for instance in &instances {
        within(
            "Redis up through the sentinels",
            Duration::from_secs(5),
            || instance.cluster()["redis"] == "up",
        );
        let status = instance.cluster();
        assert_eq!(status["topology"], "sentinel", "{status}");
        assert_eq!(status["server"], master.as_str(), "{status}");
    }
    register_everywhere(&instances, "kept", 1_000_000, 1_000_000);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = traffic(&instances, &stop);
    thread::sleep(Duration::from_millis(300));
    setup.master.kill();
    let killed = Instant::now();
    let promoted = setup.replica.addr.to_string();
    for instance in &instances {
        within(
            "the promoted replica in use",
            Duration::from_secs(20),
            || {
                let status = instance.cluster();
                status["redis"] == "up" && status["server"] == promoted.as_str()
            },
        );
    }
    let shared_again = killed.elapsed();
    eprintln!("shared again {shared_again:?} after the master was killed");
    assert_eq!(setup.master_now().as_deref(), Some(promoted.as_str()));
    stop.store(true, Ordering::SeqCst);
    let statuses = traffic.join().expect("traffic");
    assert!(statuses.len() > 100, "{} requests", statuses.len());
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(failed.is_empty(), "every request admitted: {failed:?}");
    for instance in &instances {
        assert_eq!(instance.call("GET", "/clients/kept", None).0, 200);
    }
    // Shared again: a client registered now gets its capacity once across both instances
    // (alone, each would admit its half of it: 2 + 2).
    register_everywhere(&instances, "after", 5, 1);
    let mut admitted = 0;
    for round in 0..10 {
        let instance = &instances[round % 2];
        let headers = [("X-API-Key", "after")];
        if http(instance.addr, "GET", "/work", &headers, None).0 == 200 {
            admitted += 1;
        }
    }
    assert!((5..=6).contains(&admitted), "admitted {admitted} of 10");
    assert!(metric(&instances[0], "lb_redis_failed_calls_total") > 0);
}

/// A planned failover (`SENTINEL FAILOVER`): the old master lives on as a replica, refusing
/// writes. The instance notices (its writes fail), asks the sentinels again and moves to the
/// new master; no request fails, and admin writes land on the new master.
#[test]
fn a_planned_failover_moves_to_the_new_master() {
    let _serial = serial();
    let Some(setup) = Sentinels::start() else {
        return;
    };
    let (backend, _) = counting_backend();
    let sentinels = format!("redis_sentinels = {}", setup.toml_list());
    let instances = vec![Instance::start(
        "",
        backend,
        (1_000_000, 1_000_000.0),
        &sentinels,
    )];
    within(
        "Redis up through the sentinels",
        Duration::from_secs(5),
        || instances[0].cluster()["redis"] == "up",
    );
    register_everywhere(&instances, "kept", 1_000_000, 1_000_000);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = traffic(&instances, &stop);
    let command = format!("SENTINEL FAILOVER {}", common::sentinel::MASTER_NAME);
    assert_eq!(setup.sentinels[1].command(&command).as_deref(), Some("+OK"));
    let promoted = setup.replica.addr.to_string();
    // Sentinel itself demotes the old master only on its next INFO round (up to 10 s later):
    // the instance must have moved before that.
    let took = within("the new master in use", Duration::from_secs(5), || {
        let status = instances[0].cluster();
        status["redis"] == "up" && status["server"] == promoted.as_str()
    });
    eprintln!("on the new master {took:?} after SENTINEL FAILOVER");
    stop.store(true, Ordering::SeqCst);
    let statuses = traffic.join().expect("traffic");
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(failed.is_empty(), "every request admitted: {failed:?}");
    let write = r#"{"client_id": "written", "capacity": 5}"#;
    assert_eq!(instances[0].call("POST", "/clients", Some(write)).0, 201);
    let stored = setup.replica.command("HEXISTS lb:clients written");
    assert_eq!(stored.as_deref(), Some(":1"), "on the new master");
}

/// `GET /work` with the key `kept`, round robin over `instances`, until `stop`; no request
/// may take a second (Redis calls give up after `REDIS_TIMEOUT_MS`).
fn traffic(instances: &[Instance], stop: &Arc<AtomicBool>) -> thread::JoinHandle<Vec<u16>> {
    let addrs: Vec<SocketAddr> = instances.iter().map(|i| i.addr).collect();
    let stop = Arc::clone(stop);
    thread::spawn(move || {
        let mut statuses = Vec::new();
        let mut slowest = Duration::ZERO;
        while !stop.load(Ordering::SeqCst) {
            for addr in &addrs {
                let headers = [("X-API-Key", "kept")];
                let started = Instant::now();
                statuses.push(http(*addr, "GET", "/work", &headers, None).0);
                slowest = slowest.max(started.elapsed());
            }
        }
        eprintln!("{} requests, the slowest {slowest:?}", statuses.len());
        assert!(slowest < Duration::from_secs(1), "slowest {slowest:?}");
        statuses
    })
}

/// Two of a Redis URL, sentinels and a Redis Cluster's nodes is a configuration error naming
/// both: exit 2.
#[test]
fn two_ways_to_redis_exit_2() {
    let url = "redis_url = \"redis://127.0.0.1:6390/0\"";
    let sentinels = "redis_sentinels = [\"127.0.0.1:26390\"]";
    let nodes = "redis_cluster_nodes = [\"127.0.0.1:7390\"]";
    for (first, second, named) in [
        (url, sentinels, "redis_url and redis_sentinels are both set"),
        (url, nodes, "redis_url and redis_cluster_nodes are both set"),
        (
            sentinels,
            nodes,
            "redis_sentinels and redis_cluster_nodes are both set",
        ),
    ] {
        let dir = common::fresh_dir();
        let backend = SocketAddr::from(([127, 0, 0, 1], 9));
        let cluster = format!("[cluster]\n{first}\n{second}\n");
        common::process::write_config(&dir, backend, "", &cluster);
        let (code, stderr) = common::process::run_to_exit(&dir, &["--check"], &[]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(named), "{stderr}");
    }
}

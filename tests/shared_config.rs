//! One configuration for the cluster (`cluster.share_config`), with real parts: a real
//! `redis-server`, real balancer processes each with its own folder and pool file, real
//! backends. A change on one instance (API, reload) becomes the cluster's next version, every
//! instance applies it within a second and writes its own pool file; a joining instance takes
//! the cluster's version. Without `redis-server` a local run skips with one line.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::cluster::*;
use common::process::{http, launch, signal, write, write_config};
use common::redis::RedisServer;
use serde_json::Value;

/// An instance in `dir` on `redis` with the pool file `pool`, probing every 200 ms.
fn start(redis: &RedisServer, dir: &Path, pool: &str, extra: &str) -> Instance {
    let unused = SocketAddr::from(([127, 0, 0, 1], 9));
    let sections = format!(
        "[health]\npath = \"/health\"\ninterval_ms = 200\n[persistence]\npath = \"lb.sqlite3\"\n\
         [cluster]\nredis_url = \"{}\"\nredis_timeout_ms = {REDIS_TIMEOUT_MS}\n{extra}\n",
        redis.url()
    );
    write_config(dir, unused, "", &sections);
    write(dir, "pool.json", pool);
    let (child, addr) = launch(dir, &[]);
    let instance = Instance { child, addr };
    within("Redis up", Duration::from_secs(5), || {
        instance.cluster()["redis"] == "up"
    });
    instance
}

/// Adds `backend` through the backends API of the instance at `addr`.
fn add_backend(addr: SocketAddr, backend: SocketAddr) {
    let body = format!(r#"{{"url": "http://{backend}"}}"#);
    let (code, answer) = http(addr, "POST", "/lb/api/backends", &[], Some(&body));
    assert_eq!(code, 201, "{answer}");
}

fn one_backend(backend: SocketAddr) -> String {
    format!(r#"{{"backends": ["http://{backend}"]}}"#)
}

fn version(instance: &Instance) -> Option<u64> {
    instance.cluster()["config_version"].as_u64()
}

fn status(instance: &Instance) -> Value {
    let (code, body) = instance.call("GET", "/lb/api/status", None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

fn serves_url(instance: &Instance, url: &str) -> bool {
    status(instance)["backends"]
        .as_array()
        .is_some_and(|all| all.iter().any(|b| b["url"] == url))
}

fn on_disk(dir: &Path, part: &str) -> bool {
    std::fs::read_to_string(dir.join("pool.json")).is_ok_and(|text| text.contains(part))
}

/// Three instances, each in its own folder.
fn three(redis: &RedisServer, pool: &str) -> (Vec<Instance>, Vec<PathBuf>) {
    let dirs: Vec<PathBuf> = (0..3).map(|_| common::fresh_dir()).collect();
    let instances = dirs.iter().map(|d| start(redis, d, pool, "")).collect();
    (instances, dirs)
}

/// A backend added through the API of one instance is on every instance's pool and disk within
/// a second and takes requests through all of them; every instance runs the same, newer
/// version, and the others announce it as applied.
#[test]
fn a_backend_added_on_one_instance_serves_on_all() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (first, _) = counting_backend();
    let (second, reached) = counting_backend();
    let (instances, dirs) = three(&redis, &one_backend(first));
    within("one version everywhere", Duration::from_secs(2), || {
        let versions: Vec<Option<u64>> = instances.iter().map(version).collect();
        versions[0].is_some() && versions.iter().all(|v| *v == versions[0])
    });
    let before = version(&instances[0]).expect("a version");
    let url = format!("http://{second}");
    add_backend(instances[0].addr, second);
    for (instance, dir) in instances.iter().zip(&dirs) {
        let took = within("the backend everywhere", Duration::from_secs(1), || {
            serves_url(instance, &url) && on_disk(dir, &second.to_string())
        });
        eprintln!("on {} after {took:?}", instance.addr);
    }
    for instance in &instances {
        assert_eq!(version(instance), Some(before + 1));
    }
    within(
        "every instance's version in the list",
        Duration::from_secs(3),
        || {
            let listed = instances[0].cluster()["instances"].clone();
            listed.as_array().is_some_and(|all| {
                all.len() == 3 && all.iter().all(|i| i["config_version"] == before + 1)
            })
        },
    );
    let seen = read_events(instances[2].addr, Duration::from_secs(5), |e| {
        e["type"] == "config" && e["action"] == "applied"
    });
    let applied = seen.last().expect("an event");
    assert_eq!(applied["version"], before + 1, "{applied}");
    assert_eq!(applied["by"], instances[0].addr.to_string(), "{applied}");
    within(
        "requests through the others reach it",
        Duration::from_secs(3),
        || {
            for instance in &instances[1..] {
                http(instance.addr, "GET", "/work", &[], None);
            }
            reached.load(Ordering::SeqCst) > 0
        },
    );
}

/// Routes replaced in one instance's pool file and reloaded (SIGHUP) are every instance's
/// routes within a second.
#[test]
fn routes_replaced_on_one_instance_are_followed() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (backend, _) = counting_backend();
    let (instances, dirs) = three(&redis, &one_backend(backend));
    let routed = format!(
        r#"{{"backends": ["http://{backend}"], "routes": [
            {{"name": "export", "pool": "default", "path_prefix": "/work/export",
              "limits": {{"capacity": 5, "rate_per_sec": 1}}}}]}}"#
    );
    write(&dirs[1], "pool.json", &routed);
    signal(&instances[1].child, "HUP");
    for (instance, dir) in instances.iter().zip(&dirs) {
        within("the route everywhere", Duration::from_secs(1), || {
            let routes = status(instance)["routes"].clone();
            routes
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["name"] == "export"))
                && on_disk(dir, "/work/export")
        });
    }
    let versions: Vec<Option<u64>> = instances.iter().map(version).collect();
    assert!(versions.iter().all(|v| *v == versions[1]), "{versions:?}");
}

/// An instance that joins with an old pool file takes the cluster's version: the backend added
/// before it started is on its pool and its disk.
#[test]
fn a_joining_instance_takes_the_clusters_version() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (first, _) = counting_backend();
    let (second, _) = counting_backend();
    let old = one_backend(first);
    let early = start(&redis, &common::fresh_dir(), &old, "");
    within("a version", Duration::from_secs(2), || {
        version(&early).is_some()
    });
    let url = format!("http://{second}");
    add_backend(early.addr, second);
    within("the new version", Duration::from_secs(2), || {
        version(&early) == Some(2)
    });
    let dir = common::fresh_dir();
    let late = start(&redis, &dir, &old, "");
    within(
        "the cluster's version taken",
        Duration::from_secs(1),
        || serves_url(&late, &url) && on_disk(&dir, &second.to_string()),
    );
    assert_eq!(version(&late), Some(2));
    assert!(serves_url(&early, &url), "the old file did not win");
}

/// With `share_config = false` nothing is shared: a backend added on one instance stays there,
/// and Redis holds no configuration (checked once a registry change, which travels with the
/// same tick, has reached the other instance).
#[test]
fn share_config_false_keeps_instances_apart() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (first, _) = counting_backend();
    let (second, _) = counting_backend();
    let pool = one_backend(first);
    let apart = "share_config = false";
    let instances = vec![
        start(&redis, &common::fresh_dir(), &pool, apart),
        start(&redis, &common::fresh_dir(), &pool, apart),
    ];
    let url = format!("http://{second}");
    add_backend(instances[0].addr, second);
    register_everywhere(&instances, "marker", 5, 1);
    assert!(!serves_url(&instances[1], &url));
    assert_eq!(redis.command("EXISTS lb:config").as_deref(), Some(":0"));
    for instance in &instances {
        assert_eq!(version(instance), None);
    }
}

/// Two instances add different backends at the same moment: the cluster settles on one whole
/// version — every instance's pool file the same, with one of the two backends, never both
/// (the last writer wins, each version a whole file).
#[test]
fn concurrent_changes_settle_on_one_whole_version() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (first, _) = counting_backend();
    let (left, _) = counting_backend();
    let (right, _) = counting_backend();
    let (instances, dirs) = three(&redis, &one_backend(first));
    within("one version everywhere", Duration::from_secs(2), || {
        instances.iter().all(|i| version(i).is_some())
    });
    let adds: Vec<_> = [(instances[0].addr, left), (instances[1].addr, right)]
        .into_iter()
        .map(|(addr, backend)| std::thread::spawn(move || add_backend(addr, backend)))
        .collect();
    for add in adds {
        add.join().expect("add");
    }
    let files = || -> Vec<String> {
        dirs.iter()
            .map(|d| std::fs::read_to_string(d.join("pool.json")).unwrap_or_default())
            .collect()
    };
    within("one file everywhere", Duration::from_secs(2), || {
        let files = files();
        let versions: Vec<Option<u64>> = instances.iter().map(version).collect();
        files.iter().all(|f| *f == files[0]) && versions.iter().all(|v| *v == versions[0])
    });
    let file = &files()[0];
    let has = |backend: SocketAddr| file.contains(&backend.to_string());
    assert!(has(first), "{file}");
    assert!(has(left) != has(right), "one of the two, not a mix: {file}");
    // The other one, if an instance took it meanwhile, is removed: it drains, then leaves.
    for instance in &instances {
        let staying = |b: SocketAddr| {
            let url = format!("http://{b}");
            status(instance)["backends"]
                .as_array()
                .is_some_and(|all| all.iter().any(|x| x["url"] == url && x["leaving"] == false))
        };
        assert_eq!((staying(left), staying(right)), (has(left), has(right)));
    }
}

/// Redis lost the versions (restored from an older state: the same file as version 1): every
/// instance follows it down, and a change made afterwards still reaches every instance,
/// although they ran a higher version before.
#[test]
fn a_redis_that_lost_the_versions_counts_again() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (first, _) = counting_backend();
    let (second, _) = counting_backend();
    let (third, _) = counting_backend();
    let (instances, dirs) = three(&redis, &one_backend(first));
    within("one version everywhere", Duration::from_secs(2), || {
        agreed(&instances, &redis)
    });
    add_backend(instances[0].addr, second);
    within(
        "the second backend on one version everywhere",
        Duration::from_secs(2),
        || {
            let url = format!("http://{second}");
            agreed(&instances, &redis) && instances.iter().all(|i| serves_url(i, &url))
        },
    );
    assert!(stored(&redis) > Some(1));
    // Redis loses everything and comes back holding the same file as version 1 (as from an
    // older snapshot), in one step.
    let restore = "EVAL \"local t = redis.call('HGET', KEYS[1], 'text') \
                   redis.call('FLUSHALL') \
                   redis.call('HSET', KEYS[1], 'version', 1, 'text', t, 'by', 'restored') \
                   return 1\" 1 lb:config";
    assert_eq!(redis.command(restore).as_deref(), Some(":1"));
    within(
        "every instance on Redis's version 1",
        Duration::from_secs(2),
        || agreed(&instances, &redis),
    );
    add_backend(instances[1].addr, third);
    let url = format!("http://{third}");
    for (instance, dir) in instances.iter().zip(&dirs) {
        within(
            "the change after the restart everywhere",
            Duration::from_secs(1),
            || serves_url(instance, &url) && on_disk(dir, &third.to_string()),
        );
    }
}

/// The configuration version Redis holds.
fn stored(redis: &RedisServer) -> Option<u64> {
    let answer = redis.lines("HGET lb:config version");
    answer.get(1).and_then(|v| v.parse().ok())
}

/// Every instance runs the version Redis holds.
fn agreed(instances: &[Instance], redis: &RedisServer) -> bool {
    let now = stored(redis);
    now.is_some() && instances.iter().all(|i| version(i) == now)
}

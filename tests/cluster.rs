//! Cluster mode with real parts: a real `redis-server` on a free port, three real balancer
//! processes on it, a real backend counting what reaches it, and load from plain threads.
//! Without `redis-server` a local run skips with one line (see `common/redis.rs`).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::process::http;
use common::redis::RedisServer;
use serde_json::Value;

/// A client registered on one instance is limited across all three under concurrent load,
/// within the bound; the backend sees exactly the admitted requests.
#[test]
fn a_registered_client_is_limited_across_three_instances() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (backend, reached) = counting_backend();
    let instances = three(&redis, backend, (1000, 1000.0));
    register_everywhere(&instances, "hot", 40, 20);
    let all: Vec<&Instance> = instances.iter().collect();
    let (statuses, elapsed) = load(&all, 3, Duration::from_secs(2), Some("hot"));
    let admitted = count(&statuses, 200);
    assert_eq!(
        admitted + count(&statuses, 429),
        statuses.len(),
        "only 200 and 429"
    );
    assert!(
        count(&statuses, 429) > admitted,
        "the load exceeded the limit"
    );
    assert_within_bound(admitted, 40.0, 20.0, elapsed);
    assert_eq!(reached.load(Ordering::SeqCst), admitted);
}

/// The default per-IP limit is shared the same way (every request comes from 127.0.0.1).
#[test]
fn the_default_per_ip_limit_is_shared() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (backend, reached) = counting_backend();
    let instances = three(&redis, backend, (30, 10.0));
    let all: Vec<&Instance> = instances.iter().collect();
    let (statuses, elapsed) = load(&all, 2, Duration::from_millis(1500), None);
    let admitted = count(&statuses, 200);
    assert_eq!(admitted + count(&statuses, 429), statuses.len());
    assert_within_bound(admitted, 30.0, 10.0, elapsed);
    assert_eq!(reached.load(Ordering::SeqCst), admitted);
    // Once the bucket would be full again its key expires: nothing is left behind.
    within("the bucket key to expire", Duration::from_secs(5), || {
        !redis
            .lines("KEYS *")
            .iter()
            .any(|line| line.contains("bucket:"))
    });
}

/// Creates, updates and deletes reach every instance within a second; of two concurrent
/// creates of one id exactly one wins.
#[test]
fn registry_changes_reach_every_instance_within_a_second() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (backend, _) = counting_backend();
    let instances = three(&redis, backend, (100, 10.0));
    let create = r#"{"client_id": "c1", "name": "one", "capacity": 5, "rate_per_sec": 1}"#;
    assert_eq!(instances[0].call("POST", "/clients", Some(create)).0, 201);
    for instance in &instances[1..] {
        let took = within("the create", Duration::from_secs(1), || {
            instance.call("GET", "/clients/c1", None).0 == 200
        });
        eprintln!("create seen after {took:?}");
    }
    // Every instance's page hears of it once: the writer from its handler, the others from
    // the change log.
    for instance in &instances {
        let mut created_at = None;
        let events = read_events(instance.addr, Duration::from_secs(5), |event| {
            if is_client_event(event, "created", "c1") {
                created_at = event["at_ms"].as_u64();
            }
            // A stats tick a second after it: any echo of the change log came before.
            created_at.is_some_and(|at| {
                event["type"] == "stats" && event["at_ms"].as_u64() > Some(at + 1000)
            })
        });
        let heard = events
            .iter()
            .filter(|e| is_client_event(e, "created", "c1"))
            .count();
        assert_eq!(heard, 1, "{events:?}");
    }
    // The level a client shows is the shared one: spent on one instance, seen on another.
    for _ in 0..3 {
        let headers = [("X-API-Key", "c1")];
        assert_eq!(
            http(instances[0].addr, "GET", "/work", &headers, None).0,
            200
        );
    }
    let (_, body) = instances[2].call("GET", "/clients/c1", None);
    let tokens = serde_json::from_str::<Value>(&body).expect("JSON")["tokens"]
        .as_f64()
        .expect("tokens");
    assert!(
        tokens < 3.5,
        "{tokens} tokens left of 5 after 3 requests elsewhere"
    );
    let update = r#"{"capacity": 9}"#;
    let (status, body) = instances[1].call("PUT", "/clients/c1", Some(update));
    assert_eq!(status, 200, "{body}");
    for instance in [&instances[0], &instances[2]] {
        within("the update", Duration::from_secs(1), || {
            let (_, body) = instance.call("GET", "/clients/c1", None);
            serde_json::from_str::<Value>(&body)
                .is_ok_and(|c| c["capacity"] == 9 && c["name"] == "one")
        });
    }
    assert_eq!(instances[2].call("DELETE", "/clients/c1", None).0, 204);
    for instance in &instances[..2] {
        within("the delete", Duration::from_secs(1), || {
            instance.call("GET", "/clients/c1", None).0 == 404
        });
    }
    assert_eq!(instances[0].call("DELETE", "/clients/c1", None).0, 404);
    // The race: the same id created on two instances at once.
    for round in 0..5 {
        let body = format!(r#"{{"client_id": "race{round}", "capacity": 5}}"#);
        let racers: Vec<_> = instances[..2]
            .iter()
            .map(|instance| {
                let (addr, body) = (instance.addr, body.clone());
                thread::spawn(move || http(addr, "POST", "/clients", &[], Some(&body)).0)
            })
            .collect();
        let mut codes: Vec<u16> = racers
            .into_iter()
            .map(|r| r.join().expect("racer"))
            .collect();
        codes.sort_unstable();
        assert_eq!(codes, [201, 409], "round {round}");
    }
    // An instance started now reads the registry whole when it joins.
    let late = Instance::start(&redis.url(), backend, (100, 10.0), "");
    within("the late instance up", Duration::from_secs(5), || {
        late.cluster()["redis"] == "up"
    });
    let (status, body) = late.call("GET", "/clients", None);
    assert_eq!(status, 200);
    let ids: Vec<String> = serde_json::from_str::<Vec<Value>>(&body)
        .expect("JSON")
        .iter()
        .filter_map(|c| c["client_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, ["race0", "race1", "race2", "race3", "race4"]);
}

/// Redis killed under traffic and started again on its port (empty): requests never fail,
/// admin writes answer 503 and change nothing, status says down, then up within 2 s with the
/// registry seeded back from the instances, and writes work again.
#[test]
fn a_redis_restart_never_stops_traffic() {
    let _serial = serial();
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (backend, _) = counting_backend();
    let instances = three(&redis, backend, (1_000_000, 1_000_000.0));
    register_everywhere(&instances, "kept", 1_000_000, 1_000_000);
    let traffic = {
        let addrs: Vec<SocketAddr> = instances.iter().map(|i| i.addr).collect();
        thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(5);
            let mut statuses = Vec::new();
            while Instant::now() < until {
                for addr in &addrs {
                    statuses.push(http(*addr, "GET", "/work", &[("X-API-Key", "kept")], None).0);
                }
            }
            statuses
        })
    };
    thread::sleep(Duration::from_millis(500));
    redis.kill();
    for instance in &instances {
        within("status down", Duration::from_secs(2), || {
            instance.cluster()["redis"] == "down"
        });
    }
    let write = r#"{"client_id": "during", "capacity": 5}"#;
    let (status, body) = instances[1].call("POST", "/clients", Some(write));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Redis"), "{body}");
    redis.restart();
    for instance in &instances {
        let took = within("status up", Duration::from_secs(2), || {
            instance.cluster()["redis"] == "up"
        });
        eprintln!("up again after {took:?}");
    }
    assert_eq!(instances[1].call("POST", "/clients", Some(write)).0, 201);
    assert_eq!(instances[2].call("GET", "/clients/kept", None).0, 200);
    let statuses = traffic.join().expect("traffic");
    assert!(statuses.len() > 100, "{} requests", statuses.len());
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every request admitted: {:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    let local = metric(&instances[0], "lb_admissions_decided_locally_total");
    assert!(local > 0, "{local} decided locally");
    assert_eq!(metric(&instances[0], "lb_redis_up"), 1);
}

/// A hung Redis (SIGSTOP) is noticed by its silence: requests keep being answered, each in
/// well under a second, and shared limiting resumes after SIGCONT; so it does within 2 s after
/// Redis lost its scripts (SCRIPT FLUSH), with every request answered meanwhile.
#[test]
fn a_paused_redis_does_not_hold_requests() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (backend, _) = counting_backend();
    let instance = Instance::start(&redis.url(), backend, (1_000_000, 1_000_000.0), "");
    within("Redis up", Duration::from_secs(5), || {
        instance.cluster()["redis"] == "up"
    });
    redis.pause();
    let mut slowest = Duration::ZERO;
    let mut ips = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        // A new address each time: nothing to answer from a lease, so Redis would be asked.
        ips += 1;
        let forwarded = format!("10.9.{}.{}", ips / 250, ips % 250);
        let started = Instant::now();
        let (status, _) = http(
            instance.addr,
            "GET",
            "/work",
            &[("X-Forwarded-For", &forwarded)],
            None,
        );
        slowest = slowest.max(started.elapsed());
        assert_eq!(status, 200);
    }
    eprintln!("{ips} requests while paused; slowest {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "slowest {slowest:?}");
    assert_eq!(instance.cluster()["redis"], "down");
    redis.resume();
    within("Redis up again", Duration::from_secs(2), || {
        instance.cluster()["redis"] == "up"
    });
    // Scripts lost without a disconnect (as after a restart behind a proxy): the next ask
    // fails with NOSCRIPT, the instance decides alone meanwhile and reloads them.
    assert_eq!(redis.command("SCRIPT FLUSH").as_deref(), Some("+OK"));
    let mut fresh_ip = || {
        ips += 1;
        format!("10.8.{}.{}", ips / 250, ips % 250)
    };
    let mut statuses = Vec::new();
    let ask = |ip: String| {
        let headers = [("X-Forwarded-For", ip.as_str())];
        http(instance.addr, "GET", "/work", &headers, None).0
    };
    statuses.push(ask(fresh_ip()));
    let took = within(
        "shared limiting back after SCRIPT FLUSH",
        Duration::from_secs(2),
        || {
            statuses.push(ask(fresh_ip()));
            instance.cluster()["redis"] == "up"
        },
    );
    eprintln!("shared again {took:?} after SCRIPT FLUSH");
    let before = metric(&instance, "lb_redis_calls_total");
    statuses.push(ask(fresh_ip()));
    assert!(
        metric(&instance, "lb_redis_calls_total") > before,
        "a new client is asked of Redis again"
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

/// An instance restarted while Redis is unreachable still knows the clients (its SQLite
/// mirror), serves, and refuses writes; a Redis that never was is not a configuration error.
#[test]
fn a_restart_without_redis_still_knows_the_clients() {
    let _serial = serial();
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (backend, reached) = counting_backend();
    let dir = common::fresh_dir();
    let instance = Instance::start_in(dir.clone(), &redis.url(), backend, (100, 10.0), "");
    within("Redis up", Duration::from_secs(5), || {
        instance.cluster()["redis"] == "up"
    });
    let body = r#"{"client_id": "mirror", "capacity": 3, "rate_per_sec": 0.001}"#;
    assert_eq!(instance.call("POST", "/clients", Some(body)).0, 201);
    instance.stop();
    redis.kill();
    let restarted = Instance::start_in(dir, &redis.url(), backend, (100, 10.0), "");
    let cluster = restarted.cluster();
    assert_eq!(
        (cluster["mode"].as_str(), cluster["redis"].as_str()),
        (Some("redis"), Some("down"))
    );
    let (status, body) = restarted.call("GET", "/clients/mirror", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(restarted.call("DELETE", "/clients/mirror", None).0, 503);
    // Limited alone meanwhile (one instance last seen: the client's own limits).
    let statuses: Vec<u16> = (0..6)
        .map(|_| {
            http(
                restarted.addr,
                "GET",
                "/work",
                &[("X-API-Key", "mirror")],
                None,
            )
            .0
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    assert_eq!(reached.load(Ordering::SeqCst), 3);
}

/// `on_redis_down = "deny"`: with Redis unreachable every proxied request is a 503 JSON, and
/// the balancer's own routes still answer.
#[test]
fn deny_mode_refuses_while_redis_is_down() {
    let _serial = serial();
    let refused = common::refused_addr();
    let (backend, reached) = counting_backend();
    let instance = Instance::start(
        &format!("redis://{refused}/0"),
        backend,
        (100, 10.0),
        "on_redis_down = \"deny\"",
    );
    let (status, body) = instance.call("GET", "/work", None);
    assert_eq!(status, 503, "{body}");
    let error: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(error["code"], 503);
    assert!(error["message"]
        .as_str()
        .is_some_and(|m| m.contains("Redis")));
    assert_eq!(reached.load(Ordering::SeqCst), 0);
    assert_eq!(instance.cluster()["redis"], "down");
}

/// One slow call is not an outage: with the default `redis_down_after = 3` an instance stays
/// up through a single call that times out (counted in `lb_redis_failed_calls_total`), while
/// one set to 1 counts Redis down at once and says why.
#[test]
fn one_slow_call_does_not_flip_an_instance() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (backend, _) = counting_backend();
    let limits = (1_000_000, 1_000_000.0);
    let patient = Instance::start(&redis.url(), backend, limits, "");
    let hasty = Instance::start(&redis.url(), backend, limits, "redis_down_after = 1");
    for instance in [&patient, &hasty] {
        within("Redis up", Duration::from_secs(5), || {
            instance.cluster()["redis"] == "up"
        });
    }
    let failed_before = metric(&patient, "lb_redis_failed_calls_total");
    redis.pause();
    for (n, instance) in [&patient, &hasty].into_iter().enumerate() {
        // A new address: nothing to answer from a lease, so Redis is asked, and times out.
        let forwarded = format!("10.7.0.{n}");
        let headers = [("X-Forwarded-For", forwarded.as_str())];
        assert_eq!(http(instance.addr, "GET", "/work", &headers, None).0, 200);
    }
    redis.resume();
    assert!(metric(&patient, "lb_redis_failed_calls_total") > failed_before);
    let marker = r#"{"client_id": "marker", "capacity": 5}"#;
    within(
        "a write through the patient one",
        Duration::from_secs(2),
        || patient.call("POST", "/clients", Some(marker)).0 == 201,
    );
    let seen = read_events(patient.addr, Duration::from_secs(5), |e| {
        is_client_event(e, "created", "marker")
    });
    let down = |e: &&Value| e["type"] == "redis" && e["state"] == "down";
    assert_eq!(seen.iter().filter(down).count(), 0, "{seen:?}");
    let mut was_down = false;
    let seen = read_events(hasty.addr, Duration::from_secs(5), |e| {
        let redis = |state| e["type"] == "redis" && e["state"] == state;
        was_down |= redis("down");
        was_down && redis("up")
    });
    let reason = seen.iter().find(down).expect("down on one slow call")["reason"].clone();
    assert!(
        reason
            .as_str()
            .is_some_and(|r| r.contains("no answer within")),
        "{reason}"
    );
}

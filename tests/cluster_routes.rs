//! Limits on routes in cluster mode, with real parts: a real `redis-server` on a free port,
//! three real balancer processes on it with one pool file of routes, and a real backend
//! counting what reaches it. A route's cost and its bucket per client are taken in Redis in one
//! script call, so they hold across instances like the client's own bucket.
//! Without `redis-server` a local run skips with one line (see `common/redis.rs`).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::cluster::*;
use common::process::http;
use common::redis::RedisServer;
use serde_json::Value;

/// Three instances on one pool file: `/work/export` has a bucket per client (5 tokens,
/// hardly refilled), `/work/bulk` costs 4 tokens of the client's own.
fn three_with_routes(
    redis: &RedisServer,
    backend: SocketAddr,
    export: (u64, f64),
) -> Vec<Instance> {
    let (capacity, rate) = export;
    let pool = format!(
        r#"{{"backends": ["http://{backend}"], "routes": [
            {{"name": "export", "pool": "default", "path_prefix": "/work/export",
              "limits": {{"capacity": {capacity}, "rate_per_sec": {rate}}}}},
            {{"name": "bulk", "pool": "default", "path_prefix": "/work/bulk", "cost": 4}}]}}"#
    );
    let instances: Vec<Instance> = (0..3)
        .map(|_| Instance::start_with_pool(&redis.url(), &pool, (1000, 1000.0)))
        .collect();
    for instance in &instances {
        within("Redis up everywhere", Duration::from_secs(5), || {
            instance.cluster()["redis"] == "up"
        });
    }
    instances
}

/// Sends `GET path` with `key` once per instance in turn, `n` times; the statuses and the
/// last body.
fn round_robin(instances: &[Instance], n: usize, path: &str, key: &str) -> (Vec<u16>, String) {
    let mut statuses = Vec::new();
    let mut last = String::new();
    for i in 0..n {
        let addr = instances[i % instances.len()].addr;
        let (status, body) = http(addr, "GET", path, &[("X-API-Key", key)], None);
        statuses.push(status);
        last = body;
    }
    (statuses, last)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The client's level of its own bucket, as an instance reads it from Redis.
fn tokens(instance: &Instance, id: &str) -> f64 {
    let (status, body) = instance.call("GET", &format!("/clients/{id}"), None);
    assert_eq!(status, 200, "{body}");
    json(&body)["tokens"].as_f64().expect("tokens")
}

fn create(instance: &Instance, body: &str) {
    let (status, answer) = instance.call("POST", "/clients", Some(body));
    assert_eq!(status, 201, "{answer}");
}

/// Requests to one route from one client, spread over three instances: the route's bucket
/// admits exactly its capacity, and the refusals (`"limit": "route:export"`) charge nothing of
/// the client's own bucket; a route's cost is taken from that bucket on every instance alike.
#[test]
fn route_buckets_and_costs_are_shared_by_three_instances() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (backend, reached) = counting_backend();
    let instances = three_with_routes(&redis, backend, (5, 0.001));
    create(
        &instances[0],
        r#"{"client_id": "hot", "capacity": 20, "rate_per_sec": 0.001}"#,
    );
    within("the client everywhere", Duration::from_secs(1), || {
        instances
            .iter()
            .all(|i| i.call("GET", "/clients/hot", None).0 == 200)
    });

    let (statuses, last) = round_robin(&instances, 10, "/work/export", "hot");
    assert_eq!(statuses, [[200; 5], [429; 5]].concat());
    assert_eq!(json(&last)["limit"], "route:export", "{last}");
    let level = tokens(&instances[2], "hot");
    assert!((15.0..15.1).contains(&level), "5 taken, not 10: {level}");

    let (statuses, last) = round_robin(&instances, 4, "/work/bulk", "hot");
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!(json(&last)["limit"], "client", "{last}");
    let level = tokens(&instances[1], "hot");
    assert!((3.0..3.1).contains(&level), "three times 4 taken: {level}");
    assert_eq!(reached.load(Ordering::SeqCst), 8);
}

/// A client's own limits on a route, written on one instance, are in every instance's
/// registry within a second and hold across all three; removed on another, they are gone
/// everywhere.
#[test]
fn a_clients_own_route_limits_reach_every_instance() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (backend, _) = counting_backend();
    let instances = three_with_routes(&redis, backend, (5, 0.001));
    create(
        &instances[0],
        r#"{"client_id": "gold", "capacity": 100, "rate_per_sec": 0.001,
            "routes": {"export": {"capacity": 2, "rate_per_sec": 0.001}}}"#,
    );
    let own_export = |instance: &Instance| {
        let (_, body) = instance.call("GET", "/clients/gold", None);
        json(&body)["routes"]["export"]["capacity"].clone()
    };
    within(
        "gold's own limits everywhere",
        Duration::from_secs(1),
        || instances.iter().all(|i| own_export(i) == 2),
    );
    let (statuses, last) = round_robin(&instances, 6, "/work/export", "gold");
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
    assert_eq!(json(&last)["limit"], "route:export", "{last}");

    let (status, body) = instances[1].call(
        "PUT",
        "/clients/gold",
        Some(r#"{"routes": {"export": null}}"#),
    );
    assert_eq!(status, 200, "{body}");
    within(
        "gold's own limits gone everywhere",
        Duration::from_secs(1),
        || instances.iter().all(|i| own_export(i).is_null()),
    );
}

/// Under concurrent load from one address on three instances, a route's bucket holds the
/// contract's bound; every refusal is counted on its route and nothing refused reaches the
/// backend.
#[test]
fn a_route_bucket_holds_its_bound_under_load() {
    let _serial = serial();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (backend, reached) = counting_backend();
    let instances = three_with_routes(&redis, backend, (10, 5.0));
    let all: Vec<&Instance> = instances.iter().collect();
    let (statuses, elapsed) = load_path(&all, 2, Duration::from_millis(1500), None, "/work/export");
    let (admitted, refused) = (count(&statuses, 200), count(&statuses, 429));
    assert_eq!(admitted + refused, statuses.len(), "only 200 and 429");
    assert!(refused > admitted, "the load exceeded the limit");
    assert_within_bound(admitted, 10.0, 5.0, elapsed);
    assert_eq!(reached.load(Ordering::SeqCst), admitted);
    let counted: u64 = instances
        .iter()
        .map(|i| metric(i, r#"lb_route_rate_limited_total{route="export"}"#))
        .sum();
    assert_eq!(counted, refused as u64);
}

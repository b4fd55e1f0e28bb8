//! Validation of `[cluster]`: the three ways to Redis and the values around them.

use super::*;

/// A Redis URL is checked for its form only: an unreachable Redis is not a configuration error.
#[test]
fn a_redis_url_is_checked_not_connected() {
    let s = validate(|r| {
        r.cluster.redis_url = "redis://127.0.0.1:1/0".into();
        r.cluster.on_redis_down = "deny".into();
        r.cluster.instance_name = " edge-1 ".into();
    })
    .expect("valid");
    assert!(s.cluster.redis.is_some());
    assert_eq!(s.cluster.on_redis_down, OnRedisDown::Deny);
    assert_eq!(s.cluster.instance_name.as_deref(), Some("edge-1"));
}

/// Sentinels are `host:port` (an IPv6 address in brackets) with the master's name, a Redis
/// Cluster's seeds the same; two of URL, sentinels and seeds is an error naming both, and a
/// Redis Cluster's key prefix holds no braces (the hash tags' own).
#[test]
fn sentinels_or_a_url_not_both() {
    let s = validate(|r| {
        r.cluster.redis_sentinels = vec!["127.0.0.1:26380".into(), "[::1]:26381".into()];
        r.cluster.redis_master_name = "edge".into();
    })
    .expect("valid");
    let Some(RedisTopology::Sentinel {
        sentinels,
        master_name,
    }) = s.cluster.redis
    else {
        panic!("sentinel topology");
    };
    let addrs: Vec<String> = sentinels.iter().map(|s| s.addr().to_string()).collect();
    assert_eq!(addrs, ["127.0.0.1:26380", "::1:26381"]);
    assert_eq!(master_name, "edge");
    assert_eq!(s.cluster.redis_down_after.get(), 3);
    let both = validate(|r| {
        r.cluster.redis_url = "redis://127.0.0.1:6390/0".into();
        r.cluster.redis_sentinels = vec!["127.0.0.1:26380".into()];
    })
    .expect_err("both set")
    .to_string();
    assert!(
        both.contains("redis_url and redis_sentinels are both set"),
        "{both}"
    );
    let nodes = || vec!["127.0.0.1:7001".to_owned(), "localhost:7002".to_owned()];
    let s = validate(|r| r.cluster.redis_cluster_nodes = nodes()).expect("valid");
    let Some(RedisTopology::Cluster(seeds)) = s.cluster.redis else {
        panic!("cluster topology");
    };
    assert_eq!(seeds.len(), 2);
    let both = validate(|r| {
        r.cluster.redis_sentinels = vec!["127.0.0.1:26380".into()];
        r.cluster.redis_cluster_nodes = nodes();
    })
    .expect_err("both set")
    .to_string();
    assert!(
        both.contains("redis_sentinels and redis_cluster_nodes are both set"),
        "{both}"
    );
    let braces = validate(|r| {
        r.cluster.redis_cluster_nodes = nodes();
        r.cluster.key_prefix = "{lb}:".into();
    })
    .expect_err("braces in the prefix")
    .to_string();
    assert!(braces.contains("cluster.key_prefix"), "{braces}");
}

/// A bad cluster value names its key and says what is wrong.
#[test]
fn cluster_values_name_their_key() {
    let cases: Vec<Case> = vec![
        (
            "cluster.redis_url",
            Box::new(|r| r.cluster.redis_url = "http://127.0.0.1:6379".into()),
            "not a Redis URL",
        ),
        (
            "cluster.redis_sentinels",
            Box::new(|r| r.cluster.redis_sentinels = vec!["127.0.0.1".into()]),
            "no port",
        ),
        (
            "cluster.redis_sentinels",
            Box::new(|r| r.cluster.redis_sentinels = vec!["127.0.0.1:0".into()]),
            "1 to 65535",
        ),
        (
            "cluster.redis_cluster_nodes",
            Box::new(|r| r.cluster.redis_cluster_nodes = vec![":7001".into()]),
            "no host",
        ),
        (
            "cluster.redis_master_name",
            Box::new(|r| {
                r.cluster.redis_sentinels = vec!["127.0.0.1:26380".into()];
                r.cluster.redis_master_name = " ".into();
            }),
            "must not be empty",
        ),
        (
            "cluster.redis_down_after",
            Box::new(|r| r.cluster.redis_down_after = 0),
            "at least 1",
        ),
        (
            "cluster.on_redis_down",
            Box::new(|r| r.cluster.on_redis_down = "panic".into()),
            "not one of",
        ),
        (
            "cluster.redis_timeout_ms",
            Box::new(|r| r.cluster.redis_timeout_ms = 0),
            "greater than 0",
        ),
        (
            "cluster.lease_ms",
            Box::new(|r| r.cluster.lease_ms = 60_000),
            "maximum",
        ),
        (
            "cluster.key_prefix",
            Box::new(|r| r.cluster.key_prefix = String::new()),
            "must not be empty",
        ),
    ];
    check_cases(cases);
}

//! `[cluster]`: where Redis is, and what an instance does without it.

use std::time::Duration;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawCluster;
use super::typed::{ClusterSettings, OnRedisDown, RedisTopology};

/// The cluster section; a malformed Redis URL or sentinel address is a configuration error, an
/// unreachable Redis is not (the instance starts and joins when Redis appears).
pub fn cluster(check: &Checker, raw: &RawCluster) -> Result<ClusterSettings, ConfigError> {
    let on_redis_down = match raw.on_redis_down.as_str() {
        "local" => OnRedisDown::Local,
        "allow" => OnRedisDown::Allow,
        "deny" => OnRedisDown::Deny,
        other => {
            return Err(check.invalid(
                "cluster.on_redis_down",
                format!("{other:?} is not one of \"local\", \"allow\", \"deny\""),
            ))
        }
    };
    if raw.key_prefix.is_empty() {
        return Err(check.invalid(
            "cluster.key_prefix",
            "must not be empty (every key of this balancer carries it)",
        ));
    }
    let name = raw.instance_name.trim();
    Ok(ClusterSettings {
        redis: topology(check, raw)?,
        redis_down_after: check.nonzero("cluster.redis_down_after", raw.redis_down_after)?,
        share_config: raw.share_config,
        key_prefix: raw.key_prefix.clone(),
        lease: Duration::from_millis(check.at_most("cluster.lease_ms", raw.lease_ms, 10_000)?),
        on_redis_down,
        redis_timeout: check.nonzero_ms("cluster.redis_timeout_ms", raw.redis_timeout_ms)?,
        instance_name: (!name.is_empty()).then(|| name.to_owned()),
    })
}

/// One Redis URL, sentinels and a master's name, or a Redis Cluster's seed nodes — or none
/// (a single instance). Two of them is an error naming both keys.
fn topology(check: &Checker, raw: &RawCluster) -> Result<Option<RedisTopology>, ConfigError> {
    let url = raw.redis_url.trim();
    let set: Vec<&str> = [
        ("redis_url", !url.is_empty()),
        ("redis_sentinels", !raw.redis_sentinels.is_empty()),
        ("redis_cluster_nodes", !raw.redis_cluster_nodes.is_empty()),
    ]
    .into_iter()
    .filter_map(|(key, is_set)| is_set.then_some(key))
    .collect();
    if let [first, second, ..] = set[..] {
        return Err(check.invalid(
            "cluster",
            format!(
                "{first} and {second} are both set; set exactly one of redis_url (one Redis \
                 server), redis_sentinels (a master behind Sentinel), redis_cluster_nodes \
                 (a Redis Cluster)"
            ),
        ));
    }
    if !url.is_empty() {
        let client = redis::Client::open(url).map_err(|e| {
            check.invalid(
                "cluster.redis_url",
                format!("{url:?} is not a Redis URL: {e}"),
            )
        })?;
        return Ok(Some(RedisTopology::Single(client)));
    }
    if !raw.redis_sentinels.is_empty() {
        return sentinels(check, raw).map(Some);
    }
    if !raw.redis_cluster_nodes.is_empty() {
        if raw.key_prefix.contains(['{', '}']) {
            return Err(check.invalid(
                "cluster.key_prefix",
                "must not contain { or } on a Redis Cluster (the keys' hash tags use them)",
            ));
        }
        let nodes = addresses(
            check,
            "cluster.redis_cluster_nodes",
            &raw.redis_cluster_nodes,
        )?;
        return Ok(Some(RedisTopology::Cluster(nodes)));
    }
    Ok(None)
}

/// The sentinels and the master's name they know it by.
fn sentinels(check: &Checker, raw: &RawCluster) -> Result<RedisTopology, ConfigError> {
    let sentinels = addresses(check, "cluster.redis_sentinels", &raw.redis_sentinels)?;
    let master_name = raw.redis_master_name.trim();
    if master_name.is_empty() {
        return Err(check.invalid(
            "cluster.redis_master_name",
            "must not be empty with redis_sentinels (it is the name the sentinels monitor)",
        ));
    }
    Ok(RedisTopology::Sentinel {
        sentinels,
        master_name: master_name.to_owned(),
    })
}

fn addresses(
    check: &Checker,
    key: &str,
    list: &[String],
) -> Result<Vec<redis::ConnectionInfo>, ConfigError> {
    list.iter()
        .map(|text| host_port(check, key, text))
        .collect()
}

/// `host:port` (a name or an IP address, an IPv6 one in brackets) as a Redis address.
fn host_port(check: &Checker, key: &str, text: &str) -> Result<redis::ConnectionInfo, ConfigError> {
    let bad = |why: &str| check.invalid(key, format!("{text:?} is not host:port: {why}"));
    let (host, port) = text.trim().rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port.parse::<u16>() {
        Ok(port) if port != 0 => port,
        _ => return Err(bad("the port is not 1 to 65535")),
    };
    redis::IntoConnectionInfo::into_connection_info(redis::ConnectionAddr::Tcp(
        host.to_owned(),
        port,
    ))
    .map_err(|e| bad(&e.to_string()))
}

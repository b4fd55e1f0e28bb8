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
        key_prefix: raw.key_prefix.clone(),
        lease: Duration::from_millis(check.at_most("cluster.lease_ms", raw.lease_ms, 10_000)?),
        on_redis_down,
        redis_timeout: check.nonzero_ms("cluster.redis_timeout_ms", raw.redis_timeout_ms)?,
        instance_name: (!name.is_empty()).then(|| name.to_owned()),
    })
}

/// One Redis URL, or sentinels and a master's name, or neither (a single instance); both is
/// an error naming both keys.
fn topology(check: &Checker, raw: &RawCluster) -> Result<Option<RedisTopology>, ConfigError> {
    let url = raw.redis_url.trim();
    match (url.is_empty(), raw.redis_sentinels.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Err(check.invalid(
            "cluster",
            "redis_url and redis_sentinels are both set; set exactly one of them \
             (redis_url for one Redis server, redis_sentinels for a master behind Sentinel)",
        )),
        (false, true) => {
            let client = redis::Client::open(url).map_err(|e| {
                check.invalid(
                    "cluster.redis_url",
                    format!("{url:?} is not a Redis URL: {e}"),
                )
            })?;
            Ok(Some(RedisTopology::Single(client)))
        }
        (true, false) => {
            let sentinels = raw
                .redis_sentinels
                .iter()
                .map(|text| host_port(check, "cluster.redis_sentinels", text))
                .collect::<Result<_, _>>()?;
            let master_name = raw.redis_master_name.trim();
            if master_name.is_empty() {
                return Err(check.invalid(
                    "cluster.redis_master_name",
                    "must not be empty with redis_sentinels (it is the name the sentinels monitor)",
                ));
            }
            Ok(Some(RedisTopology::Sentinel {
                sentinels,
                master_name: master_name.to_owned(),
            }))
        }
    }
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

//! The pool file's content (`config.json`): the top-level `backends` (the `default` pool),
//! `pools` by name and `routes` in order, validated as a whole into a [`Topology`]. Each part is
//! read on its own so that an error names its path (`pools.api.backends[1].url`,
//! `routes[2].pool`); [`resolve`] names and numbers the backends for the start.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::names::fill_names;
use super::topology::{DnsEntry, NamedPool, PoolSettings, PoolSpec, Topology};
use crate::backend::{
    check_max_connections, Backend, BackendSpec, HostHeader, PoolEntry, DEFAULT_POOL,
};
use crate::route::{check_name, RouteEntry, RouteSpec};
use crate::strategy::Strategy;

/// An error: the path of what is wrong, and the problem.
pub type Invalid = (String, String);

/// A pool entry: a URL string or an object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawEntry {
    Url(String),
    Object(RawObject),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObject {
    url: String,
    weight: Option<u64>,
    name: Option<String>,
    max_connections: Option<u64>,
    discovery: Option<String>,
}

/// A pool of `pools`, its backends still unread.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    backends: Vec<Value>,
    strategy: Option<String>,
    health_path: Option<String>,
    host_header: Option<HostHeader>,
    max_connections: Option<u64>,
}

const SHAPE: &str = r#"expected {"backends": ["http://host:port", ...], "pools": {"name": {"backends": [...]}}, "routes": [{"name": ..., "pool": ...}]}"#;

/// Parses `config.json` text: every pool and route valid, route pools existing, names unique, at
/// least one backend in all; an error is `(path, problem)`.
pub fn parse(text: &str) -> Result<Topology, Invalid> {
    let file: BTreeMap<String, Value> = serde_json::from_str(text).map_err(|err| {
        let problem = format!("not a valid pool file ({err}); {SHAPE}");
        ("backends".to_owned(), problem)
    })?;
    if let Some(key) = file
        .keys()
        .find(|k| !["backends", "pools", "routes"].contains(&k.as_str()))
    {
        return Err((key.clone(), format!("unknown key; {SHAPE}")));
    }
    let mut pools = Vec::new();
    if let Some(backends) = file.get("backends") {
        let entries = read::<Vec<Value>>("backends", backends)?;
        pools.push(PoolSpec {
            name: DEFAULT_POOL.to_owned(),
            settings: PoolSettings::default(),
            backends: backends_of("backends", &entries)?,
        });
    }
    if let Some(raw) = file.get("pools") {
        for (name, value) in read::<BTreeMap<String, Value>>("pools", raw)? {
            let path = format!("pools.{name}");
            if name == DEFAULT_POOL && !pools.is_empty() {
                let problem = "the top-level \"backends\" is the default pool already".to_owned();
                return Err((path, problem));
            }
            check_name(&name).map_err(|p| (path.clone(), p))?;
            pools.push(pool(&path, name, read::<RawPool>(&path, &value)?)?);
        }
    }
    if pools.iter().all(|p| p.backends.is_empty()) {
        let problem = "the pool is empty: list at least one backend".to_owned();
        return Err(("backends".to_owned(), problem));
    }
    let routes = match file.get("routes") {
        Some(raw) => routes(&read::<Vec<Value>>("routes", raw)?, &pools)?,
        None => Vec::new(),
    };
    Ok(Topology { pools, routes })
}

/// Deserializes `value` as a `T`, or names `path` with serde's reason.
fn read<T: for<'de> Deserialize<'de>>(path: &str, value: &Value) -> Result<T, Invalid> {
    T::deserialize(value).map_err(|err| (path.to_owned(), err.to_string()))
}

/// A pool as `POST /lb/api/pools` gives it: `{"name", "backends", ...}`; errors name the
/// field (`backends[1].url`).
pub fn parse_pool(value: &Value) -> Result<PoolSpec, Invalid> {
    let mut fields = read::<serde_json::Map<String, Value>>("body", value)?;
    let name = match fields.remove("name") {
        Some(Value::String(name)) => name,
        Some(_) => return Err(("name".to_owned(), "must be a string".to_owned())),
        None => return Err(("name".to_owned(), "missing".to_owned())),
    };
    check_name(&name).map_err(|p| ("name".to_owned(), p))?;
    pool("", name, read::<RawPool>("body", &Value::Object(fields))?)
}

/// A pool's changed settings as `PATCH /lb/api/pools/{pool}` gives them: each field given
/// replaces the current one.
pub fn parse_pool_settings(current: &PoolSettings, value: &Value) -> Result<PoolSettings, Invalid> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Patch {
        strategy: Option<String>,
        health_path: Option<String>,
        host_header: Option<HostHeader>,
        max_connections: Option<u64>,
    }
    let patch = read::<Patch>("body", value)?;
    let mut settings = current.clone();
    if let Some(strategy) = patch.strategy {
        let strategy = strategy.parse().map_err(|p| ("strategy".to_owned(), p))?;
        settings.strategy = Some(strategy);
    }
    if let Some(health_path) = patch.health_path {
        check_health_path(&health_path).map_err(|p| ("health_path".to_owned(), p))?;
        settings.health_path = Some(health_path);
    }
    if let Some(host_header) = patch.host_header {
        settings.host_header = host_header;
    }
    if let Some(limit) = patch.max_connections {
        let limit = check_max_connections(limit).map_err(|p| ("max_connections".to_owned(), p))?;
        settings.max_connections = Some(limit);
    }
    Ok(settings)
}

/// A probe path: starts with `/` and is a valid request target.
fn check_health_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') && path.parse::<actix_web::http::Uri>().is_ok() {
        Ok(())
    } else {
        Err(format!("{path:?} is not a path starting with '/'"))
    }
}

/// `path.field`, or `field` at the top.
fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// One pool of `pools` (at `path`).
fn pool(path: &str, name: String, raw: RawPool) -> Result<PoolSpec, Invalid> {
    let strategy = raw
        .strategy
        .map(|s| s.parse::<Strategy>())
        .transpose()
        .map_err(|p| (join(path, "strategy"), p))?;
    if let Some(health_path) = &raw.health_path {
        check_health_path(health_path).map_err(|p| (join(path, "health_path"), p))?;
    }
    let max_connections = raw
        .max_connections
        .map(check_max_connections)
        .transpose()
        .map_err(|p| (join(path, "max_connections"), p))?;
    let backends_path = join(path, "backends");
    Ok(PoolSpec {
        name,
        settings: PoolSettings {
            strategy,
            health_path: raw.health_path,
            host_header: raw.host_header.unwrap_or_default(),
            max_connections,
        },
        backends: backends_of(&backends_path, &raw.backends)?,
    })
}

/// A pool's backends: valid entries, distinct URLs (by `host:port`).
fn backends_of(path: &str, entries: &[Value]) -> Result<Vec<BackendSpec>, Invalid> {
    let mut pool: Vec<BackendSpec> = Vec::with_capacity(entries.len());
    for (index, value) in entries.iter().enumerate() {
        let key = format!("{path}[{index}]");
        let entry = read::<RawEntry>(&key, value).map_err(|(key, _)| {
            let problem = r#"expected "http://host:port" or {"url": "http://host:port", "weight": 3, "name": "big", "max_connections": 100, "discovery": "dns"}"#;
            (key, problem.to_owned())
        })?;
        let spec = match &entry {
            RawEntry::Url(url) => BackendSpec::parse(url, None, None),
            RawEntry::Object(o) => BackendSpec::parse(&o.url, o.weight, o.name.as_deref())
                .and_then(|spec| spec.with_max_connections(o.max_connections))
                .and_then(|spec| spec.with_discovery(o.discovery.as_deref())),
        }
        .map_err(|(field, problem)| match entry {
            RawEntry::Url(_) => (key.clone(), problem),
            RawEntry::Object(_) => (format!("{key}.{field}"), problem),
        })?;
        if let Some(twin) = pool.iter().position(|b| b.authority == spec.authority) {
            let problem = format!("{} repeats {} ({path}[{twin}])", spec.url, pool[twin].url);
            return Err((key, problem));
        }
        pool.push(spec);
    }
    Ok(pool)
}

/// The routes, in order: each valid, names unique, pools existing.
fn routes(values: &[Value], pools: &[PoolSpec]) -> Result<Vec<RouteSpec>, Invalid> {
    let entries = values
        .iter()
        .enumerate()
        .map(|(i, value)| read::<RouteEntry>(&format!("routes[{i}]"), value))
        .collect::<Result<Vec<_>, _>>()?;
    check_routes(&entries, |name| pools.iter().any(|p| p.name == name))
}

/// Validates routes as written (the file's, or `PUT /lb/api/routes`'s) against the pools that
/// `pool_exists` knows.
pub fn check_routes(
    entries: &[RouteEntry],
    pool_exists: impl Fn(&str) -> bool,
) -> Result<Vec<RouteSpec>, Invalid> {
    let mut specs: Vec<RouteSpec> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let path = format!("routes[{index}]");
        let spec = entry
            .check()
            .map_err(|(field, problem)| (format!("{path}.{field}"), problem))?;
        if !pool_exists(&spec.pool) {
            let problem = format!("there is no pool named {:?}", spec.pool);
            return Err((format!("{path}.pool"), problem));
        }
        if let Some(twin) = specs.iter().position(|s| s.name == spec.name) {
            let problem = format!("the name {:?} is already used by routes[{twin}]", spec.name);
            return Err((format!("{path}.name"), problem));
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// Names every pool's entries (their own name, else `backend-N` by position in the pool) and
/// numbers all backends in file order, pool after pool; two entries of a pool with one name
/// are an error.
pub fn resolve(pools: Vec<PoolSpec>) -> Result<Vec<NamedPool>, Invalid> {
    let mut next_id = 0;
    let mut named = Vec::with_capacity(pools.len());
    for pool in pools {
        let path = if pool.name == DEFAULT_POOL {
            "backends".to_owned()
        } else {
            format!("pools.{}.backends", pool.name)
        };
        let fixed: Vec<Option<String>> = pool.backends.iter().map(|s| s.name.clone()).collect();
        let names = fill_names(&fixed, &[]).map_err(|(first, second)| {
            let problem = format!(
                "the name {:?} is already used by {path}[{first}]",
                fixed[second].as_deref().unwrap_or_default()
            );
            (format!("{path}[{second}].name"), problem)
        })?;
        let pool_name: std::sync::Arc<str> = pool.name.as_str().into();
        let (mut entries, mut dns) = (Vec::new(), Vec::new());
        for (position, (spec, name)) in pool.backends.iter().zip(names).enumerate() {
            next_id += 1;
            let id = next_id - 1;
            if spec.dns {
                let spec = spec.clone();
                dns.push(DnsEntry {
                    id,
                    name,
                    spec,
                    position,
                });
                continue;
            }
            entries.push(PoolEntry {
                backend: Backend::from_spec(id, spec, name, &pool_name),
                weight: spec.weight,
                max_connections: spec.max_connections,
            });
        }
        named.push(NamedPool {
            name: pool.name,
            settings: pool.settings,
            entries,
            dns,
        });
    }
    Ok(named)
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;

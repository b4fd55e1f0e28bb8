//! A route of the pool file, validated: which requests it takes (hosts, a path prefix, methods,
//! headers), which pool serves them, and what they cost against the client's limits. The
//! written form ([`RouteEntry`]) is what the file and `/lb/api/routes` carry; [`RouteEntry::check`]
//! turns it into a [`RouteSpec`] or names the field and the problem. How routes are chosen
//! among each other is `routing/`'s business.

use std::collections::BTreeMap;

use actix_web::http::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// Longest route or pool name: names appear in URLs, metric labels and log lines.
pub const MAX_NAME_LEN: usize = 64;

/// Largest `cost` of a route.
pub const MAX_COST: u32 = 1000;

/// A route as written in `config.json` and in `PUT /lb/api/routes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub pool: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strip_prefix: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<RouteLimits>,
}

fn is_zero(value: &i32) -> bool {
    *value == 0
}

/// The defaults of a route's own bucket per client.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimits {
    pub capacity: u64,
    pub rate_per_sec: f64,
}

/// A host a route answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// This name exactly (lowercase, no port).
    Exact(String),
    /// Any name ending in this suffix, which starts with `.` (`*.example.com` is `.example.com`).
    Suffix(String),
}

/// A header a route requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderCondition {
    pub name: HeaderName,
    /// `None`: present with any value (`"*"` in the file).
    pub value: Option<HeaderValue>,
}

/// A validated route.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    pub name: String,
    pub hosts: Vec<HostPattern>,
    /// Starts with `/`; `None` matches every path.
    pub path_prefix: Option<String>,
    /// Uppercase method names; empty matches every method.
    pub methods: Vec<String>,
    pub headers: Vec<HeaderCondition>,
    pub pool: String,
    pub strip_prefix: bool,
    pub priority: i32,
    /// Tokens taken from the client's own bucket (0 = not counted).
    pub cost: u32,
    pub limits: Option<RouteLimits>,
    /// As written, for the API and the file.
    pub entry: RouteEntry,
}

impl RouteEntry {
    /// Validates every field; `Err` is `(field, problem)`, the field as `hosts[1]`. Whether
    /// `pool` exists is for the caller to check.
    pub fn check(&self) -> Result<RouteSpec, (String, String)> {
        check_name(&self.name).map_err(|p| ("name".to_owned(), p))?;
        let hosts = self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, host)| host_pattern(host).map_err(|p| (format!("hosts[{i}]"), p)))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(prefix) = &self.path_prefix {
            check_prefix(prefix).map_err(|p| ("path_prefix".to_owned(), p))?;
        }
        if self.strip_prefix && self.path_prefix.is_none() {
            let problem = "strip_prefix needs a path_prefix to strip".to_owned();
            return Err(("strip_prefix".to_owned(), problem));
        }
        for (i, method) in self.methods.iter().enumerate() {
            check_method(method).map_err(|p| (format!("methods[{i}]"), p))?;
        }
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| {
                header_condition(name, value).map_err(|p| (format!("headers.{name}"), p))
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_name(&self.pool).map_err(|p| ("pool".to_owned(), p))?;
        let cost = match self.cost {
            None => 1,
            Some(cost) => u32::try_from(cost)
                .ok()
                .filter(|c| *c <= MAX_COST)
                .ok_or_else(|| {
                    let problem = format!("{cost} is not a cost: use 0 to {MAX_COST} tokens");
                    ("cost".to_owned(), problem)
                })?,
        };
        if let Some(limits) = &self.limits {
            check_limits(limits)?;
        }
        Ok(RouteSpec {
            name: self.name.clone(),
            hosts,
            path_prefix: self.path_prefix.clone(),
            methods: self.methods.clone(),
            headers,
            pool: self.pool.clone(),
            strip_prefix: self.strip_prefix,
            priority: self.priority,
            cost,
            limits: self.limits,
            entry: self.clone(),
        })
    }
}

/// A pool or route name: 1–64 letters, digits, `-`, `_` or `.`.
pub fn check_name(name: &str) -> Result<(), String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(fine) {
        return Err(format!(
            "{name:?} is not a name: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// A route's limits: a whole capacity of at least 1 and a positive finite rate.
pub fn check_limits(limits: &RouteLimits) -> Result<(), (String, String)> {
    if limits.capacity == 0 {
        let problem = "capacity must be a whole number of at least 1".to_owned();
        return Err(("limits.capacity".to_owned(), problem));
    }
    if !(limits.rate_per_sec.is_finite() && limits.rate_per_sec > 0.0) {
        let problem = format!(
            "{} is not a rate: use a number above 0",
            limits.rate_per_sec
        );
        return Err(("limits.rate_per_sec".to_owned(), problem));
    }
    Ok(())
}

/// `api.example.com` or `*.example.com`, lowercased; no port, no other `*`.
fn host_pattern(written: &str) -> Result<HostPattern, String> {
    let host = written.to_ascii_lowercase();
    let (suffix, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host.as_str()),
    };
    let label_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
    let fine = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(label_char));
    if name.contains('*') {
        return Err(format!(
            "{written:?}: '*' may only open a pattern, as in \"*.example.com\""
        ));
    }
    if name.contains(':') {
        return Err(format!(
            "{written:?}: hosts are matched without a port; leave out the ':port'"
        ));
    }
    if !fine {
        return Err(format!(
            "{written:?} is not a host name (letters, digits, '-' and '_' in dot-separated labels)"
        ));
    }
    Ok(if suffix {
        HostPattern::Suffix(format!(".{name}"))
    } else {
        HostPattern::Exact(name.to_owned())
    })
}

/// Starts with `/`, has no query or fragment, and is not under the balancer's own paths.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err(format!("{prefix:?} does not start with '/'"));
    }
    if prefix.contains(['?', '#']) || prefix.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!(
            "{prefix:?}: a path prefix has no query, fragment, space or control character"
        ));
    }
    if prefix == "/lb" || prefix.starts_with("/lb/") || prefix.starts_with("/clients") {
        return Err(format!(
            "{prefix:?} is under the balancer's own paths (/lb, /clients), which are never routed"
        ));
    }
    Ok(())
}

/// An uppercase token (`GET`, `PURGE`).
fn check_method(method: &str) -> Result<(), String> {
    let token =
        |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || method.len() > 32 || !method.bytes().all(token) {
        return Err(format!(
            "{method:?} is not a method: use an uppercase name such as \"GET\""
        ));
    }
    Ok(())
}

fn header_condition(name: &str, value: &str) -> Result<HeaderCondition, String> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a header name"))?;
    let value = match value {
        "*" => None,
        exact => Some(
            HeaderValue::from_str(exact).map_err(|_| format!("{exact:?} is not a header value"))?,
        ),
    };
    Ok(HeaderCondition { name, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> RouteEntry {
        serde_json::from_str(json).expect("a route entry")
    }

    /// Every field is read; hosts are lowercased; `*.` becomes a suffix; cost defaults to 1.
    #[test]
    fn reads_a_full_route() {
        let spec = entry(
            r#"{"name": "api-v1", "hosts": ["API.example.com", "*.Api.example.com"],
                "path_prefix": "/v1/", "methods": ["GET", "POST"], "headers": {"X-Canary": "1",
                "X-Any": "*"}, "pool": "api", "strip_prefix": true, "priority": 3,
                "limits": {"capacity": 20, "rate_per_sec": 5}}"#,
        )
        .check()
        .expect("valid");
        assert_eq!(
            spec.hosts,
            [
                HostPattern::Exact("api.example.com".into()),
                HostPattern::Suffix(".api.example.com".into())
            ]
        );
        assert_eq!(spec.cost, 1);
        assert_eq!(spec.headers.len(), 2);
        assert_eq!(spec.headers[0].name, "x-any");
        assert_eq!(spec.headers[0].value, None);
        assert_eq!(spec.priority, 3);
    }

    /// Each bad field is named with its problem.
    #[test]
    fn refuses_bad_fields_by_name() {
        let cases = [
            (r#""name": "a b""#, "name", "not a name"),
            (r#""hosts": ["a.*.com"]"#, "hosts[0]", "'*'"),
            (r#""hosts": ["*example.com"]"#, "hosts[0]", "'*'"),
            (r#""hosts": ["a.com:8080"]"#, "hosts[0]", "port"),
            (r#""hosts": ["a..com"]"#, "hosts[0]", "not a host"),
            (r#""path_prefix": "v1/""#, "path_prefix", "start with '/'"),
            (r#""path_prefix": "/lb""#, "path_prefix", "own paths"),
            (r#""path_prefix": "/lb/x""#, "path_prefix", "own paths"),
            (r#""path_prefix": "/clients2""#, "path_prefix", "own paths"),
            (r#""path_prefix": "/a?b""#, "path_prefix", "query"),
            (
                r#""strip_prefix": true"#,
                "strip_prefix",
                "needs a path_prefix",
            ),
            (r#""methods": ["get"]"#, "methods[0]", "uppercase"),
            (r#""headers": {"a b": "1"}"#, "headers.a b", "header name"),
            (r#""cost": 1001"#, "cost", "0 to 1000"),
            (
                r#""limits": {"capacity": 0, "rate_per_sec": 1}"#,
                "limits.capacity",
                "at least 1",
            ),
            (
                r#""limits": {"capacity": 1, "rate_per_sec": 0}"#,
                "limits.rate_per_sec",
                "above 0",
            ),
        ];
        for (field, key, problem) in cases {
            let name = if field.starts_with(r#""name""#) {
                ""
            } else {
                r#""name": "r", "#
            };
            let json = format!(r#"{{{name}"pool": "p", {field}}}"#);
            let (got_key, got) = entry(&json).check().expect_err(&json);
            assert_eq!(got_key, key, "{json}");
            assert!(got.contains(problem), "{json}: {got}");
        }
    }

    /// `/lbx` and `/client` are not the balancer's; cost 0 and 1000 are fine.
    #[test]
    fn accepts_the_edges() {
        for field in [
            r#""path_prefix": "/lbx""#,
            r#""path_prefix": "/client""#,
            r#""path_prefix": "/""#,
            r#""cost": 0"#,
            r#""cost": 1000"#,
            r#""hosts": ["*.a.b"]"#,
        ] {
            let json = format!(r#"{{"name": "r", "pool": "p", {field}}}"#);
            entry(&json).check().expect(&json);
        }
    }
}

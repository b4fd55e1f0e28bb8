use super::*;
use crate::route::RouteEntry;
use actix_web::http::header::{HeaderName, HeaderValue};

/// A table of routes written as JSON objects (name and pool filled in as `r{i}` and `p`).
fn table(routes: &[&str]) -> RouteTable {
    let specs = routes
        .iter()
        .enumerate()
        .map(|(i, fields)| {
            let comma = if fields.is_empty() { "" } else { ", " };
            let json = format!(r#"{{"name": "r{i}", "pool": "p"{comma}{fields}}}"#);
            let entry: RouteEntry = serde_json::from_str(&json).expect(&json);
            entry.check().expect(&json)
        })
        .collect();
    RouteTable::compile(specs, |_| 0, None)
}

/// The name of the route `table` picks for a request.
fn pick(
    table: &RouteTable,
    host: Option<&str>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    let target = Target {
        host,
        path,
        method,
        headers: &map,
    };
    table.select(&target).map(|r| r.spec.name.clone())
}

fn get(table: &RouteTable, host: &str, path: &str) -> Option<String> {
    pick(table, Some(host), "GET", path, &[])
}

/// Every tie-break of the order, each against the next one down.
#[test]
fn selection_order_breaks_every_tie() {
    // (routes, host, path, the winner)
    let cases: &[(&[&str], &str, &str, &str)] = &[
        // Priority beats an exact host and a longer prefix.
        (
            &[
                r#""hosts": ["a.com"], "path_prefix": "/v1/x""#,
                r#""priority": 1"#,
            ],
            "a.com",
            "/v1/x",
            "r1",
        ),
        // Exact host beats wildcard beats none, whatever the prefix.
        (
            &[
                r#""path_prefix": "/v1/x""#,
                r#""hosts": ["*.a.com"]"#,
                r#""hosts": ["b.a.com"]"#,
            ],
            "b.a.com",
            "/v1/x",
            "r2",
        ),
        (
            &[r#""path_prefix": "/v1/x""#, r#""hosts": ["*.a.com"]"#],
            "b.a.com",
            "/v1/x",
            "r1",
        ),
        // The longer prefix wins among equals.
        (
            &[
                r#""path_prefix": "/v1""#,
                r#""path_prefix": "/v1/""#,
                r#""path_prefix": "/""#,
            ],
            "a.com",
            "/v1/x",
            "r1",
        ),
        // More conditions win among equal prefixes.
        (
            &[
                r#""path_prefix": "/v1""#,
                r#""path_prefix": "/v1", "methods": ["GET"]"#,
            ],
            "a.com",
            "/v1",
            "r1",
        ),
        // Then file order.
        (
            &[r#""path_prefix": "/v1""#, r#""path_prefix": "/v1""#],
            "a.com",
            "/v1",
            "r0",
        ),
        // A lower priority with a longer prefix loses to a higher one with a shorter prefix.
        (
            &[
                r#""path_prefix": "/v1/deep""#,
                r#""path_prefix": "/v1", "priority": 5"#,
            ],
            "a.com",
            "/v1/deep",
            "r1",
        ),
        // A wildcard with priority beats an exact host without.
        (
            &[
                r#""hosts": ["b.a.com"]"#,
                r#""hosts": ["*.a.com"], "priority": 2"#,
            ],
            "b.a.com",
            "/",
            "r1",
        ),
    ];
    for (routes, host, path, winner) in cases {
        let table = table(routes);
        assert_eq!(
            get(&table, host, path).as_deref(),
            Some(*winner),
            "{routes:?} {host}{path}"
        );
    }
}

/// `/v1/` does not match `/v1`; `/v1` matches `/v1`, `/v1/x` and `/v1x`.
#[test]
fn prefixes_are_byte_prefixes() {
    let slash = table(&[r#""path_prefix": "/v1/""#]);
    assert_eq!(get(&slash, "a", "/v1"), None);
    assert_eq!(get(&slash, "a", "/v1/").as_deref(), Some("r0"));
    let bare = table(&[r#""path_prefix": "/v1""#]);
    for path in ["/v1", "/v1/x", "/v1x"] {
        assert_eq!(get(&bare, "a", path).as_deref(), Some("r0"), "{path}");
    }
    assert_eq!(get(&bare, "a", "/v"), None);
    assert_eq!(
        get(&bare, "a", "/V1"),
        None,
        "paths compare case-sensitively"
    );
}

/// A wildcard matches any deeper name but not the bare domain; exact names match only
/// themselves; no host matches only routes without hosts.
#[test]
fn hosts_match_exactly_or_by_suffix() {
    let t = table(&[r#""hosts": ["*.a.com"]"#, r#""hosts": ["a.com"]"#]);
    assert_eq!(get(&t, "x.a.com", "/").as_deref(), Some("r0"));
    assert_eq!(get(&t, "y.x.a.com", "/").as_deref(), Some("r0"));
    assert_eq!(get(&t, "a.com", "/").as_deref(), Some("r1"));
    assert_eq!(get(&t, "xa.com", "/"), None);
    assert_eq!(pick(&t, None, "GET", "/", &[]), None);
}

/// Methods and headers must all hold; `*` wants the header with any value.
#[test]
fn methods_and_headers_must_hold() {
    let t = table(&[
        r#""methods": ["POST", "PUT"], "headers": {"X-Canary": "1"}"#,
        r#""headers": {"X-Any": "*"}"#,
    ]);
    assert_eq!(
        pick(&t, None, "POST", "/", &[("x-canary", "1")]).as_deref(),
        Some("r0")
    );
    assert_eq!(pick(&t, None, "GET", "/", &[("x-canary", "1")]), None);
    assert_eq!(pick(&t, None, "PUT", "/", &[("x-canary", "2")]), None);
    assert_eq!(
        pick(&t, None, "GET", "/", &[("x-any", "")]).as_deref(),
        Some("r1")
    );
}

/// When the best candidate's conditions fail, the next one down (a shorter prefix, another
/// group) takes the request.
#[test]
fn falls_back_when_conditions_fail() {
    let t = table(&[
        r#""hosts": ["a.com"], "path_prefix": "/v1", "methods": ["POST"]"#,
        r#""hosts": ["a.com"], "path_prefix": "/""#,
        r#""path_prefix": "/v1""#,
    ]);
    assert_eq!(
        pick(&t, Some("a.com"), "POST", "/v1", &[]).as_deref(),
        Some("r0")
    );
    assert_eq!(
        get(&t, "a.com", "/v1").as_deref(),
        Some("r1"),
        "exact host beats no host"
    );
    assert_eq!(get(&t, "b.com", "/v1").as_deref(), Some("r2"));
}

/// Counters stay with a route's name across compiles.
#[test]
fn counters_carry_over_by_name() {
    let first = table(&[r#""path_prefix": "/a""#]);
    first.routes()[0]
        .counters
        .requests
        .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
    let specs = first.routes().iter().map(|r| r.spec.clone()).collect();
    let second = RouteTable::compile(specs, |_| 0, Some(&first));
    assert_eq!(second.routes()[0].counters.requests(), 3);
}

/// Ten thousand routes by host and prefix still find each one.
#[test]
fn many_routes_each_found() {
    let routes: Vec<String> = (0..10_000)
        .map(|i| format!(r#""hosts": ["h{}.test"], "path_prefix": "/p{i}/""#, i % 100))
        .collect();
    let refs: Vec<&str> = routes.iter().map(String::as_str).collect();
    let t = table(&refs);
    for i in (0..10_000).step_by(997) {
        let host = format!("h{}.test", i % 100);
        assert_eq!(get(&t, &host, &format!("/p{i}/x")), Some(format!("r{i}")));
    }
    assert_eq!(get(&t, "h1.test", "/p2/x"), None, "p2 is on h2");
}

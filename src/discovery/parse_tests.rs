use super::*;

fn parse_pool(text: &str) -> Result<Vec<BackendSpec>, Invalid> {
    parse(text).map(|t| t.pools.into_iter().next().expect("a pool").backends)
}

/// The `default` pool of `specs`, named and numbered.
fn resolve_default(specs: Vec<BackendSpec>) -> Vec<NamedPool> {
    resolve(vec![PoolSpec {
        name: DEFAULT_POOL.into(),
        settings: PoolSettings::default(),
        backends: specs,
    }])
    .expect("distinct names")
}

/// Strings and objects both work; names follow the file order.
#[test]
fn parses_strings_and_objects_in_order() {
    let specs = parse_pool(
        r#"{"backends": ["http://127.0.0.1:9001/", {"url": "http://example.test"},
            {"url": "http://c:3", "weight": 3, "name": "backend-1"}]}"#,
    )
    .expect("valid pool");
    let pools = resolve_default(specs);
    let pool = &pools[0].entries;
    assert_eq!(pool[0].backend.url, "http://127.0.0.1:9001");
    assert_eq!(pool[0].backend.authority, "127.0.0.1:9001");
    assert_eq!(
        pool[0].backend.name, "backend-3",
        "backend-1 is taken by name"
    );
    assert_eq!(pool[1].backend.authority, "example.test:80");
    assert_eq!(pool[1].backend.name, "backend-2");
    assert_eq!(
        (pool[2].backend.name.as_str(), pool[2].weight),
        ("backend-1", 3)
    );
    assert_eq!(pool[2].backend.id, 2);
}

/// A `"discovery": "dns"` entry is kept apart from the backends at start, with its name, number
/// and place in the file; another discovery is refused with its path.
#[test]
fn dns_entries_are_entries_of_their_own() {
    let specs = parse_pool(
        r#"{"backends": ["http://a:1", {"url": "http://web.test:8080", "discovery": "dns"},
            "http://b:1"]}"#,
    )
    .expect("valid pool");
    let pools = resolve_default(specs);
    let names: Vec<&str> = pools[0]
        .entries
        .iter()
        .map(|e| e.backend.name.as_str())
        .collect();
    assert_eq!(names, ["backend-1", "backend-3"]);
    let entry = &pools[0].dns[0];
    assert_eq!(
        (entry.name.as_str(), entry.id, entry.position),
        ("backend-2", 1, 1)
    );
    assert!(entry.spec.dns);
    assert_eq!(pools[0].entries[1].backend.id, 2);
    let (path, problem) =
        parse_pool(r#"{"backends": [{"url": "http://a:1", "discovery": "srv"}]}"#)
            .expect_err("unknown discovery");
    assert_eq!(path, "backends[0].discovery");
    assert!(problem.contains("\"dns\""), "{problem}");
}

/// Each kind of bad file is refused with the path of what is wrong and a reason.
#[test]
fn rejects_bad_files_with_the_path() {
    let cases = [
        ("not json", "backends", "not a valid pool file"),
        (r#"{"backends": []}"#, "backends", "empty"),
        (r#"{"pool": []}"#, "pool", "unknown key"),
        (
            r#"{"backends": ["ftp://a:1"]}"#,
            "backends[0]",
            "https://host",
        ),
        (r#"{"backends": ["http://a:1/x"]}"#, "backends[0]", "path"),
        (
            r#"{"backends": ["127.0.0.1:9001"]}"#,
            "backends[0]",
            "http://",
        ),
        (
            r#"{"backends": ["http://a:1", "http://a:1/"]}"#,
            "backends[1]",
            "repeats",
        ),
        (
            r#"{"backends": ["http://Shop.test", "http://shop.TEST:80"]}"#,
            "backends[1]",
            "repeats",
        ),
        (r#"{"backends": ["http://a:0"]}"#, "backends[0]", "port 0"),
        (
            r#"{"backends": [{"url": "http://a:1", "weight": 0}]}"#,
            "backends[0].weight",
            "1 to 1000",
        ),
        (
            r#"{"backends": [{"url": "http://a:1", "name": "a/b"}]}"#,
            "backends[0].name",
            "not a backend name",
        ),
        (
            r#"{"backends": [{"url": "http://a:1", "colour": "red"}]}"#,
            "backends[0]",
            "expected",
        ),
        (
            r#"{"pools": {"api": {"backends": ["http://a:1", "b"]}}}"#,
            "pools.api.backends[1]",
            "http://",
        ),
        (
            r#"{"pools": {"api": {"backends": [{"url": "http://a:1"}, {"url": "x"}]}}}"#,
            "pools.api.backends[1].url",
            "http://",
        ),
        (
            r#"{"pools": {"a b": {"backends": ["http://a:1"]}}}"#,
            "pools.a b",
            "not a name",
        ),
        (
            r#"{"backends": ["http://a:1"], "pools": {"default": {"backends": ["http://b:1"]}}}"#,
            "pools.default",
            "default pool already",
        ),
        (
            r#"{"pools": {"api": {"backends": ["http://a:1"], "strategy": "random"}}}"#,
            "pools.api.strategy",
            "round_robin",
        ),
        (
            r#"{"pools": {"api": {"backends": ["http://a:1"], "health_path": "up"}}}"#,
            "pools.api.health_path",
            "'/'",
        ),
        (
            r#"{"pools": {"api": {"backends": ["http://a:1"], "host_header": "mine"}}}"#,
            "pools.api",
            "unknown variant",
        ),
        (
            r#"{"pools": {"api": {"backends": []}}}"#,
            "backends",
            "empty",
        ),
        (
            r#"{"backends": ["http://a:1"], "routes": [{"name": "r", "pool": "api"}]}"#,
            "routes[0].pool",
            "no pool named",
        ),
        (
            r#"{"backends": ["http://a:1"], "routes": [{"name": "r", "pool": "default"}, {"name": "r", "pool": "default"}]}"#,
            "routes[1].name",
            "routes[0]",
        ),
        (
            r#"{"backends": ["http://a:1"], "routes": [{"pool": "default"}]}"#,
            "routes[0]",
            "name",
        ),
        (
            r#"{"backends": ["http://a:1"], "routes": [{"name": "r", "pool": "default", "hosts": ["a*.com"]}]}"#,
            "routes[0].hosts[0]",
            "'*'",
        ),
        (
            r#"{"backends": ["http://a:1"], "routes": {"name": "r"}}"#,
            "routes",
            "sequence",
        ),
    ];
    for (text, key, problem) in cases {
        let (got_key, got_problem) = parse(text).expect_err(text);
        assert_eq!(got_key, key, "{text}: {got_problem}");
        assert!(got_problem.contains(problem), "{text}: {got_problem}");
    }
}

/// Pools come default first, then by name; routes keep their order; names number per pool and
/// ids run across pools; the same URL may be in two pools.
#[test]
fn reads_pools_and_routes() {
    let topology = parse(
        r#"{"backends": ["http://a:1"],
            "pools": {"web": {"backends": ["http://a:1", "http://b:1"], "host_header": "backend"},
                      "api": {"backends": ["http://c:1"], "strategy": "least_connections", "health_path": "/healthz"}},
            "routes": [{"name": "z", "pool": "web"}, {"name": "a", "pool": "api", "path_prefix": "/v1/"}]}"#,
    )
    .expect("valid");
    let names: Vec<&str> = topology.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["default", "api", "web"]);
    assert_eq!(
        topology.pools[1].settings.strategy,
        Some(Strategy::LeastConnections)
    );
    assert_eq!(
        topology.pools[1].settings.health_path.as_deref(),
        Some("/healthz")
    );
    assert_eq!(topology.pools[2].settings.host_header, HostHeader::Backend);
    let routes: Vec<&str> = topology.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(routes, ["z", "a"]);
    let named = resolve(topology.pools).expect("names");
    let ids: Vec<(usize, &str)> = named
        .iter()
        .flat_map(|p| {
            p.entries
                .iter()
                .map(|e| (e.backend.id, e.backend.name.as_str()))
        })
        .collect();
    assert_eq!(
        ids,
        [
            (0, "backend-1"),
            (1, "backend-1"),
            (2, "backend-1"),
            (3, "backend-2")
        ]
    );
}

/// A file of only `pools` has no default pool; one with a `default` in `pools` has one.
#[test]
fn the_default_pool_is_optional_once_pools_are_given() {
    let without = parse(r#"{"pools": {"api": {"backends": ["http://a:1"]}}}"#).expect("valid");
    assert!(without.pools.iter().all(|p| p.name != DEFAULT_POOL));
    let within = parse(r#"{"pools": {"default": {"backends": ["http://a:1"]}}}"#).expect("valid");
    assert_eq!(within.pools[0].name, DEFAULT_POOL);
}

/// Two entries of a pool may not share a name; two pools may.
#[test]
fn rejects_a_repeated_name_within_a_pool() {
    let topology = parse(
        r#"{"backends": [{"url": "http://a:1", "name": "x"}],
            "pools": {"api": {"backends": [{"url": "http://a:1", "name": "x"}, {"url": "http://b:1", "name": "x"}]}}}"#,
    )
    .expect("each entry is valid");
    let (key, problem) = resolve(topology.pools).expect_err("same name");
    assert_eq!(key, "pools.api.backends[1].name");
    assert!(problem.contains("pools.api.backends[0]"), "{problem}");
}

//! What choosing a route costs: one selection in a table of 1, 100 and 10 000 routes (a third
//! by exact host, a third by wildcard host, a third by path prefix alone, each with its own
//! prefix), for requests spread over every route, and for a request no route takes. The same
//! files as `bench/routes.sh`, which measures the whole balancer.
//!
//! `cargo bench --bench routes`

use std::hint::black_box;

use actix_web::http::header::HeaderMap;
use criterion::{criterion_group, criterion_main, Criterion};
use loadbalancer::test_util::{RouteEntry, RouteTable, Target};
use serde_json::json;

/// Route `i` of the benchmark's files, and a (host, path) it takes.
fn route(i: usize) -> (serde_json::Value, String, String) {
    match i % 3 {
        0 => (
            json!({"name": format!("r{i}"), "hosts": [format!("s{i}.example.com")], "path_prefix": format!("/p{i}/"), "pool": "default"}),
            format!("s{i}.example.com"),
            format!("/p{i}/items"),
        ),
        1 => (
            json!({"name": format!("r{i}"), "hosts": [format!("*.w{i}.example.com")], "path_prefix": format!("/p{i}/"), "pool": "default"}),
            format!("eu.w{i}.example.com"),
            format!("/p{i}/items"),
        ),
        _ => (
            json!({"name": format!("r{i}"), "path_prefix": format!("/p{i}/"), "pool": "default"}),
            "www.example.com".to_owned(),
            format!("/p{i}/items"),
        ),
    }
}

fn table(n: usize) -> (RouteTable, Vec<(String, String)>) {
    let mut specs = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for i in 0..n {
        let (value, host, path) = route(i);
        let entry: RouteEntry = serde_json::from_value(value).expect("a route");
        specs.push(entry.check().expect("valid"));
        targets.push((host, path));
    }
    (RouteTable::compile(specs, |_| 0, None), targets)
}

fn selection(c: &mut Criterion) {
    let headers = HeaderMap::new();
    let mut group = c.benchmark_group("select");
    for n in [1, 100, 10_000] {
        let (table, targets) = table(n);
        let mut next = 0;
        group.bench_function(format!("{n}_routes_spread"), |b| {
            b.iter(|| {
                let (host, path) = &targets[next % targets.len()];
                next += 7919;
                let target = Target {
                    host: Some(host),
                    path,
                    method: "GET",
                    headers: &headers,
                };
                black_box(table.select(black_box(&target)).is_some())
            })
        });
        group.bench_function(format!("{n}_routes_no_match"), |b| {
            let target = Target {
                host: Some("nowhere.example.org"),
                path: "/nothing/here",
                method: "GET",
                headers: &headers,
            };
            b.iter(|| black_box(table.select(black_box(&target)).is_none()))
        });
    }
    group.finish();
}

criterion_group!(benches, selection);
criterion_main!(benches);

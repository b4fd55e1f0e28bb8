//! The rate limiter's costs, measured: admissions per second in one shard's bucket map with a
//! million distinct clients, memory per tracked client, and the time to flush 100 000 dirty
//! token levels to SQLite in one transaction.
//!
//! `cargo bench --bench limiter`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Instant, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use loadbalancer::test_util::{BucketMap, Database, Levels};
use loadbalancer::{Charge, ClientKey, Limits};

const CLIENTS: u32 = 1_000_000;

fn ip(n: u32) -> ClientKey {
    ClientKey::Ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)))
}

/// Resident memory of this process, from /proc (Linux).
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn admissions(c: &mut Criterion) {
    let limits = Limits {
        capacity: 1_000_000,
        rate_per_sec: 1_000_000.0,
    };
    let before = rss_bytes();
    let mut map = BucketMap::new(limits, CLIENTS as usize * 2);
    let start = Instant::now();
    for n in 0..CLIENTS {
        map.admit(&Charge::plain(ip(n)), start);
    }
    let per_client = (rss_bytes().saturating_sub(before)) as f64 / f64::from(CLIENTS);
    println!("memory: about {per_client:.0} bytes per tracked client (RSS growth over {CLIENTS} clients)");

    let mut group = c.benchmark_group("bucket_map");
    group.throughput(Throughput::Elements(1));
    let mut next = 0u32;
    group.bench_function("admit_among_1m_clients", |b| {
        b.iter(|| {
            // A stride that visits every client before repeating, so caches do not flatter.
            next = next.wrapping_add(7_919) % CLIENTS;
            black_box(map.admit(&Charge::plain(ip(next)), Instant::now()))
        })
    });
    group.finish();
}

fn flushes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.sqlite3");
    drop(Database::open(&path).expect("create the schema"));
    // Seed in one transaction (the API's one-commit-per-client would take minutes here).
    let mut seed = rusqlite::Connection::open(&path).expect("seed connection");
    let tx = seed.transaction().expect("transaction");
    for n in 0..100_000 {
        tx.execute(
            "INSERT INTO clients (client_id, name, capacity, rate_per_sec, tokens, tokens_at_ms) VALUES (?1, NULL, 100, 10.0, 100.0, 0)",
            [format!("client-{n}")],
        )
        .expect("seed row");
    }
    tx.commit().expect("seed commit");
    drop(seed);
    let mut db = Database::open(&path).expect("open");
    let levels = Levels {
        clients: (0..100_000)
            .map(|n| (format!("client-{n}"), f64::from(n % 100)))
            .collect(),
        routes: Vec::new(),
    };
    let mut group = c.benchmark_group("sqlite");
    group.sample_size(10);
    group.bench_function("flush_100k_token_levels", |b| {
        b.iter_batched(
            || levels.clone(),
            |levels| db.save_tokens(&levels, SystemTime::now()).expect("flush"),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, admissions, flushes);
criterion_main!(benches);

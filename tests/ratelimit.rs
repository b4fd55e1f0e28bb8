//! Rate limiting end to end: bursts, per-client limits, API keys vs IPs, X-Forwarded-For trust,
//! the headers of a 429, and the sweep of idle buckets.

mod common;

use std::time::Duration;

use common::backend::TestBackend;
use common::{client, settings_for, start_balancer, TestBalancer};
use loadbalancer::Settings;
use serde_json::{json, Value};

/// One backend behind a balancer whose default bucket is `capacity` at `rate` tokens/s.
fn limited(
    capacity: u64,
    rate: f64,
    edit: impl FnOnce(&mut Settings),
) -> (TestBackend, TestBalancer) {
    let backend = TestBackend::start("b");
    let mut settings = settings_for(&[backend.url()]);
    settings.rate_limit.default_capacity = capacity;
    settings.rate_limit.default_rate_per_sec = rate;
    edit(&mut settings);
    let lb = start_balancer(&settings);
    (backend, lb)
}

/// Sends `n` GETs with the given headers; returns the statuses.
async fn burst(lb: &TestBalancer, n: usize, headers: &[(&str, &str)]) -> Vec<u16> {
    let client = client();
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        let mut req = client.get(lb.url("/r"));
        for header in headers {
            req = req.insert_header(*header);
        }
        statuses.push(req.send().await.expect("response").status().as_u16());
    }
    statuses
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

async fn register(lb: &TestBalancer, body: Value) {
    let res = client()
        .post(lb.url("/clients"))
        .insert_header(("Content-Type", "application/json"))
        .send_body(body.to_string())
        .await
        .expect("register");
    assert_eq!(res.status(), 201);
}

/// capacity + 10 requests at once: exactly capacity pass, the rest get the JSON 429 with its
/// headers and never reach the backend; after Retry-After one more passes.
#[actix_web::test]
async fn a_burst_admits_exactly_capacity_then_429_with_headers() {
    let (backend, lb) = limited(20, 2.0, |_| {});
    let statuses = burst(&lb, 30, &[]).await;
    assert_eq!(
        (count(&statuses, 200), count(&statuses, 429)),
        (20, 10),
        "{statuses:?}"
    );
    assert_eq!(backend.requests().len(), 20);

    let mut res = client().get(lb.url("/r")).send().await.expect("response");
    assert_eq!(res.status(), 429);
    let headers = res.headers().clone();
    assert_eq!(
        headers.get("content-type").expect("type"),
        "application/json"
    );
    let body = res.body().await.expect("body");
    let id = headers
        .get("x-request-id")
        .expect("id")
        .to_str()
        .expect("ASCII");
    assert_eq!(
        body,
        format!(
            r#"{{"code":429,"message":"Rate limit exceeded","limit":"client","request_id":"{id}"}}"#
        )
    );
    let retry_after: u64 = headers
        .get("retry-after")
        .expect("retry-after")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert_eq!(
        retry_after, 1,
        "half a second to the next token rounds up to 1"
    );
    assert_eq!(
        headers.get("ratelimit-policy").expect("policy"),
        r#""default";q=20;w=10"#
    );
    assert_eq!(
        headers.get("ratelimit").expect("ratelimit"),
        r#""default";r=0;t=1"#
    );

    // The one wait in this file: the limit is about time, so time has to pass.
    actix_rt::time::sleep(Duration::from_secs(retry_after)).await;
    let res = client().get(lb.url("/r")).send().await.expect("response");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().get("ratelimit").is_some(),
        "admitted answers carry RateLimit"
    );
}

/// A registered client has its own limits by API key; unknown keys share their IP's bucket,
/// so rotating keys gets nothing extra.
#[actix_web::test]
async fn api_keys_and_ips_are_limited_independently() {
    let (_backend, lb) = limited(3, 0.001, |_| {});
    register(
        &lb,
        json!({"client_id": "gold", "capacity": 5, "rate_per_sec": 0.001}),
    )
    .await;
    let gold = burst(&lb, 8, &[("X-API-Key", "gold")]).await;
    assert_eq!(count(&gold, 200), 5, "{gold:?}");
    let anonymous = burst(&lb, 5, &[]).await;
    assert_eq!(count(&anonymous, 200), 3, "{anonymous:?}");
    for n in 0..5 {
        let key = format!("made-up-{n}");
        let statuses = burst(&lb, 1, &[("X-API-Key", &key)]).await;
        assert_eq!(statuses, [429], "unknown key {key} got a bucket of its own");
    }
}

/// X-Forwarded-For is ignored from an untrusted peer and believed from a trusted one.
#[actix_web::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let (_b, untrusted) = limited(2, 0.001, |_| {});
    let mut spoofed = Vec::new();
    for n in 0..4 {
        let ip = format!("203.0.113.{n}");
        spoofed.extend(burst(&untrusted, 1, &[("X-Forwarded-For", &ip)]).await);
    }
    assert_eq!(
        count(&spoofed, 200),
        2,
        "spoofed addresses escaped the limit: {spoofed:?}"
    );

    let (_b, trusted) = limited(2, 0.001, |s| {
        s.rate_limit.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
    });
    let mut honoured = Vec::new();
    for n in 0..4 {
        let chain = format!("198.51.100.{n}, 127.0.0.9");
        honoured.extend(burst(&trusted, 2, &[("X-Forwarded-For", &chain)]).await);
    }
    assert_eq!(
        count(&honoured, 200),
        8,
        "each forwarded client has its own bucket: {honoured:?}"
    );
}

/// With rate limiting off nothing is refused.
#[actix_web::test]
async fn disabled_limiter_admits_everything() {
    let (backend, lb) = limited(1, 0.001, |s| s.rate_limit.enabled = false);
    let statuses = burst(&lb, 20, &[]).await;
    assert_eq!(count(&statuses, 200), 20);
    assert_eq!(backend.requests().len(), 20);
}

/// Changing a client's limits acts on its live bucket at once: a lower capacity clamps.
#[actix_web::test]
async fn limit_changes_apply_to_the_live_bucket() {
    let (_backend, lb) = limited(100, 0.001, |_| {});
    register(
        &lb,
        json!({"id": "silver", "rate_limit": 10, "rate_per_sec": 0.001}),
    )
    .await;
    let mut res = client()
        .put(lb.url("/clients/silver"))
        .insert_header(("Content-Type", "application/json"))
        .send_body(json!({"capacity": 2}).to_string())
        .await
        .expect("update");
    assert_eq!(res.status(), 200);
    let body = res.json::<Value>().await.expect("json");
    assert_eq!(
        (body["capacity"].clone(), body["tokens"].clone()),
        (json!(2), json!(2.0))
    );
    let statuses = burst(&lb, 4, &[("X-API-Key", "silver")]).await;
    assert_eq!(count(&statuses, 200), 2, "{statuses:?}");
}

/// Thousands of one-off clients leave buckets behind; once they are full again the sweep
/// drops them all, and registered clients stay.
#[actix_web::test]
async fn idle_buckets_of_one_off_clients_are_swept() {
    let (_backend, lb) = limited(1, 1000.0, |s| {
        s.rate_limit.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    });
    register(&lb, json!({"client_id": "stays", "capacity": 1})).await;
    let client = client();
    for n in 0..2000u32 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + n).to_string();
        let res = client
            .get(lb.url("/r"))
            .insert_header(("X-Forwarded-For", ip))
            .send()
            .await
            .expect("response");
        assert_eq!(res.status(), 200);
    }
    let limiter = lb.handle.limiter();
    let tracked = limiter.tracked().await;
    assert_eq!((tracked.registered, tracked.addresses), (1, 2000));
    // At 1000 tokens/s an emptied bucket of 1 is full again after a millisecond.
    actix_rt::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(limiter.sweep().await, 2000);
    let tracked = limiter.tracked().await;
    assert_eq!((tracked.registered, tracked.addresses), (1, 0));
}

/// 120 requests from one client in flight at once over many connections and both workers
/// (admissions travel to the shard in batches): exactly the capacity of 40 pass.
#[actix_web::test]
async fn concurrent_requests_share_one_bucket_exactly() {
    let (backend, lb) = limited(40, 0.001, |_| {});
    let client = client();
    let sends = (0..120).map(|_| {
        let req = client.get(lb.url("/r"));
        async move { req.send().await.expect("response").status().as_u16() }
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert_eq!(count(&statuses, 200), 40, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 80, "{statuses:?}");
    assert_eq!(backend.requests().len(), 40);
}

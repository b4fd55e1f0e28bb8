//! Request IDs end to end, with a real backend and a real client: kept when valid, made
//! otherwise, sent to the backend, returned on every response (proxied or the balancer's own),
//! and in every JSON error body as `request_id`.

mod common;

use actix_web::http::header::HeaderMap;
use common::backend::TestBackend;
use common::{client, refused_addr, settings_for, start_balancer, TestBalancer};
use serde_json::Value;

/// A GET of `path` with `id` as `X-Request-Id` (if any): status, the id answered, the body.
async fn get(lb: &TestBalancer, path: &str, id: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut req = client().get(lb.url(path));
    if let Some(id) = id {
        req = req.insert_header(("X-Request-Id", id));
    }
    let mut res = req.send().await.expect("response");
    let answered = id_of(res.headers()).expect("every response has an id");
    let body = res.body().await.expect("body").to_vec();
    (res.status().as_u16(), answered, body)
}

fn id_of(headers: &HeaderMap) -> Option<String> {
    let id = headers.get("x-request-id")?;
    Some(id.to_str().expect("ASCII").to_owned())
}

fn is_made(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The id in a JSON error body.
fn body_id(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).expect("JSON error body");
    value["request_id"].as_str().expect("request_id").to_owned()
}

#[actix_web::test]
async fn ids_are_kept_or_made_and_reach_the_backend() {
    let app = TestBackend::start("app");
    let lb = start_balancer(&settings_for(&[app.url()]));

    let (status, made, _) = get(&lb, "/one", None).await;
    assert_eq!(status, 200);
    assert!(is_made(&made), "{made}");
    let (_, other, _) = get(&lb, "/two", None).await;
    assert_ne!(made, other, "each request its own id");

    let kept = "req-42_a.b:c/d+e=f";
    assert_eq!(get(&lb, "/three", Some(kept)).await.1, kept);
    let long = "a".repeat(129);
    for bad in [long.as_str(), "has space", "semi;colon", ""] {
        let (_, answered, _) = get(&lb, "/four", Some(bad)).await;
        assert!(is_made(&answered), "{bad:?} replaced by {answered}");
    }

    let seen: Vec<Option<String>> = app.requests().iter().map(|r| id_of(&r.headers)).collect();
    assert_eq!(seen.len(), 7);
    assert_eq!(seen[0].as_deref(), Some(made.as_str()));
    assert_eq!(seen[2].as_deref(), Some(kept));
    assert!(seen
        .iter()
        .all(|id| id.as_deref().is_some_and(|id| !id.is_empty())));
    let distinct: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), 7, "one id per request: {seen:?}");
}

/// The balancer's own answers carry the id too, in the header and in the JSON error body: a
/// 404 of its namespace, a 502 of a dead backend, a 429.
#[actix_web::test]
async fn error_bodies_carry_the_id() {
    let app = TestBackend::start("app");
    let mut settings = settings_for(&[app.url()]);
    settings.rate_limit.default_capacity = 1;
    settings.rate_limit.default_rate_per_sec = 0.001;
    let lb = start_balancer(&settings);
    let (status, id, body) = get(&lb, "/lb/nothing-here", Some("mine-1")).await;
    assert_eq!(
        (status, id.as_str(), body_id(&body)),
        (404, "mine-1", "mine-1".to_owned())
    );
    let (status, id, _) = get(&lb, "/lb/health", None).await;
    assert_eq!(status, 200);
    assert!(is_made(&id));

    assert_eq!(get(&lb, "/first", None).await.0, 200);
    let (status, id, body) = get(&lb, "/second", None).await;
    assert_eq!(status, 429);
    assert_eq!(body_id(&body), id);

    let dead = start_balancer(&settings_for(&[format!("http://{}", refused_addr())]));
    let (status, id, body) = get(&dead, "/x", None).await;
    assert_eq!(status, 502);
    assert!(is_made(&id));
    assert_eq!(body_id(&body), id);
}

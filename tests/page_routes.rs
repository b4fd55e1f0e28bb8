//! The status page with pools and routes, in real headless Chromium: backend cards grouped
//! under their pool's heading, the routes table with its matchers and pool, its counters kept
//! live by the event stream (requests and 429s of a route with limits), the most limited
//! clients with their route, a backend added to a chosen pool through the form, and a pool's
//! connection limit and queue.

mod common;

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use common::backend::TestBackend;
use common::held::HeldBackend;
use common::webdriver::Browser;
use common::{client, settings_from_files, start_balancer};
use serde_json::json;

const SOON: Duration = Duration::from_secs(10);

#[actix_web::test]
async fn the_page_groups_backends_by_pool_and_shows_routes_live() {
    const TEST: &str = "the_page_groups_backends_by_pool_and_shows_routes_live";
    if !common::webdriver::required_or_skip(TEST) {
        return;
    }
    let (web, api, extra) = (
        TestBackend::start("web"),
        TestBackend::start("api"),
        TestBackend::start("extra"),
    );
    let file = json!({
        "backends": [web.url()],
        "pools": {"api": {"backends": [api.url()], "health_path": "/healthz"}},
        "routes": [{"name": "api", "path_prefix": "/api/", "pool": "api",
                    "limits": {"capacity": 3, "rate_per_sec": 0.001}}]
    });
    let (settings, _) = settings_from_files(&file, "");
    let lb = start_balancer(&settings);
    let browser = Rc::new(Browser::start().await);
    let api_url = lb.url("/api/items");
    let story = actix_rt::spawn(routes_story(
        Rc::clone(&browser),
        lb.url("/lb/"),
        api_url,
        extra.url(),
    ));
    if let Err(failure) = story.await {
        let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("../browser-artifacts/page-routes-failure.png");
        browser.screenshot(&shot).await;
        panic!(
            "browser story failed (screenshot: {}): {failure:?}",
            shot.display()
        );
    }
    let pools: Vec<String> = lb
        .handle
        .members()
        .iter()
        .map(|m| m.backend.pool.to_string())
        .collect();
    assert_eq!(
        pools,
        ["default", "api", "api"],
        "extra joined the api pool"
    );
    if let Ok(browser) = Rc::try_unwrap(browser) {
        browser.quit().await;
    }
}

async fn routes_story(browser: Rc<Browser>, page: String, api_url: String, extra: String) {
    browser.open(&page).await;
    browser
        .wait_until(
            "a heading per pool, each above its cards",
            SOON,
            "const nodes = [...document.getElementById('backends').children];\
             const order = nodes.map((n) => n.dataset.testid === 'pool-head' ? 'pool:' + n.dataset.pool : n.dataset.in + '/' + n.dataset.name);\
             return order.join(',') === 'pool:default,default/backend-1,pool:api,api/backend-1';",
        )
        .await;
    browser
        .wait_until(
            "the api pool's probe path in its heading",
            SOON,
            "return document.querySelector('[data-testid=pool-head][data-pool=api]').textContent.includes('probes /healthz')",
        )
        .await;
    browser
        .wait_until(
            "the routes table",
            SOON,
            "const row = document.querySelector('[data-testid=route-row][data-route=api]');\
             return !!row && !document.getElementById('routes-panel').hidden && row.textContent.includes('path /api/') && row.children[2].textContent === 'api';",
        )
        .await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            client()
                .get(&api_url)
                .send()
                .await
                .expect("response")
                .status()
                .as_u16(),
        );
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    browser
        .wait_until(
            "the route's counters, live",
            SOON,
            "const row = document.querySelector('[data-testid=route-row][data-route=api]');\
             return row.querySelector('[data-testid=route-requests]').textContent === '5' && row.querySelector('[data-testid=route-429]').textContent === '2';",
        )
        .await;
    browser
        .wait_until(
            "the limited client with its route and its 429s",
            SOON,
            "const row = document.querySelector('[data-testid=limited-row][data-client=\"127.0.0.1\"][data-route=api]');\
             return !!row && row.children[1].textContent === 'api' && row.children[2].textContent === '2';",
        )
        .await;
    browser.type_into("#backend-form [name=url]", &extra).await;
    browser
        .script(
            "const s = document.getElementById('backend-pool'); s.value = 'api'; return s.value;",
            json!([]),
        )
        .await;
    browser.click("#backend-submit").await;
    browser
        .wait_until(
            "the new backend under the api pool",
            SOON,
            "return document.querySelectorAll('[data-testid=backend-card][data-in=api]').length === 2",
        )
        .await;
}

/// A pool with a connection limit: its heading says the limit, and how many requests wait in
/// its queue while they wait (from the stats events), then nothing once they are served.
#[actix_web::test]
async fn the_page_shows_a_pools_limit_and_its_queue() {
    const TEST: &str = "the_page_shows_a_pools_limit_and_its_queue";
    if !common::webdriver::required_or_skip(TEST) {
        return;
    }
    let backend = HeldBackend::start();
    let file = json!({"pools": {"api": {"backends": [backend.url()], "max_connections": 1}},
                      "routes": [{"name": "api", "path_prefix": "/", "pool": "api"}]});
    let (mut settings, _) = settings_from_files(&file, "");
    settings.backends.queue_size = 5;
    settings.backends.queue_timeout = Duration::from_secs(60);
    let lb = start_balancer(&settings);
    let browser = Browser::start().await;
    browser.open(&lb.url("/lb/")).await;
    let head = r#"document.querySelector('[data-testid="pool-head"][data-pool="api"]')"#;
    let says = |text: &str| format!("return ({head}?.textContent || '').includes({text:?})");
    browser
        .wait_until("the limit", SOON, &says("1 in flight per backend at most"))
        .await;
    let requests: Vec<_> = (0..3)
        .map(|i| actix_rt::spawn(client().get(lb.url(&format!("/q/{i}"))).send()))
        .collect();
    browser
        .wait_until("two waiting", SOON, &says("2 waiting for a backend"))
        .await;
    backend.release(3);
    for request in requests {
        let response = request.await.expect("ran").expect("response");
        assert_eq!(response.status(), 200);
    }
    browser
        .wait_until(
            "nobody waiting",
            SOON,
            &format!("return !({head}?.textContent || '').includes('waiting')"),
        )
        .await;
    browser.quit().await;
}

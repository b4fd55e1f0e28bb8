//! The status page in a real headless Chromium (driven over WebDriver by chromedriver): opened
//! after a backend failed, it shows that in its log and chart at once; it shows every backend,
//! Fail and Recover act on a simulated backend and the page follows, the event log records
//! it, and the clients form creates a client and shows API errors. Needs `chromium` and
//! `chromium-driver` (.ci/run installs them); without them a local run skips with one line,
//! and a run with `CI` set fails. On failure a screenshot is left in
//! target/browser-artifacts/. Run alone: `cargo test --test page`.
//! With `LB_PAGE_SCREENSHOT=path.png` set, a screenshot of the final page is saved there.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::backend::TestBackend;
use common::webdriver::Browser;
use common::{refused_addr, settings_for, start_balancer};
use serde_json::json;

const SOON: Duration = Duration::from_secs(10);

const STORY: &str = "operator_fails_and_recovers_a_backend_and_manages_clients";

/// The whole operator story on one page.
#[actix_web::test]
async fn operator_fails_and_recovers_a_backend_and_manages_clients() {
    if !common::webdriver::required_or_skip(STORY) {
        return;
    }
    let urls: Vec<String> = (0..3)
        .map(|_| format!("http://{}", refused_addr()))
        .collect();
    let mut settings = settings_for(&urls);
    settings.simulation.enabled = true;
    settings.simulation.seed = Some(5);
    settings.simulation.plan.mean_up = Duration::from_secs(86_400);
    settings.health.interval = Duration::from_millis(200);
    settings.health.timeout = Duration::from_millis(300);
    let lb = start_balancer(&settings);
    let page = lb.url("/lb/");

    // Before the page opens: backend-1 fails, and two stats ticks go by.
    let res = common::client()
        .post(lb.url("/lb/api/simulation/backend-1/fail"))
        .send()
        .await
        .expect("fail");
    assert_eq!(res.status(), 200);
    let events = lb.handle.events();
    let until = Instant::now() + SOON;
    while events
        .subscribe(None)
        .await
        .expect("bus")
        .history
        .iter()
        .filter(|e| e.event.is_stats())
        .count()
        < 2
    {
        assert!(Instant::now() < until, "no stats ticks");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let opened_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();

    let browser = Rc::new(Browser::start().await);
    let steps = actix_rt::spawn(story(Rc::clone(&browser), page, opened_ms));
    let outcome = steps.await;
    if let Err(failure) = outcome {
        let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("../browser-artifacts/page-failure.png");
        browser.screenshot(&shot).await;
        panic!(
            "browser story failed (screenshot: {}): {failure:?}",
            shot.display()
        );
    }
    if let Ok(path) = std::env::var("LB_PAGE_SCREENSHOT") {
        // For the README's picture: some traffic for the chart, and one backend down.
        let client = common::client();
        client
            .post(lb.url("/lb/api/simulation/backend-3/fail"))
            .send()
            .await
            .expect("fail");
        for _ in 0..60 {
            for _ in 0..8 {
                let _ = client.get(lb.url("/demo")).send().await;
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        browser.screenshot(&PathBuf::from(&path)).await;
        browser.resize(390, 1600).await;
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        browser
            .screenshot(&PathBuf::from(path.replace(".png", "-phone.png")))
            .await;
    }
    if let Ok(browser) = Rc::try_unwrap(browser) {
        browser.quit().await;
    }
}

/// Opening the page makes the browser fetch the page's icon from the balancer (`/lb/`, an
/// SVG the page links), never `/favicon.ico`, which would be proxied to a backend and counted
/// in its traffic.
#[actix_web::test]
async fn the_page_icon_comes_from_the_balancer_not_a_backend() {
    const TEST: &str = "the_page_icon_comes_from_the_balancer_not_a_backend";
    if !common::webdriver::required_or_skip(TEST) {
        return;
    }
    common::capture_logs();
    let backend = TestBackend::start("recording");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let icon = common::client()
        .get(lb.url("/lb/favicon.svg"))
        .send()
        .await
        .expect("icon");
    assert_eq!(icon.status(), 200);
    assert_eq!(
        icon.headers().get("content-type").expect("type"),
        "image/svg+xml"
    );
    let browser = Browser::start().await;
    browser.open(&lb.url("/lb/")).await;
    // The access line of the browser's own request for the icon (the one above came first).
    common::eventually("the browser's request for the icon", SOON, || {
        let lines = common::capture_logs().lock().expect("log lock");
        let fetched = lines
            .iter()
            .filter(|line| line.contains("\"GET /lb/favicon.svg\" 200"))
            .count();
        (fetched >= 2).then_some(())
    })
    .await;
    browser.quit().await;
    let targets = backend.targets();
    assert!(
        !targets.iter().any(|t| t.contains("favicon")),
        "proxied: {targets:?}"
    );
}

/// In cluster mode the page shows Redis's state, the server, the instances and whether their
/// configuration versions differ, and follows Redis going down and coming back (the `redis`
/// events).
#[actix_web::test]
async fn the_page_follows_redis_in_cluster_mode() {
    const TEST: &str = "the_page_follows_redis_in_cluster_mode";
    if !common::webdriver::required_or_skip(TEST) {
        return;
    }
    let Some(mut redis) = common::redis::RedisServer::start() else {
        return;
    };
    let urls = vec![format!("http://{}", refused_addr())];
    let lb = start_balancer(&redis.settings_for(&urls));
    let browser = Browser::start().await;
    browser.open(&lb.url("/lb/")).await;
    let pill = "document.querySelector('[data-testid=cluster]').textContent";
    browser
        .wait_until(
            "Redis up, one instance",
            SOON,
            &format!("return {pill} === 'cluster · Redis up · 1 instance'"),
        )
        .await;
    let title = "document.querySelector('[data-testid=cluster]').title";
    let server = format!("Redis (single) at {}", redis.addr);
    browser
        .wait_until(
            "the server on hover",
            SOON,
            &format!("return {title}.startsWith('{server}')"),
        )
        .await;
    // Two more instances, as their heartbeats would say, on different configuration versions.
    let time = redis.lines("TIME");
    let secs: u64 = time[2].parse().expect("seconds");
    let micros: u64 = time[4].parse().expect("microseconds");
    let now_ms = secs * 1000 + micros / 1000;
    for (name, version) in [("edge-a", 7), ("edge-b", 8)] {
        redis.command(&format!("ZADD lb:instances {now_ms} {name}"));
        redis.command(&format!("HSET lb:instances:config {name} {version}"));
    }
    browser
        .wait_until(
            "the versions' mismatch in the header",
            SOON,
            &format!("return {pill}.includes('3 instances · config versions differ: v7, v8')"),
        )
        .await;
    redis.kill();
    browser
        .wait_until(
            "Redis down, in the pill and the log",
            SOON,
            &format!(
                "return {pill}.includes('Redis down') && document.getElementById('log').textContent.includes('Redis is DOWN')"
            ),
        )
        .await;
    redis.restart();
    browser
        .wait_until(
            "Redis up again",
            SOON,
            &format!(
                "return {pill}.includes('Redis up') && document.getElementById('log').textContent.includes('Redis is UP')"
            ),
        )
        .await;
    browser.quit().await;
}

/// A script that is true when backend `name`'s card shows `state`.
fn card_shows(name: &str, state: &str) -> String {
    format!(
        "const c = document.querySelector('[data-testid=backend-card][data-name=\"{name}\"] [data-testid=state]');\
         return !!c && c.textContent === '{state}';"
    )
}

async fn story(browser: Rc<Browser>, page: String, opened_ms: u128) {
    browser.open(&page).await;
    browser
        .wait_until(
            "the failure from before the page opened, in the log",
            SOON,
            "return document.getElementById('log').textContent.includes('simulation: backend-1 fails: refuse')",
        )
        .await;
    browser
        .wait_until(
            "chart points from before the page opened",
            SOON,
            &format!("return state.history.length > 0 && state.history[0].at < {opened_ms}"),
        )
        .await;
    browser
        .wait_until(
            "three backend cards",
            SOON,
            "return document.querySelectorAll('[data-testid=backend-card]').length === 3",
        )
        .await;
    browser
        .wait_until(
            "the single-instance mode",
            SOON,
            "return document.querySelector('[data-testid=cluster]').textContent === 'single instance'",
        )
        .await;
    browser
        .wait_until(
            "the live event stream",
            SOON,
            "return document.getElementById('live').textContent === 'live'",
        )
        .await;

    browser
        .click("[data-testid=backend-card][data-name=\"backend-2\"] [data-testid=fail]")
        .await;
    browser
        .wait_until(
            "backend-2 to turn down",
            SOON,
            &card_shows("backend-2", "down"),
        )
        .await;
    browser
        .wait_until(
            "the DOWN event in the log",
            SOON,
            "return document.getElementById('log').textContent.includes('backend-2 is DOWN')",
        )
        .await;
    let mode = browser
        .script("return document.querySelector('[data-name=\"backend-2\"] [data-testid=sim-state]').textContent", json!([]))
        .await;
    assert_eq!(mode, json!("refuse"));

    browser
        .click("[data-testid=backend-card][data-name=\"backend-2\"] [data-testid=recover]")
        .await;
    browser
        .wait_until(
            "backend-2 to come back",
            SOON,
            &card_shows("backend-2", "up"),
        )
        .await;
    browser
        .wait_until(
            "the UP event in the log",
            SOON,
            "return document.getElementById('log').textContent.includes('backend-2 is UP again')",
        )
        .await;

    browser
        .type_into("#client-form [name=client_id]", "web-ui")
        .await;
    browser
        .type_into("#client-form [name=name]", "From the page")
        .await;
    browser
        .type_into("#client-form [name=capacity]", "25")
        .await;
    browser
        .type_into("#client-form [name=rate_per_sec]", "2")
        .await;
    browser.click("#client-submit").await;
    browser
        .wait_until(
            "the new client's row",
            SOON,
            "return !!document.querySelector('[data-testid=client-row][data-id=\"web-ui\"]')",
        )
        .await;
    let row = browser
        .script("return document.querySelector('[data-testid=client-row][data-id=\"web-ui\"]').textContent", json!([]))
        .await;
    assert!(
        row.as_str()
            .is_some_and(|r| r.contains("From the page") && r.contains("25")),
        "{row}"
    );

    browser
        .type_into("#client-form [name=client_id]", "second")
        .await;
    browser.type_into("#client-form [name=capacity]", "0").await;
    browser.click("#client-submit").await;
    browser
        .wait_until("the validation message", SOON, "return document.getElementById('form-error').textContent.includes('capacity: must be between')")
        .await;
}

/// The pool from the page: the strategy is shown; a backend added through the form joins and
/// shows its weight; a new weight, a drain and a removal act on the pool; each shows in the
/// event log; a bad URL shows the API's message.
#[actix_web::test]
async fn operator_manages_the_pool_from_the_page() {
    const TEST: &str = "operator_manages_the_pool_from_the_page";
    if !common::webdriver::required_or_skip(TEST) {
        return;
    }
    let (first, extra) = (TestBackend::start("first"), TestBackend::start("extra"));
    let mut settings = settings_for(&[first.url()]);
    settings.backends.strategy = "least_connections".parse().expect("strategy");
    settings.health.interval = Duration::from_millis(200);
    let lb = start_balancer(&settings);
    let browser = Rc::new(Browser::start().await);
    let steps = actix_rt::spawn(pool_story(Rc::clone(&browser), lb.url("/lb/"), extra.url()));
    if let Err(failure) = steps.await {
        let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("../browser-artifacts/page-pool-failure.png");
        browser.screenshot(&shot).await;
        panic!(
            "browser story failed (screenshot: {}): {failure:?}",
            shot.display()
        );
    }
    let members = lb.handle.members();
    assert_eq!(members.len(), 1, "extra left the pool");
    assert!(members[0].draining, "backend-1 drains");
    if let Ok(browser) = Rc::try_unwrap(browser) {
        browser.quit().await;
    }
}

async fn pool_story(browser: Rc<Browser>, page: String, extra: String) {
    let logged = |text: &str| {
        format!("return document.getElementById('log').textContent.includes({text:?})")
    };
    let card = |name: &str, inner: &str| {
        format!("[data-testid=backend-card][data-name=\"{name}\"] {inner}")
    };
    browser.open(&page).await;
    browser
        .wait_until("the strategy", SOON, "return document.getElementById('strategy').textContent === 'strategy: least connections'")
        .await;
    browser.type_into("#backend-form [name=url]", &extra).await;
    browser.type_into("#backend-form [name=weight]", "2").await;
    browser
        .type_into("#backend-form [name=name]", "extra")
        .await;
    browser.click("#backend-submit").await;
    browser
        .wait_until("the added event", SOON, &logged("extra ("))
        .await;
    browser
        .wait_until("extra joins", SOON, &card_shows("extra", "up"))
        .await;
    let weight = browser
        .script(
            &format!(
                "return document.querySelector('{}').textContent",
                card("extra", "[data-testid=weight]")
            ),
            json!([]),
        )
        .await;
    assert_eq!(weight, json!("weight 2"));
    browser
        .type_into(&card("extra", "[data-testid=weight-input]"), "4")
        .await;
    // The cards are drawn anew on every event: what the operator typed and where the focus is
    // must survive that.
    browser.script("return refreshStatus()", json!([])).await;
    let kept = browser
        .script(
            &format!(
                "const input = document.querySelector('{}'); \
                 return [input.value, document.activeElement === input]",
                card("extra", "[data-testid=weight-input]")
            ),
            json!([]),
        )
        .await;
    assert_eq!(
        kept,
        json!(["4", true]),
        "the typed weight after a re-render"
    );
    browser
        .click(&card("extra", "[data-testid=set-weight]"))
        .await;
    browser
        .wait_until("the weight event", SOON, &logged("extra now has weight 4"))
        .await;
    browser
        .wait_until(
            "the new weight on the card",
            SOON,
            &format!(
                "return document.querySelector('{}').textContent === 'weight 4'",
                card("extra", "[data-testid=weight]")
            ),
        )
        .await;
    browser
        .click(&card("backend-1", "[data-testid=drain]"))
        .await;
    browser
        .wait_until("the drain event", SOON, &logged("backend-1 is draining"))
        .await;
    browser
        .wait_until(
            "the draining flag",
            SOON,
            &format!(
                "return document.querySelector('{}')?.textContent === 'draining'",
                card("backend-1", "[data-testid=flag]")
            ),
        )
        .await;
    browser.click(&card("extra", "[data-testid=remove]")).await;
    browser
        .wait_until(
            "the removal in the log",
            SOON,
            &logged("extra left the pool"),
        )
        .await;
    browser
        .wait_until(
            "the card is gone",
            SOON,
            "return document.querySelectorAll('[data-testid=backend-card]').length === 1",
        )
        .await;
    browser
        .type_into("#backend-form [name=url]", "ftp://nowhere:1")
        .await;
    browser.click("#backend-submit").await;
    browser
        .wait_until(
            "the API's message",
            SOON,
            "return document.getElementById('backend-error').textContent.includes('url:')",
        )
        .await;
}

/// Without Chromium a local run of the browser test passes with one line saying how to
/// enable it; with `CI` set the same run fails.
#[test]
fn browser_test_skips_without_chromium_unless_ci() {
    let run = |ci: bool| {
        let mut command = Command::new(std::env::current_exe().expect("test binary"));
        command
            .args(["--exact", STORY])
            .env("LB_CHROMEDRIVER", "/nonexistent/chromedriver")
            .env_remove("CI");
        if ci {
            command.env("CI", "true");
        }
        let output = command.output().expect("run the test binary");
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    };
    let (passed, text) = run(false);
    assert!(passed, "{text}");
    let skip_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("skipped ")).collect();
    assert_eq!(skip_lines.len(), 1, "{text}");
    assert!(
        skip_lines[0].contains("/nonexistent/chromedriver not found")
            && skip_lines[0].contains("apt-get install chromium chromium-driver"),
        "{text}"
    );
    let (passed, text) = run(true);
    assert!(!passed, "{text}");
    assert!(text.contains("CI runs the browser tests"), "{text}");
}

//! Outlier ejection and slow start through a real balancer: a backend answering 5xx in a row
//! is taken out for a while that grows with each ejection, never more than the pool's share,
//! and comes back; a backend that joins takes a growing share of the traffic.

mod common;

use std::net::TcpListener;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::backend::TestBackend;
use common::{
    call, capture_logs, client, logged, settings_from_files, start_balancer, TestBalancer,
};
use loadbalancer::Settings;
use serde_json::{json, Value};

/// A backend whose probes pass (`/`) and whose every other answer is a 500; its own thread.
fn failing_backend() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let answer = |req: HttpRequest| async move {
                if req.path() == "/" {
                    HttpResponse::Ok().body("probe")
                } else {
                    HttpResponse::InternalServerError().body("sick")
                }
            };
            HttpServer::new(move || App::new().default_service(web::to(answer)))
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run()
                .await
                .expect("failing backend runs");
        });
    });
    url
}

/// Settings for `file` with ejection after 3 5xx answers, `base`/`max` seconds, no rate limit.
fn ejecting(file: &Value, base: u64, max: u64, max_percent: u32) -> Settings {
    let (mut settings, _) = settings_from_files(file, "");
    settings.health.eject_consecutive_5xx = NonZeroU32::new(3);
    settings.health.eject_base = Duration::from_secs(base);
    settings.health.eject_max = Duration::from_secs(max);
    settings.health.max_ejected_percent = max_percent;
    settings.rate_limit.enabled = false;
    settings
}

/// Names of the backends ejected now.
async fn ejected(lb: &TestBalancer) -> Vec<String> {
    let (_, status) = call(lb, "GET", "/lb/api/status", None).await;
    let backends = status["backends"].as_array().expect("backends").clone();
    backends
        .into_iter()
        .filter(|b| b["ejected"] == true)
        .map(|b| b["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Sends GETs until `backend` is ejected (at most 40); how many got a 500.
async fn until_ejected(lb: &TestBalancer, backend: &str) -> usize {
    let mut errors = 0;
    for _ in 0..40 {
        let res = client()
            .get(lb.url("/work"))
            .send()
            .await
            .expect("response");
        errors += usize::from(res.status() == 500);
        if ejected(lb).await.iter().any(|b| b == backend) {
            return errors;
        }
    }
    panic!("{backend} was never ejected");
}

/// How long `backend` stays ejected, watched from now.
async fn ejection_length(lb: &TestBalancer, backend: &str) -> Duration {
    let started = Instant::now();
    while ejected(lb).await.iter().any(|b| b == backend) {
        assert!(started.elapsed() < Duration::from_secs(20), "never back");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// 3 500s in a row eject the sick backend: the answers still reach the client, then only the
/// healthy one serves; it comes back after the base time, and a second ejection lasts longer.
#[actix_web::test]
async fn a_backend_answering_5xx_in_a_row_is_ejected_longer_each_time() {
    capture_logs();
    let good = TestBackend::start("good");
    let file = json!({"backends": [failing_backend(), good.url()]});
    let lb = start_balancer(&ejecting(&file, 1, 2, 50));
    let errors = until_ejected(&lb, "backend-1").await;
    assert_eq!(
        errors, 3,
        "the 5xx answers went to the client, none retried"
    );
    for _ in 0..10 {
        assert_eq!(common::get_status(&lb, "/after").await, 200);
    }
    assert!(logged(&[
        "EJECTED",
        "3 5xx answers in a row",
        "ejection 1 in a row"
    ]));
    let first = ejection_length(&lb, "backend-1").await;
    assert!(logged(&["is back", "in rotation again"]));
    until_ejected(&lb, "backend-1").await;
    let second = ejection_length(&lb, "backend-1").await;
    assert!(
        second > first + Duration::from_millis(500),
        "1 s then 2 s: {first:?}, {second:?}"
    );
    let ejections = common::metrics(&lb).await[r#"lb_backend_ejections_total{pool="default",backend="backend-1"}"#];
    assert_eq!(ejections, 2.0);
}

/// With two sick backends of three and `max_ejected_percent = 50`, only one is ejected; the
/// other stays, and the log says why.
#[actix_web::test]
async fn a_pool_never_ejects_more_than_its_share() {
    capture_logs();
    let good = TestBackend::start("good");
    let file = json!({"backends": [failing_backend(), failing_backend(), good.url()]});
    let lb = start_balancer(&ejecting(&file, 60, 60, 50));
    for _ in 0..30 {
        let _ = common::get_status(&lb, "/work").await;
    }
    let out = ejected(&lb).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(logged(&[
        "stays",
        "1 of the 3 backends of pool default are ejected already"
    ]));
}

/// A backend added to a running pool starts with a tenth of its weight and takes a growing
/// share over `slow_start_secs`, up to its even share.
#[actix_web::test]
async fn a_new_backend_takes_a_growing_share() {
    let (old, new) = (TestBackend::start("old"), TestBackend::start("new"));
    let (mut settings, _) = settings_from_files(&json!({"backends": [old.url()]}), "");
    settings.health.slow_start = Some(Duration::from_secs(3));
    settings.rate_limit.enabled = false;
    let lb = start_balancer(&settings);
    let body = json!({"url": new.url()}).to_string();
    let (status, _) = call(&lb, "POST", "/lb/api/backends", Some(&body)).await;
    assert_eq!(status, 201);
    // Batches of 40 until 3.5 s after the first that reached the new backend (the slow start
    // is 3 s long), whatever the machine's pace.
    let started = Instant::now();
    let mut joined: Option<Instant> = None;
    let mut shares = Vec::new();
    while joined.is_none_or(|at| at.elapsed() < Duration::from_millis(3500)) {
        assert!(started.elapsed() < Duration::from_secs(30), "{shares:?}");
        let mut to_new = 0;
        for _ in 0..40 {
            let res = client().get(lb.url("/")).send().await.expect("response");
            to_new += usize::from(res.headers().get("x-backend").is_some_and(|b| b == "new"));
        }
        shares.push(to_new as f64 / 40.0);
        if to_new > 0 && joined.is_none() {
            joined = Some(Instant::now());
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
    let rising = shares
        .iter()
        .position(|s| *s > 0.0)
        .expect("the new backend joined");
    let first = shares[rising];
    let last = *shares.last().expect("rounds");
    assert!(first <= 0.3, "it started small: {shares:?}");
    assert!((0.45..=0.55).contains(&last), "it ends at half: {shares:?}");
    assert!(
        shares[rising..].windows(2).all(|w| w[1] >= w[0] - 0.05),
        "never falling back: {shares:?}"
    );
}

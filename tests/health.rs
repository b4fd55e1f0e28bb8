//! Active and passive health checking against real backends that stop, hang and come back.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::backend::TestBackend;
use common::{
    capture_logs, client, get_status, logged, refused_addr, settings_for, silent_backend,
    start_balancer, TestBalancer,
};
use loadbalancer::LbEvent;
use loadbalancer::MemberStatus;
use loadbalancer::Settings;

/// Fast probes: every 100 ms, 3 failures out, 2 successes back.
fn fast_probes(urls: &[String]) -> Settings {
    let mut settings = settings_for(urls);
    settings.health.interval = Duration::from_millis(100);
    settings.health.timeout = Duration::from_millis(300);
    settings
}

async fn members(lb: &TestBalancer) -> Vec<MemberStatus> {
    lb.handle.members()
}

/// Polls the registry until backend `id` has health `healthy`; returns how long it took.
async fn wait_for_health(
    lb: &TestBalancer,
    id: usize,
    healthy: bool,
    deadline: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        if members(lb).await[id].healthy == healthy {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "backend {id} not healthy={healthy} after {deadline:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A backend stopped mid-test leaves rotation within interval × threshold (plus slack) while
/// GETs keep succeeding; restarted on its port it comes back and gets its share again.
#[actix_web::test]
async fn stopped_backend_leaves_and_rejoins_without_client_errors() {
    let b1 = TestBackend::start("b1");
    let b2 = TestBackend::start("b2");
    let lb = start_balancer(&fast_probes(&[b1.url(), b2.url()]));
    let mut subscription = lb.handle.events().subscribe(None).await.expect("subscribe");
    let client = client();

    b2.stop().await;
    let stopped = Instant::now();
    while members(&lb).await[1].healthy {
        let res = client
            .get(lb.url("/during"))
            .send()
            .await
            .expect("response");
        assert_eq!(res.status(), 200, "a GET failed while b2 was being removed");
        assert!(
            stopped.elapsed() < Duration::from_secs(3),
            "b2 still in rotation"
        );
    }
    // 3 probes 100 ms apart, each refused at once: well inside a second.
    assert!(
        stopped.elapsed() < Duration::from_millis(100 * 3 + 700),
        "took {:?}",
        stopped.elapsed()
    );
    for _ in 0..6 {
        let res = client.get(lb.url("/after")).send().await.expect("response");
        assert_eq!(res.headers().get("x-backend").expect("x-backend"), "b1");
    }

    let listener = {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(b2.addr) {
                Ok(listener) => break listener,
                Err(err) => assert!(Instant::now() < until, "cannot rebind {}: {err}", b2.addr),
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let b2_again = TestBackend::start_on("b2", listener);
    wait_for_health(&lb, 1, true, Duration::from_secs(3)).await;
    for _ in 0..10 {
        assert_eq!(get_status(&lb, "/back").await, 200);
    }
    assert_eq!(
        b2_again.requests().len(),
        5,
        "b2 did not get its half after coming back"
    );
    let mut events = Vec::new();
    while let Ok(stamped) = subscription.live.try_recv() {
        events.push(stamped.event);
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LbEvent::BackendDown { backend, .. } if backend == "backend-2")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LbEvent::BackendUp { backend, .. } if backend == "backend-2")),
        "{events:?}"
    );
}

/// A backend that accepts probes and never answers is removed, and the other backend's probes
/// keep their pace meanwhile.
#[actix_web::test]
async fn hanging_backend_is_removed_without_delaying_other_probes() {
    capture_logs();
    let live = TestBackend::start("live");
    let hanging = silent_backend();
    let lb = start_balancer(&fast_probes(&[format!("http://{hanging}"), live.url()]));
    let probes_before = live.probes.load(std::sync::atomic::Ordering::Relaxed);
    let took = wait_for_health(&lb, 0, false, Duration::from_secs(5)).await;
    // Three probes, each given up after 300 ms, started at most 100 ms apart.
    assert!(took < Duration::from_millis(3 * 400 + 800), "took {took:?}");
    let probes = live.probes.load(std::sync::atomic::Ordering::Relaxed) - probes_before;
    let expected = took.as_millis() as usize / 100;
    assert!(
        probes + 2 >= expected,
        "live probed {probes} times in {took:?}"
    );
    assert!(members(&lb).await[1].healthy);
    assert!(logged(&[
        "is DOWN (3 failed probes: no answer within 300 ms)"
    ]));
}

/// Consecutive proxy failures take a backend out at once, long before any probe would.
#[actix_web::test]
async fn passive_failures_eject_a_backend_at_once() {
    capture_logs();
    let live = TestBackend::start("live");
    let dead = format!("http://{}", refused_addr());
    let mut settings = settings_for(&[dead.clone(), live.url()]);
    settings.health.interval = Duration::from_secs(600);
    let lb = start_balancer(&settings);
    for _ in 0..3 {
        assert_eq!(get_status(&lb, "/p").await, 200);
    }
    wait_for_health(&lb, 0, false, Duration::from_secs(2)).await;
    assert!(logged(&[&format!(
        "backend {dead} is DOWN (3 consecutive proxy failures, last: connect)"
    )]));
    let failures = members(&lb).await[0].failures;
    for _ in 0..5 {
        assert_eq!(get_status(&lb, "/p").await, 200);
    }
    assert_eq!(
        members(&lb).await[0].failures,
        failures,
        "an ejected backend was still tried"
    );
}

/// When every backend is down the answer is 503 JSON at once, not after a connect timeout.
#[actix_web::test]
async fn all_backends_down_answers_503_at_once() {
    let urls: Vec<String> = (0..2)
        .map(|_| format!("http://{}", refused_addr()))
        .collect();
    let mut settings = fast_probes(&urls);
    settings.backends.connect_timeout = Duration::from_secs(5);
    let lb = start_balancer(&settings);
    wait_for_health(&lb, 0, false, Duration::from_secs(3)).await;
    wait_for_health(&lb, 1, false, Duration::from_secs(3)).await;
    let started = Instant::now();
    let res = client().get(lb.url("/")).send().await.expect("response");
    assert_eq!(res.status(), 503);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "took {:?}",
        started.elapsed()
    );
}

//! The simulation from a real client's side: every fault mode on the simulated backend's own
//! port, manual control through the API, and the balancer reacting to it.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{
    call, client, eventually, refused_addr, settings_for, settings_from_files, start_balancer,
    TestBalancer,
};
use serde_json::{json, Value};

/// A balancer simulating two backends on free loopback ports; the random schedule is
/// effectively off (a day between failures) so only the test's commands change anything.
fn simulated_pair() -> (TestBalancer, Vec<SocketAddr>) {
    let addrs = vec![refused_addr(), refused_addr()];
    let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    let mut settings = settings_for(&urls);
    settings.simulation.enabled = true;
    settings.simulation.seed = Some(1);
    settings.simulation.plan.mean_up = Duration::from_secs(86_400);
    settings.health.interval = Duration::from_millis(100);
    settings.health.timeout = Duration::from_millis(300);
    (start_balancer(&settings), addrs)
}

async fn command(lb: &TestBalancer, path: &str, body: Option<&str>) -> (u16, Value) {
    call(lb, "POST", path, body).await
}

/// The balancer's `/lb/api/status` document.
async fn status_json(lb: &TestBalancer) -> Value {
    let mut res = client()
        .get(lb.url("/lb/api/status"))
        .send()
        .await
        .expect("status");
    res.json().await.expect("json")
}

/// A direct GET to a simulated backend: its status, or `None` if it could not be had in 500 ms.
async fn direct(addr: SocketAddr) -> Option<u16> {
    let quick = awc::Client::builder()
        .timeout(Duration::from_millis(500))
        .finish();
    quick
        .get(format!("http://{addr}/direct"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// refuse, error and hang each look as they should from a client talking to the backend
/// itself, and recover brings back the backend's own JSON answer.
#[actix_web::test]
async fn each_fault_mode_is_seen_by_a_real_client() {
    let (lb, addrs) = simulated_pair();
    let target = addrs[0];
    let mut res = client()
        .get(format!("http://{target}/hello?x=1"))
        .send()
        .await
        .expect("up");
    assert_eq!(res.status(), 200);
    let body = res.json::<Value>().await.expect("json");
    assert_eq!(
        body,
        json!({"backend": "backend-1", "port": target.port(), "path": "/hello"})
    );

    let (status, body) = command(
        &lb,
        "/lb/api/simulation/backend-1/fail",
        Some(r#"{"mode": "refuse"}"#),
    )
    .await;
    assert_eq!((status, &body["state"]), (200, &json!("refuse")), "{body}");
    eventually("the listener to close", Duration::from_secs(3), || {
        TcpStream::connect(target).is_err().then_some(())
    })
    .await;

    let (status, body) = command(
        &lb,
        "/lb/api/simulation/backend-1/fail",
        Some(r#"{"mode": "error"}"#),
    )
    .await;
    assert_eq!((status, &body["state"]), (200, &json!("error")), "{body}");
    assert_eq!(direct(target).await, Some(500));

    let (status, _) = command(
        &lb,
        "/lb/api/simulation/0/fail",
        Some(r#"{"mode": "hang"}"#),
    )
    .await;
    assert_eq!(status, 200);
    let started = Instant::now();
    assert_eq!(direct(target).await, None, "a hanging backend answered");
    assert!(started.elapsed() >= Duration::from_millis(500));

    let (status, body) = command(&lb, "/lb/api/simulation/backend-1/recover", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"backend": "backend-1", "pool": "default", "url": format!("http://{target}"), "state": "up", "manual": false})
    );
    assert_eq!(direct(target).await, Some(200));
}

/// A simulated failure is noticed by the health checks: the backend goes down in the status
/// API, traffic goes to the other one, and it returns after recover.
#[actix_web::test]
async fn the_balancer_routes_around_a_simulated_failure() {
    let (lb, addrs) = simulated_pair();
    let (status, _) = command(
        &lb,
        "/lb/api/simulation/backend-2/fail",
        Some(r#"{"mode": "error"}"#),
    )
    .await;
    assert_eq!(status, 200);
    let backend_state =
        |status: &Value, i: usize| status["backends"][i]["state"].as_str().map(str::to_owned);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = status_json(&lb).await;
        assert_eq!(status["backends"][1]["simulated"], json!(true));
        if backend_state(&status, 1).as_deref() == Some("down") {
            assert_eq!(status["backends"][1]["simulation"], json!("error"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backend-2 never went down: {status}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..4 {
        let mut res = client().get(lb.url("/via")).send().await.expect("response");
        assert_eq!(res.status(), 200);
        let body = res.json::<Value>().await.expect("json");
        assert_eq!(body["port"], json!(addrs[0].port()));
    }
    command(&lb, "/lb/api/simulation/backend-2/recover", None).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = status_json(&lb).await;
        if backend_state(&status, 1).as_deref() == Some("up") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backend-2 never came back: {status}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Unknown backends are 404, bad modes and bad JSON 400, wrong methods 405; all JSON.
#[actix_web::test]
async fn simulation_api_rejects_bad_commands_with_json() {
    let (lb, _) = simulated_pair();
    let (status, body) = command(&lb, "/lb/api/simulation/backend-9/fail", None).await;
    assert_eq!((status, &body["code"]), (404, &json!(404)), "{body}");
    let (status, body) = command(&lb, "/lb/api/simulation/7/recover", None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = command(
        &lb,
        "/lb/api/simulation/backend-1/fail",
        Some(r#"{"mode": "explode"}"#),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"]
        .as_str()
        .expect("message")
        .contains("explode"));
    let (status, body) = command(&lb, "/lb/api/simulation/backend-1/fail", Some("{not json")).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = command(&lb, "/lb/api/simulation/backend-1/explode", None).await;
    assert_eq!(status, 404);
    let res = client()
        .get(lb.url("/lb/api/simulation/backend-1/fail"))
        .send()
        .await
        .expect("response");
    assert_eq!(res.status(), 405);
}

/// Without simulation, the simulation routes say so with 404 JSON.
#[actix_web::test]
async fn simulation_routes_are_404_when_it_is_off() {
    let lb = start_balancer(&settings_for(&[format!("http://{}", refused_addr())]));
    let (status, body) = command(&lb, "/lb/api/simulation/backend-1/fail", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["message"], json!("The simulation is not running"));
}

/// With an admin token set, the API wants it: 401 with WWW-Authenticate without, 200 with.
#[actix_web::test]
async fn admin_token_guards_the_api() {
    let mut settings = settings_for(&[format!("http://{}", refused_addr())]);
    settings.admin.token = Some("letmein".into());
    let lb = start_balancer(&settings);
    let mut res = client()
        .get(lb.url("/lb/api/status"))
        .send()
        .await
        .expect("response");
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers().get("www-authenticate").expect("challenge"),
        "Bearer"
    );
    assert_eq!(res.json::<Value>().await.expect("json")["code"], json!(401));
    let res = client()
        .get(lb.url("/lb/api/status"))
        .insert_header(("Authorization", "Bearer letmein"))
        .send()
        .await
        .expect("response");
    assert_eq!(res.status(), 200);
}

/// Two pools on loopback addresses, `default` = [A, B] and `api` = [C, A]: each pool names its
/// first backend `backend-1`, and A is one simulated server for both of its members.
fn simulated_pools() -> (TestBalancer, [SocketAddr; 3]) {
    let [a, b, c] = [refused_addr(), refused_addr(), refused_addr()];
    let file = json!({
        "backends": [format!("http://{a}"), format!("http://{b}")],
        "pools": {"api": {"backends": [format!("http://{c}"), format!("http://{a}")]}}
    });
    let (mut settings, _) = settings_from_files(&file, "");
    settings.simulation.enabled = true;
    settings.simulation.seed = Some(1);
    settings.simulation.plan.mean_up = Duration::from_secs(86_400);
    (start_balancer(&settings), [a, b, c])
}

/// A name several pools use needs `?pool=`; with it, the command reaches that pool's backend
/// only; a member of a second pool at a shared address controls the one server; and that
/// server keeps serving the second pool once the first pool's member is removed.
#[actix_web::test]
async fn simulation_commands_name_the_pool() {
    let (lb, [a, _, c]) = simulated_pools();
    let (status, body) = command(&lb, "/lb/api/simulation/backend-1/fail", None).await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("api, default") || message.contains("default, api"),
        "{message}"
    );
    let (status, body) = command(&lb, "/lb/api/simulation/backend-1/fail?pool=nope", None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = command(&lb, "/lb/api/simulation/backend-1/fail?bogus=1", None).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = command(&lb, "/lb/api/simulation/backend-1/fail?pool=api", None).await;
    assert_eq!((status, &body["pool"]), (200, &json!("api")), "{body}");
    assert_eq!(direct(c).await, None, "api's backend-1 refuses");
    assert_eq!(
        direct(a).await,
        Some(200),
        "default's backend-1 still answers"
    );
    let path = "/lb/api/simulation/backend-1/recover?pool=api";
    assert_eq!(command(&lb, path, None).await.0, 200);

    let (status, body) = command(&lb, "/lb/api/simulation/backend-2/fail?pool=api", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(direct(a).await, None, "A fails for both pools");
    let path = "/lb/api/simulation/backend-2/recover?pool=api";
    assert_eq!(command(&lb, path, None).await.0, 200);
    answers_within(a, Duration::from_secs(5)).await;

    // Removing default's member: the server goes on serving api's member at that address.
    let (status, body) = call(
        &lb,
        "DELETE",
        "/lb/api/pools/default/backends/backend-1",
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let status = status_json(&lb).await;
        let backends = status["backends"].as_array().expect("backends");
        if !backends
            .iter()
            .any(|b| b["pool"] == "default" && b["name"] == "backend-1")
        {
            break;
        }
        assert!(Instant::now() < until, "default's backend-1 still there");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(direct(a).await, Some(200), "still served for api");
    let (status, body) = command(&lb, "/lb/api/simulation/backend-2/fail?pool=api", None).await;
    assert_eq!((status, &body["pool"]), (200, &json!("api")), "{body}");
    assert_eq!(direct(a).await, None);
}

/// Polls a direct GET to `addr` until it answers 200.
async fn answers_within(addr: SocketAddr, deadline: Duration) {
    let until = Instant::now() + deadline;
    while direct(addr).await != Some(200) {
        assert!(Instant::now() < until, "{addr} does not answer");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

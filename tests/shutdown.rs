//! Draining in-process: /lb/health turns 503 with `Connection: close`, idle kept-alive
//! connections are closed, the in-flight request finishes, and shutdown hooks run after the
//! server stops.

mod common;

use std::cell::Cell;
use std::net::TcpListener;
use std::rc::Rc;
use std::time::Duration;

use common::backend::TestBackend;
use common::{eventually, header_value, settings_for, RawConnection};

/// The whole drain sequence, observed from clients on already-open connections.
#[actix_web::test]
async fn draining_reports_503_finishes_in_flight_work_and_runs_hooks() {
    let backend = TestBackend::start("slow");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut balancer =
        loadbalancer::start(&settings_for(&[backend.url()]), listener).expect("start");
    let addr = balancer.local_addr;
    let handle = balancer.handle();
    let hook_ran = Rc::new(Cell::new(false));
    let flag = Rc::clone(&hook_ran);
    balancer.on_shutdown(Box::new(move || Box::pin(async move { flag.set(true) })));
    let served = actix_rt::spawn(balancer.run());

    // Two kept-alive connections: one asks for health while draining, one stays idle.
    let (mut asking, mut idle) = actix_rt::task::spawn_blocking(move || {
        let mut conns = [RawConnection::open(addr), RawConnection::open(addr)];
        for conn in &mut conns {
            let (head, _) = conn.exchange(b"GET /lb/health HTTP/1.1\r\nHost: t\r\n\r\n", false);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        }
        let [a, b] = conns;
        (a, b)
    })
    .await
    .expect("health checks");

    handle.begin_drain();
    let (head, body) = actix_rt::task::spawn_blocking(move || {
        asking.exchange(b"GET /lb/health HTTP/1.1\r\nHost: t\r\n\r\n", false)
    })
    .await
    .expect("health while draining");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert_eq!(header_value(&head, "connection"), Some("close"), "{head}");
    let id = header_value(&head, "x-request-id").expect("an id");
    assert_eq!(
        body,
        format!(r#"{{"code":503,"message":"Service is shutting down","request_id":"{id}"}}"#)
            .as_bytes()
    );

    let client = awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish();
    let slow = actix_rt::spawn(async move {
        client
            .get(format!("http://{addr}/slow/1500"))
            .send()
            .await
            .map(|r| r.status())
    });
    eventually(
        "the slow request to reach the backend",
        Duration::from_secs(5),
        || (!backend.requests().is_empty()).then_some(()),
    )
    .await;
    let stopper = handle.clone();
    actix_rt::spawn(async move { stopper.shutdown().await });

    let closed = actix_rt::task::spawn_blocking(move || idle.closed_within(Duration::from_secs(5)))
        .await
        .expect("idle");
    assert!(
        closed,
        "the idle kept-alive connection was not closed by the drain"
    );
    assert_eq!(slow.await.expect("task").expect("slow response"), 200);
    served.await.expect("server task").expect("server result");
    assert!(hook_ran.get(), "shutdown hook did not run");
}

//! The balancer's own namespaces, `/lb/` and `/clients`, are answered by the balancer and
//! never proxied: unknown paths are JSON 404s, wrong methods JSON 405s. Walked with a
//! recording backend that must see nothing.

mod common;

use common::backend::TestBackend;
use common::{call, settings_for, start_balancer};

/// Every path and method tried, with the status the balancer must give.
const WALK: &[(&str, &str, u16)] = &[
    // Unknown paths under /lb/api/ (these used to reach the backend).
    ("POST", "/lb/api/reloads", 404),
    ("GET", "/lb/api/backends/x/y", 404),
    ("DELETE", "/lb/api/backends/", 404),
    ("GET", "/lb/api/nothing", 404),
    ("GET", "/lb/api", 404),
    ("GET", "/lb/api/", 404),
    ("DELETE", "/lb/api/status/extra", 404),
    ("GET", "/lb/api/simulation/backend-1", 404),
    ("PUT", "/lb/api/backends/x/y", 404),
    // Unknown paths elsewhere under /lb/ and /clients.
    ("GET", "/lb/nothing", 404),
    ("POST", "/lb/x/y/z", 404),
    ("GET", "/lb/metrics/extra", 404),
    ("GET", "/clients/a/b", 404),
    ("DELETE", "/clients/", 404),
    // Known paths, wrong method.
    ("PUT", "/lb/api/status", 405),
    ("POST", "/lb/api/events", 405),
    ("GET", "/lb/api/simulation/backend-1/fail", 405),
    ("POST", "/lb/metrics", 405),
    ("DELETE", "/lb/health", 405),
    ("POST", "/lb/", 405),
    ("PUT", "/lb/app.js", 405),
    ("POST", "/lb/favicon.svg", 405),
    ("PATCH", "/clients", 405),
    ("POST", "/clients/someone", 405),
    ("GET", "/clients/register", 405),
    ("GET", "/lb/api/reload", 405),
    ("PUT", "/lb/api/backends", 405),
    ("POST", "/lb/api/backends/backend-1", 405),
    // Known paths, right method, answered by the balancer.
    ("GET", "/lb/api/status", 200),
    ("GET", "/lb/health", 200),
    ("GET", "/clients", 200),
    ("GET", "/clients/nobody", 404),
    ("POST", "/lb/api/simulation/backend-1/fail", 404),
    ("GET", "/lb/api/backends", 200),
    ("GET", "/lb/api/backends/backend-1", 200),
    ("GET", "/lb/api/backends/nobody", 404),
    ("PATCH", "/lb/api/backends/nobody", 415),
    ("DELETE", "/lb/api/backends/nobody", 404),
    ("POST", "/lb/api/backends", 415),
    // No pool file behind a pool given in code: nothing to reload.
    ("POST", "/lb/api/reload", 400),
];

/// Each path of the walk gets the balancer's own JSON answer, and the backend sees nothing.
#[actix_web::test]
async fn own_namespaces_are_never_proxied() {
    let backend = TestBackend::start("recording");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    for (method, path, expected) in WALK {
        let (status, body) = call(&lb, method, path, None).await;
        assert_eq!(status, *expected, "{method} {path}: {body}");
        if status >= 400 {
            assert_eq!(body["code"], *expected, "{method} {path}: {body}");
            assert!(body["message"].is_string(), "{method} {path}: {body}");
        }
    }
    assert!(
        backend.requests().is_empty(),
        "proxied: {:?}",
        backend.targets()
    );
    // The walk is not vacuous: a path outside the namespaces does reach the backend.
    assert_eq!(call(&lb, "GET", "/lbx", None).await.0, 200);
    assert_eq!(backend.targets(), ["/lbx"]);
}

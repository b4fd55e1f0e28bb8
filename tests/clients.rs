//! The /clients admin API over real HTTP: every route, both body shapes, validation, access
//! rules, and what happens when SQLite cannot be written.

mod common;

use common::{call, client, refused_addr, settings_for, start_balancer, TestBalancer};
use serde_json::{json, Value};

fn balancer() -> TestBalancer {
    start_balancer(&settings_for(&[format!("http://{}", refused_addr())]))
}

/// Create, read, list, update (both routes), delete, with both body shapes.
#[actix_web::test]
async fn every_route_works_with_both_shapes() {
    let lb = balancer();
    let (status, body) = call(
        &lb,
        "POST",
        "/clients",
        Some(r#"{"client_id": "acme", "name": "Acme", "capacity": 50, "rate_per_sec": 5}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"client_id": "acme", "name": "Acme", "capacity": 50, "rate_per_sec": 5.0, "tokens": 50.0})
    );
    let (status, body) = call(
        &lb,
        "POST",
        "/clients/register",
        Some(r#"{"id": "seed", "rate_limit": 7}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (
            body["capacity"].clone(),
            body["rate_per_sec"].clone(),
            body["name"].clone()
        ),
        (json!(7), json!(10.0), Value::Null)
    );

    let (status, body) = call(&lb, "GET", "/clients/acme", None).await;
    assert_eq!((status, body["name"].clone()), (200, json!("Acme")));
    let (status, body) = call(&lb, "GET", "/clients", None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["client_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["acme", "seed"]);

    let (status, body) = call(
        &lb,
        "PUT",
        "/clients/acme",
        Some(r#"{"rate_per_sec": 1.5, "name": null}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["rate_per_sec"].clone(),
            body["name"].clone(),
            body["capacity"].clone()
        ),
        (json!(1.5), Value::Null, json!(50))
    );
    let (status, body) = call(
        &lb,
        "PUT",
        "/clients/update",
        Some(r#"{"id": "seed", "rate_limit": 9}"#),
    )
    .await;
    assert_eq!(
        (status, body["capacity"].clone()),
        (200, json!(9)),
        "{body}"
    );

    let (status, body) = call(&lb, "DELETE", "/clients/seed", None).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = call(&lb, "GET", "/clients/seed", None).await;
    assert_eq!((status, body["code"].clone()), (404, json!(404)));
}

/// Duplicates, unknown ids, bad bodies, sizes, content types and methods get their statuses.
#[actix_web::test]
async fn errors_have_their_statuses_and_name_the_field() {
    let lb = balancer();
    call(
        &lb,
        "POST",
        "/clients",
        Some(r#"{"client_id": "dup", "capacity": 1}"#),
    )
    .await;
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        (
            "POST",
            "/clients",
            Some(r#"{"client_id": "dup", "capacity": 1}"#),
            409,
            "already exists",
        ),
        (
            "PUT",
            "/clients/ghost",
            Some(r#"{"capacity": 1}"#),
            404,
            "ghost",
        ),
        ("DELETE", "/clients/ghost", None, 404, "ghost"),
        // The whole /clients tree is the API's: nothing under it is proxied.
        ("DELETE", "/clients/", None, 404, "Not found"),
        ("GET", "/clients/a/b", None, 404, "Not found"),
        (
            "POST",
            "/clients",
            Some(r#"{"client_id": "x"}"#),
            400,
            "capacity: missing",
        ),
        (
            "POST",
            "/clients",
            Some(r#"{"capacity": 3}"#),
            400,
            "client_id: missing",
        ),
        (
            "POST",
            "/clients",
            Some(r#"{"client_id": "x", "capacity": 0}"#),
            400,
            "capacity",
        ),
        (
            "POST",
            "/clients",
            Some(r#"{"client_id": "x", "capacity": 2, "rate_per_sec": -1}"#),
            400,
            "rate_per_sec",
        ),
        (
            "POST",
            "/clients",
            Some(r#"{"client_id": "x y", "capacity": 2}"#),
            400,
            "client_id",
        ),
        (
            "POST",
            "/clients",
            Some(r#"{"client_id": "x", "capacity": 2, "extra": 1}"#),
            400,
            "extra: unknown field",
        ),
        ("POST", "/clients", Some("{oops"), 400, "malformed JSON"),
        (
            "PUT",
            "/clients/dup",
            Some(r#"{"client_id": "other"}"#),
            400,
            "does not match",
        ),
        (
            "PATCH",
            "/clients/dup",
            Some("{}"),
            405,
            "Method not allowed",
        ),
    ];
    for (method, path, body, status, words) in cases {
        let (got, answer) = call(&lb, method, path, *body).await;
        assert_eq!(got, *status, "{method} {path} {body:?}: {answer}");
        assert_eq!(answer["code"], json!(status));
        assert!(
            answer["message"].as_str().expect("message").contains(words),
            "{answer}"
        );
    }
    let big = format!(
        r#"{{"client_id": "big", "name": "{}", "capacity": 1}}"#,
        "n".repeat(70_000)
    );
    let (status, _) = call(&lb, "POST", "/clients", Some(&big)).await;
    assert_eq!(status, 413);
    let mut res = client()
        .post(lb.url("/clients"))
        .insert_header(("Content-Type", "text/plain"))
        .send_body("{}")
        .await
        .expect("415");
    assert_eq!(res.status(), 415);
    assert_eq!(res.json::<Value>().await.expect("json")["code"], json!(415));
    let (_, list) = call(&lb, "GET", "/clients", None).await;
    assert_eq!(
        list.as_array().expect("list").len(),
        1,
        "a failed request left a client behind: {list}"
    );
}

/// With a token set, /clients wants it.
#[actix_web::test]
async fn admin_token_guards_clients() {
    let mut settings = settings_for(&[format!("http://{}", refused_addr())]);
    settings.admin.token = Some("t0ken".into());
    let lb = start_balancer(&settings);
    let (status, _) = call(&lb, "GET", "/clients", None).await;
    assert_eq!(status, 401);
    let res = client()
        .get(lb.url("/clients"))
        .insert_header(("Authorization", "Bearer t0ken"))
        .send()
        .await
        .expect("ok");
    assert_eq!(res.status(), 200);
}

/// While another process holds the database's write lock, admin writes answer 503 and change
/// nothing; proxying goes on; once the lock is gone writes work again.
#[actix_web::test]
async fn locked_database_makes_writes_503_and_changes_nothing() {
    let live = common::backend::TestBackend::start("live");
    let settings = settings_for(&[live.url()]);
    let path = settings.persistence.path.clone();
    let lb = start_balancer(&settings);
    let (status, _) = call(
        &lb,
        "POST",
        "/clients",
        Some(r#"{"client_id": "before", "capacity": 5}"#),
    )
    .await;
    assert_eq!(status, 201);

    let blocker = rusqlite::Connection::open(&path).expect("open");
    blocker.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let (status, body) = call(
        &lb,
        "POST",
        "/clients",
        Some(r#"{"client_id": "during", "capacity": 5}"#),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("nothing was changed"),
        "{body}"
    );
    let (status, _) = call(&lb, "PUT", "/clients/before", Some(r#"{"capacity": 1}"#)).await;
    assert_eq!(status, 503);
    let (status, _) = call(&lb, "DELETE", "/clients/before", None).await;
    assert_eq!(status, 503);
    let res = client()
        .get(lb.url("/still-proxying"))
        .send()
        .await
        .expect("proxy");
    assert_eq!(res.status(), 200);
    let (status, body) = call(&lb, "GET", "/clients/before", None).await;
    assert_eq!(
        (status, body["capacity"].clone()),
        (200, json!(5)),
        "memory changed: {body}"
    );
    assert_eq!(call(&lb, "GET", "/clients/during", None).await.0, 404);

    blocker.execute_batch("ROLLBACK").expect("unlock");
    drop(blocker);
    let (status, _) = call(
        &lb,
        "POST",
        "/clients",
        Some(r#"{"client_id": "during", "capacity": 5}"#),
    )
    .await;
    assert_eq!(status, 201);
}

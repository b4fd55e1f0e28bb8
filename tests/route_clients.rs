//! A registered client's own limits on routes (`"routes"` in a `/clients` body): applied at
//! once, refused for an unknown route, kept in SQLite across a restart with the levels of its
//! buckets on routes; and a database written by the release before routes (schema 1) opens
//! with every client and gains the new tables.

mod common;

use std::path::Path;
use std::time::Duration;

use common::backend::TestBackend;
use common::{call, client, settings_from_files, start_balancer, TestBalancer};
use serde_json::json;

/// What the first release wrote: schema 1, one client.
fn write_first_release_database(path: &Path) {
    let conn = rusqlite::Connection::open(path).expect("create");
    conn.execute_batch(
        "CREATE TABLE clients (
            client_id TEXT PRIMARY KEY NOT NULL, name TEXT, capacity INTEGER NOT NULL,
            rate_per_sec REAL NOT NULL, tokens REAL NOT NULL, tokens_at_ms INTEGER NOT NULL);
         INSERT INTO clients VALUES ('old', 'Old Co', 7, 0.001, 7.0, 1764000000000);
         PRAGMA user_version = 1;",
    )
    .expect("schema 1");
}

/// How many of `n` GETs of `path` as client `key` are admitted.
async fn admitted(lb: &TestBalancer, path: &str, key: &str, n: usize) -> usize {
    let mut count = 0;
    for _ in 0..n {
        let res = client()
            .get(lb.url(path))
            .insert_header(("X-API-Key", key))
            .send()
            .await
            .expect("response");
        count += usize::from(res.status() == 200);
    }
    count
}

#[actix_web::test]
async fn own_limits_on_routes_apply_persist_and_the_old_database_opens() {
    let app = TestBackend::start("app");
    let file = json!({
        "backends": [app.url()],
        "routes": [{"name": "search", "path_prefix": "/search", "pool": "default",
                    "limits": {"capacity": 2, "rate_per_sec": 0.001}}]
    });
    let (settings, _) = settings_from_files(&file, "");
    let database = settings.persistence.path.clone();
    write_first_release_database(&database);
    let lb = start_balancer(&settings);
    let (status, old) = call(&lb, "GET", "/clients/old", None).await;
    assert_eq!(
        (status, &old["capacity"], &old["name"]),
        (200, &json!(7), &json!("Old Co"))
    );

    let unknown = json!({"routes": {"nope": {"capacity": 1, "rate_per_sec": 1}}}).to_string();
    let (status, body) = call(&lb, "PUT", "/clients/old", Some(&unknown)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .starts_with("routes.nope"),
        "{body}"
    );
    assert_eq!(
        admitted(&lb, "/search", "old", 4).await,
        2,
        "the route's own limit"
    );

    let own = json!({"routes": {"search": {"capacity": 5, "rate_per_sec": 0.001}}}).to_string();
    let (status, body) = call(&lb, "PUT", "/clients/old", Some(&own)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["routes"]["search"]["capacity"], 5);
    assert_eq!(
        admitted(&lb, "/search", "old", 2).await,
        0,
        "a raised capacity does not refill the bucket"
    );
    let gold = json!({"client_id": "gold", "capacity": 100,
                      "routes": {"search": {"capacity": 5, "rate_per_sec": 0.001}}});
    let (status, body) = call(&lb, "POST", "/clients", Some(&gold.to_string())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        admitted(&lb, "/search", "gold", 7).await,
        5,
        "its own limit on the route"
    );
    lb.handle.shutdown().await;

    // The shutdown hook saves the levels after the server stopped: wait for gold's.
    let saved_level = || {
        let conn = rusqlite::Connection::open(&database).ok()?;
        conn.query_row(
            "SELECT tokens FROM route_tokens WHERE client_id = 'gold' AND route = 'search'",
            [],
            |row| row.get::<_, f64>(0),
        )
        .ok()
    };
    let level = common::eventually(
        "gold's level on the route saved",
        Duration::from_secs(5),
        saved_level,
    )
    .await;
    assert!(level < 1.0, "all five taken: {level}");
    let again = start_balancer(&settings);
    assert_eq!(
        admitted(&again, "/search", "gold", 2).await,
        0,
        "the route bucket's level survives the restart"
    );
    let (_, kept) = call(&again, "GET", "/clients/old", None).await;
    assert_eq!(
        kept["routes"]["search"],
        json!({"capacity": 5, "rate_per_sec": 0.001})
    );
    let cleared = json!({"routes": {"search": null}}).to_string();
    let (status, body) = call(&again, "PUT", "/clients/old", Some(&cleared)).await;
    assert_eq!((status, body.get("routes")), (200, None), "{body}");
    let conn = rusqlite::Connection::open(&database).expect("open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("version");
    assert_eq!(version, 3);
}

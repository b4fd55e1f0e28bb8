//! DNS discovery through a real balancer and a real DNS server on a loopback UDP port: the
//! members of a `"discovery": "dns"` entry follow its records while traffic flows — added,
//! removed, and kept through SERVFAIL and empty answers — with no failed request; TLS to such
//! members verifies the DNS name; the API and the pool file keep the entry as an entry.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SOON: Duration = Duration::from_secs(10);

use common::backend::TestBackend;
use common::dns::{Answer, DnsServer};
use common::tls::TestCa;
use common::{call, capture_logs, client, eventually, logged, settings_from_files, start_balancer};
use common::{fresh_dir, TestBalancer};
use loadbalancer::Settings;
use serde_json::{json, Value};

/// Listeners on one port of 127.0.0.1, 127.0.0.2, … (`count` of them): the addresses one DNS
/// name can have on a single machine.
fn same_port_listeners(count: u8) -> (u16, Vec<TcpListener>) {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().expect("addr").port();
        let rest: Result<Vec<_>, _> = (2..=count)
            .map(|i| TcpListener::bind(format!("127.0.0.{i}:{port}")))
            .collect();
        if let Ok(rest) = rest {
            return (port, std::iter::once(first).chain(rest).collect());
        }
    }
    panic!("no port free on every loopback address");
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A DNS server where `web.test` has an address per name of `names` (127.0.0.1, .2, …), and a
/// backend of that name on each, all on one port.
fn backends_behind_web_test(names: &[&str]) -> (DnsServer, u16, Vec<TestBackend>) {
    let dns = DnsServer::start();
    let count = u8::try_from(names.len()).expect("a few names");
    let (port, listeners) = same_port_listeners(count);
    let backends = listeners
        .into_iter()
        .zip(names)
        .map(|(listener, name)| TestBackend::start_on(name, listener))
        .collect();
    dns.set("web.test", Answer::Addresses((1..=count).map(ip).collect()));
    (dns, port, backends)
}

/// Settings for `file` asking `dns` every second, no rate limit.
fn asking(file: &Value, dns: &DnsServer) -> (Settings, std::path::PathBuf) {
    let (mut settings, path) = settings_from_files(file, "");
    settings.backends.dns_servers = vec![dns.addr];
    settings.backends.dns_refresh = Duration::from_secs(1);
    settings.rate_limit.enabled = false;
    (settings, path)
}

/// The members of `pool` in rotation now (up, not leaving), by name.
async fn in_rotation(lb: &TestBalancer, pool: &str) -> BTreeSet<String> {
    let (_, status) = call(lb, "GET", "/lb/api/status", None).await;
    status["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .filter(|b| b["pool"] == pool && b["state"] == "up" && b["leaving"] != true)
        .map(|b| b["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Waits until exactly `names` of `pool` are in rotation.
async fn wait_for_members(lb: &TestBalancer, pool: &str, names: &[&str]) {
    let wanted: BTreeSet<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = in_rotation(lb, pool).await;
        if now == wanted {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "members of {pool}: {now:?}, waiting for {wanted:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Traffic from `clients` loops until stopped: every answer's `X-Backend`, and failures.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    served_by: Arc<Mutex<Vec<String>>>,
}

impl Load {
    fn start(lb: &TestBalancer, clients: usize) -> Self {
        let load = Self {
            stop: Arc::new(AtomicBool::new(false)),
            sent: Arc::new(AtomicUsize::new(0)),
            failed: Arc::new(Mutex::new(Vec::new())),
            served_by: Arc::new(Mutex::new(Vec::new())),
        };
        for _ in 0..clients {
            let (stop, sent) = (Arc::clone(&load.stop), Arc::clone(&load.sent));
            let (failed, served_by) = (Arc::clone(&load.failed), Arc::clone(&load.served_by));
            let url = lb.url("/work");
            actix_rt::spawn(async move {
                let client = client();
                while !stop.load(Ordering::SeqCst) {
                    sent.fetch_add(1, Ordering::SeqCst);
                    match client.get(&url).send().await {
                        Ok(res) if res.status() == 200 => {
                            let by = res
                                .headers()
                                .get("x-backend")
                                .map(|v| v.to_str().unwrap_or("?").to_owned());
                            served_by.lock().expect("lock").push(by.unwrap_or_default());
                        }
                        Ok(res) => failed
                            .lock()
                            .expect("lock")
                            .push(format!("status {}", res.status())),
                        Err(err) => failed.lock().expect("lock").push(err.to_string()),
                    }
                }
            });
        }
        load
    }

    /// Marks what was served so far, and then waits until `backend` served again.
    async fn served_since_now(&self, backend: &str) {
        let from = self.served_by.lock().expect("lock").len();
        let served = Arc::clone(&self.served_by);
        eventually(
            &format!("{backend} serving"),
            Duration::from_secs(10),
            || {
                served.lock().expect("lock")[from..]
                    .iter()
                    .any(|b| b == backend)
                    .then_some(())
            },
        )
        .await;
    }

    /// Backends that served since mark `from`.
    fn served_from(&self, from: usize) -> BTreeSet<String> {
        self.served_by.lock().expect("lock")[from..]
            .iter()
            .cloned()
            .collect()
    }

    fn mark(&self) -> usize {
        self.served_by.lock().expect("lock").len()
    }

    fn stop(&self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        (
            self.sent.load(Ordering::SeqCst),
            self.failed.lock().expect("lock").clone(),
        )
    }
}

/// Addresses added to and removed from the records join and drain under load; SERVFAIL and an
/// empty answer keep the last good set; not one request fails.
#[actix_rt::test]
async fn members_follow_the_records_under_load_without_a_failed_request() {
    capture_logs();
    let (dns, port, backends) = backends_behind_web_test(&["one", "two", "three"]);
    dns.set("web.test", Answer::Addresses(vec![ip(1), ip(2)]));
    let entry =
        json!({"url": format!("http://web.test:{port}"), "discovery": "dns", "name": "web"});
    let file = json!({"pools": {"web": {"backends": [entry], "host_header": "backend"}},
                      "routes": [{"name": "all", "pool": "web"}]});
    let (settings, path) = asking(&file, &dns);
    let lb = start_balancer(&settings);
    wait_for_members(&lb, "web", &["web@127.0.0.1", "web@127.0.0.2"]).await;
    let load = Load::start(&lb, 4);
    load.served_since_now("one").await;

    dns.set("web.test", Answer::Addresses(vec![ip(2), ip(3)]));
    wait_for_members(&lb, "web", &["web@127.0.0.2", "web@127.0.0.3"]).await;
    load.served_since_now("three").await;
    let mark = load.mark();
    load.served_since_now("two").await;
    load.served_since_now("three").await;
    assert!(
        !load.served_from(mark).contains("one"),
        "127.0.0.1 left the pool"
    );

    for (answer, why) in [
        (Answer::ServFail, "answered Server Failure"),
        (Answer::Empty, "no A or AAAA record"),
    ] {
        dns.set("web.test", answer);
        eventually(&format!("the {why} logged"), Duration::from_secs(5), || {
            logged(&["DNS for backend web of pool web", why, "stay"]).then_some(())
        })
        .await;
        let queries = dns.queries();
        eventually("two more lookups", Duration::from_secs(5), || {
            (dns.queries() >= queries + 4).then_some(())
        })
        .await;
        assert_eq!(
            in_rotation(&lb, "web").await,
            BTreeSet::from(["web@127.0.0.2".to_owned(), "web@127.0.0.3".to_owned()]),
            "the last good set stays through {why}"
        );
        dns.set("web.test", Answer::Addresses(vec![ip(2), ip(3)]));
        eventually("lookups work again", Duration::from_secs(5), || {
            logged(&["DNS for backend web answers again"]).then_some(())
        })
        .await;
        capture_logs().lock().expect("logs").clear();
    }

    dns.set("web.test", Answer::Addresses(vec![ip(3)]));
    wait_for_members(&lb, "web", &["web@127.0.0.3"]).await;
    let mark = load.mark();
    load.served_since_now("three").await;
    load.served_since_now("three").await;
    let (sent, failed) = load.stop();
    assert_eq!(load.served_from(mark), BTreeSet::from(["three".to_owned()]));
    assert!(
        failed.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(sent > 100, "only {sent} requests were sent");

    let seen = backends[2].requests();
    let host = seen
        .last()
        .expect("three served")
        .headers
        .get("host")
        .expect("Host")
        .clone();
    assert_eq!(
        host.to_str().expect("ascii"),
        format!("web.test:{port}"),
        "the backend's Host is the DNS name"
    );
    let written = std::fs::read_to_string(&path).expect("pool file");
    assert!(
        !written.contains("127.0.0"),
        "members are not written to the pool file: {written}"
    );
}

/// The API keeps an entry an entry: its members can be drained but not weighed or removed, a
/// backend with its URL or name is a duplicate, `discovery` is the pool file's, and a change
/// written back keeps the entry.
#[actix_rt::test]
async fn the_api_keeps_dns_entries_in_the_pool_file() {
    let (dns, port, _backends) = backends_behind_web_test(&["one"]);
    let other = TestBackend::start("other");
    let url = format!("http://web.test:{port}");
    let file = json!({"backends": [{"url": url, "discovery": "dns", "weight": 2}]});
    let (settings, path) = asking(&file, &dns);
    let lb = start_balancer(&settings);
    wait_for_members(&lb, "default", &["backend-1@127.0.0.1"]).await;

    let member = "/lb/api/backends/backend-1@127.0.0.1";
    let (status, body) = call(&lb, "PATCH", member, Some(r#"{"weight": 5}"#)).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = call(&lb, "DELETE", member, None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("found by DNS"),
        "{body}"
    );
    let (status, body) = call(&lb, "PATCH", member, Some(r#"{"draining": true}"#)).await;
    assert_eq!(
        (status, body["draining"].clone()),
        (200, json!(true)),
        "{body}"
    );
    call(&lb, "PATCH", member, Some(r#"{"draining": false}"#)).await;

    let dns_body = json!({"url": other.url(), "discovery": "dns"}).to_string();
    let (status, body) = call(&lb, "POST", "/lb/api/backends", Some(&dns_body)).await;
    assert_eq!(status, 400, "{body}");
    let twin = json!({"url": url}).to_string();
    let (status, body) = call(&lb, "POST", "/lb/api/backends", Some(&twin)).await;
    assert_eq!(status, 409, "{body}");
    let added = json!({"url": other.url()}).to_string();
    let (status, body) = call(&lb, "POST", "/lb/api/backends", Some(&added)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "backend-2", "the entry keeps backend-1");

    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    assert_eq!(
        written["backends"],
        json!([{"url": url, "weight": 2, "discovery": "dns"}, other.url()]),
        "the entry is written back as it was, before the new backend"
    );
    let (status, report) = call(&lb, "POST", "/lb/api/reload", None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["removed"],
        json!([]),
        "a reload of the written file keeps everything: {report}"
    );
    wait_for_members(&lb, "default", &["backend-1@127.0.0.1", "backend-2"]).await;
}

/// A reload that changes an entry's weight reaches its members; one that drops the entry
/// drains them out.
#[actix_rt::test]
async fn reloads_carry_an_entry_to_its_members() {
    let (dns, port, _backends) = backends_behind_web_test(&["member", "member"]);
    let steady = TestBackend::start("steady");
    let entry = json!({"url": format!("http://web.test:{port}"), "discovery": "dns"});
    let (settings, path) = asking(&json!({"backends": [steady.url(), entry]}), &dns);
    let lb = start_balancer(&settings);
    let members = ["backend-1", "backend-2@127.0.0.1", "backend-2@127.0.0.2"];
    wait_for_members(&lb, "default", &members).await;

    let mut heavier = entry.clone();
    heavier["weight"] = json!(4);
    std::fs::write(
        &path,
        json!({"backends": [steady.url(), heavier]}).to_string(),
    )
    .expect("write");
    let (status, report) = call(&lb, "POST", "/lb/api/reload", None).await;
    assert_eq!(
        (status, report["changed"].clone()),
        (200, json!(["backend-2"])),
        "{report}"
    );
    let (_, status) = call(&lb, "GET", "/lb/api/backends/backend-2@127.0.0.2", None).await;
    assert_eq!(status["weight"], 4, "{status}");

    std::fs::write(&path, json!({"backends": [steady.url()]}).to_string()).expect("write");
    let (status, report) = call(&lb, "POST", "/lb/api/reload", None).await;
    assert_eq!(
        (status, report["removed"].clone()),
        (200, json!(["backend-2"])),
        "{report}"
    );
    wait_for_members(&lb, "default", &["backend-1"]).await;
    let dns_queries = dns.queries();
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        dns.queries(),
        dns_queries,
        "a removed entry is not looked up any more"
    );
}

/// TLS to a member goes to the address found and verifies (and sends as SNI) the DNS name: the
/// backend's certificate names only `web.test`.
#[actix_rt::test]
async fn tls_to_a_member_verifies_the_dns_name() {
    let dns = DnsServer::start();
    let ca = TestCa::new("dns test CA");
    let (port, listeners) = same_port_listeners(2);
    let listener = listeners.into_iter().nth(1).expect("127.0.0.2");
    let _backend =
        TestBackend::start_tls_on("secure", listener, ca.server_config_for(&["web.test"]));
    dns.set("web.test", Answer::Addresses(vec![ip(2)]));
    let entry = json!({"url": format!("https://web.test:{port}"), "discovery": "dns"});
    let (mut settings, _) = asking(&json!({"backends": [entry]}), &dns);
    settings.backends.ca_file = Some(ca.ca_file(&fresh_dir(), "ca"));
    let lb = start_balancer(&settings);
    wait_for_members(&lb, "default", &["backend-1@127.0.0.2"]).await;
    let mut res = client().get(lb.url("/tls")).send().await.expect("answer");
    assert_eq!(res.status(), 200, "{:?}", res.body().await);
    assert_eq!(res.headers().get("x-backend").expect("X-Backend"), "secure");
}

/// The status page's event log says what DNS answered and, when a lookup fails, that the
/// members stay; the member's card is there (real headless Chromium).
#[actix_web::test]
async fn the_page_logs_what_dns_answered() {
    const TEST: &str = "the_page_logs_what_dns_answered";
    if !common::webdriver::required_or_skip(TEST) {
        return;
    }
    let (dns, port, _backends) = backends_behind_web_test(&["one"]);
    let entry =
        json!({"url": format!("http://web.test:{port}"), "discovery": "dns", "name": "web"});
    let (settings, _) = asking(&json!({"backends": [entry]}), &dns);
    let lb = start_balancer(&settings);
    let browser = common::webdriver::Browser::start().await;
    browser.open(&lb.url("/lb/")).await;
    let says = |text: &str| {
        format!("return document.getElementById('log').textContent.includes({text:?})")
    };
    let found = format!("DNS: web (http://web.test:{port}) has members at 127.0.0.1:{port}");
    browser
        .wait_until("the answer logged", SOON, &says(&found))
        .await;
    browser
        .wait_until(
            "the member's card",
            SOON,
            "return document.body.textContent.includes('web@127.0.0.1')",
        )
        .await;
    dns.set("web.test", Answer::ServFail);
    let kept = format!("DNS lookup for web failed (web.test: the DNS server answered Server Failure (ServFail)); its members at 127.0.0.1:{port} stay");
    browser
        .wait_until("the failure logged", SOON, &says(&kept))
        .await;
    browser.quit().await;
}

/// A pool added through the API may hold DNS entries: their members come with the first lookup,
/// and the pool file gets the entry as given.
#[actix_rt::test]
async fn a_pool_added_through_the_api_finds_its_members() {
    let (dns, port, _backends) = backends_behind_web_test(&["member", "member"]);
    let steady = TestBackend::start("steady");
    let (settings, path) = asking(&json!({"backends": [steady.url()]}), &dns);
    let lb = start_balancer(&settings);
    let url = format!("http://web.test:{port}");
    let pool = json!({"name": "web", "backends": [{"url": url, "discovery": "dns"}]});
    let (status, body) = call(&lb, "POST", "/lb/api/pools", Some(&pool.to_string())).await;
    assert_eq!(status, 201, "{body}");
    wait_for_members(&lb, "web", &["backend-1@127.0.0.1", "backend-1@127.0.0.2"]).await;
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    assert_eq!(
        written["pools"]["web"]["backends"],
        json!([{"url": url, "discovery": "dns"}])
    );
}

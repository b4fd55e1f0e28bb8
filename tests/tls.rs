//! TLS with real certificates made by the tests: the TLS listener (HTTP/2 and HTTP/1.1 clients
//! by ALPN, `X-Forwarded-Proto`, the plain listener next to it unchanged, a bad certificate or
//! key at start is exit 2 naming the file, SIGHUP re-reads the pair for new handshakes and a bad
//! pair on reload keeps the old one) and `https://` backends (trusted through
//! `backends.ca_file`; an untrusted one is a connect failure).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use actix_web::http::Version;
use common::backend::TestBackend;
use common::tls::TestCa;
use common::{fresh_dir, settings_for};
use loadbalancer::Settings;

/// Settings in front of `backend` with a TLS listener serving a certificate of `ca`.
fn tls_settings(backend: &TestBackend, ca: &TestCa) -> Settings {
    let mut settings = settings_for(&[backend.url()]);
    ca.add_listener(&mut settings);
    settings
}

/// Starts a balancer with both listeners; returns (plain, TLS) addresses.
fn start_both(settings: &Settings) -> (SocketAddr, SocketAddr, loadbalancer::BalancerHandle) {
    let plain = TcpListener::bind("127.0.0.1:0").expect("bind");
    let tls = TcpListener::bind("127.0.0.1:0").expect("bind");
    let balancer = loadbalancer::start_listeners(settings, plain, Some(tls)).expect("starts");
    let (addr, tls_addr) = (balancer.local_addr, balancer.tls_addr.expect("TLS address"));
    let handle = balancer.handle();
    actix_rt::spawn(async move {
        let _ = balancer.run().await;
    });
    (addr, tls_addr, handle)
}

/// An HTTP/2 client is served HTTP/2, an HTTP/1.1-only client HTTP/1.1, both proxied with
/// `X-Forwarded-Proto: https`; the balancer's own routes answer on TLS too; the plain listener
/// still says `http`.
#[actix_web::test]
async fn serves_http2_and_http1_over_tls_with_forwarded_proto() {
    let backend = TestBackend::start("b");
    let ca = TestCa::new("test CA");
    let (plain, tls, _handle) = start_both(&tls_settings(&backend, &ca));
    for (alpn, version) in [
        (vec![b"h2".as_slice(), b"http/1.1"], Version::HTTP_2),
        (vec![b"http/1.1".as_slice()], Version::HTTP_11),
    ] {
        let mut res = ca
            .client(&alpn)
            .get(format!("https://localhost:{}/over-tls", tls.port()))
            .send()
            .await
            .expect("TLS response");
        assert_eq!((res.status().as_u16(), res.version()), (200, version));
        let body = res.body().await.expect("body");
        assert!(
            String::from_utf8_lossy(&body).contains("\"backend\":\"b\""),
            "{body:?}"
        );
        let status = ca
            .client(&alpn)
            .get(format!("https://127.0.0.1:{}/lb/api/status", tls.port()))
            .send()
            .await
            .expect("status over TLS");
        assert_eq!(status.status(), 200);
    }
    let seen = backend.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(
            request.headers.get("x-forwarded-proto").expect("xfp"),
            "https"
        );
    }
    let res = common::client()
        .get(format!("http://{plain}/plain"))
        .send()
        .await
        .expect("plain response");
    assert_eq!(res.status(), 200);
    let last = backend.requests().pop().expect("plain request");
    assert_eq!(last.headers.get("x-forwarded-proto").expect("xfp"), "http");
}

/// A client that does not trust the certificate's issuer fails the handshake; nothing is
/// proxied.
#[actix_web::test]
async fn a_client_that_does_not_trust_the_certificate_gets_no_answer() {
    let backend = TestBackend::start("b");
    let (ca, stranger) = (TestCa::new("ours"), TestCa::new("someone else"));
    let (_, tls, _handle) = start_both(&tls_settings(&backend, &ca));
    let result = stranger
        .client(&[b"h2"])
        .get(format!("https://localhost:{}/", tls.port()))
        .send()
        .await;
    assert!(result.is_err(), "an untrusted certificate was accepted");
    assert!(backend.requests().is_empty());
}

/// A missing or broken certificate or key at start is exit 2 naming the key and the file; a
/// key of another certificate too.
#[test]
fn a_bad_certificate_or_key_is_exit_2_naming_the_file() {
    use common::process::{run_to_exit, write};
    let dir = fresh_dir();
    let ca = TestCa::new("test CA");
    let (cert, key) = ca.server_files(&dir, "good");
    let (_, other_key) = ca.server_files(&dir, "other");
    write(&dir, "pool.json", r#"{"backends": ["http://127.0.0.1:9"]}"#);
    write(
        &dir,
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    let text = |path: &std::path::Path| path.to_str().expect("utf-8").to_owned();
    let (cert, key, other_key) = (text(&cert), text(&key), text(&other_key));
    let cases = [
        ("missing.crt", key.as_str(), "tls.cert", "missing.crt"),
        ("broken.pem", key.as_str(), "tls.cert", "broken.pem"),
        (cert.as_str(), "missing.key", "tls.key", "missing.key"),
        (
            cert.as_str(),
            other_key.as_str(),
            "tls.key",
            "does not belong",
        ),
    ];
    for (cert, key, setting, named) in cases {
        write(
            &dir,
            "Settings.toml",
            &format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[backends]\nfile = \"pool.json\"\n\
                 [simulation]\nenabled = false\n[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{cert}\"\nkey = \"{key}\"\n"
            ),
        );
        let (code, stderr) = run_to_exit(&dir, &["--settings", "Settings.toml"], &[]);
        assert_eq!(code, Some(2), "{cert} {key}: {stderr}");
        assert!(
            stderr.contains(setting) && stderr.contains(named),
            "{stderr}"
        );
    }
}

/// SIGHUP re-reads the certificate: a new handshake gets the new one (a client trusting only
/// the new CA gets through). A bad pair on the next SIGHUP is logged and the new one stays.
#[actix_web::test]
async fn sighup_reloads_the_certificate_for_new_handshakes() {
    use common::process::{signal, write};
    let dir = fresh_dir();
    let (first_ca, second_ca) = (TestCa::new("first"), TestCa::new("second"));
    first_ca.server_files(&dir, "server");
    let backend = common::process::ok_backend();
    let (mut child, log, tls_port) = launch_with_tls(&dir, backend);
    let url = format!("https://localhost:{tls_port}/");
    let answers = |ca: &TestCa| {
        // A client of its own per call: each one makes a new handshake.
        let request = ca.client(&[b"http/1.1"]).get(url.clone()).send();
        async move { request.await.is_ok_and(|res| res.status() == 200) }
    };
    assert!(answers(&first_ca).await);
    assert!(!answers(&second_ca).await);
    second_ca.server_files(&dir, "server");
    signal(&child, "HUP");
    let until = Instant::now() + Duration::from_secs(5);
    while !answers(&second_ca).await {
        assert!(Instant::now() < until, "the new certificate is not served");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !answers(&first_ca).await,
        "the old certificate is still served"
    );
    write(&dir, "server.key", "not a key");
    signal(&child, "HUP");
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let line = log.recv_timeout(Duration::from_secs(5)).expect("log line");
        if line.contains("TLS certificate not reloaded") && line.contains("server.key") {
            break;
        }
        assert!(Instant::now() < until, "the bad pair was not reported");
    }
    assert!(answers(&second_ca).await, "the good pair was dropped");
    signal(&child, "TERM");
    let status = common::process::wait_with_deadline(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

/// An `https://` backend whose certificate's CA is in `backends.ca_file` is proxied to and
/// probed over TLS.
#[actix_web::test]
async fn an_https_backend_trusted_through_ca_file_serves() {
    let ca = TestCa::new("backend CA");
    let backend = ca.https_backend();
    let mut settings = settings_for(&[format!("https://{backend}")]);
    settings.backends.ca_file = Some(ca.ca_file(&fresh_dir(), "ca"));
    settings.health.interval = Duration::from_millis(100);
    let lb = common::start_balancer(&settings);
    let mut res = common::client()
        .get(lb.url("/through"))
        .send()
        .await
        .expect("response");
    assert_eq!(res.status(), 200);
    assert_eq!(res.body().await.expect("body"), "https backend");
    common::eventually("a good probe over TLS", Duration::from_secs(3), || {
        let member = lb.handle.members().pop()?;
        member.last_probe.filter(|p| p.ok).map(|_| ())
    })
    .await;
}

/// A backend whose certificate is not trusted is a connect failure: a JSON 502 to the client,
/// and the backend goes down (passively, and by its probes), with the reason logged.
#[actix_web::test]
async fn an_untrusted_https_backend_is_a_connect_failure() {
    let (ours, theirs) = (TestCa::new("ours"), TestCa::new("theirs"));
    let backend = theirs.https_backend();
    let mut settings = settings_for(&[format!("https://{backend}")]);
    settings.backends.ca_file = Some(ours.ca_file(&fresh_dir(), "ca"));
    settings.health.interval = Duration::from_millis(200);
    let lb = common::start_balancer(&settings);
    let (status, body) = common::call(&lb, "GET", "/", None).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], 502);
    common::eventually("the backend goes down", Duration::from_secs(10), || {
        (!lb.handle.members().pop()?.healthy).then_some(())
    })
    .await;
    let probe = common::eventually("a failed probe", Duration::from_secs(5), || {
        lb.handle.members().pop()?.last_probe.filter(|p| !p.ok)
    })
    .await;
    let reason = probe.error.unwrap_or_default().to_lowercase();
    assert!(
        reason.contains("certificate") || reason.contains("issuer"),
        "{reason}"
    );
}

/// HTTP/2 request-smuggling shapes never reach a backend: a request carrying
/// `transfer-encoding` or `connection` (connection-specific, RFC 9113 §8.2.2) is refused on the
/// stream, while the same request without it is proxied. Frames are written by hand, because
/// HTTP/2 client libraries refuse to send such headers.
#[actix_web::test]
async fn http2_smuggling_shapes_never_reach_a_backend() {
    let backend = TestBackend::start("b");
    let ca = TestCa::new("test CA");
    let (_, tls, _handle) = start_both(&tls_settings(&backend, &ca));
    let config = ca.raw_client_config(&[b"h2"]);
    // On the blocking pool, so this thread keeps running the balancer's actors meanwhile.
    let exchange = move |extra: Option<(&'static str, &'static str)>| {
        let config = std::sync::Arc::clone(&config);
        actix_rt::task::spawn_blocking(move || h2_get(tls, config, extra))
    };
    let plain = exchange(None).await.expect("h2 exchange");
    assert!(plain.iter().any(|f| f == ":status 200"), "{plain:?}");
    assert_eq!(backend.requests().len(), 1);
    for shape in [
        ("transfer-encoding", "chunked"),
        ("connection", "keep-alive"),
    ] {
        let answer = exchange(Some(shape)).await.expect("h2 exchange");
        assert!(
            !answer.iter().any(|f| f == ":status 200"),
            "{shape:?}: {answer:?}"
        );
        assert!(
            answer
                .iter()
                .any(|f| f.starts_with("RST_STREAM") || f.starts_with("GOAWAY")),
            "{shape:?} was not refused: {answer:?}"
        );
    }
    assert_eq!(
        backend.requests().len(),
        1,
        "a smuggling shape reached the backend"
    );
}

/// One HTTP/2 GET / over TLS, with an optional extra header written as a literal; returns what
/// came back: `:status N` for a response, or the frame type that refused it.
fn h2_get(
    addr: SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
    extra: Option<(&str, &str)>,
) -> Vec<String> {
    use std::io::{Read, Write};
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let connection = rustls::ClientConnection::new(config, name).expect("client");
    let socket = std::net::TcpStream::connect(addr).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(connection, socket);
    let mut block = vec![0x82, 0x87, 0x84]; // :method GET, :scheme https, :path / (static table)
    let authority = format!("localhost:{}", addr.port());
    block.extend([0x41, authority.len() as u8]); // :authority, literal value
    block.extend(authority.as_bytes());
    if let Some((name, value)) = extra {
        block.extend([0x00, name.len() as u8]); // literal without indexing, new name
        block.extend(name.as_bytes());
        block.push(value.len() as u8);
        block.extend(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend([0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // empty SETTINGS
    let len = block.len();
    out.extend([
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        0x1,
        0x5,
        0,
        0,
        0,
        1,
    ]);
    out.extend(&block); // HEADERS, END_STREAM | END_HEADERS, stream 1
    tls.write_all(&out).expect("write frames");
    let mut seen = Vec::new();
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 16_384];
    while let Ok(n) = tls.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buffer.extend(&chunk[..n]);
        while buffer.len() >= 9 {
            let length = (usize::from(buffer[0]) << 16)
                | (usize::from(buffer[1]) << 8)
                | usize::from(buffer[2]);
            if buffer.len() < 9 + length {
                break;
            }
            let (kind, stream) = (
                buffer[3],
                u32::from_be_bytes([buffer[5], buffer[6], buffer[7], buffer[8]]) & 0x7fff_ffff,
            );
            let payload = buffer[9..9 + length].to_vec();
            buffer.drain(..9 + length);
            match kind {
                0x1 if stream == 1 => {
                    // The first header of a response is :status; 0x88 is "200" in the static table.
                    let status = if payload.first() == Some(&0x88) {
                        "200".to_owned()
                    } else {
                        format!("{:02x?}", payload.first())
                    };
                    seen.push(format!(":status {status}"));
                }
                0x3 => seen.push(format!("RST_STREAM {stream}")),
                0x7 => seen.push("GOAWAY".to_owned()),
                0x4 if buffer.is_empty() && seen.is_empty() => {
                    // Acknowledge the server's SETTINGS so it goes on.
                    let _ = tls.write_all(&[0, 0, 0, 0x4, 0x1, 0, 0, 0, 0]);
                }
                _ => {}
            }
        }
        if seen
            .iter()
            .any(|s| s.starts_with(":status") || s.starts_with("RST_STREAM") || s == "GOAWAY")
        {
            break;
        }
    }
    seen
}

/// Starts the binary in `dir` (where `server.crt` and `server.key` are) in front of `backend`
/// with a TLS listener; its log, and the TLS port it logged.
fn launch_with_tls(
    dir: &std::path::Path,
    backend: SocketAddr,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>, u16) {
    let tls = "[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"server.crt\"\nkey = \"server.key\"\n";
    common::process::write_config(dir, backend, "", tls);
    let (child, _, log) = common::process::launch_logged(dir, &[]);
    let port = logged_tls_port(&log);
    (child, log, port)
}

/// The TLS port the binary logs at start.
fn logged_tls_port(log: &std::sync::mpsc::Receiver<String>) -> u16 {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let line = log.recv_timeout(Duration::from_secs(10)).expect("log line");
        if let Some(rest) = line.split("TLS listening on ").nth(1) {
            let addr: SocketAddr = rest
                .split_whitespace()
                .next()
                .expect("addr")
                .parse()
                .expect("addr");
            return addr.port();
        }
        assert!(Instant::now() < until, "no TLS address logged");
    }
}

/// SIGTERM with an idle HTTP/2 client and one whose request is under way: the request is
/// answered in full, both connections close, and the process exits well before its 10 s
/// grace (idle HTTP/2 connections used to hold the drain to the end).
#[actix_web::test]
async fn sigterm_closes_idle_http2_connections_at_once() {
    use common::process::{signal, slow_backend, wait_with_deadline};
    let dir = fresh_dir();
    let ca = TestCa::new("drain");
    ca.server_files(&dir, "server");
    let (backend, started) = slow_backend(Duration::from_millis(1500));
    let (mut child, _log, tls_port) = launch_with_tls(&dir, backend);
    let url = format!("https://localhost:{tls_port}/");
    let idle = ca.client(&[b"h2"]);
    let res = idle.get(format!("{url}first")).send().await.expect("first");
    assert_eq!(
        (res.status().as_u16(), res.version()),
        (200, Version::HTTP_2)
    );
    let busy = ca.client(&[b"h2"]);
    let request = busy.get(format!("{url}under-way")).send();
    let in_flight = actix_rt::spawn(async move {
        let mut res = request.await.expect("answered");
        let body = res.body().await.expect("body");
        (res.status().as_u16(), body)
    });
    common::eventually(
        "the request under way at the backend",
        Duration::from_secs(10),
        || {
            started
                .try_iter()
                .any(|line| line.contains("/under-way"))
                .then_some(())
        },
    )
    .await;
    let signalled = Instant::now();
    signal(&child, "TERM");
    let (status, body) = in_flight.await.expect("request task");
    assert_eq!((status, &body[..]), (200, &b"slow"[..]));
    let exit = wait_with_deadline(&mut child, Duration::from_secs(15));
    assert_eq!(exit.code(), Some(0));
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM"
    );
    drop((idle, busy));
}

//! The proxy against real backends on real sockets: order, methods, bodies, headers, framing.

mod common;

use std::time::Duration;

use actix_web::http::Method;
use actix_web::web::Bytes;
use common::backend::{pattern, TestBackend, GZIP_HELLO};
use common::{
    client, header_value, raw_exchange, settings_for, start_balancer, RawConnection, TestBalancer,
};

fn three_backends() -> (Vec<TestBackend>, TestBalancer) {
    let backends: Vec<TestBackend> = ["b1", "b2", "b3"]
        .iter()
        .map(|n| TestBackend::start(n))
        .collect();
    let urls: Vec<String> = backends.iter().map(TestBackend::url).collect();
    let balancer = start_balancer(&settings_for(&urls));
    (backends, balancer)
}

async fn served_by(client: &awc::Client, url: &str) -> String {
    let res = client.get(url).send().await.expect("response");
    assert_eq!(res.status(), 200);
    res.headers()
        .get("x-backend")
        .expect("x-backend")
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// Thirty sequential requests visit b1, b2, b3 in strict rotation.
#[actix_web::test]
async fn rotates_strictly_over_three_backends_for_thirty_requests() {
    let (_backends, lb) = three_backends();
    let client = client();
    let mut order = Vec::new();
    for _ in 0..30 {
        order.push(served_by(&client, &lb.url("/")).await);
    }
    let expected: Vec<String> = (0..30).map(|i| format!("b{}", i % 3 + 1)).collect();
    assert_eq!(order, expected);
    // A lease ends when its body stream is dropped, which may trail the last byte slightly.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let members = lb.handle.members();
        assert!(
            members.iter().all(|m| m.requests == 10 && m.failures == 0),
            "{members:?}"
        );
        if members.iter().all(|m| m.in_flight == 0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leases left behind: {members:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With b2 out of rotation the other two alternate strictly, and b2 gets nothing.
#[actix_web::test]
async fn skips_a_downed_backend_and_keeps_strict_alternation() {
    let (backends, lb) = three_backends();
    let changed = lb.handle.set_health(1, false, "test").await;
    assert!(changed);
    let client = client();
    let mut order = Vec::new();
    for _ in 0..12 {
        order.push(served_by(&client, &lb.url("/")).await);
    }
    let expected: Vec<String> = (0..12).map(|i| ["b1", "b3"][i % 2].to_owned()).collect();
    assert_eq!(order, expected);
    assert!(backends[1].requests().is_empty());
}

/// Every common method reaches the backend with the exact path and encoded query.
#[actix_web::test]
async fn forwards_methods_and_encoded_queries_byte_for_byte() {
    let backend = TestBackend::start("only");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let client = client();
    let target = "/echo/a%20b?q=caf%C3%A9&x=%2F%3F&empty=&plus=a+b";
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ];
    for method in &methods {
        let res = client
            .request(method.clone(), lb.url(target))
            .send_body("body")
            .await
            .expect("response");
        assert_eq!(res.status(), 200, "{method}");
    }
    let seen = backend.requests();
    assert_eq!(seen.len(), methods.len());
    for (got, method) in seen.iter().zip(&methods) {
        assert_eq!(&got.method, method);
        assert_eq!(got.target, target);
        assert_eq!(got.body, "body");
    }
}

/// A 10 MiB upload keeps its Content-Length upstream and a 10 MiB download arrives whole.
#[actix_web::test]
async fn ten_mib_upload_and_download_arrive_intact() {
    let backend = TestBackend::start("big");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let client = client();
    let data = Bytes::from(pattern(10 * 1024 * 1024));

    let mut res = client
        .post(lb.url("/echo"))
        .send_body(data.clone())
        .await
        .expect("upload");
    assert_eq!(res.status(), 200);
    let echoed = res.body().limit(64 << 20).await.expect("echo body");
    assert!(echoed == data, "echoed body differs");
    let seen = backend.requests();
    assert_eq!(
        seen[0].headers.get("content-length").expect("length"),
        "10485760"
    );
    assert!(seen[0].headers.get("transfer-encoding").is_none());
    assert!(seen[0].body == data);

    let mut res = client
        .get(lb.url("/bytes/10485760"))
        .send()
        .await
        .expect("download");
    assert_eq!(
        res.headers().get("content-length").expect("length"),
        "10485760"
    );
    let body = res.body().limit(64 << 20).await.expect("download body");
    assert!(body == data, "downloaded body differs");
}

/// A client that waits for `100 Continue` (as curl does for large uploads) gets it from the
/// balancer, sends its body, and the body reaches the backend whole; the backend is not asked
/// to continue a second time (the expectation is answered here, as nginx does).
#[actix_web::test]
async fn expect_continue_is_answered_here_and_the_body_streamed_on() {
    let backend = TestBackend::start("cont");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let addr = lb.addr;
    let data = pattern(300_000);
    let sent = data.clone();
    let (interim, head, echoed) = actix_web::rt::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let head = format!(
            "PUT /echo HTTP/1.1\r\nHost: up.test\r\nExpect: 100-continue\r\n\
             Content-Length: {}\r\n\r\n",
            sent.len()
        );
        stream.write_all(head.as_bytes()).expect("head");
        // Nothing of the body goes out before the interim answer (read with a deadline).
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("an interim answer in time");
            assert!(n > 0, "closed before answering");
            got.extend_from_slice(&buf[..n]);
        }
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("end") + 4;
        let interim = String::from_utf8_lossy(&got[..end]).to_string();
        assert!(got.len() == end, "nothing but the interim answer yet");
        stream.write_all(&sent).expect("body");
        let mut connection = RawConnection::from_stream(stream);
        let (head, body) = connection.read_response(false);
        (interim, head, body)
    })
    .await
    .expect("raw exchange");
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(echoed == data, "echoed body differs");
    let seen = &backend.requests()[0];
    assert!(seen.complete);
    assert!(seen.body == data);
    assert!(seen.headers.get("expect").is_none(), "{:?}", seen.headers);
}

/// A chunked upload arrives chunked, and a chunked download comes back chunked and whole.
#[actix_web::test]
async fn chunked_bodies_stay_chunked_both_ways() {
    let backend = TestBackend::start("chunky");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let client = client();
    let data = pattern(300_000);
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(10_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let res = client
        .post(lb.url("/upload"))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .expect("upload");
    assert_eq!(res.status(), 200);
    let seen = backend.requests();
    assert_eq!(
        seen[0].headers.get("transfer-encoding").expect("te"),
        "chunked"
    );
    assert!(seen[0].headers.get("content-length").is_none());
    assert!(seen[0].body == data);

    let mut res = client
        .get(lb.url("/chunked/300000"))
        .send()
        .await
        .expect("download");
    assert_eq!(
        res.headers().get("transfer-encoding").expect("te"),
        "chunked"
    );
    assert!(res.body().limit(1 << 20).await.expect("body") == data);
}

/// Two Set-Cookie stay two, a 302 stays a 302, and a gzip body passes byte for byte.
#[actix_web::test]
async fn passes_cookies_redirects_and_encoded_bodies_untouched() {
    let backend = TestBackend::start("misc");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let client = client();

    let res = client
        .get(lb.url("/cookies"))
        .send()
        .await
        .expect("cookies");
    let cookies: Vec<_> = res.headers().get_all("set-cookie").collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/"]);

    let res = client
        .get(lb.url("/redirect"))
        .send()
        .await
        .expect("redirect");
    assert_eq!(res.status(), 302);
    assert_eq!(
        res.headers().get("location").expect("location"),
        "/elsewhere"
    );

    let mut res = client
        .get(lb.url("/gzip"))
        .insert_header(("Accept-Encoding", "gzip"))
        .send()
        .await
        .expect("gzip");
    assert_eq!(
        res.headers().get("content-encoding").expect("encoding"),
        "gzip"
    );
    assert_eq!(res.body().await.expect("body"), GZIP_HELLO.as_slice());
    let seen = backend.requests();
    assert_eq!(seen[2].headers.get("accept-encoding").expect("ae"), "gzip");
}

/// A 204 carries no body or framing, so the next response on the same kept-alive connection
/// is intact; a HEAD answer keeps the backend's Content-Length and sends no body.
#[actix_web::test]
async fn no_content_and_head_leave_the_kept_alive_connection_clean() {
    let backend = TestBackend::start("raw");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let addr = lb.addr;
    let (no_content, head, last, rest) = actix_web::rt::task::spawn_blocking(move || {
        let mut conn = RawConnection::open(addr);
        let no_content = conn.exchange(b"GET /status/204 HTTP/1.1\r\nHost: t\r\n\r\n", true);
        let head = conn.exchange(b"HEAD /bytes/1234 HTTP/1.1\r\nHost: t\r\n\r\n", true);
        let last = conn.exchange(
            b"GET /bytes/5 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            false,
        );
        (no_content, head, last, conn.rest())
    })
    .await
    .expect("raw exchange");
    assert!(no_content.0.starts_with("HTTP/1.1 204"), "{}", no_content.0);
    assert!(
        header_value(&no_content.0, "content-length").is_none(),
        "{}",
        no_content.0
    );
    assert!(
        header_value(&no_content.0, "transfer-encoding").is_none(),
        "{}",
        no_content.0
    );
    assert!(
        header_value(&no_content.0, "content-type").is_none(),
        "{}",
        no_content.0
    );
    assert!(head.0.starts_with("HTTP/1.1 200"), "{}", head.0);
    assert_eq!(
        header_value(&head.0, "content-length"),
        Some("1234"),
        "{}",
        head.0
    );
    assert!(last.0.starts_with("HTTP/1.1 200"), "{}", last.0);
    assert_eq!(last.1, pattern(5));
    assert!(
        rest.is_empty(),
        "stray bytes: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Hop-by-hop headers and those named in Connection stay behind; X-Forwarded-* are set.
#[actix_web::test]
async fn strips_hop_by_hop_headers_and_appends_forwarded_for() {
    let backend = TestBackend::start("hdr");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let addr = lb.addr;
    let reply = actix_web::rt::task::spawn_blocking(move || {
        raw_exchange(
            addr,
            b"GET /h HTTP/1.1\r\nHost: shop.test\r\nConnection: close, X-Secret\r\n\
              Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n\
              Proxy-Connection: keep-alive\r\nX-Secret: 1\r\nX-Kept: yes\r\n\
              X-Forwarded-For: 203.0.113.9\r\n\r\n",
            Duration::from_secs(10),
        )
    })
    .await
    .expect("raw exchange");
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let seen = &backend.requests()[0];
    for gone in [
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "x-secret",
    ] {
        assert!(
            seen.headers.get(gone).is_none(),
            "{gone} reached the backend"
        );
    }
    assert_eq!(seen.headers.get("x-kept").expect("kept"), "yes");
    assert_eq!(seen.headers.get("host").expect("host"), "shop.test");
    assert_eq!(
        seen.headers.get("x-forwarded-for").expect("xff"),
        "203.0.113.9, 127.0.0.1"
    );
    assert_eq!(seen.headers.get("x-forwarded-proto").expect("xfp"), "http");
    assert_eq!(
        seen.headers.get("x-forwarded-host").expect("xfh"),
        "shop.test"
    );
}

/// The backend sees the client's `Date` once when it sent one and none when it did not — on
/// bodiless, sized and chunked requests alike, to `http://` and `https://` backends alike (the
/// request head is written the same way for both).
#[actix_web::test]
async fn date_reaches_the_backend_only_from_the_client() {
    let ca = common::tls::TestCa::new("backend CA");
    for backend in [
        TestBackend::start("date"),
        TestBackend::start_tls("date-tls", ca.server_config()),
    ] {
        let mut settings = settings_for(&[backend.url()]);
        settings.backends.ca_file = Some(ca.ca_file(&common::fresh_dir(), "ca"));
        let lb = start_balancer(&settings);
        dates_through(lb.addr, &backend).await;
    }
}

/// Four requests through the balancer at `addr`, checked at `backend`.
async fn dates_through(addr: std::net::SocketAddr, backend: &TestBackend) {
    let client_date = "Sun, 06 Nov 1994 08:49:37 GMT";
    let requests: Vec<Vec<u8>> = vec![
        b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        format!("GET /b HTTP/1.1\r\nHost: t\r\nDate: {client_date}\r\n\r\n").into_bytes(),
        b"POST /c HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
        format!(
            "POST /d HTTP/1.1\r\nHost: t\r\nDate: {client_date}\r\n\
             Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )
        .into_bytes(),
    ];
    let statuses = actix_web::rt::task::spawn_blocking(move || {
        let mut conn = RawConnection::open(addr);
        requests
            .iter()
            .map(|request| conn.exchange(request, false).0)
            .collect::<Vec<_>>()
    })
    .await
    .expect("raw exchanges");
    for status in &statuses {
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "{}: {status}",
            backend.name
        );
    }
    let seen = backend.requests();
    assert_eq!(seen.len(), 4, "{}", backend.name);
    for (request, expected) in seen
        .iter()
        .zip([None, Some(client_date), None, Some(client_date)])
    {
        let dates: Vec<_> = request.headers.get_all("date").collect();
        match expected {
            None => assert!(
                dates.is_empty(),
                "{} {}: {dates:?}",
                backend.name,
                request.target
            ),
            Some(date) => assert_eq!(dates, [date], "{} {}", backend.name, request.target),
        }
    }
    assert_eq!(&seen[2].body[..], b"abc");
    assert_eq!(&seen[3].body[..], b"abc");
}

/// An absolute-form target goes to the pool with only its path; CONNECT gets 405 JSON.
#[actix_web::test]
async fn absolute_form_goes_to_the_pool_and_connect_is_refused() {
    let backend = TestBackend::start("pool");
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let addr = lb.addr;
    let (absolute, connect) = actix_web::rt::task::spawn_blocking(move || {
        let absolute = raw_exchange(
            addr,
            b"GET http://other.invalid:9/abs?x=1 HTTP/1.1\r\nHost: other.invalid:9\r\nConnection: close\r\n\r\n",
            Duration::from_secs(10),
        );
        let connect = raw_exchange(
            addr,
            b"CONNECT other.invalid:443 HTTP/1.1\r\nHost: other.invalid:443\r\n\r\n",
            Duration::from_secs(5),
        );
        (absolute, connect)
    })
    .await
    .expect("raw exchanges");
    assert!(
        absolute.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&absolute)
    );
    assert_eq!(backend.requests()[0].target, "/abs?x=1");
    let text = String::from_utf8_lossy(&connect).to_string();
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{text}"
    );
    assert!(
        text.contains(r#"{"code":405,"message":"Method not allowed","request_id":""#),
        "{text}"
    );
    assert_eq!(backend.requests().len(), 1, "CONNECT reached a backend");
}

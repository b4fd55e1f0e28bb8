//! WebSocket tunnels with real peers (tungstenite clients and echo backends): many sockets with
//! text and large binary messages both ways, subprotocols passed through, bytes carried as they
//! are, closes from either side, the rate limit before any `101`, the idle timeout, the backend's
//! own answer when it refuses, failover of the handshake, counting in flight, `wss://` backends
//! and `wss://` clients on the TLS listener, the namespaces kept, SIGTERM on the binary,
//! and `Upgrade` values other than `websocket` proxied as plain HTTP.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::backend::TestBackend;
use common::tls::TestCa;
use common::ws::{raw_switching_backend, WsBackend, CLOSE_PLEASE, REFUSAL, SUBPROTOCOL};
use common::{eventually, fresh_dir, refused_addr, settings_for, start_balancer, RawConnection};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Socket = WebSocketStream<tokio::net::TcpStream>;

/// Opens a WebSocket through the balancer at `addr`, with extra handshake headers.
async fn connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> (
    Socket,
    tokio_tungstenite::tungstenite::handshake::client::Response,
) {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).expect("value"));
    }
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("WebSocket handshake through the balancer")
}

/// A WebSocket handshake for `path`, as raw HTTP/1.1.
fn handshake_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A WebSocket handshake for `path` in raw HTTP/1.1 on a connection of its own; returns the
/// answer's head, and its body as far as its `Content-Length` goes.
async fn raw_handshake(addr: SocketAddr, path: &str) -> (String, Vec<u8>) {
    let request = handshake_request(path);
    actix_web::rt::task::spawn_blocking(move || {
        RawConnection::open(addr).exchange(request.as_bytes(), false)
    })
    .await
    .expect("raw client")
}

/// The next data message, skipping control frames, within 10 s.
async fn next_message<S>(socket: &mut WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = Duration::from_secs(10);
    loop {
        let message = actix_rt::time::timeout(deadline, socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a well-formed frame");
        if message.is_text() || message.is_binary() || message.is_close() {
            return message;
        }
    }
}

/// Sends `len` bytes of socket `id`'s binary content and checks that they come back whole.
async fn echoes_binary<S>(socket: &mut WebSocketStream<S>, id: usize, len: usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let binary = binary_for(id, len);
    socket
        .send(Message::binary(binary.clone()))
        .await
        .expect("send");
    match next_message(socket).await {
        Message::Binary(echo) => assert!(echo == binary, "socket {id}: echo differs"),
        other => panic!("socket {id}: expected the binary echo, got {other:?}"),
    }
}

/// Whether the socket ends (close frame answered, or the stream finishes) within `deadline`.
async fn ends_within(socket: &mut Socket, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        match actix_rt::time::timeout(Duration::from_millis(100), socket.next()).await {
            Ok(None) | Ok(Some(Err(_))) => return true,
            Ok(Some(Ok(_))) | Err(_) => {}
        }
    }
    false
}

/// Content for one socket's binary message: distinct per socket, so crossed tunnels would show.
fn binary_for(socket: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + socket * 13) % 256) as u8)
        .collect()
}

/// Twenty sockets at once over two backends, each with a text and a 300 KB binary message both
/// ways; every echo comes back on its own socket, whole. The backends see the client's path and
/// query, the forwarding headers and the client's own handshake key.
#[actix_web::test]
async fn twenty_sockets_carry_text_and_large_binary_both_ways() {
    let backends = [WsBackend::start(), WsBackend::start()];
    let lb = start_balancer(&settings_for(&[backends[0].url(), backends[1].url()]));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let addr = lb.addr;
        tasks.push(actix_rt::spawn(async move {
            let (mut socket, response) = connect(addr, &format!("/chat/{i}?room=r{i}"), &[]).await;
            assert_eq!(response.status().as_u16(), 101);
            let text = format!("hello from socket {i}");
            socket
                .send(Message::text(text.clone()))
                .await
                .expect("send");
            assert_eq!(next_message(&mut socket).await, Message::text(text));
            echoes_binary(&mut socket, i, 300 * 1024).await;
            socket.close(None).await.expect("close");
            assert!(ends_within(&mut socket, Duration::from_secs(5)).await);
        }));
    }
    for task in tasks {
        task.await.expect("socket task");
    }
    let handshakes: Vec<_> = backends
        .iter()
        .flat_map(|b| b.handshakes.lock().expect("lock").clone())
        .collect();
    assert_eq!(handshakes.len(), 20);
    assert!(
        backends.iter().all(|b| b.handshake_count() >= 5),
        "both backends take tunnels"
    );
    for i in 0..20 {
        let (_, headers) = handshakes
            .iter()
            .find(|(uri, _)| uri == &format!("/chat/{i}?room=r{i}"))
            .unwrap_or_else(|| panic!("handshake of socket {i} with its path and query"));
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert!(headers.contains_key("sec-websocket-key"));
        assert!(
            !headers.contains_key("date"),
            "a Date the client never sent"
        );
        assert!(
            !headers.contains_key("content-length") && !headers.contains_key("transfer-encoding"),
            "a handshake has no body: {headers:?}"
        );
    }
    // Every tunnel's lease is given back once its sockets closed.
    eventually("tunnels to end", Duration::from_secs(5), || {
        (lb.handle.open_tunnels() == 0 && lb.handle.members().iter().all(|m| m.in_flight == 0))
            .then_some(())
    })
    .await;
}

/// The subprotocol and extensions offered reach the backend as sent, and the backend's choice
/// reaches the client: the balancer negotiates nothing itself.
#[actix_web::test]
async fn subprotocols_and_extensions_pass_through() {
    let backend = WsBackend::start();
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let offered = format!("chat.v2, {SUBPROTOCOL}");
    let (mut socket, response) = connect(
        lb.addr,
        "/sub",
        &[
            ("sec-websocket-protocol", &offered),
            ("sec-websocket-extensions", "x-test-extension; level=3"),
        ],
    )
    .await;
    assert_eq!(response.headers()["sec-websocket-protocol"], SUBPROTOCOL);
    let (_, headers) = backend.handshakes.lock().expect("lock")[0].clone();
    assert_eq!(headers["sec-websocket-protocol"], offered.as_str());
    assert_eq!(
        headers["sec-websocket-extensions"],
        "x-test-extension; level=3"
    );
    socket
        .send(Message::text("still echoing"))
        .await
        .expect("send");
    assert_eq!(
        next_message(&mut socket).await,
        Message::text("still echoing")
    );
}

/// After a `101` the tunnel carries bytes, not frames: bytes that are no WebSocket framing at
/// all come back exactly, and what the backend sent right behind its `101` reaches the client.
#[actix_web::test]
async fn the_tunnel_carries_bytes_as_they_are() {
    let backend = raw_switching_backend(b"early bytes\n");
    let lb = start_balancer(&settings_for(&[format!("http://{backend}")]));
    let addr = lb.addr;
    let sent: Vec<u8> = (0..300 * 1024).map(|i| (i % 253) as u8).collect();
    let expected = sent.clone();
    let (head, echoed) = actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
            .write_all(handshake_request("/raw").as_bytes())
            .expect("handshake");
        let mut received = Vec::new();
        let mut buf = [0u8; 65536];
        let head_end = loop {
            if let Some(i) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut buf).expect("read");
            assert!(n > 0, "closed before the 101");
            received.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&received[..head_end]).to_string();
        let mut rest = received.split_off(head_end);
        let writer = {
            let mut stream = stream.try_clone().expect("clone");
            std::thread::spawn(move || stream.write_all(&sent).expect("send bytes"))
        };
        let want = b"early bytes\n".len() + expected.len();
        while rest.len() < want {
            let n = stream.read(&mut buf).expect("read");
            assert!(n > 0, "closed after {} of {want} bytes", rest.len());
            rest.extend_from_slice(&buf[..n]);
        }
        writer.join().expect("writer");
        (head, rest)
    })
    .await
    .expect("raw client");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    assert!(head.contains("not-checked-by-the-balancer"), "{head}");
    assert_eq!(&echoed[..12], b"early bytes\n");
    assert!(
        echoed[12..] == sent_pattern(),
        "the bytes came back changed"
    );
}

fn sent_pattern() -> Vec<u8> {
    (0..300 * 1024).map(|i| (i % 253) as u8).collect()
}

/// A close from the client reaches the backend (its socket ends); a close from the backend
/// reaches the client (the close frame, then the end); neither leaves a tunnel open.
#[actix_web::test]
async fn closes_propagate_from_either_side() {
    let backend = WsBackend::start();
    let lb = start_balancer(&settings_for(&[backend.url()]));

    let (mut socket, _) = connect(lb.addr, "/client-closes", &[]).await;
    eventually("the backend's socket", Duration::from_secs(5), || {
        (backend.open.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    socket.close(None).await.expect("close");
    assert!(ends_within(&mut socket, Duration::from_secs(5)).await);
    eventually(
        "the backend to see the close",
        Duration::from_secs(5),
        || (backend.open.load(Ordering::SeqCst) == 0).then_some(()),
    )
    .await;

    let (mut socket, _) = connect(lb.addr, "/backend-closes", &[]).await;
    socket
        .send(Message::text(CLOSE_PLEASE))
        .await
        .expect("send");
    match next_message(&mut socket).await {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Normal);
            assert_eq!(frame.reason.as_str(), "asked to");
        }
        other => panic!("expected the backend's close, got {other:?}"),
    }
    assert!(ends_within(&mut socket, Duration::from_secs(5)).await);

    // A client that vanishes without a close frame ends the tunnel too.
    let (socket, _) = connect(lb.addr, "/vanishes", &[]).await;
    eventually("the backend's socket", Duration::from_secs(5), || {
        (backend.open.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    drop(socket);
    eventually("the tunnel to end", Duration::from_secs(5), || {
        (backend.open.load(Ordering::SeqCst) == 0 && lb.handle.open_tunnels() == 0).then_some(())
    })
    .await;
}

/// A handshake takes a token like any request: over the limit it is answered 429 with the JSON
/// error and never reaches a backend, and no `101` is sent.
#[actix_web::test]
async fn handshakes_are_rate_limited_before_any_switch() {
    let backend = WsBackend::start();
    let mut settings = settings_for(&[backend.url()]);
    settings.rate_limit.default_capacity = 1;
    settings.rate_limit.default_rate_per_sec = 0.01;
    let lb = start_balancer(&settings);
    let (mut first, _) = connect(lb.addr, "/limited", &[]).await;
    first.send(Message::text("in")).await.expect("send");
    assert_eq!(next_message(&mut first).await, Message::text("in"));
    let (head, body) = raw_handshake(lb.addr, "/limited").await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(
        common::header_value(&head, "upgrade").is_none(),
        "no switch: {head}"
    );
    assert!(
        common::header_value(&head, "retry-after").is_some(),
        "{head}"
    );
    let error: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
    assert_eq!(error["code"], 429);
    assert_eq!(error["message"], "Rate limit exceeded");
    assert_eq!(backend.handshake_count(), 1);
}

/// A tunnel with no byte either way for `server.tunnel_idle_timeout_secs` is closed; traffic
/// keeps it open.
#[actix_web::test]
async fn idle_tunnels_are_closed() {
    let backend = WsBackend::start();
    let mut settings = settings_for(&[backend.url()]);
    settings.server.tunnel_idle_timeout = Duration::from_secs(1);
    let lb = start_balancer(&settings);
    let (mut socket, _) = connect(lb.addr, "/idle", &[]).await;
    let opened = Instant::now();
    // Busy for twice the timeout: a message every 300 ms keeps it open.
    while opened.elapsed() < Duration::from_secs(2) {
        socket.send(Message::text("busy")).await.expect("send");
        assert_eq!(next_message(&mut socket).await, Message::text("busy"));
        actix_rt::time::sleep(Duration::from_millis(300)).await;
    }
    let quiet = Instant::now();
    assert!(ends_within(&mut socket, Duration::from_secs(5)).await);
    let after = quiet.elapsed();
    assert!(
        after >= Duration::from_millis(700),
        "closed {after:?} after the last byte, before the 1 s timeout"
    );
    eventually(
        "the backend's socket to end",
        Duration::from_secs(5),
        || (backend.open.load(Ordering::SeqCst) == 0).then_some(()),
    )
    .await;
}

/// A backend that does not switch protocols: its answer (status, headers, body) goes to the
/// client as it came, whether its body has a length or ends with the connection.
#[actix_web::test]
async fn a_backend_that_does_not_switch_is_answered_as_it_is() {
    let backend = WsBackend::start();
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let addr = lb.addr;
    let refused = |path: &'static str| {
        actix_web::rt::task::spawn_blocking(move || {
            let mut conn = RawConnection::open(addr);
            let request = handshake_request(path);
            let (head, _) = conn.exchange(request.as_bytes(), true);
            (head, String::from_utf8_lossy(&conn.rest()).to_string())
        })
    };
    let (head, body) = refused("/forbidden/sized").await.expect("raw client");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(
        common::header_value(&head, "x-refused-by"),
        Some("ws-backend")
    );
    assert_eq!(
        common::header_value(&head, "content-length"),
        Some(REFUSAL.len().to_string().as_str())
    );
    assert_eq!(body, REFUSAL);

    let (head, body) = refused("/forbidden/to-close").await.expect("raw client");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // Ended by closing at the backend; so at the balancer, and not labelled chunked.
    assert_eq!(common::header_value(&head, "transfer-encoding"), None);
    assert_eq!(common::header_value(&head, "connection"), Some("close"));
    assert_eq!(body, REFUSAL);
    assert_eq!(backend.handshake_count(), 2);
    assert_eq!(lb.handle.open_tunnels(), 0);
}

/// A handshake whose first backend refuses the connection is sent to the next one; with none
/// left it is a JSON 502, never a 101.
#[actix_web::test]
async fn handshakes_fail_over_and_end_in_json_errors() {
    let backend = WsBackend::start();
    let dead = refused_addr();
    let mut settings = settings_for(&[format!("http://{dead}"), backend.url()]);
    settings.health.interval = Duration::from_secs(3600);
    let lb = start_balancer(&settings);
    for i in 0..2 {
        let (mut socket, _) = connect(lb.addr, &format!("/failover/{i}"), &[]).await;
        socket.send(Message::text("through")).await.expect("send");
        assert_eq!(next_message(&mut socket).await, Message::text("through"));
    }
    assert_eq!(backend.handshake_count(), 2);

    let only_dead = start_balancer(&{
        let mut s = settings_for(&[format!("http://{dead}")]);
        s.health.interval = Duration::from_secs(3600);
        s
    });
    let (head, body) = raw_handshake(only_dead.addr, "/nowhere").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let error: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
    assert!(error["message"]
        .as_str()
        .expect("error")
        .contains("Bad gateway"));
}

/// An open tunnel counts as in flight on its backend (and in the metrics) until it closes.
#[actix_web::test]
async fn open_tunnels_count_as_in_flight() {
    let backend = WsBackend::start();
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let (mut socket, _) = connect(lb.addr, "/counted", &[]).await;
    assert_eq!(lb.handle.members()[0].in_flight, 1);
    assert_eq!(lb.handle.open_tunnels(), 1);
    let metrics = common::client()
        .get(lb.url("/lb/metrics"))
        .send()
        .await
        .expect("metrics")
        .body()
        .await
        .expect("body");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("lb_websocket_tunnels_open 1"), "{metrics}");
    assert!(
        metrics.contains("lb_websocket_tunnels_total 1"),
        "{metrics}"
    );
    socket.close(None).await.expect("close");
    assert!(ends_within(&mut socket, Duration::from_secs(5)).await);
    eventually("the lease to be given back", Duration::from_secs(5), || {
        (lb.handle.members()[0].in_flight == 0 && lb.handle.open_tunnels() == 0).then_some(())
    })
    .await;
}

/// A `wss://`-style backend: the tunnel's backend side is TLS, verified against `ca_file`.
#[actix_web::test]
async fn tunnels_reach_https_backends() {
    let ca = TestCa::new("tunnel CA");
    let backend = WsBackend::start_tls(ca.server_config());
    let mut settings = settings_for(&[format!("https://localhost:{}", backend.addr.port())]);
    settings.backends.ca_file = Some(ca.ca_file(&fresh_dir(), "ca"));
    settings.health.interval = Duration::from_secs(3600);
    let lb = start_balancer(&settings);
    let (mut socket, _) = connect(lb.addr, "/secure", &[]).await;
    echoes_binary(&mut socket, 1, 100 * 1024).await;
    assert_eq!(backend.handshake_count(), 1);
}

/// `Upgrade` values other than `websocket` (here `h2c`) are never tunnelled: the request is
/// proxied as plain HTTP/1.1 without the header and answered `Connection: close` (actix-http
/// keeps no connection alive that asked for an upgrade). `Upgrade: websocket` on a POST is
/// refused with a JSON 400 and reaches no backend.
#[actix_web::test]
async fn other_upgrades_are_proxied_as_plain_requests() {
    let plain = TestBackend::start("plain");
    let lb = start_balancer(&settings_for(&[plain.url()]));
    let addr = lb.addr;
    let (h2c, closed, refused) = actix_web::rt::task::spawn_blocking(move || {
        let mut conn = RawConnection::open(addr);
        let h2c = conn.exchange(
            b"GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
            false,
        );
        let closed = conn.closed_within(Duration::from_secs(5));
        let refused = RawConnection::open(addr).exchange(
            b"POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Content-Length: 0\r\n\r\n",
            false,
        );
        (h2c, closed, refused)
    })
    .await
    .expect("raw client");
    assert!(h2c.0.starts_with("HTTP/1.1 200"), "{}", h2c.0);
    assert_eq!(common::header_value(&h2c.0, "connection"), Some("close"));
    assert_eq!(common::header_value(&h2c.0, "x-backend"), Some("plain"));
    assert!(closed, "the connection closes after the answer");
    let received = plain.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].target, "/h2c");
    assert!(!received[0].headers.contains_key("upgrade"));
    assert!(!received[0].headers.contains_key("http2-settings"));
    assert!(refused.0.starts_with("HTTP/1.1 400"), "{}", refused.0);
    let error: serde_json::Value = serde_json::from_slice(&refused.1).expect("JSON error");
    assert!(error["message"]
        .as_str()
        .expect("message")
        .contains("WebSocket handshake"));
    assert_eq!(plain.requests().len(), 1);
}

/// `/lb/` and `/clients` stay the balancer's even for a WebSocket handshake: answered by it,
/// never tunnelled or sent to a backend.
#[actix_web::test]
async fn the_balancer_namespaces_are_never_tunnelled() {
    let backend = WsBackend::start();
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let addr = lb.addr;
    let heads = actix_web::rt::task::spawn_blocking(move || {
        [
            "/lb/health",
            "/lb/no-such-route",
            "/clients",
            "/lb/api/events",
        ]
        .map(|path| {
            let mut conn = RawConnection::open(addr);
            let request = handshake_request(path);
            let (head, _) = conn.exchange(request.as_bytes(), true);
            (path, head)
        })
    })
    .await
    .expect("raw client");
    for (path, head) in heads {
        assert!(!head.starts_with("HTTP/1.1 101"), "{path}: {head}");
        assert!(!head.contains("x-backend"), "{path}: {head}");
    }
    assert_eq!(backend.handshake_count(), 0);
}

/// The real binary with open tunnels: SIGTERM starts the drain, the tunnels keep carrying
/// messages through the grace and are closed when it ends, and the process exits 0.
#[test]
fn sigterm_closes_open_tunnels_at_the_end_of_the_grace_and_exits_0() {
    use common::process::{launch_logged, signal, wait_with_deadline, write};
    use tokio_tungstenite::tungstenite;

    let backend = WsBackend::start();
    let dir = fresh_dir();
    write(
        &dir,
        "pool.json",
        &format!(r#"{{"backends": ["http://{}"]}}"#, backend.addr),
    );
    write(
        &dir,
        "Settings.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\nshutdown_timeout_secs = 2\n\
         [backends]\nfile = \"pool.json\"\n[simulation]\nenabled = false\n",
    );
    let (mut child, addr, log) = launch_logged(&dir, &[]);
    let mut sockets: Vec<_> = (0..3)
        .map(|i| {
            let tcp = TcpStream::connect(addr).expect("connect");
            tcp.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let (mut socket, _) = tungstenite::client(format!("ws://{addr}/drain/{i}"), tcp)
                .expect("handshake through the binary");
            socket.send(Message::text("before")).expect("send");
            assert_eq!(socket.read().expect("echo"), Message::text("before"));
            socket
        })
        .collect();
    signal(&child, "TERM");
    let signalled = Instant::now();
    // Draining: the open tunnels still carry messages.
    sockets[0].send(Message::text("during")).expect("send");
    assert_eq!(sockets[0].read().expect("echo"), Message::text("during"));
    for socket in &mut sockets {
        loop {
            match socket.read() {
                Ok(message) if message.is_close() => {}
                Ok(message) => panic!("unexpected {message:?}"),
                Err(_) => break,
            }
        }
    }
    let closed_after = signalled.elapsed();
    assert!(
        closed_after >= Duration::from_millis(1500),
        "tunnels closed {closed_after:?} after SIGTERM, before the 2 s grace"
    );
    let status = wait_with_deadline(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    let lines: Vec<String> = log.try_iter().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("closing 3 open WebSocket tunnel(s)")),
        "{lines:#?}"
    );
}

/// Once a drain has begun no new tunnel is opened (JSON 503), while an open one still works.
#[actix_web::test]
async fn no_new_tunnels_while_draining() {
    let backend = WsBackend::start();
    let lb = start_balancer(&settings_for(&[backend.url()]));
    let (mut open, _) = connect(lb.addr, "/before", &[]).await;
    lb.handle.begin_drain();
    let (head, body) = raw_handshake(lb.addr, "/during").await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let error: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
    assert_eq!(error["code"], 503);
    assert_eq!(backend.handshake_count(), 1);
    open.send(Message::text("still here")).await.expect("send");
    assert_eq!(next_message(&mut open).await, Message::text("still here"));
}

/// A `wss://` client on the TLS listener (HTTP/1.1 by ALPN): the tunnel works the same, and
/// the backend is told `X-Forwarded-Proto: https`.
#[actix_web::test]
async fn tunnels_work_on_the_tls_listener() {
    let backend = WsBackend::start();
    let ca = TestCa::new("listener CA");
    let mut settings = settings_for(&[backend.url()]);
    ca.add_listener(&mut settings);
    let plain = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let tls = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let balancer = loadbalancer::start_listeners(&settings, plain, Some(tls)).expect("starts");
    let tls_addr = balancer.tls_addr.expect("TLS address");
    actix_rt::spawn(async move {
        let _ = balancer.run().await;
    });

    let tcp = tokio::net::TcpStream::connect(tls_addr)
        .await
        .expect("connect");
    let connector = tokio_rustls::TlsConnector::from(ca.raw_client_config(&[b"http/1.1"]));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let stream = connector.connect(name, tcp).await.expect("TLS handshake");
    let request = format!("wss://localhost:{}/secure-client", tls_addr.port())
        .into_client_request()
        .expect("request");
    let (mut socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("WebSocket handshake over TLS");
    assert_eq!(response.status().as_u16(), 101);
    echoes_binary(&mut socket, 2, 300 * 1024).await;
    let (_, headers) = backend.handshakes.lock().expect("lock")[0].clone();
    assert_eq!(headers["x-forwarded-proto"], "https");
}

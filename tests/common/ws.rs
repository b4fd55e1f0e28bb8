//! WebSocket peers for the tunnel tests, from tungstenite (not actix, so a tunnel that broke or
//! re-encoded frames would show): an echo backend on its own thread and actix system (plain or
//! TLS) that records each handshake, and a raw backend that switches protocols and then echoes
//! bytes that are not WebSocket frames at all.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Sent by a client, it makes the echo backend close the WebSocket itself.
pub const CLOSE_PLEASE: &str = "close please";
/// The body of the echo backend's `403` to handshakes for paths under `/forbidden` (with a
/// `Content-Length` for `/forbidden/sized`, else ended by closing).
pub const REFUSAL: &str = "no sockets here";
/// The subprotocol the echo backend picks when a client offers it.
pub const SUBPROTOCOL: &str = "chat.v1";

/// A WebSocket echo backend: text and binary messages come back as they went.
pub struct WsBackend {
    pub addr: SocketAddr,
    /// The headers of every handshake received, in order.
    pub handshakes: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    /// WebSockets open now.
    pub open: Arc<AtomicUsize>,
}

impl WsBackend {
    pub fn start() -> Self {
        Self::serve(None)
    }

    /// Over TLS with `config` (a `wss://` backend).
    pub fn start_tls(config: rustls::ServerConfig) -> Self {
        Self::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many handshakes arrived.
    pub fn handshake_count(&self) -> usize {
        self.handshakes.lock().expect("lock").len()
    }

    fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicUsize::new(0));
        let (seen, counter) = (Arc::clone(&handshakes), Arc::clone(&open));
        thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                while let Ok((tcp, _)) = listener.accept().await {
                    let (seen, counter, tls) =
                        (Arc::clone(&seen), Arc::clone(&counter), tls.clone());
                    actix_rt::spawn(async move {
                        match tls {
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(tcp).await {
                                    echo(stream, seen, counter).await;
                                }
                            }
                            None => echo(tcp, seen, counter).await,
                        }
                    });
                }
            });
        });
        Self {
            addr,
            handshakes,
            open,
        }
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    open: Arc<AtomicUsize>,
) {
    // The callback's error type is tungstenite's (a whole HTTP response), not ours to shrink.
    #[allow(clippy::result_large_err)]
    let record = |request: &Request, mut response: Response| {
        seen.lock()
            .expect("lock")
            .push((request.uri().to_string(), request.headers().clone()));
        if request.uri().path().starts_with("/forbidden") {
            let refusal = ErrorResponse::new(Some(REFUSAL.to_owned()));
            let (mut parts, body) = refusal.into_parts();
            parts.status = StatusCode::FORBIDDEN;
            parts
                .headers
                .insert("x-refused-by", HeaderValue::from_static("ws-backend"));
            if request.uri().path() == "/forbidden/sized" {
                parts
                    .headers
                    .insert("content-length", HeaderValue::from(REFUSAL.len()));
            }
            return Err(ErrorResponse::from_parts(parts, body));
        }
        let offered = request
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if offered.split(',').any(|p| p.trim() == SUBPROTOCOL) {
            response.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static(SUBPROTOCOL),
            );
        }
        Ok(response)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await else {
        return;
    };
    open.fetch_add(1, Ordering::SeqCst);
    while let Some(Ok(message)) = ws.next().await {
        if message.to_text().is_ok_and(|text| text == CLOSE_PLEASE) {
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "asked to".into(),
            };
            let _ = ws.close(Some(frame)).await;
        } else if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
        // Pings are answered by tungstenite; a close is answered and then ends the stream.
    }
    open.fetch_sub(1, Ordering::SeqCst);
}

/// A backend that answers any request with a `101` (and `early` right behind the head, in the
/// same write), then echoes whatever bytes come, on a plain thread.
pub fn raw_switching_backend(early: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let mut answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                    Connection: Upgrade\r\nSec-WebSocket-Accept: not-checked-by-the-balancer\r\n\r\n"
                    .to_vec();
                answer.extend_from_slice(early);
                if stream.write_all(&answer).is_err() {
                    return;
                }
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

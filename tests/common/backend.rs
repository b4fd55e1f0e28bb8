//! A real HTTP backend for tests: actix-web on `127.0.0.1:0` that records what it received
//! and answers by path (`/bytes/N`, `/chunked/N`, `/status/N`, `/cookies`, `/redirect`,
//! `/gzip`, `/slow/MS`, `/echo`, anything else: a JSON line naming itself). Every answer
//! carries `X-Backend: <name>`.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;

/// One request as the backend saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whether the body arrived in full (false when its framing broke off or was malformed).
    pub complete: bool,
}

/// A running test backend.
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    /// Requests received, health probes excepted.
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Health probes received.
    pub probes: Arc<AtomicUsize>,
    /// The path of every health probe, in order.
    pub probe_paths: Arc<Mutex<Vec<String>>>,
    handle: ServerHandle,
    /// Speaks HTTPS.
    tls: bool,
}

impl TestBackend {
    /// Starts a backend named `name` (inside the current actix system).
    pub fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        Self::start_on(name, listener)
    }

    /// Starts a backend on a given listener (to restart one on its old port).
    pub fn start_on(name: &str, listener: TcpListener) -> Self {
        Self::serve(name, listener, None)
    }

    /// Starts a backend that speaks HTTPS with `config` on a given listener.
    pub fn start_tls_on(name: &str, listener: TcpListener, config: rustls::ServerConfig) -> Self {
        Self::serve(name, listener, Some(config))
    }

    /// Starts a backend that speaks HTTPS with `config` (reached as `https://127.0.0.1:port`).
    pub fn start_tls(name: &str, config: rustls::ServerConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        Self::serve(name, listener, Some(config))
    }

    fn serve(name: &str, listener: TcpListener, tls: Option<rustls::ServerConfig>) -> Self {
        let addr = listener.local_addr().expect("addr");
        let tls_on = tls.is_some();
        let received = Arc::new(Mutex::new(Vec::new()));
        let probes = Arc::new(AtomicUsize::new(0));
        let probe_paths = Arc::new(Mutex::new(Vec::new()));
        let state = web::Data::new(State {
            name: name.to_owned(),
            received: Arc::clone(&received),
            probes: Arc::clone(&probes),
            probe_paths: Arc::clone(&probe_paths),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(answer))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1);
        let server = match tls {
            None => server.listen(listener),
            Some(config) => server.listen_rustls_0_23(listener, config),
        }
        .expect("listen")
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Self {
            name: name.to_owned(),
            addr,
            received,
            probes,
            probe_paths,
            handle,
            tls: tls_on,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// The request targets received so far, in order.
    pub fn targets(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.target).collect()
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

struct State {
    name: String,
    received: Arc<Mutex<Vec<Received>>>,
    probes: Arc<AtomicUsize>,
    probe_paths: Arc<Mutex<Vec<String>>>,
}

/// Deterministic content for `/bytes/N` and `/chunked/N`.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn answer(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    let mut body = web::BytesMut::new();
    let mut complete = true;
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    let body = body.freeze();
    let user_agent = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok());
    if user_agent == Some(loadbalancer::PROBE_USER_AGENT) {
        state.probes.fetch_add(1, Ordering::Relaxed);
        let path = req.path().to_owned();
        state.probe_paths.lock().expect("lock").push(path);
        return HttpResponse::Ok().body("healthy");
    }
    state.received.lock().expect("lock").push(Received {
        method: req.method().clone(),
        target: req
            .uri()
            .path_and_query()
            .map_or("/".into(), |pq| pq.as_str().to_owned()),
        headers: req.headers().clone(),
        body: body.clone(),
        complete,
    });
    let mut parts = req.path().trim_start_matches('/').splitn(2, '/');
    let (first, arg) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let number = arg.parse::<u64>().unwrap_or(0);
    let mut res = match first {
        "bytes" => HttpResponse::Ok().body(pattern(number as usize)),
        "chunked" => {
            let data = pattern(number as usize);
            let chunks: Vec<Result<Bytes, actix_web::Error>> = data
                .chunks(8192)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            HttpResponse::Ok().streaming(futures_util::stream::iter(chunks))
        }
        "status" => {
            HttpResponse::new(StatusCode::from_u16(number as u16).unwrap_or(StatusCode::OK))
        }
        "cookies" => HttpResponse::Ok()
            .append_header(("Set-Cookie", "a=1; Path=/"))
            .append_header(("Set-Cookie", "b=2; Path=/"))
            .body("cookies"),
        "redirect" => HttpResponse::Found()
            .append_header(("Location", "/elsewhere"))
            .finish(),
        "gzip" => HttpResponse::Ok()
            .append_header(("Content-Encoding", "gzip"))
            .append_header(("Content-Type", "text/plain"))
            .body(GZIP_HELLO.to_vec()),
        "slow" => {
            actix_rt::time::sleep(Duration::from_millis(number)).await;
            HttpResponse::Ok().body("slow")
        }
        "echo" => HttpResponse::Ok().body(body.clone()),
        _ => HttpResponse::Ok().json(serde_json::json!({
            "backend": state.name,
            "method": req.method().as_str(),
            "len": body.len(),
        })),
    };
    res.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("x-backend"),
        state.name.parse().expect("header value"),
    );
    res
}

/// "hello" compressed with gzip: a body the proxy must pass through untouched.
pub const GZIP_HELLO: [u8; 25] = [
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
    0x00, 0x86, 0xa6, 0x10, 0x36, 0x05, 0x00, 0x00, 0x00,
];

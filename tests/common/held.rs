//! A backend that answers only when the test lets it: every request but a health probe (`/`)
//! waits for a permit ([`HeldBackend::release`]), and the backend counts its own concurrency
//! (now and at most) and the order requests arrived in. Its own thread and runtime, so a test
//! can hold requests while its client keeps going.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use tokio::sync::Semaphore;

/// A running held backend.
pub struct HeldBackend {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    permits: Semaphore,
    in_flight: AtomicUsize,
    most: AtomicUsize,
    /// Request targets in arrival order.
    arrived: Mutex<Vec<String>>,
}

impl HeldBackend {
    /// Starts one on `127.0.0.1:0`, serving from its own thread.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            permits: Semaphore::new(0),
            in_flight: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            arrived: Mutex::new(Vec::new()),
        });
        let state = web::Data::from(Arc::clone(&shared));
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .default_service(web::to(answer))
                })
                .workers(1)
                .max_connection_rate(10_000)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run()
                .await
                .expect("held backend runs");
            });
        });
        Self { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lets `n` held (or future) requests answer.
    pub fn release(&self, n: usize) {
        self.shared.permits.add_permits(n);
    }

    /// Requests being answered now (held or not).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests it ever had in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.shared.most.load(Ordering::SeqCst)
    }

    /// Targets of the requests received, in arrival order.
    pub fn arrived(&self) -> Vec<String> {
        self.shared.arrived.lock().expect("lock").clone()
    }
}

async fn answer(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if req.path() == "/" {
        return HttpResponse::Ok().body("probe");
    }
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.most.fetch_max(now, Ordering::SeqCst);
    let target = req.uri().to_string();
    shared.arrived.lock().expect("lock").push(target.clone());
    shared
        .permits
        .acquire()
        .await
        .expect("semaphore open")
        .forget();
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    HttpResponse::Ok().body(target)
}

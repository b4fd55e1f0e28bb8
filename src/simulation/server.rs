//! One simulated backend: a small actix-web server on the backend's own loopback address that
//! answers `{"backend": "backend-1", "port": 9001, "path": "/…"}` while up, and while failing
//! either is not listening at all (`refuse`), answers 500 (`error`) or accepts and never
//! answers (`hang`).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::backend::Backend;
use crate::fault::FaultMode;

/// The state a simulated backend is in, shared with its server's handler and the status API.
#[derive(Debug, Clone, Default)]
pub struct SimState(Arc<AtomicU8>);

impl SimState {
    pub fn get(&self) -> Option<FaultMode> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(FaultMode::Refuse),
            2 => Some(FaultMode::Error),
            3 => Some(FaultMode::Hang),
            _ => None,
        }
    }

    fn set(&self, state: Option<FaultMode>) {
        let code = match state {
            None => 0,
            Some(FaultMode::Refuse) => 1,
            Some(FaultMode::Error) => 2,
            Some(FaultMode::Hang) => 3,
        };
        self.0.store(code, Ordering::Relaxed);
    }

    /// `up` or the failure mode's name.
    pub fn label(&self) -> &'static str {
        self.get().map_or("up", FaultMode::as_str)
    }
}

/// A simulated backend and its (possibly stopped) server.
pub struct SimulatedBackend {
    pub backend: Arc<Backend>,
    /// Members of other pools with the same address, served by this one server.
    pub also: Vec<Arc<Backend>>,
    addr: SocketAddr,
    pub state: SimState,
    /// `None` while refusing.
    server: Option<ServerHandle>,
}

impl SimulatedBackend {
    /// Binds the backend's address and starts answering. Must run inside an actix system.
    pub fn start(backend: Arc<Backend>, addr: SocketAddr) -> io::Result<Self> {
        let mut simulated = Self {
            backend,
            also: Vec::new(),
            addr,
            state: SimState::default(),
            server: None,
        };
        simulated.serve()?;
        Ok(simulated)
    }

    fn serve(&mut self) -> io::Result<()> {
        let listener = TcpListener::bind(self.addr).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!(
                    "simulated {} cannot listen on {}: {err}",
                    self.backend.name, self.addr
                ),
            )
        })?;
        let context = web::Data::new((
            self.backend.name.clone(),
            self.addr.port(),
            self.state.clone(),
        ));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(context.clone())
                .default_service(web::to(answer))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        self.server = Some(server.handle());
        actix_rt::spawn(server);
        Ok(())
    }

    /// Moves to `state`; stops the listener for `refuse` and binds it again when leaving it.
    /// Returns the server to stop, which the caller awaits before anything else binds.
    pub fn switch(&mut self, state: Option<FaultMode>) -> io::Result<Option<ServerHandle>> {
        self.state.set(state);
        match (state, self.server.is_some()) {
            (Some(FaultMode::Refuse), true) => Ok(self.server.take()),
            (Some(FaultMode::Refuse), false) | (_, true) => Ok(None),
            (_, false) => self.serve().map(|()| None),
        }
    }

    /// Stops the server for good (balancer shutdown).
    pub fn stop(&mut self) -> Option<ServerHandle> {
        self.server.take()
    }
}

async fn answer(req: HttpRequest, context: web::Data<(String, u16, SimState)>) -> HttpResponse {
    let (name, port, state) = context.get_ref();
    match state.get() {
        None | Some(FaultMode::Refuse) => HttpResponse::Ok().json(serde_json::json!({
            "backend": name,
            "port": port,
            "path": req.path(),
        })),
        Some(FaultMode::Error) => {
            HttpResponse::build(StatusCode::INTERNAL_SERVER_ERROR).json(serde_json::json!({
                "backend": name,
                "error": "simulated failure",
            }))
        }
        Some(FaultMode::Hang) => std::future::pending().await,
    }
}

/// The simulated server already serving `authority` (a URL of another pool), if any.
pub fn same_server<'a>(
    backends: &'a mut [Option<SimulatedBackend>],
    authority: &actix_web::http::uri::Authority,
) -> Option<&'a mut SimulatedBackend> {
    backends
        .iter_mut()
        .flatten()
        .find(|b| b.backend.authority == *authority)
}

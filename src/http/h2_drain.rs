//! HTTP/2 connections during a drain. actix-http's HTTP/2 connections have no graceful-shutdown
//! path: an idle one stays open (answering pings) until the drain's grace ends, holding the
//! process. So each HTTP/2 connection is known here — by a second handle on its socket, taken
//! when it is accepted — with its requests under way. Once a drain begins, a connection with
//! none is shut down: at once when it is idle, else a moment after its last response has been
//! handed over (time for the HTTP/2 layer to write its last frames). Its client sees the
//! connection close, as an HTTP/1.1 client sees its idle connection close.

use std::any::Any;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;

use crate::draining::Draining;

/// How long after its last response a drained connection is shut down.
const LAST_FRAMES: Duration = Duration::from_millis(200);

/// Every open HTTP/2 connection, and the drain they watch.
#[derive(Debug)]
pub struct H2Connections {
    draining: Draining,
    open: Mutex<Vec<Weak<H2Connection>>>,
}

/// One HTTP/2 connection: its socket, and its requests under way.
#[derive(Debug)]
pub struct H2Connection {
    socket: std::net::TcpStream,
    streams: AtomicUsize,
    all: Arc<H2Connections>,
}

/// One request under way on an HTTP/2 connection, until its response has been handed over.
#[derive(Debug)]
pub struct H2Stream(Arc<H2Connection>);

impl H2Connections {
    pub fn new(draining: Draining) -> Arc<Self> {
        Arc::new(Self {
            draining,
            open: Mutex::new(Vec::new()),
        })
    }

    /// `HttpServer::on_connect`: an HTTP/2 connection over TLS is registered, and marked in its
    /// extensions for its requests to find.
    pub fn track(self: &Arc<Self>, connection: &dyn Any, extensions: &mut Extensions) {
        let Some(tls) = connection.downcast_ref::<TlsStream<TcpStream>>() else {
            return;
        };
        let (tcp, session) = tls.get_ref();
        if session.alpn_protocol() != Some(b"h2") {
            return;
        }
        // A second handle on the socket (closed with the connection's extensions).
        let Ok(socket) = tcp.as_fd().try_clone_to_owned() else {
            return;
        };
        let connection = Arc::new(H2Connection {
            socket: std::net::TcpStream::from(socket),
            streams: AtomicUsize::new(0),
            all: Arc::clone(self),
        });
        if let Ok(mut open) = self.open.lock() {
            // Closed connections are swept out only when the list would grow: amortized, a
            // connection's accept costs a constant, however many are open.
            if open.len() == open.capacity() {
                open.retain(|c| c.strong_count() > 0);
            }
            open.push(Arc::downgrade(&connection));
        }
        extensions.insert(connection);
    }

    /// The drain began: idle connections are shut down (busy ones when their last response
    /// is out). Returns how many were idle.
    pub fn drain(&self) -> usize {
        let open: Vec<Arc<H2Connection>> = match self.open.lock() {
            Ok(open) => open.iter().filter_map(Weak::upgrade).collect(),
            Err(_) => return 0,
        };
        let idle: Vec<_> = open.into_iter().filter(|c| c.is_idle()).collect();
        for connection in &idle {
            connection.shut_down_soon();
        }
        idle.len()
    }
}

impl H2Connection {
    /// A request begins on this connection.
    pub fn stream(self: &Arc<Self>) -> H2Stream {
        self.streams.fetch_add(1, Ordering::SeqCst);
        H2Stream(Arc::clone(self))
    }

    fn is_idle(&self) -> bool {
        self.streams.load(Ordering::SeqCst) == 0
    }

    /// Shuts the socket down after the last frames had time to go, unless a request began
    /// meanwhile.
    fn shut_down_soon(self: &Arc<Self>) {
        let connection = Arc::clone(self);
        actix_rt::spawn(async move {
            actix_rt::time::sleep(LAST_FRAMES).await;
            if connection.is_idle() {
                let _ = connection.socket.shutdown(Shutdown::Both);
            }
        });
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        let connection = &self.0;
        let left = connection.streams.fetch_sub(1, Ordering::SeqCst) - 1;
        if left == 0 && connection.all.draining.is_draining() {
            connection.shut_down_soon();
        }
    }
}

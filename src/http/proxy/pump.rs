//! A tunnel's byte pump: once a WebSocket handshake switched, bytes go both ways between the
//! client's connection and the backend's, untouched, until either side closes or fails, no
//! byte went either way for `server.tunnel_idle_timeout_secs`, or a drain's grace ends. The
//! tunnel holds its backend's lease while open (it counts as in flight, which
//! `least_connections` sees).

use std::cell::Cell;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::BodyStream;
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::state::ProxyState;
use super::tunnels::Tunnels;
use crate::registry::Lease;
use crate::upstream::{Io, READ_CHUNK};

/// Chunks on their way to the client, per tunnel; a client that stops reading stops the
/// backend's side being read once these are queued.
const QUEUED_CHUNKS: usize = 8;

/// What one tunnel carries.
pub struct Pump {
    pub io: Io,
    pub early: Bytes,
    pub payload: web::Payload,
    pub lease: Lease,
}

/// Why a tunnel ended.
enum Ended {
    BackendClosed,
    BackendFailed(io::Error),
    ClientGone,
    ClientFailed(String),
    Idle(Duration),
    Drained,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BackendClosed => f.write_str("the backend closed it"),
            Self::BackendFailed(err) => write!(f, "the backend's side failed: {err}"),
            Self::ClientGone => f.write_str("the client closed it"),
            Self::ClientFailed(err) => write!(f, "the client's side failed: {err}"),
            Self::Idle(after) => write!(f, "no byte either way for {} s", after.as_secs()),
            Self::Drained => f.write_str("the drain's grace ended"),
        }
    }
}

/// Starts the tunnel's task; the returned stream is what the client is sent.
pub fn start(
    pump: Pump,
    state: &ProxyState,
) -> BodyStream<impl Stream<Item = Result<Bytes, io::Error>>> {
    let (to_client, mut queued) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
    let counted = state.tunnels.opened(&state.metrics);
    actix_rt::spawn(async move {
        let opened = Instant::now();
        let backend = Arc::clone(&pump.lease.backend);
        let (ended, up, down) = run(pump, counted.tunnels(), to_client).await;
        let line = format!(
            "WebSocket tunnel to {backend} closed after {:.1} s ({ended}); {up} bytes up, {down} down",
            opened.elapsed().as_secs_f64()
        );
        match ended {
            Ended::BackendFailed(_) | Ended::ClientFailed(_) => log::warn!("{line}"),
            Ended::Idle(_) | Ended::Drained => log::info!("{line}"),
            Ended::BackendClosed | Ended::ClientGone => log::debug!("{line}"),
        }
        drop(counted);
    });
    BodyStream::new(futures_util::stream::poll_fn(move |cx| {
        queued.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }))
}

/// What went through a tunnel, and when last.
struct Traffic {
    last_byte: Cell<Instant>,
    up: Cell<u64>,
    down: Cell<u64>,
}

impl Traffic {
    fn count(&self, counter: &Cell<u64>, bytes: usize) {
        counter.set(counter.get() + bytes as u64);
        self.last_byte.set(Instant::now());
    }
}

/// Carries bytes both ways until one of the ends described by [`Ended`]; returns it with the
/// bytes sent up (to the backend) and down (to the client).
async fn run(pump: Pump, tunnels: &Tunnels, to_client: mpsc::Sender<Bytes>) -> (Ended, u64, u64) {
    let Pump {
        io,
        early,
        mut payload,
        lease,
    } = pump;
    let (mut from_backend, mut to_backend) = tokio::io::split(io);
    let traffic = Traffic {
        last_byte: Cell::new(Instant::now()),
        up: Cell::new(0),
        down: Cell::new(0),
    };
    let ended = tokio::select! {
        ended = client_to_backend(&mut payload, &mut to_backend, &traffic) => ended,
        ended = backend_to_client(early, &mut from_backend, &to_client, &traffic) => ended,
        ended = idle(&traffic, tunnels.idle_timeout) => ended,
        ended = drained(tunnels.closing()) => ended,
    };
    drop(lease);
    (ended, traffic.up.get(), traffic.down.get())
}

/// The client's bytes to the backend. When the client has finished sending, the half-close is
/// passed on and the other way stays open until the backend closes too.
async fn client_to_backend(
    payload: &mut web::Payload,
    to_backend: &mut WriteHalf<Io>,
    traffic: &Traffic,
) -> Ended {
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => return Ended::ClientFailed(err.to_string()),
        };
        // TLS buffers a record until flushed; for TCP the flush does nothing.
        let written = async {
            to_backend.write_all(&chunk).await?;
            to_backend.flush().await
        };
        if let Err(err) = written.await {
            return Ended::BackendFailed(err);
        }
        traffic.count(&traffic.up, chunk.len());
    }
    let _ = to_backend.shutdown().await;
    std::future::pending().await
}

/// The backend's bytes (those that came right behind its `101` first) to the client.
async fn backend_to_client(
    early: Bytes,
    from_backend: &mut ReadHalf<Io>,
    to_client: &mpsc::Sender<Bytes>,
    traffic: &Traffic,
) -> Ended {
    if !early.is_empty() {
        traffic.count(&traffic.down, early.len());
        if to_client.send(early).await.is_err() {
            return Ended::ClientGone;
        }
    }
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        buf.reserve(READ_CHUNK);
        match from_backend.read_buf(&mut buf).await {
            Ok(0) => return Ended::BackendClosed,
            Ok(n) => traffic.count(&traffic.down, n),
            Err(err) => return Ended::BackendFailed(err),
        }
        if to_client.send(buf.split().freeze()).await.is_err() {
            return Ended::ClientGone;
        }
    }
}

/// Ends once no byte went either way for `timeout`.
async fn idle(traffic: &Traffic, timeout: Duration) -> Ended {
    loop {
        let deadline = traffic.last_byte.get() + timeout;
        if Instant::now() >= deadline {
            return Ended::Idle(timeout);
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// Ends when a drain's grace is over.
async fn drained(mut closing: watch::Receiver<bool>) -> Ended {
    if closing.wait_for(|closing| *closing).await.is_err() {
        // The signal's sender is gone with the server; nothing will ask any more.
        std::future::pending::<()>().await;
    }
    Ended::Drained
}

//! Stalled readers: a client that stops taking a response would otherwise hold the backend
//! connection feeding it for as long as it keeps its socket open, because actix-http simply
//! stops polling a body it cannot write. Every streamed response body is therefore watched by a
//! per-worker sweeper: a body that has handed out no chunk for `server.send_timeout_ms` while
//! a chunk was ready to go (that is, the wait was on the client, not on the backend) is cut
//! off. Its backend connection and lease are dropped at once; the client, if it ever reads
//! again, gets the bytes already buffered and then a closed connection.
//!
//! The hot path pays one counter addition per chunk and one slot in a thread-local table per
//! response; the sweeper wakes a few times per timeout, and only while responses are open.

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

use crate::registry::Lease;

/// Sweeps per timeout: a stall is noticed within `timeout * (1 + 1/SWEEPS)`.
const SWEEPS_PER_TIMEOUT: u32 = 4;

/// A response body stream from a backend, holding its attempt's [`Lease`], cut off when the
/// client stops reading.
pub struct Watched<S> {
    watch: Rc<Watch<S>>,
    slot: usize,
}

struct Watch<S> {
    /// The backend's stream and the lease; `None` once finished or cut off.
    upstream: RefCell<Option<(S, Lease)>>,
    /// Bytes handed on (the sweeper compares it between sweeps), and the backend's
    /// Content-Length if it sent one.
    bytes: Cell<u64>,
    expected: Option<u64>,
    /// Whether the last poll was left waiting on the backend (not a client stall).
    waiting_on_backend: Cell<bool>,
    /// What the sweeper saw last time, and for how many sweeps nothing moved.
    seen: Cell<u64>,
    idle_sweeps: Cell<u32>,
    cut_off: Cell<bool>,
}

impl<S> Watched<S> {
    /// Starts watching `upstream` (of `expected` bytes when the backend said so); a stall of
    /// `timeout` cuts it off.
    pub fn new(upstream: S, lease: Lease, expected: Option<u64>, timeout: Duration) -> Self
    where
        S: 'static,
    {
        let watch = Rc::new(Watch {
            upstream: RefCell::new(Some((upstream, lease))),
            bytes: Cell::new(0),
            expected,
            waiting_on_backend: Cell::new(false),
            seen: Cell::new(0),
            idle_sweeps: Cell::new(0),
            cut_off: Cell::new(false),
        });
        let slot = register(Rc::clone(&watch) as Rc<dyn Stall>, timeout);
        Self { watch, slot }
    }
}

impl<S> Drop for Watched<S> {
    fn drop(&mut self) {
        deregister(self.slot);
    }
}

impl<S> Stream for Watched<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let watch = &self.watch;
        let mut upstream = watch.upstream.borrow_mut();
        let Some((stream, _lease)) = upstream.as_mut() else {
            return Poll::Ready(if watch.cut_off.get() {
                Some(Err(PayloadError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading",
                ))))
            } else {
                None
            });
        };
        let polled = Pin::new(stream).poll_next(cx);
        match &polled {
            Poll::Pending => watch.waiting_on_backend.set(true),
            Poll::Ready(Some(Ok(chunk))) => {
                watch.bytes.set(watch.bytes.get() + chunk.len() as u64);
                watch.waiting_on_backend.set(false);
            }
            Poll::Ready(Some(Err(err))) => {
                if let Some((_, lease)) = upstream.as_ref() {
                    log::warn!(
                        "backend {} broke off its response ({err}); closing the client connection",
                        lease.backend
                    );
                }
                *upstream = None;
            }
            // Finished: the lease ends with the last byte, not when the body is dropped.
            Poll::Ready(None) => {
                // A body that ends short of its Content-Length without an error is still broken.
                if let (Some((_, lease)), Some(expected)) = (upstream.as_ref(), watch.expected) {
                    if watch.bytes.get() < expected {
                        log::warn!(
                            "backend {} broke off its response after {} of {expected} bytes; closing the client connection",
                            lease.backend,
                            watch.bytes.get()
                        );
                    }
                }
                *upstream = None;
            }
        }
        polled
    }
}

/// What the sweeper needs of a watched body, whatever its stream type.
trait Stall {
    /// Called once per sweep; cuts the body off and returns true once it has been stalled on
    /// the client for `limit` sweeps.
    fn sweep(&self, limit: u32) -> bool;
}

impl<S> Stall for Watch<S> {
    fn sweep(&self, limit: u32) -> bool {
        let bytes = self.bytes.get();
        let moved = bytes != self.seen.get();
        self.seen.set(bytes);
        if moved || self.waiting_on_backend.get() || self.cut_off.get() {
            self.idle_sweeps.set(0);
            return false;
        }
        let idle = self.idle_sweeps.get() + 1;
        self.idle_sweeps.set(idle);
        if idle < limit {
            return false;
        }
        let Some((stream, lease)) = self.upstream.borrow_mut().take() else {
            return false;
        };
        self.cut_off.set(true);
        log::warn!(
            "client stopped reading a response from backend {}; cut off, backend connection closed",
            lease.backend
        );
        drop(stream);
        drop(lease);
        true
    }
}

/// This worker thread's watched bodies.
#[derive(Default)]
struct Table {
    slots: Vec<Option<Rc<dyn Stall>>>,
    free: Vec<usize>,
    live: usize,
    /// Sweep period and the number of idle sweeps that make a stall; set by the first body.
    period: Duration,
    limit: u32,
    sweeping: bool,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

fn register(watch: Rc<dyn Stall>, timeout: Duration) -> usize {
    TABLE.with(|table| {
        let mut table = table.borrow_mut();
        let slot = match table.free.pop() {
            Some(slot) => {
                table.slots[slot] = Some(watch);
                slot
            }
            None => {
                table.slots.push(Some(watch));
                table.slots.len() - 1
            }
        };
        table.live += 1;
        if !table.sweeping {
            table.sweeping = true;
            table.period = (timeout / SWEEPS_PER_TIMEOUT).max(Duration::from_millis(10));
            table.limit = SWEEPS_PER_TIMEOUT;
            actix_rt::spawn(sweep_while_watched());
        }
        slot
    })
}

fn deregister(slot: usize) {
    // `try_with`: a body dropped while the thread's locals are torn down has nothing to undo.
    let _ = TABLE.try_with(|table| {
        let mut table = table.borrow_mut();
        if table.slots.get_mut(slot).and_then(Option::take).is_some() {
            table.free.push(slot);
            table.live -= 1;
        }
    });
}

/// Runs on each worker while it has watched bodies; stops when the last one is gone.
async fn sweep_while_watched() {
    loop {
        let period = TABLE.with(|table| table.borrow().period);
        actix_rt::time::sleep(period).await;
        // Collected first: cutting a body off drops a backend connection, which must not
        // happen while the table is borrowed.
        let (watched, limit) = TABLE.with(|table| {
            let mut table = table.borrow_mut();
            if table.live == 0 {
                table.sweeping = false;
                table.slots.clear();
                table.free.clear();
            }
            let watched: Vec<Rc<dyn Stall>> = table.slots.iter().flatten().cloned().collect();
            (watched, table.limit)
        });
        if watched.is_empty() {
            return;
        }
        for watch in watched {
            watch.sweep(limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    struct Fake(u32);

    fn fake_lease() -> Lease {
        let backend = crate::backend::Backend::parse(0, "http://127.0.0.1:1").expect("url");
        let member = crate::registry::Member::new(backend, 1, true);
        let defaults =
            crate::registry::PoolDefaults::of_strategy(crate::strategy::Strategy::RoundRobin);
        let rotation = crate::registry::Rotation::new(vec![member], &defaults);
        rotation.pick(&[], None).expect("a healthy backend")
    }

    impl Stream for Fake {
        type Item = Result<Bytes, PayloadError>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.0 += 1;
            Poll::Ready(Some(Ok(Bytes::from_static(b"x"))))
        }
    }

    #[actix_rt::test]
    async fn a_body_nobody_polls_is_cut_off_after_the_limit_of_idle_sweeps() {
        let body = Watched::new(Fake(0), fake_lease(), None, Duration::from_secs(3600));
        let watch = Rc::clone(&body.watch);
        for _ in 0..3 {
            assert!(!watch.sweep(4));
        }
        assert!(watch.sweep(4), "the fourth idle sweep cuts it off");
        assert!(
            watch.upstream.borrow().is_none(),
            "stream and lease dropped"
        );
        let mut body = body;
        let next = futures_util::StreamExt::next(&mut body).await;
        assert!(matches!(next, Some(Err(PayloadError::Io(_)))), "{next:?}");
    }

    #[actix_rt::test]
    async fn progress_or_a_slow_backend_resets_the_count() {
        let mut body = Watched::new(Fake(0), fake_lease(), None, Duration::from_secs(3600));
        let watch = Rc::clone(&body.watch);
        for _ in 0..10 {
            assert!(!watch.sweep(2));
            let _ = futures_util::StreamExt::next(&mut body).await;
        }
        watch.waiting_on_backend.set(true);
        for _ in 0..10 {
            assert!(
                !watch.sweep(2),
                "waiting on the backend is not the client's stall"
            );
        }
        let pending = Watched::new(
            stream::pending::<Result<Bytes, PayloadError>>(),
            fake_lease(),
            None,
            Duration::from_secs(3600),
        );

        let mut pending = pending;
        let polled =
            futures_util::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut pending).poll_next(cx)))
                .await;
        assert!(polled.is_pending());
        assert!(!pending.watch.sweep(1));
    }

    #[actix_rt::test]
    async fn finished_bodies_leave_the_table() {
        let bodies: Vec<_> = (0..3)
            .map(|_| Watched::new(Fake(0), fake_lease(), None, Duration::from_secs(3600)))
            .collect();
        let live = || TABLE.with(|t| t.borrow().live);
        assert_eq!(live(), 3);
        drop(bodies);
        assert_eq!(live(), 0);
    }
}

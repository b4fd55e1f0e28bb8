//! A worker's idle kept-alive connections, per backend, for up to [`IDLE_FOR`] each (a sweep
//! closes older ones, also of backends nobody asks for any more).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::exchange::Connection;
use crate::backend::BackendId;

/// An idle connection older than this is not used again.
const IDLE_FOR: Duration = Duration::from_secs(15);
/// Idle connections kept per backend and worker.
const MAX_IDLE: usize = 512;

type ByBackend = HashMap<BackendId, Vec<(Connection, Instant)>>;

/// One worker's idle connections. Cheap to clone; not `Send`.
#[derive(Clone)]
pub(super) struct Idle(Rc<RefCell<ByBackend>>);

/// Where a connection goes back when its answer has been read: its worker's idle
/// connections, under its backend.
pub(super) struct Home {
    idle: Idle,
    backend: BackendId,
}

impl Idle {
    /// Must be called on the worker thread that uses it: the sweep runs there, and ends with
    /// the worker.
    pub(super) fn new() -> Self {
        let idle = Self(Rc::new(RefCell::new(HashMap::new())));
        let weak = Rc::downgrade(&idle.0);
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(IDLE_FOR);
            loop {
                tick.tick().await;
                let Some(idle) = weak.upgrade() else { return };
                idle.borrow_mut().retain(|_, list| {
                    list.retain(|(_, since)| since.elapsed() < IDLE_FOR);
                    !list.is_empty()
                });
            }
        });
        idle
    }

    /// A kept connection to `backend` that is still usable, if any.
    pub(super) fn take(&self, backend: BackendId) -> Option<Connection> {
        let mut idle = self.0.borrow_mut();
        let list = idle.get_mut(&backend)?;
        while let Some((mut conn, since)) = list.pop() {
            if since.elapsed() < IDLE_FOR && conn.usable() {
                return Some(conn);
            }
        }
        None
    }

    /// Where a connection to `backend` goes back.
    pub(super) fn home(&self, backend: BackendId) -> Home {
        Home {
            idle: self.clone(),
            backend,
        }
    }
}

impl Home {
    /// Keeps `conn` for the next request to its backend, if there is room and nothing unread.
    pub(super) fn put_back(self, conn: Connection) {
        let mut idle = self.idle.0.borrow_mut();
        let list = idle.entry(self.backend).or_default();
        if list.len() < MAX_IDLE && conn.read.is_empty() {
            list.push((conn, Instant::now()));
        }
    }
}

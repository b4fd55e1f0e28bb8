//! Persistence: the `Store` actor owns the one SQLite connection on a one-thread
//! `SyncArbiter`, so no SQLite call ever runs on a worker or an async arbiter. The bucket
//! store sends it client writes (a single instance's committed before the admin API answers;
//! in cluster mode, the mirror of Redis's registry, written after Redis has them) and batches of
//! token levels (every `persistence.flush_interval_ms` and at shutdown).

mod database;

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use actix::{Actor, Addr, Handler, Message, SyncArbiter, SyncContext};

use crate::client::ClientRecord;
pub use database::{Database, DbError, Levels, RouteLevel, SavedClient};

/// How often a persisting failure is logged.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// From the bucket store: save (insert or replace) a client.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), DbError>")]
pub struct SaveClient(pub ClientRecord);

/// From the bucket store: delete a client; answers whether it existed.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, DbError>")]
pub struct DeleteClient(pub String);

/// From the bucket store: token levels of registered clients (their own buckets and those on
/// routes), in one transaction.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), DbError>")]
pub struct SaveTokens(pub Levels);

/// The SQLite writer.
pub struct Store {
    db: Database,
    /// When a failure was last logged (failures repeat; the log should not).
    last_error_logged: Option<Instant>,
}

impl Store {
    /// Starts the store on its own thread.
    pub fn start(db: Database) -> Addr<Store> {
        let cell = Mutex::new(Some(db));
        SyncArbiter::start(1, move || Store {
            db: cell
                .lock()
                .ok()
                .and_then(|mut db| db.take())
                .expect("the store's arbiter has exactly one thread, started once"),
            last_error_logged: None,
        })
    }

    fn logged<T>(&mut self, result: Result<T, DbError>) -> Result<T, DbError> {
        if let Err(err) = &result {
            let due = self
                .last_error_logged
                .is_none_or(|at| at.elapsed() >= ERROR_LOG_EVERY);
            if due {
                log::error!("{err} (repeats of this error are logged once a minute)");
                self.last_error_logged = Some(Instant::now());
            }
        }
        result
    }
}

impl Actor for Store {
    type Context = SyncContext<Self>;
}

impl Handler<SaveClient> for Store {
    type Result = Result<(), DbError>;

    fn handle(&mut self, msg: SaveClient, _: &mut SyncContext<Self>) -> Self::Result {
        let result = self.db.save_client(&msg.0, SystemTime::now());
        self.logged(result)
    }
}

impl Handler<DeleteClient> for Store {
    type Result = Result<bool, DbError>;

    fn handle(&mut self, msg: DeleteClient, _: &mut SyncContext<Self>) -> Self::Result {
        let result = self.db.delete_client(&msg.0);
        self.logged(result)
    }
}

impl Handler<SaveTokens> for Store {
    type Result = Result<(), DbError>;

    fn handle(&mut self, msg: SaveTokens, _: &mut SyncContext<Self>) -> Self::Result {
        let result = self.db.save_tokens(&msg.0, SystemTime::now());
        self.logged(result)
    }
}

//! What a shard's admissions and client writes depend on, as one small trait with two
//! implementations: [`super::local::LocalMode`] (a single instance: the shard's own map, and
//! SQLite for what must survive a restart) and [`super::shared::SharedMode`] (cluster mode: the
//! buckets and the registry in Redis, shared by every instance). The shard's actor only unpacks
//! its messages and calls these. Also here: [`Known`], a shard's clients as the handlers see
//! them, which both modes change the same way.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;

use super::map::SharedMap;
use super::messages::{ClientError, CreateClient, UpdateClient};
use crate::client::{Admission, Charge, ClientRecord};
use crate::cluster::Change;

/// A client write on its way: it resolves once the write is durable and applied to the map.
pub type Write<T> = LocalBoxFuture<'static, Result<T, ClientError>>;

/// The answers to a batch of charges.
pub enum Admitted {
    /// Decided now.
    Now(Vec<Option<Admission>>),
    /// Decided once Redis answers (at most `cluster.redis_timeout_ms`).
    Later(LocalBoxFuture<'static, Vec<Option<Admission>>>),
}

/// How a shard decides and writes.
pub trait Mode {
    /// Answers each charge, in order; a `None` answer means no decision can be made (Redis down
    /// under `on_redis_down = "deny"`).
    fn admit(&mut self, charges: Vec<Charge>, now: Instant) -> Admitted;

    /// Registers a client ([`ClientError::Exists`] if it is).
    fn create(&self, client: CreateClient) -> Write<ClientRecord>;

    /// Changes a client ([`ClientError::NotFound`] if there is none).
    fn update(&self, change: UpdateClient) -> Write<ClientRecord>;

    /// Removes a client ([`ClientError::NotFound`] if there is none).
    fn remove(&self, client_id: String) -> Write<()>;

    /// `records` with the token levels the admin API shows.
    fn levels(&self, records: Vec<ClientRecord>) -> LocalBoxFuture<'static, Vec<ClientRecord>>;

    /// A change of the shared registry, made here or elsewhere (cluster mode only).
    fn apply_remote(&mut self, change: Change);

    /// How often [`Mode::tick`] is due, if ever.
    fn tick_every(&self) -> Option<Duration>;

    /// Periodic upkeep; returns the work it started, if any.
    fn tick(&mut self, now: Instant) -> Option<LocalBoxFuture<'static, ()>>;
}

/// Registered client ids across every shard, read by the handlers to resolve API keys.
#[derive(Debug, Clone, Default)]
pub struct RegisteredIds(Arc<RwLock<HashSet<String>>>);

impl RegisteredIds {
    pub fn new(ids: HashSet<String>) -> Self {
        Self(Arc::new(RwLock::new(ids)))
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.read().is_ok_and(|ids| ids.contains(id))
    }

    fn set(&self, id: &str, present: bool) {
        if let Ok(mut ids) = self.0.write() {
            if present {
                ids.insert(id.to_owned());
            } else {
                ids.remove(id);
            }
        }
    }
}

/// One shard's clients as the handlers see them: its bucket map, and the ids registered on
/// every shard.
#[derive(Debug, Clone)]
pub struct Known {
    pub map: SharedMap,
    registered: RegisteredIds,
}

impl Known {
    pub fn new(map: SharedMap, registered: RegisteredIds) -> Self {
        Self { map, registered }
    }

    /// The client `id` as the map has it now.
    pub fn get(&self, id: &str) -> Option<ClientRecord> {
        self.map.lock().get(id, Instant::now())
    }

    /// Takes in `record`'s name and limits (a new client starts full; a lowered capacity
    /// clamps the level); answers the client as the map has it now.
    pub fn remember(&self, record: &ClientRecord) -> ClientRecord {
        let now = Instant::now();
        let remembered =
            self.map
                .lock()
                .upsert(&record.client_id, record.name.clone(), record.limits, now);
        let remembered = self
            .map
            .lock()
            .set_routes(&record.client_id, record.routes.clone(), now)
            .unwrap_or(remembered);
        self.registered.set(&record.client_id, true);
        remembered
    }

    /// Drops client `id`; answers whether it was here.
    pub fn forget(&self, id: &str) -> bool {
        let was = self.map.lock().remove(id);
        self.registered.set(id, false);
        was
    }
}

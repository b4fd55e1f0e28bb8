//! `BucketStore`: one shard of the rate limiter, an actor on its own arbiter that owns a
//! [`BucketMap`]. Requests are admitted here by message; admin writes go to the `Store`
//! first and change memory only once SQLite has committed them, so memory and disk agree.
//! Dirty token levels are flushed every `persistence.flush_interval_ms`; idle full buckets
//! are swept every few seconds.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorFuture, ActorFutureExt, Addr, AsyncContext, AtomicResponse, Context, Handler,
    MailboxError, Message, MessageResult, WrapFuture,
};

use super::bucket::TokenBucket;
use super::map::BucketMap;
use crate::client::{Admission, ClientKey, ClientRecord, Limits};
use crate::persistence::{DbError, DeleteClient, SaveClient, SaveTokens, SavedClient, Store};

/// "Recent" rejections, for the status page: counted per period of this length.
const REJECTION_PERIOD: Duration = Duration::from_secs(60);

/// How often full, idle buckets of unregistered clients are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Why an admin operation on a client failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("No client {0:?}")]
    NotFound(String),
    #[error("Client {0:?} already exists")]
    Exists(String),
    #[error("Storage unavailable, nothing was changed: {0}")]
    Storage(String),
}

/// From the proxy: take a token for each of these clients, in order (see [`super::batch`]).
#[derive(Debug, Message)]
#[rtype(result = "Vec<Admission>")]
pub struct AdmitMany(pub Vec<ClientKey>);

/// From the admin API: register a client (409 if it exists).
#[derive(Debug, Message)]
#[rtype(result = "Result<ClientRecord, ClientError>")]
pub struct CreateClient {
    pub client_id: String,
    pub name: Option<String>,
    pub limits: Limits,
}

/// From the admin API: change a client; absent fields keep their value.
#[derive(Debug, Message)]
#[rtype(result = "Result<ClientRecord, ClientError>")]
pub struct UpdateClient {
    pub client_id: String,
    /// `Some(None)` clears the name.
    pub name: Option<Option<String>>,
    pub capacity: Option<u64>,
    pub rate_per_sec: Option<f64>,
}

/// From the admin API: remove a client.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ClientError>")]
pub struct RemoveClient(pub String);

/// From the admin API: one client, if registered here.
#[derive(Debug, Message)]
#[rtype(result = "Option<ClientRecord>")]
pub struct GetClient(pub String);

/// From the admin API: every client of this shard.
#[derive(Debug, Message)]
#[rtype(result = "Vec<ClientRecord>")]
pub struct ListClients;

/// From the shutdown hook (and the flush timer): write dirty token levels now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FlushTokens;

/// From the status API and tests: (registered clients, tracked IP buckets).
#[derive(Debug, Message)]
#[rtype(result = "(usize, usize)")]
pub struct CountBuckets;

/// From the status API: the clients with most rejections in the current minute.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(ClientKey, u64)>")]
pub struct TopRejected(pub usize);

/// From tests: drop idle full buckets now.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct SweepNow;

/// One shard.
pub struct BucketStore {
    map: BucketMap,
    store: Addr<Store>,
    flush_interval: Duration,
    /// Registered ids across all shards, read by the handlers to resolve API keys.
    registered: Arc<RwLock<HashSet<String>>>,
}

impl BucketStore {
    /// A shard holding `saved` clients, each credited the refill for the time since it was saved.
    pub fn new(
        defaults: Limits,
        max_tracked: usize,
        store: Addr<Store>,
        flush_interval: Duration,
        registered: Arc<RwLock<HashSet<String>>>,
        saved: Vec<SavedClient>,
    ) -> Self {
        let now = Instant::now();
        let mut map = BucketMap::new(defaults, max_tracked);
        for client in saved {
            let down_for = client.saved_at.elapsed().unwrap_or_default();
            let mut bucket =
                TokenBucket::with_tokens(client.record.limits, client.record.tokens, now);
            bucket.credit(down_for);
            let tokens = bucket.tokens(now);
            map.restore(
                ClientRecord {
                    tokens,
                    ..client.record
                },
                now,
            );
        }
        Self {
            map,
            store,
            flush_interval,
            registered,
        }
    }

    /// Writes the dirty levels; finishes when the store has answered.
    fn flush(&mut self) -> Pin<Box<dyn ActorFuture<Self, Output = ()>>> {
        let dirty = self.map.take_dirty(Instant::now());
        if dirty.is_empty() {
            return Box::pin(actix::fut::ready(()));
        }
        let ids: Vec<String> = dirty.iter().map(|(id, _)| id.clone()).collect();
        let write = self.store.send(SaveTokens(dirty));
        Box::pin(write.into_actor(self).map(move |result, shard, _| {
            if !matches!(result, Ok(Ok(()))) {
                // Logged by the store; keep them dirty for the next flush.
                shard.map.mark_dirty(&ids);
            }
        }))
    }

    fn set_registered(&self, id: &str, present: bool) {
        if let Ok(mut ids) = self.registered.write() {
            if present {
                ids.insert(id.to_owned());
            } else {
                ids.remove(id);
            }
        }
    }
}

impl Actor for BucketStore {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.flush_interval, |shard, ctx| {
            let flush = shard.flush();
            ctx.wait(flush);
        });
        ctx.run_interval(SWEEP_EVERY, |shard, _| {
            shard.map.sweep(Instant::now());
        });
        ctx.run_interval(REJECTION_PERIOD, |shard, _| shard.map.reset_rejections());
    }
}

impl Handler<AdmitMany> for BucketStore {
    type Result = MessageResult<AdmitMany>;

    fn handle(&mut self, msg: AdmitMany, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        MessageResult(msg.0.iter().map(|key| self.map.admit(key, now)).collect())
    }
}

/// Saves `record` through the store, then applies it to the map; memory is untouched on failure.
fn write_through(
    shard: &BucketStore,
    record: ClientRecord,
) -> impl actix::ActorFuture<BucketStore, Output = Result<ClientRecord, ClientError>> {
    let save = shard.store.send(SaveClient(record.clone()));
    save.into_actor(shard).map(move |answer, shard, _| {
        committed(answer)?;
        let now = Instant::now();
        let saved = shard
            .map
            .upsert(&record.client_id, record.name.clone(), record.limits, now);
        shard.set_registered(&record.client_id, true);
        Ok(saved)
    })
}

/// The one mapping of the Store's answer to a client write: a database error or a stopped
/// store is [`ClientError::Storage`] (503, nothing changed).
fn committed<T>(answer: Result<Result<T, DbError>, MailboxError>) -> Result<T, ClientError> {
    match answer {
        Ok(result) => result.map_err(|err| ClientError::Storage(err.to_string())),
        Err(_) => Err(ClientError::Storage("the store has stopped".into())),
    }
}

impl Handler<CreateClient> for BucketStore {
    type Result = AtomicResponse<Self, Result<ClientRecord, ClientError>>;

    fn handle(&mut self, msg: CreateClient, _: &mut Context<Self>) -> Self::Result {
        if self.map.get(&msg.client_id, Instant::now()).is_some() {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(ClientError::Exists(
                msg.client_id,
            )))));
        }
        let record = ClientRecord {
            tokens: msg.limits.capacity as f64,
            client_id: msg.client_id,
            name: msg.name,
            limits: msg.limits,
        };
        AtomicResponse::new(Box::pin(write_through(self, record)))
    }
}

impl Handler<UpdateClient> for BucketStore {
    type Result = AtomicResponse<Self, Result<ClientRecord, ClientError>>;

    fn handle(&mut self, msg: UpdateClient, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let Some(current) = self.map.get(&msg.client_id, now) else {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(ClientError::NotFound(
                msg.client_id,
            )))));
        };
        let limits = Limits {
            capacity: msg.capacity.unwrap_or(current.limits.capacity),
            rate_per_sec: msg.rate_per_sec.unwrap_or(current.limits.rate_per_sec),
        };
        // What the bucket will hold after the change: a lowered capacity clamps the level.
        let mut preview = TokenBucket::with_tokens(current.limits, current.tokens, now);
        preview.set_limits(limits, now);
        let record = ClientRecord {
            client_id: msg.client_id,
            name: msg.name.unwrap_or(current.name),
            limits,
            tokens: preview.tokens(now),
        };
        AtomicResponse::new(Box::pin(write_through(self, record)))
    }
}

impl Handler<RemoveClient> for BucketStore {
    type Result = AtomicResponse<Self, Result<(), ClientError>>;

    fn handle(&mut self, msg: RemoveClient, _: &mut Context<Self>) -> Self::Result {
        let id = msg.0;
        if self.map.get(&id, Instant::now()).is_none() {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(ClientError::NotFound(
                id,
            )))));
        }
        let delete = self.store.send(DeleteClient(id.clone()));
        AtomicResponse::new(Box::pin(delete.into_actor(self).map(
            move |answer, shard, _| {
                committed(answer)?;
                shard.map.remove(&id);
                shard.set_registered(&id, false);
                Ok(())
            },
        )))
    }
}

impl Handler<GetClient> for BucketStore {
    type Result = MessageResult<GetClient>;

    fn handle(&mut self, msg: GetClient, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.map.get(&msg.0, Instant::now()))
    }
}

impl Handler<ListClients> for BucketStore {
    type Result = MessageResult<ListClients>;

    fn handle(&mut self, _: ListClients, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.map.list(Instant::now()))
    }
}

impl Handler<FlushTokens> for BucketStore {
    type Result = AtomicResponse<Self, ()>;

    /// Answers once the levels are written (or the write failed).
    fn handle(&mut self, _: FlushTokens, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.flush())
    }
}

impl Handler<CountBuckets> for BucketStore {
    type Result = MessageResult<CountBuckets>;

    fn handle(&mut self, _: CountBuckets, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.map.tracked())
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Handler<SweepNow> for BucketStore {
    type Result = usize;

    fn handle(&mut self, _: SweepNow, _: &mut Context<Self>) -> usize {
        self.map.sweep(Instant::now())
    }
}

impl Handler<TopRejected> for BucketStore {
    type Result = MessageResult<TopRejected>;

    fn handle(&mut self, msg: TopRejected, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.map.top_rejected(msg.0))
    }
}

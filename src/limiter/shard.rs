//! `BucketStore`: one shard of the rate limiter, an actor on its own arbiter that owns a
//! [`BucketMap`] (behind a lock it shares with the handlers of a single instance, which take
//! most tokens on their own thread: [`SharedMap`]). Requests are admitted here by message in
//! cluster mode, and otherwise when the map's lock is busy or an eviction is due; admin writes
//! go to the `Store` first and change memory only once SQLite has committed them, so memory
//! and disk agree.
//! Dirty token levels are flushed every `persistence.flush_interval_ms`; idle full buckets
//! are swept every few seconds.
//!
//! In cluster mode the shard holds a [`Cluster`]: admissions are answered from the shard's
//! leases on Redis's shared buckets, and the asks a batch cannot answer from them go to Redis
//! together, in one pipeline (the batch's answer then waits for Redis, at most
//! `cluster.redis_timeout_ms`). Client writes go to Redis first and reach the map once Redis
//! has them; the map, the registered-id set and the SQLite mirror follow the registry's change
//! log ([`ApplyRemote`]). While Redis is down the shard decides alone, as
//! `cluster.on_redis_down` says.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorFuture, ActorFutureExt, ActorResponse, Addr, AsyncContext, AtomicResponse, Context,
    Handler, MailboxError, Message, MessageResult, WrapFuture,
};

use super::bucket::TokenBucket;
use super::map::BucketMap;
use super::map::SharedMap;
use crate::client::{Admission, ClientKey, ClientRecord, Decision, Limits};
use crate::cluster::lease::{Ask, Grant, LeaseBook};
use crate::cluster::{Change, Cluster, NameChange, StoredClient};
use crate::persistence::{DbError, DeleteClient, SaveClient, SaveTokens, SavedClient, Store};
use crate::settings::OnRedisDown;

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
/// `None`: no decision can be made (cluster mode, Redis down, `on_redis_down = "deny"`).
#[derive(Debug, Message)]
#[rtype(result = "Vec<Option<Admission>>")]
pub struct AdmitMany(pub Vec<ClientKey>);

/// From the cluster's agent: a change of the registry in Redis, to mirror here.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ApplyRemote(pub Change);

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
    /// Also held by the handlers of a single instance, which admit under its lock.
    map: SharedMap,
    store: Addr<Store>,
    flush_interval: Duration,
    /// Registered ids across all shards, read by the handlers to resolve API keys.
    registered: Arc<RwLock<HashSet<String>>>,
    /// Cluster mode's state; `None` for a single instance.
    shared: Option<Shared>,
}

/// A shard's part of cluster mode.
struct Shared {
    cluster: Cluster,
    leases: LeaseBook,
    lease: Duration,
    /// While Redis is down under `on_redis_down = "local"`: buckets with every limit divided by
    /// the instances last seen (and that count, to notice a change).
    alone: Option<(usize, BucketMap)>,
}

/// A shard's map holding `saved` clients, each credited the refill for the time since it was
/// saved.
pub fn restored_map(defaults: Limits, max_tracked: usize, saved: Vec<SavedClient>) -> BucketMap {
    let now = Instant::now();
    let mut map = BucketMap::new(defaults, max_tracked);
    for client in saved {
        let down_for = client.saved_at.elapsed().unwrap_or_default();
        let mut bucket = TokenBucket::with_tokens(client.record.limits, client.record.tokens, now);
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
    map
}

impl BucketStore {
    /// The shard owning `map` (see [`restored_map`]).
    pub fn new(
        map: SharedMap,
        store: Addr<Store>,
        flush_interval: Duration,
        registered: Arc<RwLock<HashSet<String>>>,
        cluster: Option<(Cluster, Duration)>,
    ) -> Self {
        Self {
            map,
            store,
            flush_interval,
            registered,
            shared: cluster.map(|(cluster, lease)| Shared {
                cluster,
                leases: LeaseBook::new(lease),
                lease,
                alone: None,
            }),
        }
    }

    /// Writes the dirty levels; finishes when the store has answered.
    fn flush(&mut self) -> Pin<Box<dyn ActorFuture<Self, Output = ()>>> {
        let dirty = self.map.lock().take_dirty(Instant::now());
        if dirty.is_empty() {
            return Box::pin(actix::fut::ready(()));
        }
        let ids: Vec<String> = dirty.iter().map(|(id, _)| id.clone()).collect();
        let write = self.store.send(SaveTokens(dirty));
        Box::pin(write.into_actor(self).map(move |result, shard, _| {
            if !matches!(result, Ok(Ok(()))) {
                // Logged by the store; keep them dirty for the next flush.
                shard.map.lock().mark_dirty(&ids);
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
            shard.map.lock().sweep(Instant::now());
        });
        ctx.run_interval(REJECTION_PERIOD, |shard, _| {
            shard.map.lock().reset_rejections()
        });
        if let Some(shared) = &self.shared {
            if !shared.lease.is_zero() {
                ctx.run_interval(shared.lease, |shard, ctx| shard.give_back(ctx));
            }
        }
    }
}

impl Handler<AdmitMany> for BucketStore {
    type Result = ActorResponse<Self, Vec<Option<Admission>>>;

    fn handle(&mut self, msg: AdmitMany, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        match &self.shared {
            None => {
                let mut map = self.map.lock();
                ActorResponse::reply(msg.0.iter().map(|key| Some(map.admit(key, now))).collect())
            }
            Some(shared) if !shared.cluster.is_up() => {
                ActorResponse::reply(self.admit_alone(&msg.0, now))
            }
            Some(_) => self.admit_shared(msg.0, now),
        }
    }
}

/// One client's asks of a batch that go to Redis: the key, its limits, and the positions of
/// its requests in the batch.
type Pending = (ClientKey, Limits, Vec<usize>);

impl BucketStore {
    /// Cluster mode with Redis up: answers what the leases can, and asks Redis for the rest in
    /// one pipeline.
    fn admit_shared(
        &mut self,
        keys: Vec<ClientKey>,
        now: Instant,
    ) -> ActorResponse<Self, Vec<Option<Admission>>> {
        let Some(shared) = self.shared.as_mut() else {
            return ActorResponse::reply(Vec::new());
        };
        shared.alone = None;
        shared
            .leases
            .set_contenders(shared.cluster.live_instances());
        let mut answers: Vec<Option<Admission>> = vec![None; keys.len()];
        let mut pending: Vec<Pending> = Vec::new();
        let mut map = self.map.lock();
        for (at, key) in keys.into_iter().enumerate() {
            let limits = map.limits_for(&key);
            if let Some(decision) = shared.leases.take(&key, now) {
                answers[at] = Some(judged(&mut map, &key, decision, limits, now));
                continue;
            }
            match pending.iter_mut().find(|(waiting, _, _)| *waiting == key) {
                Some((_, _, positions)) => positions.push(at),
                None => pending.push((key, limits, vec![at])),
            }
        }
        if pending.is_empty() {
            return ActorResponse::reply(answers);
        }
        let asks: Vec<(ClientKey, Limits, Ask)> = pending
            .iter()
            .map(|(key, limits, positions)| {
                let ask = shared.leases.ask(key, positions.len() as u64, *limits, now);
                (key.clone(), *limits, ask)
            })
            .collect();
        let cluster = shared.cluster.clone();
        let call = async move {
            let grants = cluster.admit(&asks).await;
            (asks, grants)
        };
        ActorResponse::r#async(call.into_actor(self).map(move |(asks, grants), shard, _| {
            let now = Instant::now();
            match grants {
                Ok(grants) if grants.len() == asks.len() => {
                    shard.apply_grants(&asks, grants, &pending, &mut answers, now);
                }
                // Redis is marked down: these asks are decided alone, as the next ones will be
                // (which also drops every lease, pending asks included).
                _ => {
                    for (key, _, positions) in &pending {
                        let keys = vec![key.clone(); positions.len()];
                        let decided = shard.admit_alone(&keys, now);
                        for (at, answer) in positions.iter().zip(decided) {
                            answers[*at] = answer;
                        }
                    }
                }
            }
            answers
        }))
    }

    fn apply_grants(
        &mut self,
        asks: &[(ClientKey, Limits, Ask)],
        grants: Vec<Grant>,
        pending: &[Pending],
        answers: &mut [Option<Admission>],
        now: Instant,
    ) {
        let Some(shared) = self.shared.as_mut() else {
            return;
        };
        let mut map = self.map.lock();
        for (((key, limits, ask), grant), (_, _, positions)) in asks.iter().zip(grants).zip(pending)
        {
            let decisions =
                shared
                    .leases
                    .grant(key, *ask, grant, positions.len() as u64, *limits, now);
            for (at, decision) in positions.iter().zip(decisions) {
                answers[*at] = Some(judged(&mut map, key, decision, *limits, now));
            }
        }
    }

    /// Cluster mode with Redis down: `cluster.on_redis_down` decides.
    fn admit_alone(&mut self, keys: &[ClientKey], now: Instant) -> Vec<Option<Admission>> {
        let mut map = self.map.lock();
        let Some(shared) = self.shared.as_mut() else {
            return keys.iter().map(|key| Some(map.admit(key, now))).collect();
        };
        if !shared.leases.is_empty() {
            // Redis's buckets are the truth again when it returns; what was held is dropped.
            shared.leases.clear();
        }
        shared.cluster.count_local(keys.len());
        match shared.cluster.on_redis_down() {
            OnRedisDown::Allow => keys
                .iter()
                .map(|key| {
                    let limits = map.limits_for(key);
                    Some(Admission {
                        decision: Decision {
                            allowed: true,
                            remaining: limits.capacity,
                            retry_after: Duration::ZERO,
                        },
                        limits,
                        report: false,
                    })
                })
                .collect(),
            OnRedisDown::Deny => vec![None; keys.len()],
            OnRedisDown::Local => {
                let instances = shared.cluster.live_instances();
                if shared.alone.as_ref().map(|(n, _)| *n) != Some(instances) {
                    shared.alone = Some((instances, map.divided(instances, now)));
                }
                let Some((_, alone)) = shared.alone.as_mut() else {
                    return Vec::new();
                };
                keys.iter().map(|key| Some(alone.admit(key, now))).collect()
            }
        }
    }

    /// Gives the unspent tokens of ended leases back to Redis (fire and forget: a failure
    /// marks Redis down, and then Redis's buckets refill on their own anyway).
    fn give_back(&mut self, ctx: &mut Context<Self>) {
        let Some(shared) = self.shared.as_mut() else {
            return;
        };
        let refunds = shared.leases.expire(Instant::now());
        if refunds.is_empty() || !shared.cluster.is_up() {
            return;
        }
        let map = self.map.lock();
        let asks: Vec<(ClientKey, Limits, Ask)> = refunds
            .into_iter()
            .map(|(key, refund)| {
                let limits = map.limits_for(&key);
                (key, limits, Ask { want: 0, refund })
            })
            .collect();
        let cluster = shared.cluster.clone();
        ctx.spawn(
            async move {
                let _ = cluster.admit(&asks).await;
            }
            .into_actor(self),
        );
    }

    /// Applies a client Redis has (from this shard's own write, or another instance's through
    /// the change log): into the map and the id set, and mirrored into SQLite when it changed.
    fn apply_put(&mut self, record: ClientRecord) -> ClientRecord {
        let now = Instant::now();
        let mut map = self.map.lock();
        let unchanged = map
            .get(&record.client_id, now)
            .is_some_and(|known| known.name == record.name && known.limits == record.limits);
        let applied = map.upsert(&record.client_id, record.name, record.limits, now);
        drop(map);
        self.set_registered(&record.client_id, true);
        if !unchanged {
            self.store.do_send(SaveClient(applied.clone()));
        }
        applied
    }

    fn apply_delete(&mut self, id: &str) {
        if self.map.lock().remove(id) {
            self.store.do_send(DeleteClient(id.to_owned()));
        }
        self.set_registered(id, false);
    }

    fn cluster(&self) -> Option<Cluster> {
        self.shared.as_ref().map(|shared| shared.cluster.clone())
    }
}

/// An admission decided by Redis's bucket, counted like the map's own.
fn judged(
    map: &mut BucketMap,
    key: &ClientKey,
    decision: Decision,
    limits: Limits,
    now: Instant,
) -> Admission {
    Admission {
        decision,
        limits,
        report: map.record_elsewhere(key, decision.allowed, now),
    }
}

impl Handler<ApplyRemote> for BucketStore {
    type Result = ();

    fn handle(&mut self, msg: ApplyRemote, _: &mut Context<Self>) {
        match msg.0 {
            Change::Put(record) => {
                self.apply_put(record);
            }
            Change::Delete(id) => self.apply_delete(&id),
            Change::Snapshot(records) => {
                let keep: HashSet<&str> = records.iter().map(|r| r.client_id.as_str()).collect();
                let gone: Vec<String> = self
                    .map
                    .lock()
                    .list(Instant::now())
                    .into_iter()
                    .map(|r| r.client_id)
                    .filter(|id| !keep.contains(id.as_str()))
                    .collect();
                for id in gone {
                    self.apply_delete(&id);
                }
                for record in records {
                    self.apply_put(record);
                }
            }
        }
    }
}

/// The answer to a client write in cluster mode: what Redis said, or 503 (nothing changed).
fn redis_answer<T>(answer: Result<T, crate::cluster::Down>) -> Result<T, ClientError> {
    answer.map_err(|down| ClientError::Storage(down.to_string()))
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
        let saved =
            shard
                .map
                .lock()
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
        if let Some(cluster) = self.cluster() {
            let stored = StoredClient {
                client_id: msg.client_id,
                name: msg.name,
                capacity: msg.limits.capacity,
                rate_per_sec: msg.limits.rate_per_sec,
            };
            let create = async move {
                let created = cluster.create(&stored).await;
                (created, stored)
            };
            return AtomicResponse::new(Box::pin(create.into_actor(self).map(
                |(created, stored), shard, _| match redis_answer(created)? {
                    true => Ok(shard.apply_put(stored.into_record())),
                    false => Err(ClientError::Exists(stored.client_id)),
                },
            )));
        }
        if self
            .map
            .lock()
            .get(&msg.client_id, Instant::now())
            .is_some()
        {
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
        if let Some(cluster) = self.cluster() {
            let name = match msg.name {
                None => NameChange::Keep,
                Some(Some(name)) => NameChange::Set(name),
                Some(None) => NameChange::Clear,
            };
            let id = msg.client_id;
            let update = async move {
                let updated = cluster
                    .update(&id, name, msg.capacity, msg.rate_per_sec)
                    .await;
                (updated, id)
            };
            return AtomicResponse::new(Box::pin(update.into_actor(self).map(
                |(updated, id), shard, _| match redis_answer(updated)? {
                    Some(stored) => Ok(shard.apply_put(stored.into_record())),
                    None => Err(ClientError::NotFound(id)),
                },
            )));
        }
        let now = Instant::now();
        let Some(current) = self.map.lock().get(&msg.client_id, now) else {
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
        if let Some(cluster) = self.cluster() {
            let delete = async move {
                let deleted = cluster.delete(&id).await;
                (deleted, id)
            };
            return AtomicResponse::new(Box::pin(delete.into_actor(self).map(
                |(deleted, id), shard, _| {
                    if redis_answer(deleted)? {
                        shard.apply_delete(&id);
                        Ok(())
                    } else {
                        Err(ClientError::NotFound(id))
                    }
                },
            )));
        }
        if self.map.lock().get(&id, Instant::now()).is_none() {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(ClientError::NotFound(
                id,
            )))));
        }
        let delete = self.store.send(DeleteClient(id.clone()));
        AtomicResponse::new(Box::pin(delete.into_actor(self).map(
            move |answer, shard, _| {
                committed(answer)?;
                shard.map.lock().remove(&id);
                shard.set_registered(&id, false);
                Ok(())
            },
        )))
    }
}

impl Handler<GetClient> for BucketStore {
    type Result = ActorResponse<Self, Option<ClientRecord>>;

    fn handle(&mut self, msg: GetClient, _: &mut Context<Self>) -> Self::Result {
        let record = self.map.lock().get(&msg.0, Instant::now());
        match record {
            Some(record) if self.shared.is_some() => {
                self.with_shared_levels(vec![record], |mut all| all.pop())
            }
            record => ActorResponse::reply(record),
        }
    }
}

impl Handler<ListClients> for BucketStore {
    type Result = ActorResponse<Self, Vec<ClientRecord>>;

    fn handle(&mut self, _: ListClients, _: &mut Context<Self>) -> Self::Result {
        let records = self.map.lock().list(Instant::now());
        if self.shared.is_some() && !records.is_empty() {
            self.with_shared_levels(records, |all| all)
        } else {
            ActorResponse::reply(records)
        }
    }
}

impl BucketStore {
    /// Cluster mode: `records` with their `tokens` from Redis's shared buckets (the local
    /// view's levels when Redis cannot say), then `finish`.
    fn with_shared_levels<T: 'static>(
        &mut self,
        mut records: Vec<ClientRecord>,
        finish: impl FnOnce(Vec<ClientRecord>) -> T + 'static,
    ) -> ActorResponse<Self, T> {
        let Some(cluster) = self.cluster().filter(Cluster::is_up) else {
            return ActorResponse::reply(finish(records));
        };
        let clients: Vec<(ClientKey, Limits)> = records
            .iter()
            .map(|r| (ClientKey::Registered(r.client_id.clone()), r.limits))
            .collect();
        let read = async move {
            if let Ok(levels) = cluster.levels(&clients).await {
                for (record, level) in records.iter_mut().zip(levels) {
                    record.tokens = level;
                }
            }
            finish(records)
        };
        ActorResponse::r#async(read.into_actor(self))
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
        MessageResult(self.map.lock().tracked())
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Handler<SweepNow> for BucketStore {
    type Result = usize;

    fn handle(&mut self, _: SweepNow, _: &mut Context<Self>) -> usize {
        self.map.lock().sweep(Instant::now())
    }
}

impl Handler<TopRejected> for BucketStore {
    type Result = MessageResult<TopRejected>;

    fn handle(&mut self, msg: TopRejected, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.map.lock().top_rejected(msg.0))
    }
}

//! `BucketStore`: one shard of the rate limiter, an actor on its own arbiter that owns a
//! [`BucketMap`] (behind a lock it shares with the handlers of a single instance, which take
//! most tokens on their own thread: [`super::map::SharedMap`]). It is a shell: admissions
//! and client writes go to its [`Mode`] (alone with SQLite, or shared through Redis); what it
//! does itself is the upkeep both share — dirty token levels flushed to SQLite every
//! `persistence.flush_interval_ms`, idle full buckets swept every few seconds, the count of
//! recent rejections restarted every minute.

use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use actix::{
    Actor, ActorFuture, ActorFutureExt, ActorResponse, Addr, AsyncContext, AtomicResponse, Context,
    Handler, MessageResult, WrapFuture,
};

use super::bucket::TokenBucket;
use super::map::BucketMap;
#[cfg(any(test, feature = "test-util"))]
use super::messages::SweepNow;
use super::messages::{
    AdmitMany, ApplyRemote, ClientError, CountBuckets, CreateClient, FlushTokens, GetClient,
    ListClients, RemoveClient, Tracked, UpdateClient,
};
use super::mode::{Admitted, Known, Mode};
use crate::client::{Admission, ClientRecord, Limits};
use crate::persistence::{SaveTokens, SavedClient, Store};

/// How long a rejection decided elsewhere is remembered as reported.
const REPORTS_KEPT: Duration = Duration::from_secs(60);

/// How often full, idle buckets of unregistered clients are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// One shard.
pub struct BucketStore {
    /// Also held by the handlers of a single instance, which admit under the map's lock.
    known: Known,
    store: Addr<Store>,
    flush_interval: Duration,
    mode: Box<dyn Mode>,
}

/// A shard's map holding `saved` clients, each credited the refill for the time since it was
/// saved.
pub fn restored_map(defaults: Limits, max_tracked: usize, saved: Vec<SavedClient>) -> BucketMap {
    let now = Instant::now();
    let mut map = BucketMap::new(defaults, max_tracked);
    let restored = |limits, tokens, saved_at: SystemTime| {
        let mut bucket = TokenBucket::with_tokens(limits, tokens, now);
        bucket.credit(saved_at.elapsed().unwrap_or_default());
        bucket
    };
    for client in saved {
        for (level, saved_at) in client.route_levels {
            let bucket = restored(level.limits, level.tokens, saved_at);
            map.restore_route(&level.route, &level.client_id, bucket, now);
        }
        let tokens =
            restored(client.record.limits, client.record.tokens, client.saved_at).tokens(now);
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
    /// The shard of `known`'s map, deciding and writing as `mode` says.
    pub fn new(
        known: Known,
        store: Addr<Store>,
        flush_interval: Duration,
        mode: Box<dyn Mode>,
    ) -> Self {
        Self {
            known,
            store,
            flush_interval,
            mode,
        }
    }

    /// Writes the dirty levels; finishes when the store has answered.
    fn flush(&mut self) -> Pin<Box<dyn ActorFuture<Self, Output = ()>>> {
        let dirty = self.known.map.lock().take_dirty(Instant::now());
        if dirty.is_empty() {
            return Box::pin(actix::fut::ready(()));
        }
        let write = self.store.send(SaveTokens(dirty.clone()));
        Box::pin(write.into_actor(self).map(move |result, shard, _| {
            if !matches!(result, Ok(Ok(()))) {
                // Logged by the store; keep them dirty for the next flush.
                shard.known.map.lock().mark_dirty(&dirty);
            }
        }))
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
            shard.known.map.lock().sweep(Instant::now());
        });
        ctx.run_interval(REPORTS_KEPT, |shard, _| {
            shard.known.map.lock().forget_reports()
        });
        if let Some(every) = self.mode.tick_every() {
            ctx.run_interval(every, |shard, ctx| {
                if let Some(work) = shard.mode.tick(Instant::now()) {
                    ctx.spawn(work.into_actor(shard));
                }
            });
        }
    }
}

impl Handler<AdmitMany> for BucketStore {
    type Result = ActorResponse<Self, Vec<Option<Admission>>>;

    fn handle(&mut self, msg: AdmitMany, _: &mut Context<Self>) -> Self::Result {
        match self.mode.admit(msg.0, Instant::now()) {
            Admitted::Now(answers) => ActorResponse::reply(answers),
            Admitted::Later(answers) => ActorResponse::r#async(answers.into_actor(self)),
        }
    }
}

impl Handler<ApplyRemote> for BucketStore {
    type Result = ();

    fn handle(&mut self, msg: ApplyRemote, _: &mut Context<Self>) {
        self.mode.apply_remote(msg.0);
    }
}

/// Client writes are atomic: the shard takes no other message until the write is done, so two
/// writes of one client never interleave.
impl Handler<CreateClient> for BucketStore {
    type Result = AtomicResponse<Self, Result<ClientRecord, ClientError>>;

    fn handle(&mut self, msg: CreateClient, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(Box::pin(self.mode.create(msg).into_actor(self)))
    }
}

impl Handler<UpdateClient> for BucketStore {
    type Result = AtomicResponse<Self, Result<ClientRecord, ClientError>>;

    fn handle(&mut self, msg: UpdateClient, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(Box::pin(self.mode.update(msg).into_actor(self)))
    }
}

impl Handler<RemoveClient> for BucketStore {
    type Result = AtomicResponse<Self, Result<(), ClientError>>;

    fn handle(&mut self, msg: RemoveClient, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(Box::pin(self.mode.remove(msg.0).into_actor(self)))
    }
}

impl Handler<GetClient> for BucketStore {
    type Result = ActorResponse<Self, Option<ClientRecord>>;

    fn handle(&mut self, msg: GetClient, _: &mut Context<Self>) -> Self::Result {
        match self.known.get(&msg.0) {
            None => ActorResponse::reply(None),
            Some(record) => {
                let read = self.mode.levels(vec![record]);
                ActorResponse::r#async(read.into_actor(self).map(|mut all, _, _| all.pop()))
            }
        }
    }
}

impl Handler<ListClients> for BucketStore {
    type Result = ActorResponse<Self, Vec<ClientRecord>>;

    fn handle(&mut self, _: ListClients, _: &mut Context<Self>) -> Self::Result {
        let records = self.known.map.lock().list(Instant::now());
        ActorResponse::r#async(self.mode.levels(records).into_actor(self))
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
        let (registered, addresses) = self.known.map.lock().tracked();
        MessageResult(Tracked {
            registered,
            addresses,
        })
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Handler<SweepNow> for BucketStore {
    type Result = usize;

    fn handle(&mut self, _: SweepNow, _: &mut Context<Self>) -> usize {
        self.known.map.lock().sweep(Instant::now())
    }
}

//! Per-client rate limiting: token buckets ([`bucket`]) kept per shard ([`map`]) by
//! `BucketStore` actors ([`shard`]), one per core on arbiters of their own; a client's key is
//! hashed to exactly one shard. A shard decides and writes as its [`mode`] says: alone, with
//! SQLite ([`local`]), or with every instance through Redis ([`shared`]). [`Limiter`] is what
//! handlers hold. A single instance's handler takes its token from the shard's map under its
//! lock, on the handler's own thread ([`map::SharedMap`]); when the lock is busy, an eviction
//! is due, or in cluster mode (where the shard charges Redis), the charge goes to the shard's actor
//! (admissions batched per worker turn, [`batch`]).
//!
//! A request is counted against its API key when that key is a registered `client_id`, else
//! against its client address (found by the HTTP layer). An unregistered key gets no bucket of
//! its own, so rotating keys does not escape the limit.

mod batch;
pub mod bucket;
mod charge;
mod local;
pub mod map;
mod messages;
mod mode;
mod rejections;
mod route_buckets;
mod routed;
mod saved;
mod shard;
mod shared;
mod shared_batch;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter, MailboxError};

use futures_util::future::LocalBoxFuture;

use crate::client::{Admission, Charge, ClientKey, ClientRecord, Limits};
use crate::cluster::{Change, Cluster, Replica};
use crate::persistence::{SavedClient, Store};
use crate::settings::RateLimitSettings;
use local::LocalMode;
use map::SharedMap;
use messages::{ApplyRemote, CountBuckets, FlushTokens, GetClient, ListClients, RemoveClient};
pub use messages::{ClientError, CreateClient, Tracked, UpdateClient};
use mode::{Known, Mode, RegisteredIds};
pub use rejections::Rejected;
use rejections::Rejections;
use shard::BucketStore;
use shared::SharedMode;

/// Why a request got no admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The shard is gone (only while the process stops).
    #[error("the rate limiter has stopped")]
    Stopped,
    /// Cluster mode, Redis down, and `cluster.on_redis_down = "deny"`.
    #[error("the shared rate limits (Redis) are unavailable")]
    SharedLimitsDown,
}

/// The handlers' way to the bucket shards.
pub struct Limiter {
    shards: Vec<Addr<BucketStore>>,
    /// The shards' maps, by shard, for admissions on the handler's thread; empty in cluster
    /// mode, where every admission goes through the shard's leases.
    maps: Vec<SharedMap>,
    /// Registered client ids, so an API key is resolved before choosing a shard.
    registered: RegisteredIds,
    /// Recent refusals by client and route, for the status page.
    rejections: Rejections,
}

impl Limiter {
    /// Starts `shard_count` shards, each on its own arbiter, holding the `saved` clients; in
    /// cluster mode (`cluster` with the lease length) they limit through Redis.
    pub fn start(
        settings: &RateLimitSettings,
        flush_interval: Duration,
        store: Addr<Store>,
        saved: Vec<SavedClient>,
        shard_count: usize,
        cluster: Option<(Cluster, Duration)>,
    ) -> Self {
        let shard_count = shard_count.max(1);
        let defaults = Limits {
            capacity: settings.default_capacity,
            rate_per_sec: settings.default_rate_per_sec,
        };
        let per_shard_cap = (settings.max_tracked_clients as usize).div_ceil(shard_count);
        let registered: HashSet<String> =
            saved.iter().map(|c| c.record.client_id.clone()).collect();
        let registered = RegisteredIds::new(registered);
        let mut by_shard: Vec<Vec<SavedClient>> = (0..shard_count).map(|_| Vec::new()).collect();
        for client in saved {
            let key = ClientKey::Registered(client.record.client_id.clone());
            by_shard[shard_index(&key, shard_count)].push(client);
        }
        let maps: Vec<SharedMap> = by_shard
            .into_iter()
            .map(|saved| SharedMap::new(shard::restored_map(defaults, per_shard_cap, saved)))
            .collect();
        let shards = maps
            .iter()
            .map(|map| {
                let known = Known::new(map.clone(), registered.clone());
                start_shard(known, store.clone(), flush_interval, cluster.clone())
            })
            .collect();
        let maps = if cluster.is_some() { Vec::new() } else { maps };
        Self {
            shards,
            maps,
            registered,
            rejections: Rejections::default(),
        }
    }

    /// Who a request counts against: its API key when that is a registered client id, else
    /// its client address (as the HTTP layer determined it).
    pub fn key_for(&self, api_key: Option<&str>, ip: IpAddr) -> ClientKey {
        match api_key {
            Some(key) if self.registered.contains(key) => ClientKey::Registered(key.to_owned()),
            _ => ClientKey::Ip(ip),
        }
    }

    fn shard(&self, key: &ClientKey) -> &Addr<BucketStore> {
        &self.shards[shard_index(key, self.shards.len())]
    }

    /// Takes what `charge` wants from its client's shard: at once from the shard's map when its
    /// lock is free (a single instance), else from the shard's actor, where the admissions of
    /// one worker turn travel together (`batch.rs`).
    pub async fn admit(&self, charge: Charge) -> Result<Admission, AdmitError> {
        let index = shard_index(&charge.key, self.shards.len());
        if let Some(admission) = self
            .maps
            .get(index)
            .and_then(|map| map.try_admit(&charge, Instant::now()))
        {
            return Ok(admission);
        }
        match batch::admit(&self.shards[index], charge).await {
            Ok(Some(admission)) => Ok(admission),
            Ok(None) => Err(AdmitError::SharedLimitsDown),
            Err(_) => Err(AdmitError::Stopped),
        }
    }

    /// Where the cluster's agent sends the registry's changes: to the shard of each client.
    pub fn replica(&self) -> Box<dyn Replica> {
        Box::new(ShardReplica {
            shards: self.shards.clone(),
        })
    }

    pub async fn create(&self, client: CreateClient) -> Result<ClientRecord, ClientError> {
        let key = ClientKey::Registered(client.client_id.clone());
        self.shard(&key).send(client).await.unwrap_or_else(stopped)
    }

    pub async fn update(&self, change: UpdateClient) -> Result<ClientRecord, ClientError> {
        let key = ClientKey::Registered(change.client_id.clone());
        self.shard(&key).send(change).await.unwrap_or_else(stopped)
    }

    pub async fn remove(&self, client_id: String) -> Result<(), ClientError> {
        let key = ClientKey::Registered(client_id.clone());
        self.shard(&key)
            .send(RemoveClient(client_id))
            .await
            .unwrap_or_else(stopped)
    }

    pub async fn get(&self, client_id: String) -> Result<ClientRecord, ClientError> {
        let key = ClientKey::Registered(client_id.clone());
        match self.shard(&key).send(GetClient(client_id.clone())).await {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(ClientError::NotFound(client_id)),
            Err(err) => stopped(err),
        }
    }

    /// Every registered client, sorted by id.
    pub async fn list(&self) -> Result<Vec<ClientRecord>, ClientError> {
        let mut all = Vec::new();
        for shard in &self.shards {
            all.extend(shard.send(ListClients).await.or_else(stopped)?);
        }
        all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(all)
    }

    /// Writes every shard's dirty token levels now (the shutdown hook).
    pub async fn flush(&self) {
        for shard in &self.shards {
            let _ = shard.send(FlushTokens).await;
        }
    }

    /// The buckets tracked over all shards.
    pub async fn tracked(&self) -> Tracked {
        let mut total = Tracked::default();
        for shard in &self.shards {
            if let Ok(counted) = shard.send(CountBuckets).await {
                total.registered += counted.registered;
                total.addresses += counted.addresses;
            }
        }
        total
    }

    /// Counts a refusal of `key`'s request on `route` for [`Self::top_rejected`].
    pub fn count_rejection(&self, key: &ClientKey, route: Option<&Arc<str>>) {
        self.rejections.count(key, route, Instant::now());
    }

    /// The `n` clients (by route) refused most in the current minute, most first.
    pub fn top_rejected(&self, n: usize) -> Vec<Rejected> {
        self.rejections.top(n, Instant::now())
    }

    /// Drops idle full buckets on every shard now (they are swept every few seconds anyway);
    /// how many went.
    #[cfg(any(test, feature = "test-util"))]
    pub async fn sweep(&self) -> usize {
        let mut swept = 0;
        for shard in &self.shards {
            swept += shard.send(messages::SweepNow).await.unwrap_or(0);
        }
        swept
    }
}

/// Starts one shard on an arbiter of its own, deciding alone or, with `cluster`, through Redis.
fn start_shard(
    known: Known,
    store: Addr<Store>,
    flush_interval: Duration,
    cluster: Option<(Cluster, Duration)>,
) -> Addr<BucketStore> {
    // The mode is built on the shard's own thread: a shared one is not `Send`.
    BucketStore::start_in_arbiter(&Arbiter::new().handle(), move |_| {
        let mode: Box<dyn Mode> = match cluster {
            Some((cluster, lease)) => Box::new(SharedMode::new(
                known.clone(),
                store.clone(),
                cluster,
                lease,
            )),
            None => Box::new(LocalMode::new(known.clone(), store.clone())),
        };
        BucketStore::new(known, store, flush_interval, mode)
    })
}

/// The shards as the cluster's agent sees them.
struct ShardReplica {
    shards: Vec<Addr<BucketStore>>,
}

impl Replica for ShardReplica {
    fn apply(&self, change: Change) {
        let count = self.shards.len();
        let shard_of = |id: &str| shard_index(&ClientKey::Registered(id.to_owned()), count);
        match change {
            Change::Put(record) => {
                self.shards[shard_of(&record.client_id)].do_send(ApplyRemote(Change::Put(record)));
            }
            Change::Delete(id) => {
                self.shards[shard_of(&id)].do_send(ApplyRemote(Change::Delete(id)));
            }
            Change::Snapshot(records) => {
                let mut parts: Vec<Vec<ClientRecord>> = vec![Vec::new(); count];
                for record in records {
                    parts[shard_of(&record.client_id)].push(record);
                }
                for (shard, part) in self.shards.iter().zip(parts) {
                    shard.do_send(ApplyRemote(Change::Snapshot(part)));
                }
            }
        }
    }

    fn local_clients(&self) -> LocalBoxFuture<'static, Vec<ClientRecord>> {
        let shards = self.shards.clone();
        Box::pin(async move {
            let mut all = Vec::new();
            for shard in &shards {
                all.extend(shard.send(ListClients).await.unwrap_or_default());
            }
            all
        })
    }
}

fn stopped<T>(_: MailboxError) -> Result<T, ClientError> {
    Err(ClientError::Storage("the rate limiter has stopped".into()))
}

fn shard_index(key: &ClientKey, count: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % count as u64) as usize
}

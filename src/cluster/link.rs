//! The cluster's handle on Redis: the connection (installed by the agent once it is usable),
//! whether Redis is up, the calls the shards make, and what status and metrics show.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Pipeline};
use serde::{Deserialize, Serialize};

use super::lease::{Ask, Grant};
use super::scripts::Scripts;
use crate::client::{ClientKey, ClientRecord, Limits};
use crate::events::{Events, LbEvent};
use crate::settings::{ClusterSettings, OnRedisDown};

/// Entries the registry's change log keeps (roughly); an instance away longer resyncs anyway.
pub(super) const LOG_LENGTH: u64 = 10_000;

/// Why a Redis call gave no answer: Redis counts as down until the agent reconnects.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Redis unavailable: {0}")]
pub struct Down(pub String);

/// `cluster` in `/lb/api/status`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterStatus {
    /// `"single"` or `"redis"`.
    pub mode: &'static str,
    /// `"up"`, `"down"`, or `None` in single mode.
    pub redis: Option<&'static str>,
    pub instance: String,
    /// Instances that heartbeat into Redis, as last seen from here.
    pub instances: Vec<Instance>,
}

/// One live instance.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Instance {
    pub name: String,
    /// Its last heartbeat, unix ms on Redis's clock.
    pub last_seen_ms: u64,
}

/// The counters `/lb/metrics` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterCounters {
    pub up: bool,
    /// Commands sent to Redis (a pipeline of n bucket asks counts n).
    pub calls: u64,
    /// Admissions decided without Redis because it was down.
    pub decided_locally: u64,
}

/// A client as the registry in Redis stores it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredClient {
    pub client_id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub capacity: u64,
    pub rate_per_sec: f64,
}

impl StoredClient {
    pub fn from_record(record: &ClientRecord) -> Self {
        Self {
            client_id: record.client_id.clone(),
            name: record.name.clone(),
            capacity: record.limits.capacity,
            rate_per_sec: record.limits.rate_per_sec,
        }
    }

    /// As a record with a full bucket (levels live in Redis's buckets, not in the registry).
    pub fn into_record(self) -> ClientRecord {
        ClientRecord {
            tokens: self.capacity as f64,
            client_id: self.client_id,
            name: self.name,
            limits: Limits::new(self.capacity, self.rate_per_sec),
        }
    }

    /// `None` for JSON that is not a valid client (written by something else): skipped.
    pub(super) fn parse(json: &str) -> Option<Self> {
        serde_json::from_str::<Self>(json)
            .ok()
            .filter(|c| c.capacity >= 1 && c.rate_per_sec.is_finite() && c.rate_per_sec > 0.0)
    }
}

/// What an update does with the name.
#[derive(Debug, Clone, PartialEq)]
pub enum NameChange {
    Keep,
    Set(String),
    Clear,
}

/// The cluster handle; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) client: redis::Client,
    prefix: String,
    pub(super) timeout: Duration,
    on_redis_down: OnRedisDown,
    pub(super) scripts: Scripts,
    connection: RwLock<Option<MultiplexedConnection>>,
    up: AtomicBool,
    calls: AtomicU64,
    decided_locally: AtomicU64,
    instance: Mutex<String>,
    instances: Mutex<Vec<Instance>>,
    events: Events,
}

impl Cluster {
    /// The handle for `settings`, or `None` in single mode. Redis is down until the agent
    /// (started with [`super::start_agent`]) has connected.
    pub fn new(settings: &ClusterSettings, events: Events) -> Option<Self> {
        let client = settings.redis.clone()?;
        Some(Self {
            inner: Arc::new(Inner {
                client,
                prefix: settings.key_prefix.clone(),
                timeout: settings.redis_timeout,
                on_redis_down: settings.on_redis_down,
                scripts: Scripts::new(),
                connection: RwLock::new(None),
                up: AtomicBool::new(false),
                calls: AtomicU64::new(0),
                decided_locally: AtomicU64::new(0),
                instance: Mutex::new(settings.instance_name.clone().unwrap_or_default()),
                instances: Mutex::new(Vec::new()),
                events,
            }),
        })
    }

    /// Names this instance `instance` unless the settings named it.
    pub(super) fn name_unless_named(&self, instance: String) {
        if let Ok(mut name) = self.inner.instance.lock() {
            if name.is_empty() {
                *name = instance;
            }
        }
    }

    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    pub fn on_redis_down(&self) -> OnRedisDown {
        self.inner.on_redis_down
    }

    /// Live instances as last seen (at least 1: this one).
    pub fn live_instances(&self) -> usize {
        self.inner
            .instances
            .lock()
            .map_or(1, |all| all.len())
            .max(1)
    }

    /// Counts admissions decided without Redis.
    pub fn count_local(&self, n: usize) {
        self.inner
            .decided_locally
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn counters(&self) -> ClusterCounters {
        ClusterCounters {
            up: self.is_up(),
            calls: self.inner.calls.load(Ordering::Relaxed),
            decided_locally: self.inner.decided_locally.load(Ordering::Relaxed),
        }
    }

    pub fn status(&self) -> ClusterStatus {
        ClusterStatus {
            mode: "redis",
            redis: Some(if self.is_up() { "up" } else { "down" }),
            instance: self.instance(),
            instances: self
                .inner
                .instances
                .lock()
                .map(|all| all.clone())
                .unwrap_or_default(),
        }
    }

    pub(super) fn instance(&self) -> String {
        self.inner
            .instance
            .lock()
            .map(|name| name.clone())
            .unwrap_or_default()
    }

    /// Leaves the list of live instances (clean shutdown); a failure is harmless, the entry
    /// expires.
    pub async fn leave(&self) {
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM")
            .arg(self.instances_key())
            .arg(self.instance());
        if self.query::<(u8,)>(&pipe, 1).await.is_ok() {
            log::info!("left the cluster's instances");
        }
    }

    /// Asks the shared buckets, one script call per client, all in one pipeline.
    pub async fn admit(&self, asks: &[(ClientKey, Limits, Ask)]) -> Result<Vec<Grant>, Down> {
        let answers = self.buckets(asks).await?;
        Ok(answers
            .into_iter()
            .map(|(granted, wait_ms, level, _)| Grant {
                granted,
                wait: Duration::from_millis(wait_ms),
                level,
            })
            .collect())
    }

    /// The shared buckets' levels now, taking nothing.
    pub async fn levels(&self, clients: &[(ClientKey, Limits)]) -> Result<Vec<f64>, Down> {
        let nothing = Ask { want: 0, refund: 0 };
        let asks: Vec<(ClientKey, Limits, Ask)> = clients
            .iter()
            .map(|(key, limits)| (key.clone(), *limits, nothing))
            .collect();
        let answers = self.buckets(&asks).await?;
        Ok(answers
            .into_iter()
            .map(|(_, _, whole, exact)| exact.parse().unwrap_or(whole as f64))
            .collect())
    }

    /// The bucket script once per ask, in one pipeline: (granted, ms until a whole token, whole
    /// tokens left, the exact level as text) each.
    async fn buckets(
        &self,
        asks: &[(ClientKey, Limits, Ask)],
    ) -> Result<Vec<(u64, u64, u64, String)>, Down> {
        let mut pipe = redis::pipe();
        for (key, limits, ask) in asks {
            let mut invocation = self.inner.scripts.bucket.key(self.bucket_key(key));
            invocation
                .arg(limits.capacity)
                .arg(limits.rate_per_sec)
                .arg(ask.want)
                .arg(ask.refund);
            pipe.invoke_script(&invocation);
        }
        self.query(&pipe, asks.len()).await
    }

    /// Registers a client; `Ok(false)` when its id exists.
    pub async fn create(&self, client: &StoredClient) -> Result<bool, Down> {
        let (created,): (u8,) = self.query(&self.create_pipe(client)?, 1).await?;
        Ok(created == 1)
    }

    /// The create script for `client`, as a pipeline of one (answers 1, or 0 if it existed).
    pub(super) fn create_pipe(&self, client: &StoredClient) -> Result<Pipeline, Down> {
        let json = serde_json::to_string(client).map_err(|e| Down(e.to_string()))?;
        let mut invocation = self.inner.scripts.create.key(self.clients_key());
        invocation
            .key(self.log_key())
            .arg(&client.client_id)
            .arg(json)
            .arg(LOG_LENGTH)
            .arg(self.instance());
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation);
        Ok(pipe)
    }

    /// Tells this instance's page about a change another instance made.
    pub(super) fn announce(&self, action: &'static str, client_id: String) {
        self.inner
            .events
            .publish(LbEvent::Client { action, client_id });
    }

    /// Changes a client; `Ok(None)` when there is none.
    pub async fn update(
        &self,
        client_id: &str,
        name: NameChange,
        capacity: Option<u64>,
        rate_per_sec: Option<f64>,
    ) -> Result<Option<StoredClient>, Down> {
        let (name_op, name) = match name {
            NameChange::Keep => ("keep", String::new()),
            NameChange::Set(name) => ("set", name),
            NameChange::Clear => ("clear", String::new()),
        };
        let mut invocation = self.inner.scripts.update.key(self.clients_key());
        invocation
            .key(self.log_key())
            .arg(client_id)
            .arg(name_op)
            .arg(name)
            .arg(capacity.map(|c| c.to_string()).unwrap_or_default())
            .arg(rate_per_sec.map(|r| r.to_string()).unwrap_or_default())
            .arg(LOG_LENGTH)
            .arg(self.instance());
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation);
        let (json,): (Option<String>,) = self.query(&pipe, 1).await?;
        Ok(json.as_deref().and_then(StoredClient::parse))
    }

    /// Removes a client and its bucket; `Ok(false)` when there was none.
    pub async fn delete(&self, client_id: &str) -> Result<bool, Down> {
        let bucket = self.bucket_key(&ClientKey::Registered(client_id.to_owned()));
        let mut invocation = self.inner.scripts.delete.key(self.clients_key());
        invocation
            .key(self.log_key())
            .key(bucket)
            .arg(client_id)
            .arg(LOG_LENGTH)
            .arg(self.instance());
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation);
        let (deleted,): (u8,) = self.query(&pipe, 1).await?;
        Ok(deleted == 1)
    }

    /// Runs `pipe` (of `commands` commands) within `cluster.redis_timeout_ms`; a failure or a
    /// timeout marks Redis down.
    async fn query<T: FromRedisValue>(&self, pipe: &Pipeline, commands: usize) -> Result<T, Down> {
        self.query_within(pipe, commands, self.inner.timeout).await
    }

    pub(super) async fn query_within<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
        commands: usize,
        timeout: Duration,
    ) -> Result<T, Down> {
        let Some(mut connection) = self.connection() else {
            return Err(Down("not connected".into()));
        };
        self.inner
            .calls
            .fetch_add(commands as u64, Ordering::Relaxed);
        let outcome = tokio::time::timeout(timeout, pipe.query_async::<T>(&mut connection)).await;
        let failure = match outcome {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {} ms", timeout.as_millis()),
        };
        self.mark_down(&failure);
        Err(Down(failure))
    }

    fn connection(&self) -> Option<MultiplexedConnection> {
        if !self.is_up() {
            return None;
        }
        self.inner.connection.read().ok()?.clone()
    }

    /// Logs the transition once; the agent reconnects.
    fn mark_down(&self, why: &str) {
        if self.inner.up.swap(false, Ordering::AcqRel) {
            let fallback = match self.inner.on_redis_down {
                OnRedisDown::Local => "each instance limits on its own",
                OnRedisDown::Allow => "every request is admitted",
                OnRedisDown::Deny => "requests are refused with 503",
            };
            log::error!("Redis is down ({why}); until it is back {fallback}, and client changes are refused");
            self.inner.events.publish(LbEvent::Redis {
                state: "down",
                reason: why.to_owned(),
            });
        }
    }

    /// A fresh connection with the scripts loaded and the registry caught up: Redis is up.
    pub(super) fn mark_up(&self, connection: MultiplexedConnection) {
        if let Ok(mut slot) = self.inner.connection.write() {
            *slot = Some(connection);
        }
        if !self.inner.up.swap(true, Ordering::AcqRel) {
            log::info!("Redis is up: limits and clients are shared across instances");
            self.inner.events.publish(LbEvent::Redis {
                state: "up",
                reason: "connected, scripts loaded, registry read".to_owned(),
            });
        }
    }

    pub(super) fn set_instances(&self, instances: Vec<Instance>) {
        if let Ok(mut all) = self.inner.instances.lock() {
            *all = instances;
        }
    }

    fn bucket_key(&self, key: &ClientKey) -> String {
        match key {
            ClientKey::Registered(id) => format!("{}bucket:client:{id}", self.inner.prefix),
            ClientKey::Ip(ip) => format!("{}bucket:ip:{ip}", self.inner.prefix),
        }
    }

    pub(super) fn clients_key(&self) -> String {
        format!("{}clients", self.inner.prefix)
    }

    pub(super) fn log_key(&self) -> String {
        format!("{}clients:log", self.inner.prefix)
    }

    pub(super) fn instances_key(&self) -> String {
        format!("{}instances", self.inner.prefix)
    }
}

/// Single mode's `cluster` status.
pub fn single_status(instance: String) -> ClusterStatus {
    ClusterStatus {
        mode: "single",
        redis: None,
        instance,
        instances: Vec::new(),
    }
}

//! The cluster's handle on Redis: the connection (installed by the agent once it is usable),
//! whether Redis is up, the one way calls are made ([`Cluster::query`]: within
//! `cluster.redis_timeout_ms`; `cluster.redis_down_after` failures in a row mark Redis down),
//! the keys, and this instance's view of the others. The calls themselves are in [`super::buckets`] and [`super::clients`].

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::{ErrorKind, FromRedisValue, Pipeline, RedisError, ServerErrorKind};

use super::config_state::SharedConfig;
use super::connection::Connection;
use super::scripts::Scripts;
use super::status::{ClusterCounters, ClusterStatus, Instance};
use super::target::Target;
use crate::client::ClientKey;
use crate::events::{Events, LbEvent};
use crate::settings::{ClusterSettings, OnRedisDown};

/// Entries the registry's change log keeps (roughly); an instance away longer resyncs anyway.
pub(super) const LOG_LENGTH: u64 = 10_000;

/// Why a Redis call gave no answer: Redis counts as down until the agent reconnects.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Redis unavailable: {0}")]
pub struct Down(pub String);

/// The cluster handle; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) target: Target,
    /// The server connected to (`host:port`), once connected.
    server: Mutex<Option<String>>,
    prefix: String,
    pub(super) timeout: Duration,
    on_redis_down: OnRedisDown,
    pub(super) scripts: Scripts,
    connection: RwLock<Option<Connection>>,
    up: AtomicBool,
    /// Consecutive failed or slow calls, and how many make Redis down.
    failing: AtomicU32,
    down_after: u32,
    calls: AtomicU64,
    failed_calls: AtomicU64,
    decided_locally: AtomicU64,
    instance: Mutex<String>,
    instances: Mutex<Vec<Instance>>,
    pub(super) events: Events,
    /// `cluster.share_config`'s side of this instance.
    pub(super) config: SharedConfig,
    pub(super) share_config: bool,
}

impl Cluster {
    /// The handle for `settings`, or `None` in single mode. Redis is down until the agent
    /// (started with [`super::start_agent`]) has connected.
    pub fn new(settings: &ClusterSettings, events: Events) -> Option<Self> {
        let topology = settings.redis.clone()?;
        Some(Self {
            inner: Arc::new(Inner {
                target: Target::new(&topology),
                server: Mutex::new(None),
                prefix: settings.key_prefix.clone(),
                timeout: settings.redis_timeout,
                on_redis_down: settings.on_redis_down,
                scripts: Scripts::new(),
                connection: RwLock::new(None),
                up: AtomicBool::new(false),
                failing: AtomicU32::new(0),
                down_after: settings.redis_down_after.get(),
                calls: AtomicU64::new(0),
                failed_calls: AtomicU64::new(0),
                decided_locally: AtomicU64::new(0),
                instance: Mutex::new(settings.instance_name.clone().unwrap_or_default()),
                instances: Mutex::new(Vec::new()),
                events,
                config: SharedConfig::default(),
                share_config: settings.share_config,
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
            failed_calls: self.inner.failed_calls.load(Ordering::Relaxed),
            decided_locally: self.inner.decided_locally.load(Ordering::Relaxed),
        }
    }

    pub fn status(&self) -> ClusterStatus {
        ClusterStatus {
            mode: "redis",
            redis: Some(if self.is_up() { "up" } else { "down" }),
            topology: Some(self.inner.target.name()),
            server: self.server(),
            config_version: self.config_version(),
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

    /// Runs `pipe` (of `commands` commands) within `cluster.redis_timeout_ms`; a failure or a
    /// timeout fails this call, and the `cluster.redis_down_after`-th in a row marks Redis down.
    pub(super) async fn query<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
        commands: usize,
    ) -> Result<T, Down> {
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
        let outcome = tokio::time::timeout(timeout, connection.query::<T>(pipe)).await;
        let failure = match outcome {
            Ok(Ok(answer)) => {
                self.inner.failing.store(0, Ordering::Relaxed);
                return Ok(answer);
            }
            Ok(Err(err)) if is_no_script(&err) => {
                // Every call fails until the scripts are loaded again, which the agent's
                // reconnect does: no point waiting for more failures in a row.
                self.inner.failed_calls.fetch_add(1, Ordering::Relaxed);
                self.mark_down("NOSCRIPT: it lost the scripts, the reconnect loads them");
                return Err(Down(err.to_string()));
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {} ms", timeout.as_millis()),
        };
        self.count_failure(&failure);
        Err(Down(failure))
    }

    /// One more failed or slow call in a row: at `down_after` of them Redis is down.
    fn count_failure(&self, why: &str) {
        self.inner.failed_calls.fetch_add(1, Ordering::Relaxed);
        let in_a_row = self.inner.failing.fetch_add(1, Ordering::Relaxed) + 1;
        if in_a_row >= self.inner.down_after {
            let why = match self.inner.down_after {
                1 => why.to_owned(),
                n => format!("{n} calls in a row failed or were slow, the last: {why}"),
            };
            self.mark_down(&why);
        } else {
            log::debug!("Redis call failed ({in_a_row} in a row): {why}");
        }
    }

    fn connection(&self) -> Option<Connection> {
        if !self.is_up() {
            return None;
        }
        self.inner.connection.read().ok()?.clone()
    }

    /// The server connected to, or last connected to.
    pub(super) fn server(&self) -> Option<String> {
        self.inner.server.lock().ok().and_then(|s| s.clone())
    }

    /// Logs the transition once; the agent reconnects.
    pub(super) fn mark_down(&self, why: &str) {
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
    /// `server` is the address connected to (none on a Redis Cluster).
    pub(super) fn mark_up(&self, connection: Connection, server: Option<String>) {
        if let Ok(mut slot) = self.inner.connection.write() {
            *slot = Some(connection);
        }
        let at = server
            .clone()
            .unwrap_or_else(|| "the Redis Cluster".to_owned());
        if let Ok(mut slot) = self.inner.server.lock() {
            *slot = server;
        }
        self.inner.failing.store(0, Ordering::Relaxed);
        if !self.inner.up.swap(true, Ordering::AcqRel) {
            log::info!("Redis is up ({at}): limits and clients are shared across instances");
            self.inner.events.publish(LbEvent::Redis {
                state: "up",
                reason: format!("connected to {at}, scripts loaded, registry read"),
            });
        }
    }

    pub(super) fn set_instances(&self, instances: Vec<Instance>) {
        if let Ok(mut all) = self.inner.instances.lock() {
            *all = instances;
        }
    }

    /// A client's bucket. On a Redis Cluster the client's identity is the key's hash tag, so
    /// that its buckets on routes share the slot (one script takes from both).
    pub(super) fn bucket_key(&self, key: &ClientKey) -> String {
        let prefix = &self.inner.prefix;
        match key {
            ClientKey::Registered(id) => format!("{prefix}bucket:client:{}", self.tag(id)),
            ClientKey::Ip(ip) => format!("{prefix}bucket:ip:{}", self.tag(&ip.to_string())),
        }
    }

    /// `key`'s bucket on `route` (a route with limits).
    pub(super) fn route_bucket_key(&self, route: &str, key: &ClientKey) -> String {
        let prefix = &self.inner.prefix;
        match key {
            ClientKey::Registered(id) => {
                format!("{prefix}bucket:route:{route}:client:{}", self.tag(id))
            }
            ClientKey::Ip(ip) => {
                format!(
                    "{prefix}bucket:route:{route}:ip:{}",
                    self.tag(&ip.to_string())
                )
            }
        }
    }

    pub(super) fn clients_key(&self) -> String {
        self.registry_key("clients")
    }

    pub(super) fn log_key(&self) -> String {
        self.registry_key("clients:log")
    }

    pub(super) fn instances_key(&self) -> String {
        self.registry_key("instances")
    }

    pub(super) fn instance_versions_key(&self) -> String {
        self.registry_key("instances:config")
    }

    pub(super) fn config_key(&self) -> String {
        self.registry_key("config")
    }

    pub(super) fn config_log_key(&self) -> String {
        self.registry_key("config:log")
    }

    /// `{id}` on a Redis Cluster (a hash tag: the slot is the tag's), else `id`. Client ids,
    /// addresses and route names hold no braces; the prefix is checked for them.
    fn tag(&self, id: &str) -> String {
        if self.tagged() {
            format!("{{{id}}}")
        } else {
            id.to_owned()
        }
    }

    /// Keys carry hash tags on a Redis Cluster.
    fn tagged(&self) -> bool {
        matches!(self.inner.target, Target::Cluster(_))
    }

    /// The registry's keys share one slot on a Redis Cluster (`{registry}`): reading it whole
    /// is one pipeline, and each write script touches the hash and its log together.
    fn registry_key(&self, name: &str) -> String {
        let tag = if self.tagged() { "{registry}" } else { "" };
        format!("{}{tag}{name}", self.inner.prefix)
    }
}

/// Redis lost the scripts (`SCRIPT FLUSH`, or a restart behind a proxy that kept the
/// connection).
fn is_no_script(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

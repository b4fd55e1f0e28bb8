//! Cluster mode: several balancer instances share their clients and limits through Redis.
//!
//! [`Cluster`] ([`handle`]) is what the limiter's shards hold: the Redis connection, whether
//! Redis is up, and the calls they make (bucket asks in one pipeline per batch, [`buckets`];
//! client writes, [`clients`]). The
//! connection itself — one multiplexed socket, its I/O task — lives on the cluster's own arbiter
//! with the [`agent`], which heartbeats, follows the registry's change log and reconnects; a
//! stopping HTTP worker cannot take it down. Which server it connects to is the [`target`]'s
//! answer: `cluster.redis_url`'s, or the master the sentinels name. A call slower than
//! `cluster.redis_timeout_ms` or failing is decided locally; `cluster.redis_down_after` of
//! them in a row (or the sentinels naming another master) mark Redis down: the shards then
//! decide locally (`cluster.on_redis_down`) without asking Redis, until the agent has
//! reconnected, reloaded the scripts and caught up with the registry. The lease arithmetic is
//! in [`lease`], the scripts in [`scripts`].

mod agent;
mod buckets;
mod clients;
mod config;
mod config_state;
mod connection;
mod handle;
pub mod lease;
mod scripts;
mod status;
mod target;

pub use agent::{start_agent, Change, Replica};
pub use buckets::{RoutedAsk, RoutedGrant};
pub use clients::{NameChange, StoredClient};
pub use config::ConfigReplica;
pub use handle::{Cluster, Down};
pub use status::{single_status, ClusterCounters, ClusterStatus};

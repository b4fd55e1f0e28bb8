//! Cluster mode: several balancer instances share their clients and limits through Redis.
//!
//! [`Cluster`] ([`handle`]) is what the limiter's shards hold: the Redis connection, whether
//! Redis is up, and the calls they make (bucket asks in one pipeline per batch, [`buckets`];
//! client writes, [`clients`]). The
//! connection itself — one multiplexed socket, its I/O task — lives on the cluster's own arbiter
//! with the [`agent`], which heartbeats, follows the registry's change log and reconnects; a
//! stopping HTTP worker cannot take it down. Any call slower than `cluster.redis_timeout_ms`
//! or failing marks Redis down at once: the shards then decide locally (`cluster.on_redis_down`)
//! without waiting on Redis, until the agent has reconnected, reloaded the scripts and caught
//! up with the registry. The lease arithmetic is in [`lease`], the scripts in [`scripts`].

mod agent;
mod buckets;
mod clients;
mod handle;
pub mod lease;
mod scripts;
mod status;

pub use agent::{start_agent, Change, Replica};
pub use buckets::{RoutedAsk, RoutedGrant};
pub use clients::{NameChange, StoredClient};
pub use handle::{Cluster, Down};
pub use status::{single_status, ClusterCounters, ClusterStatus};

//! Cluster mode: several balancer instances share their clients and limits through Redis.
//!
//! [`Cluster`] is the handle the limiter's shards hold: the Redis connection, whether Redis is
//! up, and the calls they make (bucket asks in one pipeline per batch, client writes). The
//! connection itself — one multiplexed socket, its I/O task — lives on the cluster's own arbiter
//! with the [`agent`], which heartbeats, follows the registry's change log and reconnects; a
//! stopping HTTP worker cannot take it down. Any call slower than `cluster.redis_timeout_ms`
//! or failing marks Redis down at once: the shards then decide locally (`cluster.on_redis_down`)
//! without waiting on Redis, until the agent has reconnected, reloaded the scripts and caught
//! up with the registry. The lease arithmetic is in [`lease`], the scripts in [`scripts`].

mod agent;
pub mod lease;
mod link;
mod scripts;

pub use agent::{start_agent, Change, Replica};
pub use link::{
    single_status, Cluster, ClusterCounters, ClusterStatus, Down, NameChange, StoredClient,
};

//! The messages a `BucketStore` shard answers, and the one error type of client writes.

use actix::Message;

use std::collections::BTreeMap;

use crate::client::{Admission, Charge, ClientRecord, Limits};
use crate::cluster::Change;

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

/// From the proxy: take what each of these charges wants, in order (see [`super::batch`]).
/// `None`: no decision can be made (cluster mode, Redis down, `on_redis_down = "deny"`).
#[derive(Debug, Message)]
#[rtype(result = "Vec<Option<Admission>>")]
pub struct AdmitMany(pub Vec<Charge>);

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
    /// Its own limits on routes.
    pub routes: BTreeMap<String, Limits>,
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
    /// Own limits on routes to set (`Some`) or remove (`None`); routes not named keep theirs.
    pub routes: BTreeMap<String, Option<Limits>>,
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

/// From the status API and tests: how many buckets the shard tracks.
#[derive(Debug, Message)]
#[rtype(result = "Tracked")]
pub struct CountBuckets;

/// How many buckets are tracked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracked {
    /// Registered clients.
    pub registered: usize,
    /// Unregistered clients, by address.
    pub addresses: usize,
}

/// From tests: drop idle full buckets now.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct SweepNow;

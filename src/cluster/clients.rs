//! The registry of clients in Redis: a client as it is stored there, and the writes (create,
//! update, delete), each one script call that also appends to the change log.

use std::collections::BTreeMap;

use redis::Pipeline;
use serde::{Deserialize, Serialize};

use super::handle::{Cluster, Down, LOG_LENGTH};
use crate::client::{ClientKey, ClientRecord, Limits};
use crate::events::LbEvent;

/// A client as the registry in Redis stores it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredClient {
    pub client_id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub capacity: u64,
    pub rate_per_sec: f64,
    /// Its own limits on routes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, Limits>,
}

impl StoredClient {
    pub fn from_record(record: &ClientRecord) -> Self {
        Self {
            client_id: record.client_id.clone(),
            name: record.name.clone(),
            capacity: record.limits.capacity,
            rate_per_sec: record.limits.rate_per_sec,
            routes: record.routes.clone(),
        }
    }

    /// As a record with a full bucket (levels live in Redis's buckets, not in the registry).
    pub fn into_record(self) -> ClientRecord {
        ClientRecord {
            tokens: self.capacity as f64,
            client_id: self.client_id,
            name: self.name,
            limits: Limits::new(self.capacity, self.rate_per_sec),
            routes: self.routes,
        }
    }

    /// `None` for JSON that is not a valid client (written by something else): skipped.
    pub(super) fn parse(json: &str) -> Option<Self> {
        let valid = |limits: &Limits| {
            limits.capacity >= 1 && limits.rate_per_sec.is_finite() && limits.rate_per_sec > 0.0
        };
        serde_json::from_str::<Self>(json).ok().filter(|c| {
            valid(&Limits::new(c.capacity, c.rate_per_sec)) && c.routes.values().all(valid)
        })
    }
}

/// What an update does with the name.
#[derive(Debug, Clone, PartialEq)]
pub enum NameChange {
    Keep,
    Set(String),
    Clear,
}

impl Cluster {
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
        (capacity, rate_per_sec): (Option<u64>, Option<f64>),
        routes: &BTreeMap<String, Option<Limits>>,
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
            .arg(self.instance())
            .arg(route_changes(routes)?);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation);
        let (json,): (Option<String>,) = self.query(&pipe, 1).await?;
        Ok(json.as_deref().and_then(StoredClient::parse))
    }

    /// Removes a client, then its bucket (a key of another slot on a Redis Cluster, so not in
    /// the script); `Ok(false)` when there was none.
    pub async fn delete(&self, client_id: &str) -> Result<bool, Down> {
        let bucket = self.bucket_key(&ClientKey::Registered(client_id.to_owned()));
        let mut invocation = self.inner.scripts.delete.key(self.clients_key());
        invocation
            .key(self.log_key())
            .arg(client_id)
            .arg(LOG_LENGTH)
            .arg(self.instance());
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation).cmd("DEL").arg(bucket);
        let (deleted, _): (u8, u8) = self.query(&pipe, 2).await?;
        Ok(deleted == 1)
    }
}

/// The update script's route changes: JSON of route → limits or null, or '' for none.
fn route_changes(routes: &BTreeMap<String, Option<Limits>>) -> Result<String, Down> {
    if routes.is_empty() {
        return Ok(String::new());
    }
    serde_json::to_string(routes).map_err(|e| Down(e.to_string()))
}

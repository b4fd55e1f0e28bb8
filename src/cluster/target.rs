//! Where Redis is, and a fresh connection there: the server of `cluster.redis_url`, the master
//! the sentinels name now, or a Redis Cluster through its seed nodes. The agent connects anew
//! at every reconnect and — behind Sentinel — asks the sentinels every second while connected,
//! since a planned failover leaves the old master answering (as a master, until Sentinel
//! reconfigures it) for up to ten seconds.

use std::sync::Arc;
use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::AsyncConnectionConfig;
use tokio::sync::Mutex;

use super::connection::Connection;

use crate::settings::RedisTopology;

/// Where Redis is; cheap to clone.
#[derive(Clone)]
pub(super) enum Target {
    Single(redis::Client),
    Sentinel(Arc<Locator>),
    Cluster(Vec<redis::ConnectionInfo>),
}

/// The sentinels, asked for the master named `master_name`. Their client keeps its
/// connections to them between asks.
pub(super) struct Locator {
    sentinels: Vec<redis::ConnectionInfo>,
    master_name: String,
    client: Mutex<Option<SentinelClient>>,
}

impl Target {
    pub(super) fn new(topology: &RedisTopology) -> Self {
        match topology {
            RedisTopology::Single(client) => Self::Single(client.clone()),
            RedisTopology::Sentinel {
                sentinels,
                master_name,
            } => Self::Sentinel(Arc::new(Locator {
                sentinels: sentinels.clone(),
                master_name: master_name.clone(),
                client: Mutex::new(None),
            })),
            RedisTopology::Cluster(nodes) => Self::Cluster(nodes.clone()),
        }
    }

    /// `"single"`, `"sentinel"` or `"cluster"`, as status shows it.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Single(_) => "single",
            Self::Sentinel(_) => "sentinel",
            Self::Cluster(_) => "cluster",
        }
    }

    /// A fresh connection within `slow`, and the server's `host:port` (none on a Redis
    /// Cluster: each call goes to its key's node), or why there is none. Behind Sentinel the
    /// crate checks that the server named says it is a master.
    pub(super) async fn connect(
        &self,
        slow: Duration,
    ) -> Result<(Connection, Option<String>), String> {
        let client = match self {
            Self::Single(client) => client.clone(),
            Self::Sentinel(locator) => locator.master(slow).await?,
            Self::Cluster(nodes) => {
                let client = ClusterClient::builder(nodes.clone())
                    .connection_timeout(slow)
                    .response_timeout(slow)
                    .build()
                    .map_err(|e| format!("the Redis Cluster's nodes: {e}"))?;
                let connection = within(slow, client.get_async_connection()).await?;
                return Ok((Connection::Cluster(connection), None));
            }
        };
        let server = client.get_connection_info().addr().to_string();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(slow))
            .set_response_timeout(Some(slow));
        let connection = within(
            slow,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await?;
        Ok((Connection::Server(connection), Some(server)))
    }

    /// Behind Sentinel, the master the sentinels name now (`host:port`); `None` elsewhere or
    /// when they cannot be asked.
    pub(super) async fn master_now(&self, slow: Duration) -> Option<String> {
        let Self::Sentinel(locator) = self else {
            return None;
        };
        let master = locator.master(slow).await.ok()?;
        Some(master.get_connection_info().addr().to_string())
    }
}

async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

impl Locator {
    async fn master(&self, slow: Duration) -> Result<redis::Client, String> {
        let name = &self.master_name;
        let mut client = self.client.lock().await;
        if client.is_none() {
            let built = SentinelClient::build(
                self.sentinels.clone(),
                name.clone(),
                None,
                SentinelServerType::Master,
            )
            .map_err(|e| format!("the sentinels: {e}"))?;
            *client = Some(built);
        }
        let Some(sentinels) = client.as_mut() else {
            return Err("the sentinels: no client".into());
        };
        within(slow, sentinels.async_get_client())
            .await
            .map_err(|why| format!("no master {name:?} from the sentinels: {why}"))
    }
}

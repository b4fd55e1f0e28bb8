//! Which Redis server to connect to: the one of `cluster.redis_url`, or the master the
//! sentinels name now. The agent asks again at every reconnect, and — behind Sentinel — every
//! second while connected, since a planned failover leaves the old master answering (as a
//! master, until Sentinel reconfigures it) for up to ten seconds.

use std::sync::Arc;
use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelServerType};
use tokio::sync::Mutex;

use crate::settings::RedisTopology;

/// Where Redis is; cheap to clone.
#[derive(Clone)]
pub(super) enum Target {
    Single(redis::Client),
    Sentinel(Arc<Locator>),
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
        }
    }

    /// `"single"` or `"sentinel"`, as status shows it.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Single(_) => "single",
            Self::Sentinel(_) => "sentinel",
        }
    }

    /// The server to connect to now, within `slow`, or why there is none. Behind Sentinel the
    /// crate checks that the server named says it is a master.
    pub(super) async fn server(&self, slow: Duration) -> Result<redis::Client, String> {
        match self {
            Self::Single(client) => Ok(client.clone()),
            Self::Sentinel(locator) => locator.master(slow).await,
        }
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
        match tokio::time::timeout(slow, sentinels.async_get_client()).await {
            Ok(Ok(master)) => Ok(master),
            Ok(Err(err)) => Err(format!("no master {name:?} from the sentinels: {err}")),
            Err(_) => Err(format!(
                "no master {name:?} from the sentinels within {} ms",
                slow.as_millis()
            )),
        }
    }
}

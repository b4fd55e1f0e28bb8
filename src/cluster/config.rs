//! One configuration for the cluster (`cluster.share_config`): the pools and routes, as the
//! pool file's text, live in Redis under `{prefix}config` with a version, and every change is
//! logged in `{prefix}config:log`.
//!
//! The registry tells the handle the pool file's text whenever it may have changed, and whether
//! the change was made here (the API, a reload, an edited file). The agent, every tick,
//! publishes a change made here as the next version — the last writer wins, and each version is
//! a whole file, never a mix of two — or takes a newer version of the cluster's and hands it to
//! the [`ConfigReplica`] (the registry writes its own pool file and reloads). A joining
//! instance takes the cluster's version when Redis has one, else publishes its own.

use std::time::Duration;

use super::config_state::Step;
use super::handle::{Cluster, Down};
use crate::events::LbEvent;

/// Entries the configuration's log keeps (roughly).
const LOG_LENGTH: u64 = 1_000;

/// Where the cluster's configuration goes on this instance.
pub trait ConfigReplica: Send + 'static {
    /// The pool file's text at a newer version of the cluster's: write it and apply it.
    fn apply(&self, text: String);
}

/// What Redis holds: the version and, when asked for, the text and who wrote it.
type Stored = (Option<u64>, Option<String>, Option<String>);

impl Cluster {
    /// The pool file's text, from the registry (see the module's documentation).
    pub fn tell_pool_file(&self, text: String, changed_here: bool) {
        self.inner.config.tell(text, changed_here);
    }

    /// The cluster's configuration version this instance runs, if it shares one.
    pub fn config_version(&self) -> Option<u64> {
        self.inner.config.version()
    }

    /// One round: publishes a change made here, or answers a newer version of the cluster's
    /// to apply here (its text).
    pub(super) async fn sync_config(&self, slow: Duration) -> Result<Option<String>, Down> {
        match self.inner.config.next_step() {
            None => Ok(None),
            Some(Step::Publish(text)) => self.publish_config(text, slow).await.map(|()| None),
            Some(Step::Look { running, local }) => {
                let mut pipe = redis::pipe();
                pipe.cmd("HGET").arg(self.config_key()).arg("version");
                let (version,): (Option<u64>,) = self.query_within(&pipe, 1, slow).await?;
                match version {
                    // The first instance to share (or Redis lost its data): its file becomes
                    // version 1.
                    None => self.publish_config(local, slow).await.map(|()| None),
                    // Newer — or older than ours: Redis lost the versions since, and the
                    // cluster counts again from what it holds now.
                    Some(version) if version != running => self.take_config(slow).await,
                    Some(_) => Ok(None),
                }
            }
        }
    }

    async fn publish_config(&self, text: String, slow: Duration) -> Result<(), Down> {
        let mut invocation = self.inner.scripts.publish.key(self.config_key());
        invocation
            .key(self.config_log_key())
            .arg(&text)
            .arg(self.instance())
            .arg(LOG_LENGTH);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation);
        let (version,): (u64,) = self.query_within(&pipe, 1, slow).await?;
        self.inner.config.settle(version, text, true);
        log::info!("shared the pools and routes as the cluster's configuration version {version}");
        self.inner.events.publish(LbEvent::Config {
            version,
            by: self.instance(),
            action: "published",
        });
        Ok(())
    }

    /// Reads the newest version; its text when this instance must apply it.
    async fn take_config(&self, slow: Duration) -> Result<Option<String>, Down> {
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET")
            .arg(self.config_key())
            .arg("version")
            .arg("text")
            .arg("by");
        let ((version, text, by),): (Stored,) = self.query_within(&pipe, 1, slow).await?;
        let (Some(version), Some(text)) = (version, text) else {
            return Ok(None);
        };
        if !self.inner.config.settle(version, text.clone(), false) {
            return Ok(None);
        }
        let by = by.unwrap_or_default();
        log::info!("taking the cluster's configuration version {version} (written by {by})");
        self.inner.events.publish(LbEvent::Config {
            version,
            by,
            action: "applied",
        });
        Ok(Some(text))
    }
}

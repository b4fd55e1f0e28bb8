//! The shared token buckets in Redis: asks for tokens (with the unspent ones of ended leases
//! given back in the same call), and their levels, one script call per client, all of a batch
//! in one pipeline.

use std::time::Duration;

use super::handle::{Cluster, Down};
use super::lease::{Ask, Grant};
use crate::client::{ClientKey, Limits};

impl Cluster {
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
}

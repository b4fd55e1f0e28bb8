//! The shared token buckets in Redis: asks for tokens (with the unspent ones of ended leases
//! given back in the same call), and their levels, one script call per client, all of a batch
//! in one pipeline; and routed charges (a cost other than one, or a route bucket), both buckets
//! in one script call per client and route.

use std::sync::Arc;
use std::time::Duration;

use super::handle::{Cluster, Down};
use super::lease::{Ask, Grant};
use crate::client::{ClientKey, Limits};

/// Alike requests of one client on one route: each takes `cost` tokens from the client's bucket
/// and, when `route` has limits for this client, one from its bucket there; both or neither.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedAsk {
    pub key: ClientKey,
    pub limits: Limits,
    pub cost: u32,
    /// The route and the limits of the client's bucket on it.
    pub route: Option<(Arc<str>, Limits)>,
    pub requests: u64,
}

/// Redis's answer to a [`RoutedAsk`]: how many of its requests were granted (the first ones),
/// and the levels of both buckets before any was charged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutedGrant {
    pub granted: u64,
    pub client: f64,
    pub route: Option<f64>,
}

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

    /// Charges routed requests, one script call per ask, all in one pipeline.
    pub async fn charge(&self, asks: &[RoutedAsk]) -> Result<Vec<RoutedGrant>, Down> {
        let mut pipe = redis::pipe();
        for ask in asks {
            let mut invocation = self.inner.scripts.routed.key(self.bucket_key(&ask.key));
            invocation
                .arg(ask.requests)
                .arg(ask.cost)
                .arg(ask.limits.capacity)
                .arg(ask.limits.rate_per_sec);
            if let Some((route, limits)) = &ask.route {
                invocation
                    .key(self.route_bucket_key(route, &ask.key))
                    .arg(limits.capacity)
                    .arg(limits.rate_per_sec);
            }
            pipe.invoke_script(&invocation);
        }
        let answers: Vec<(u64, String, String)> = self.query(&pipe, asks.len()).await?;
        let level = |text: &str| {
            text.parse::<f64>()
                .map_err(|e| Down(format!("{text:?}: {e}")))
        };
        answers
            .into_iter()
            .map(|(granted, client, route)| {
                let route = level(&route)?;
                Ok(RoutedGrant {
                    granted,
                    client: level(&client)?,
                    route: (route >= 0.0).then_some(route),
                })
            })
            .collect()
    }
}

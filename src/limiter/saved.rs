//! What of a shard's map is saved in SQLite and put back at start: registered clients at their
//! saved levels, the levels changed since the last flush (their own buckets and their buckets
//! on routes), marked again when a flush failed.

use std::time::Instant;

use super::bucket::TokenBucket;
use super::map::{BucketMap, Registered};
use crate::client::ClientRecord;
use crate::persistence::Levels;

impl BucketMap {
    /// Restores a client at a saved level (start-up).
    pub fn restore(&mut self, record: ClientRecord, now: Instant) {
        let bucket = TokenBucket::with_tokens(record.limits, record.tokens, now);
        self.registered.insert(
            record.client_id,
            Registered {
                name: record.name,
                bucket,
                routes: record.routes,
                dirty: false,
                reported: None,
            },
        );
    }

    /// Levels of registered clients changed since the last call, and of their buckets on
    /// routes; clears the marks.
    pub fn take_dirty(&mut self, now: Instant) -> Levels {
        let clients = self
            .registered
            .iter_mut()
            .filter(|(_, client)| client.dirty)
            .map(|(id, client)| {
                client.dirty = false;
                (id.clone(), client.bucket.tokens(now))
            })
            .collect();
        let registered = &self.registered;
        let routes = self
            .routes
            .take_dirty(now, |id| registered.contains_key(id));
        Levels { clients, routes }
    }

    /// Marks levels as unsaved again (a flush failed).
    pub fn mark_dirty(&mut self, levels: &Levels) {
        for (id, _) in &levels.clients {
            if let Some(client) = self.registered.get_mut(id) {
                client.dirty = true;
            }
        }
        self.routes.mark_dirty(&levels.routes);
    }

    /// Puts back a registered client's bucket on `route` as it was saved.
    pub fn restore_route(&mut self, route: &str, id: &str, bucket: TokenBucket, now: Instant) {
        self.routes.restore(route, id, bucket, now);
    }
}

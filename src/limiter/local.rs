//! A single instance's shard: admissions from the shard's own map; client writes committed to
//! SQLite (through the `Store`) before the map changes, so memory and disk agree and a failed
//! write changes nothing.

use std::time::{Duration, Instant};

use actix::{Addr, MailboxError};
use futures_util::future::LocalBoxFuture;

use super::bucket::TokenBucket;
use super::messages::{ClientError, CreateClient, UpdateClient};
use super::mode::{Admitted, Known, Mode, Write};
use crate::client::{Charge, ClientRecord, Limits};
use crate::cluster::Change;
use crate::persistence::{DbError, DeleteClient, SaveClient, Store};

/// Deciding alone, keeping clients in SQLite.
pub struct LocalMode {
    known: Known,
    store: Addr<Store>,
}

impl LocalMode {
    pub fn new(known: Known, store: Addr<Store>) -> Self {
        Self { known, store }
    }
}

impl Mode for LocalMode {
    fn admit(&mut self, charges: Vec<Charge>, now: Instant) -> Admitted {
        let mut map = self.known.map.lock();
        Admitted::Now(
            charges
                .iter()
                .map(|charge| Some(map.admit(charge, now)))
                .collect(),
        )
    }

    fn create(&self, client: CreateClient) -> Write<ClientRecord> {
        let (known, store) = (self.known.clone(), self.store.clone());
        Box::pin(async move {
            if known.get(&client.client_id).is_some() {
                return Err(ClientError::Exists(client.client_id));
            }
            let record = ClientRecord {
                tokens: client.limits.capacity as f64,
                client_id: client.client_id,
                name: client.name,
                limits: client.limits,
                routes: client.routes,
            };
            committed(store.send(SaveClient(record.clone())).await)?;
            Ok(known.remember(&record))
        })
    }

    fn update(&self, change: UpdateClient) -> Write<ClientRecord> {
        let (known, store) = (self.known.clone(), self.store.clone());
        Box::pin(async move {
            let current = known
                .get(&change.client_id)
                .ok_or_else(|| ClientError::NotFound(change.client_id.clone()))?;
            let record = updated(current, change, Instant::now());
            committed(store.send(SaveClient(record.clone())).await)?;
            Ok(known.remember(&record))
        })
    }

    fn remove(&self, client_id: String) -> Write<()> {
        let (known, store) = (self.known.clone(), self.store.clone());
        Box::pin(async move {
            if known.get(&client_id).is_none() {
                return Err(ClientError::NotFound(client_id));
            }
            committed(store.send(DeleteClient(client_id.clone())).await)?;
            known.forget(&client_id);
            Ok(())
        })
    }

    fn levels(&self, records: Vec<ClientRecord>) -> LocalBoxFuture<'static, Vec<ClientRecord>> {
        Box::pin(std::future::ready(records))
    }

    fn apply_remote(&mut self, change: Change) {
        log::debug!("a single instance has no shared registry; ignored: {change:?}");
    }

    fn tick_every(&self) -> Option<Duration> {
        None
    }

    fn tick(&mut self, _now: Instant) -> Option<LocalBoxFuture<'static, ()>> {
        None
    }
}

/// `current` with `change` applied; the level is what the bucket holds after the change (a
/// lowered capacity clamps it, a raised one does not refill).
fn updated(current: ClientRecord, change: UpdateClient, now: Instant) -> ClientRecord {
    let limits = Limits {
        capacity: change.capacity.unwrap_or(current.limits.capacity),
        rate_per_sec: change.rate_per_sec.unwrap_or(current.limits.rate_per_sec),
    };
    let mut preview = TokenBucket::with_tokens(current.limits, current.tokens, now);
    preview.set_limits(limits, now);
    let mut routes = current.routes;
    for (route, limits) in change.routes {
        match limits {
            Some(limits) => routes.insert(route, limits),
            None => routes.remove(&route),
        };
    }
    ClientRecord {
        client_id: current.client_id,
        name: change.name.unwrap_or(current.name),
        limits,
        tokens: preview.tokens(now),
        routes,
    }
}

/// The one mapping of the Store's answer to a client write: a database error or a stopped
/// store is [`ClientError::Storage`] (503, nothing changed).
pub fn committed<T>(answer: Result<Result<T, DbError>, MailboxError>) -> Result<T, ClientError> {
    match answer {
        Ok(result) => result.map_err(|err| ClientError::Storage(err.to_string())),
        Err(_) => Err(ClientError::Storage("the store has stopped".into())),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;

    use super::super::map::{BucketMap, SharedMap};
    use super::super::mode::RegisteredIds;
    use super::*;
    use crate::client::ClientKey;
    use crate::persistence::Database;

    fn mode(path: &Path) -> LocalMode {
        let map = SharedMap::new(BucketMap::new(Limits::new(2, 1.0), 100));
        let known = Known::new(map, RegisteredIds::default());
        LocalMode::new(known, Store::start(Database::open(path).expect("database")))
    }

    fn create(id: &str, capacity: u64) -> CreateClient {
        CreateClient {
            client_id: id.to_owned(),
            name: None,
            limits: Limits::new(capacity, 1.0),
            routes: Default::default(),
        }
    }

    fn saved(path: &Path) -> Vec<ClientRecord> {
        let database = Database::open(path).expect("reopen");
        let mut all: Vec<ClientRecord> = database
            .load_all()
            .expect("load")
            .into_iter()
            .map(|saved| saved.record)
            .collect();
        all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        all
    }

    /// Each write is in SQLite when it answers, and the map follows; a second create is 409,
    /// a change or removal of nobody is 404.
    #[actix_rt::test]
    async fn writes_reach_sqlite_and_then_the_map() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lb.sqlite3");
        let mut local = mode(&path);
        let created = local.create(create("acme", 5)).await.expect("created");
        assert_eq!((created.limits.capacity, created.tokens), (5, 5.0));
        assert_eq!(saved(&path)[0].client_id, "acme");
        assert_eq!(
            local.create(create("acme", 9)).await,
            Err(ClientError::Exists("acme".into()))
        );
        let Admitted::Now(answers) = local.admit(
            vec![Charge::plain(ClientKey::Registered("acme".into())); 6],
            Instant::now(),
        ) else {
            panic!("a single instance decides now");
        };
        let allowed = answers
            .iter()
            .flatten()
            .filter(|a| a.decision.allowed)
            .count();
        assert_eq!(allowed, 5, "the client's own capacity");
        let lowered = UpdateClient {
            client_id: "acme".into(),
            name: Some(Some("Acme".into())),
            capacity: Some(3),
            rate_per_sec: None,
            routes: Default::default(),
        };
        let changed = local.update(lowered).await.expect("updated");
        assert_eq!(
            (changed.limits.capacity, changed.name.as_deref()),
            (3, Some("Acme"))
        );
        assert!(
            changed.tokens < 1.0,
            "the level stays what it was: {}",
            changed.tokens
        );
        assert_eq!(saved(&path)[0].limits.capacity, 3);
        local.remove("acme".into()).await.expect("removed");
        assert!(saved(&path).is_empty());
        assert_eq!(
            local.remove("acme".into()).await,
            Err(ClientError::NotFound("acme".into()))
        );
        let nobody = UpdateClient {
            client_id: "nobody".into(),
            name: None,
            capacity: Some(1),
            rate_per_sec: None,
            routes: Default::default(),
        };
        assert_eq!(
            local.update(nobody).await,
            Err(ClientError::NotFound("nobody".into()))
        );
        let Admitted::Now(ip) = local.admit(
            vec![Charge::plain(ClientKey::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))); 3],
            Instant::now(),
        ) else {
            panic!("a single instance decides now");
        };
        let allowed = ip.iter().flatten().filter(|a| a.decision.allowed).count();
        assert_eq!(allowed, 2, "an address gets the defaults");
    }

    /// A database that refuses the write (its table gone) is a storage error, and neither the
    /// map nor the registered ids change.
    #[actix_rt::test]
    async fn a_refused_write_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lb.sqlite3");
        let local = mode(&path);
        local.create(create("kept", 4)).await.expect("created");
        let other = rusqlite::Connection::open(&path).expect("open");
        other.execute_batch("DROP TABLE clients").expect("drop");
        let refused = local.create(create("new", 4)).await;
        assert!(
            matches!(refused, Err(ClientError::Storage(_))),
            "{refused:?}"
        );
        assert!(local.known.get("new").is_none());
        let change = UpdateClient {
            client_id: "kept".into(),
            name: None,
            capacity: Some(1),
            rate_per_sec: None,
            routes: Default::default(),
        };
        assert!(matches!(
            local.update(change).await,
            Err(ClientError::Storage(_))
        ));
        assert_eq!(local.known.get("kept").expect("kept").limits.capacity, 4);
        assert!(matches!(
            local.remove("kept".into()).await,
            Err(ClientError::Storage(_))
        ));
        assert!(local.known.get("kept").is_some());
    }
}

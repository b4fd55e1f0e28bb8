//! Cluster mode's shard: admissions from Redis's shared buckets, client writes to Redis's
//! registry. Admissions are answered from the shard's leases ([`LeaseBook`]) where they can be;
//! the asks a batch cannot answer from them and its routed charges (a cost other than one, a
//! route bucket: [`super::routed`]) go to Redis together, one pipeline each (the batch's answer
//! then waits for Redis, at most `cluster.redis_timeout_ms`; the split is in
//! [`super::shared_batch`]). While Redis is down the shard decides alone, as
//! `cluster.on_redis_down` says. Client writes go to Redis first and reach the map once Redis
//! has them; the map, the registered ids and the SQLite mirror follow the registry's change log
//! ([`Change`]), the shard's own writes included.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::Addr;
use futures_util::future::LocalBoxFuture;

use super::messages::{ClientError, CreateClient, UpdateClient};
use super::mode::{Admitted, Known, Mode, Write};
use super::routed;
use super::shared_batch::{alone, plan, settle, Batch, Held};
use crate::client::{Admission, Charge, ClientKey, ClientRecord, Limits};
use crate::cluster::lease::{Ask, LeaseBook};
use crate::cluster::{Change, Cluster, NameChange, StoredClient};
use crate::persistence::{DeleteClient, SaveClient, Store};

/// Deciding with every instance through Redis.
#[derive(Clone)]
pub struct SharedMode {
    known: Known,
    /// The SQLite mirror of the registry (what a restart without Redis starts from).
    store: Addr<Store>,
    cluster: Cluster,
    /// `cluster.lease_ms`: how long held tokens may be spent.
    lease: Duration,
    held: Rc<RefCell<Held>>,
}

impl SharedMode {
    pub fn new(known: Known, store: Addr<Store>, cluster: Cluster, lease: Duration) -> Self {
        Self {
            known,
            store,
            cluster,
            lease,
            held: Rc::new(RefCell::new(Held {
                leases: LeaseBook::new(lease),
                alone: None,
            })),
        }
    }

    /// Redis is down: `cluster.on_redis_down` decides, and what was held is dropped.
    fn admit_alone(&self, charges: &[Charge], now: Instant) -> Vec<Option<Admission>> {
        self.cluster.count_local(charges.len());
        let mut held = self.held.borrow_mut();
        let mut map = self.known.map.lock();
        let policy = self.cluster.on_redis_down();
        alone(
            &mut held,
            &mut map,
            policy,
            self.cluster.live_instances(),
            charges,
            now,
        )
    }

    /// Asks Redis for what `batch` could not answer from the leases and for its routed charges,
    /// in one pipeline each, then settles it; if Redis fails meanwhile, those are decided alone.
    async fn ask_redis(self, mut batch: Batch) -> Vec<Option<Admission>> {
        let routed_asks: Vec<_> = batch.routed.iter().map(|g| g.ask.clone()).collect();
        let (grants, charged) = futures_util::future::join(
            async {
                match batch.asks.is_empty() {
                    true => Ok(Vec::new()),
                    false => self.cluster.admit(&batch.asks).await,
                }
            },
            async {
                match routed_asks.is_empty() {
                    true => Ok(Vec::new()),
                    false => self.cluster.charge(&routed_asks).await,
                }
            },
        )
        .await;
        let now = Instant::now();
        match grants {
            Ok(grants) if grants.len() == batch.asks.len() => {
                let mut held = self.held.borrow_mut();
                let mut map = self.known.map.lock();
                settle(&mut held.leases, &mut map, &mut batch, grants, now);
            }
            // Redis is marked down: these asks are decided alone, as the next ones will be.
            _ => {
                for (key, _, positions) in &batch.pending {
                    let charges = vec![Charge::plain(key.clone()); positions.len()];
                    self.decide_alone(&mut batch.answers, &charges, positions, now);
                }
            }
        }
        match charged {
            Ok(charged) if charged.len() == batch.routed.len() => {
                let mut map = self.known.map.lock();
                for (group, grant) in batch.routed.iter().zip(charged) {
                    let admissions = routed::admissions(&mut map, group, grant, now);
                    for (at, admission) in group.positions.iter().zip(admissions) {
                        batch.answers[*at] = Some(admission);
                    }
                }
            }
            _ => {
                for group in &batch.routed {
                    let charges = vec![group.charge.clone(); group.positions.len()];
                    self.decide_alone(&mut batch.answers, &charges, &group.positions, now);
                }
            }
        }
        batch.answers
    }

    /// Decides `charges` alone into `answers` at `positions`.
    fn decide_alone(
        &self,
        answers: &mut [Option<Admission>],
        charges: &[Charge],
        positions: &[usize],
        now: Instant,
    ) {
        let decided = self.admit_alone(charges, now);
        for (at, answer) in positions.iter().zip(decided) {
            answers[*at] = answer;
        }
    }

    /// Applies a client Redis has: into the map and the registered ids, and into the SQLite
    /// mirror when it changed.
    fn apply_put(&self, record: &ClientRecord) -> ClientRecord {
        let unchanged = self.known.get(&record.client_id).is_some_and(|known| {
            known.name == record.name
                && known.limits == record.limits
                && known.routes == record.routes
        });
        let applied = self.known.remember(record);
        if !unchanged {
            self.store.do_send(SaveClient(applied.clone()));
        }
        applied
    }

    fn apply_delete(&self, id: &str) {
        if self.known.forget(id) {
            self.store.do_send(DeleteClient(id.to_owned()));
        }
    }
}

impl Mode for SharedMode {
    fn admit(&mut self, charges: Vec<Charge>, now: Instant) -> Admitted {
        if !self.cluster.is_up() {
            return Admitted::Now(self.admit_alone(&charges, now));
        }
        let batch = {
            let mut held = self.held.borrow_mut();
            held.alone = None;
            plan(&mut held.leases, &mut self.known.map.lock(), charges, now)
        };
        if batch.pending.is_empty() && batch.routed.is_empty() {
            return Admitted::Now(batch.answers);
        }
        Admitted::Later(Box::pin(self.clone().ask_redis(batch)))
    }

    fn create(&self, client: CreateClient) -> Write<ClientRecord> {
        let this = self.clone();
        let stored = StoredClient {
            client_id: client.client_id,
            name: client.name,
            capacity: client.limits.capacity,
            rate_per_sec: client.limits.rate_per_sec,
            routes: client.routes,
        };
        Box::pin(async move {
            if !redis_answer(this.cluster.create(&stored).await)? {
                return Err(ClientError::Exists(stored.client_id));
            }
            Ok(this.apply_put(&stored.into_record()))
        })
    }

    fn update(&self, change: UpdateClient) -> Write<ClientRecord> {
        let this = self.clone();
        let name = match change.name {
            None => NameChange::Keep,
            Some(Some(name)) => NameChange::Set(name),
            Some(None) => NameChange::Clear,
        };
        Box::pin(async move {
            let id = change.client_id;
            let updated = this
                .cluster
                .update(
                    &id,
                    name,
                    (change.capacity, change.rate_per_sec),
                    &change.routes,
                )
                .await;
            match redis_answer(updated)? {
                Some(stored) => Ok(this.apply_put(&stored.into_record())),
                None => Err(ClientError::NotFound(id)),
            }
        })
    }

    fn remove(&self, client_id: String) -> Write<()> {
        let this = self.clone();
        Box::pin(async move {
            if !redis_answer(this.cluster.delete(&client_id).await)? {
                return Err(ClientError::NotFound(client_id));
            }
            this.apply_delete(&client_id);
            Ok(())
        })
    }

    /// The levels of Redis's shared buckets (the local view's when Redis cannot say).
    fn levels(&self, mut records: Vec<ClientRecord>) -> LocalBoxFuture<'static, Vec<ClientRecord>> {
        let cluster = self.cluster.clone();
        Box::pin(async move {
            if records.is_empty() || !cluster.is_up() {
                return records;
            }
            let clients: Vec<(ClientKey, Limits)> = records
                .iter()
                .map(|r| (ClientKey::Registered(r.client_id.clone()), r.limits))
                .collect();
            if let Ok(levels) = cluster.levels(&clients).await {
                for (record, level) in records.iter_mut().zip(levels) {
                    record.tokens = level;
                }
            }
            records
        })
    }

    fn apply_remote(&mut self, change: Change) {
        match change {
            Change::Put(record) => {
                self.apply_put(&record);
            }
            Change::Delete(id) => self.apply_delete(&id),
            Change::Snapshot(records) => {
                let keep: HashSet<&str> = records.iter().map(|r| r.client_id.as_str()).collect();
                let gone: Vec<String> = self
                    .known
                    .map
                    .lock()
                    .list(Instant::now())
                    .into_iter()
                    .map(|r| r.client_id)
                    .filter(|id| !keep.contains(id.as_str()))
                    .collect();
                for id in gone {
                    self.apply_delete(&id);
                }
                for record in &records {
                    self.apply_put(record);
                }
            }
        }
    }

    fn tick_every(&self) -> Option<Duration> {
        (!self.lease.is_zero()).then_some(self.lease)
    }

    /// Gives the unspent tokens of ended leases back to Redis (fire and forget: a failure
    /// marks Redis down, and then Redis's buckets refill on their own anyway).
    fn tick(&mut self, now: Instant) -> Option<LocalBoxFuture<'static, ()>> {
        let refunds = self.held.borrow_mut().leases.expire(now);
        if refunds.is_empty() || !self.cluster.is_up() {
            return None;
        }
        let map = self.known.map.lock();
        let asks: Vec<(ClientKey, Limits, Ask)> = refunds
            .into_iter()
            .map(|(key, refund)| {
                let limits = map.limits_for(&key);
                (key, limits, Ask { want: 0, refund })
            })
            .collect();
        let cluster = self.cluster.clone();
        Some(Box::pin(async move {
            let _ = cluster.admit(&asks).await;
        }))
    }
}

/// The answer to a client write in cluster mode: what Redis said, or 503 (nothing changed).
fn redis_answer<T>(answer: Result<T, crate::cluster::Down>) -> Result<T, ClientError> {
    answer.map_err(|down| ClientError::Storage(down.to_string()))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;

    use super::super::map::SharedMap;
    use super::super::mode::RegisteredIds;
    use super::super::shared_batch::{allowed, test_map};
    use super::*;
    use crate::events::Events;
    use crate::persistence::Database;
    use crate::settings::{ClusterSettings, OnRedisDown, RedisTopology};

    const LEASE: Duration = Duration::from_millis(100);

    fn shared_mode(dir: &Path, policy: OnRedisDown) -> SharedMode {
        let settings = ClusterSettings {
            redis: Some(RedisTopology::Single(
                redis::Client::open("redis://127.0.0.1:1/").expect("url"),
            )),
            redis_down_after: std::num::NonZeroU32::MIN,
            share_config: false,
            key_prefix: "lb:".into(),
            lease: LEASE,
            on_redis_down: policy,
            redis_timeout: Duration::from_millis(50),
            instance_name: None,
        };
        let cluster = Cluster::new(&settings, Events::start()).expect("cluster mode");
        let known = Known::new(SharedMap::new(test_map()), RegisteredIds::default());
        let store = Store::start(Database::open(&dir.join("lb.sqlite3")).expect("db"));
        SharedMode::new(known, store, cluster, LEASE)
    }

    /// With Redis never reached, admissions are decided now by the policy (and counted as
    /// decided locally), and client writes are refused without changing anything.
    #[actix_rt::test]
    async fn without_redis_admissions_follow_the_policy_and_writes_change_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut shared = shared_mode(dir.path(), OnRedisDown::Deny);
        let ip = ClientKey::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let Admitted::Now(answers) = shared.admit(vec![Charge::plain(ip); 3], Instant::now())
        else {
            panic!("with Redis down nothing waits for it");
        };
        assert_eq!(allowed(&answers), [None; 3]);
        assert_eq!(shared.cluster.counters().decided_locally, 3);
        let create = CreateClient {
            client_id: "new".into(),
            name: None,
            limits: Limits::new(5, 1.0),
            routes: Default::default(),
        };
        let refused = shared.create(create).await;
        assert!(
            matches!(refused, Err(ClientError::Storage(_))),
            "{refused:?}"
        );
        assert!(shared.known.get("new").is_none());
        let refused = shared.remove("a".into()).await;
        assert!(
            matches!(refused, Err(ClientError::Storage(_))),
            "{refused:?}"
        );
        assert!(shared.known.get("a").is_some());
    }

    /// The registry's changes reach the map and the SQLite mirror; a snapshot removes the
    /// clients it does not list.
    #[actix_rt::test]
    async fn registry_changes_are_mirrored_into_the_map_and_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut shared = shared_mode(dir.path(), OnRedisDown::Local);
        let record = |id: &str, capacity: u64| ClientRecord {
            client_id: id.to_owned(),
            name: None,
            limits: Limits::new(capacity, 1.0),
            tokens: capacity as f64,
            routes: Default::default(),
        };
        shared.apply_remote(Change::Put(record("b", 3)));
        assert_eq!(shared.known.get("b").expect("b").limits.capacity, 3);
        shared.apply_remote(Change::Snapshot(vec![record("c", 7)]));
        assert!(shared.known.get("a").is_none() && shared.known.get("b").is_none());
        assert_eq!(shared.known.get("c").expect("c").limits.capacity, 7);
        // The mirror's writes are fire and forget: poll the file until they are in.
        let path = dir.path().join("lb.sqlite3");
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let saved: Vec<String> = Database::open(&path)
                .expect("reopen")
                .load_all()
                .expect("load")
                .into_iter()
                .map(|saved| saved.record.client_id)
                .collect();
            if saved == ["c"] {
                break;
            }
            assert!(Instant::now() < until, "mirror holds {saved:?}");
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

//! Cluster mode's shard: admissions from Redis's shared buckets, client writes to Redis's
//! registry. Admissions are answered from the shard's leases ([`LeaseBook`]) where they can be,
//! and the asks a batch cannot answer from them go to Redis together, in one pipeline (the
//! batch's answer then waits for Redis, at most `cluster.redis_timeout_ms`). While Redis is down
//! the shard decides alone, as `cluster.on_redis_down` says. Client writes go to Redis first
//! and reach the map once Redis has them; the map, the registered ids and the SQLite mirror
//! follow the registry's change log ([`Change`]), the shard's own writes included.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::Addr;
use futures_util::future::LocalBoxFuture;

use super::map::BucketMap;
use super::messages::{ClientError, CreateClient, UpdateClient};
use super::mode::{Admitted, Known, Mode, Write};
use crate::client::{Admission, Charge, ClientKey, ClientRecord, Decision, Limits};
use crate::cluster::lease::{Ask, Grant, LeaseBook};
use crate::cluster::{Change, Cluster, NameChange, StoredClient};
use crate::persistence::{DeleteClient, SaveClient, Store};
use crate::settings::OnRedisDown;

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

/// What a shard holds between asks to Redis.
#[derive(Debug)]
struct Held {
    leases: LeaseBook,
    /// While Redis is down under `on_redis_down = "local"`: buckets with every limit divided by
    /// the instances last seen (and that count, to notice a change).
    alone: Option<(usize, BucketMap)>,
}

/// One client's asks of a batch that go to Redis: the key, its limits, and the positions of
/// its requests in the batch.
type Pending = (ClientKey, Limits, Vec<usize>);

/// A batch split by [`plan`]: what the leases answered, and what Redis is to be asked.
#[derive(Debug)]
struct Batch {
    answers: Vec<Option<Admission>>,
    pending: Vec<Pending>,
    asks: Vec<(ClientKey, Limits, Ask)>,
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
    fn admit_alone(&self, keys: &[ClientKey], now: Instant) -> Vec<Option<Admission>> {
        self.cluster.count_local(keys.len());
        let mut held = self.held.borrow_mut();
        let mut map = self.known.map.lock();
        let policy = self.cluster.on_redis_down();
        alone(
            &mut held,
            &mut map,
            policy,
            self.cluster.live_instances(),
            keys,
            now,
        )
    }

    /// Asks Redis for what `batch` could not answer from the leases, then settles it; if Redis
    /// fails meanwhile, those asks are decided alone.
    async fn ask_redis(self, mut batch: Batch) -> Vec<Option<Admission>> {
        let grants = self.cluster.admit(&batch.asks).await;
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
                    let keys = vec![key.clone(); positions.len()];
                    let decided = self.admit_alone(&keys, now);
                    for (at, answer) in positions.iter().zip(decided) {
                        batch.answers[*at] = answer;
                    }
                }
            }
        }
        batch.answers
    }

    /// Applies a client Redis has: into the map and the registered ids, and into the SQLite
    /// mirror when it changed.
    fn apply_put(&self, record: &ClientRecord) -> ClientRecord {
        let unchanged = self
            .known
            .get(&record.client_id)
            .is_some_and(|known| known.name == record.name && known.limits == record.limits);
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
    /// Cluster mode takes one token from the client's own bucket per request: the settings
    /// refuse costs and route limits with it, so only the key of each charge counts.
    fn admit(&mut self, charges: Vec<Charge>, now: Instant) -> Admitted {
        debug_assert!(charges.iter().all(Charge::takes_one_token));
        let keys: Vec<ClientKey> = charges.into_iter().map(|charge| charge.key).collect();
        if !self.cluster.is_up() {
            return Admitted::Now(self.admit_alone(&keys, now));
        }
        let batch = {
            let mut held = self.held.borrow_mut();
            held.alone = None;
            held.leases.set_contenders(self.cluster.live_instances());
            plan(&mut held.leases, &mut self.known.map.lock(), keys, now)
        };
        if batch.pending.is_empty() {
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
                .update(&id, name, change.capacity, change.rate_per_sec)
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

/// Splits a batch: the asks the leases answer now (or refuse, while Redis said the bucket is
/// empty), and one ask to Redis per other client, for all its requests of the batch.
fn plan(leases: &mut LeaseBook, map: &mut BucketMap, keys: Vec<ClientKey>, now: Instant) -> Batch {
    let mut answers: Vec<Option<Admission>> = vec![None; keys.len()];
    let mut pending: Vec<Pending> = Vec::new();
    for (at, key) in keys.into_iter().enumerate() {
        let limits = map.limits_for(&key);
        if let Some(decision) = leases.take(&key, now) {
            answers[at] = Some(judged(map, &key, decision, limits, now));
            continue;
        }
        match pending.iter_mut().find(|(waiting, _, _)| *waiting == key) {
            Some((_, _, positions)) => positions.push(at),
            None => pending.push((key, limits, vec![at])),
        }
    }
    let asks = pending
        .iter()
        .map(|(key, limits, positions)| {
            let ask = leases.ask(key, positions.len() as u64, *limits, now);
            (key.clone(), *limits, ask)
        })
        .collect();
    Batch {
        answers,
        pending,
        asks,
    }
}

/// Redis's `grants` (one per ask of `batch`, in order) answer the requests waiting on them;
/// what is left of each grant is held as a lease.
fn settle(
    leases: &mut LeaseBook,
    map: &mut BucketMap,
    batch: &mut Batch,
    grants: Vec<Grant>,
    now: Instant,
) {
    let asked = batch.asks.iter().zip(grants).zip(&batch.pending);
    for (((key, limits, ask), grant), (_, _, positions)) in asked {
        let waiting = positions.len() as u64;
        let decisions = leases.grant(key, *ask, grant, waiting, *limits, now);
        for (at, decision) in positions.iter().zip(decisions) {
            batch.answers[*at] = Some(judged(map, key, decision, *limits, now));
        }
    }
}

/// Decides `keys` without Redis, as `policy` says; Redis's buckets are the truth again when it
/// returns, so every lease is dropped.
fn alone(
    held: &mut Held,
    map: &mut BucketMap,
    policy: OnRedisDown,
    instances: usize,
    keys: &[ClientKey],
    now: Instant,
) -> Vec<Option<Admission>> {
    if !held.leases.is_empty() {
        held.leases.clear();
    }
    match policy {
        OnRedisDown::Allow => keys
            .iter()
            .map(|key| {
                let limits = map.limits_for(key);
                let decision = Decision {
                    allowed: true,
                    remaining: limits.capacity,
                    retry_after: Duration::ZERO,
                };
                Some(Admission {
                    decision,
                    limits,
                    report: false,
                    route: None,
                })
            })
            .collect(),
        OnRedisDown::Deny => vec![None; keys.len()],
        OnRedisDown::Local => {
            if held.alone.as_ref().map(|(n, _)| *n) != Some(instances) {
                held.alone = Some((instances, map.divided(instances, now)));
            }
            let Some((_, divided)) = held.alone.as_mut() else {
                return Vec::new();
            };
            keys.iter()
                .map(|key| Some(divided.admit(&Charge::plain(key.clone()), now)))
                .collect()
        }
    }
}

/// An admission decided by Redis's bucket, counted like the map's own.
fn judged(
    map: &mut BucketMap,
    key: &ClientKey,
    decision: Decision,
    limits: Limits,
    now: Instant,
) -> Admission {
    Admission {
        decision,
        limits,
        report: map.record_elsewhere(key, decision.allowed, now),
        route: None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;

    use super::super::map::SharedMap;
    use super::super::mode::RegisteredIds;
    use super::*;
    use crate::events::Events;
    use crate::persistence::Database;
    use crate::settings::ClusterSettings;

    const LEASE: Duration = Duration::from_millis(100);

    fn client(id: &str) -> ClientKey {
        ClientKey::Registered(id.to_owned())
    }

    fn map() -> BucketMap {
        let mut map = BucketMap::new(Limits::new(10, 1.0), 100);
        map.upsert("a", None, Limits::new(8, 1.0), Instant::now());
        map
    }

    fn allowed(answers: &[Option<Admission>]) -> Vec<Option<bool>> {
        answers
            .iter()
            .map(|a| a.as_ref().map(|a| a.decision.allowed))
            .collect()
    }

    /// A batch with nothing held: one ask per client for all its requests, their positions
    /// kept; nothing is answered yet.
    #[test]
    fn a_batch_asks_redis_once_per_client() {
        let (mut leases, mut map, now) = (LeaseBook::new(LEASE), map(), Instant::now());
        let keys = vec![client("a"), client("b"), client("a"), client("a")];
        let batch = plan(&mut leases, &mut map, keys, now);
        assert_eq!(allowed(&batch.answers), [None; 4]);
        let asked: Vec<(ClientKey, u64, Vec<usize>)> = batch
            .pending
            .iter()
            .zip(&batch.asks)
            .map(|((key, _, positions), (_, _, ask))| (key.clone(), ask.want, positions.clone()))
            .collect();
        assert_eq!(
            asked,
            [(client("a"), 3, vec![0, 2, 3]), (client("b"), 1, vec![1])]
        );
        // Each client is asked with its own limits ("b" is not registered: the defaults).
        assert_eq!(batch.asks[0].1.capacity, 8);
        assert_eq!(batch.asks[1].1.capacity, 10);
    }

    /// Redis's grants answer the waiting requests in order; the rest of a grant is held, and
    /// the next batch is answered from it without asking.
    #[test]
    fn grants_answer_in_order_and_the_rest_is_held() {
        let (mut leases, mut map, now) = (LeaseBook::new(LEASE), map(), Instant::now());
        let keys = vec![client("a"), client("b"), client("a")];
        let mut batch = plan(&mut leases, &mut map, keys, now);
        let grants = vec![
            Grant {
                granted: 3,
                wait: Duration::ZERO,
                level: 4,
            },
            Grant {
                granted: 0,
                wait: Duration::from_millis(300),
                level: 0,
            },
        ];
        settle(&mut leases, &mut map, &mut batch, grants, now);
        assert_eq!(
            allowed(&batch.answers),
            [Some(true), Some(false), Some(true)]
        );
        let refused = batch.answers[1].clone().expect("answered");
        assert!(refused.decision.retry_after >= Duration::from_millis(300));
        // One token of "a"'s grant is left: the next ask is answered from it.
        let next = plan(&mut leases, &mut map, vec![client("a")], now);
        assert_eq!(allowed(&next.answers), [Some(true)]);
        assert!(next.asks.is_empty());
    }

    /// Without Redis: `allow` admits at full capacity, `deny` decides nothing, `local` limits
    /// with every limit divided by the instances; whatever was held is dropped.
    #[test]
    fn alone_follows_on_redis_down() {
        let now = Instant::now();
        let mut held = Held {
            leases: LeaseBook::new(LEASE),
            alone: None,
        };
        let mut map = map();
        let keys = vec![client("a"); 6];
        let batch = plan(&mut held.leases, &mut map, vec![client("a")], now);
        assert!(!batch.asks.is_empty() && !held.leases.is_empty());
        let open = alone(&mut held, &mut map, OnRedisDown::Allow, 2, &keys, now);
        assert_eq!(allowed(&open), [Some(true); 6]);
        assert!(held.leases.is_empty(), "leases are dropped");
        let shut = alone(&mut held, &mut map, OnRedisDown::Deny, 2, &keys, now);
        assert_eq!(allowed(&shut), [None; 6]);
        let local = alone(&mut held, &mut map, OnRedisDown::Local, 2, &keys, now);
        let admitted = local
            .iter()
            .flatten()
            .filter(|a| a.decision.allowed)
            .count();
        assert_eq!(admitted, 4, "8 tokens over 2 instances");
        // A third instance seen: the limits are divided again.
        let third = alone(&mut held, &mut map, OnRedisDown::Local, 3, &keys, now);
        let admitted = third
            .iter()
            .flatten()
            .filter(|a| a.decision.allowed)
            .count();
        assert_eq!(admitted, 2, "8 tokens over 3 instances");
    }

    fn shared_mode(dir: &Path, policy: OnRedisDown) -> SharedMode {
        let settings = ClusterSettings {
            redis: Some(redis::Client::open("redis://127.0.0.1:1/").expect("url")),
            key_prefix: "lb:".into(),
            lease: LEASE,
            on_redis_down: policy,
            redis_timeout: Duration::from_millis(50),
            instance_name: None,
        };
        let cluster = Cluster::new(&settings, Events::start()).expect("cluster mode");
        let known = Known::new(SharedMap::new(map()), RegisteredIds::default());
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

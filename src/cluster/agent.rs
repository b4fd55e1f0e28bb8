//! The cluster's agent, an actor on an arbiter of its own: it (re)connects to Redis, loads the
//! scripts, follows the registry's change log and heartbeats this instance.
//!
//! While Redis is down it tries a fresh connection every tick; a connection counts only once
//! the scripts are loaded and the registry has been read whole (a snapshot, then the log from
//! the entry the snapshot was read at), so an instance that missed changes while cut off, or a
//! Redis that restarted without its scripts, is caught up before shared limiting resumes. A
//! Redis that comes back with neither registry nor log (restarted without persistence) is
//! seeded with this instance's clients rather than emptying every instance.

use std::collections::HashMap;
use std::time::Duration;

use actix::{Actor, ActorFutureExt, Arbiter, AsyncContext, Context, WrapFuture};
use futures_util::future::LocalBoxFuture;

use super::clients::StoredClient;
use super::config::ConfigReplica;
use super::connection::Connection;
use super::handle::{Cluster, Down};
use super::status::Instance;
use super::target::Target;
use crate::client::ClientRecord;

/// How often the log is read, and a reconnect tried while Redis is down.
const TICK: Duration = Duration::from_millis(200);
/// How often this instance says it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// An instance silent this long is no longer counted.
const INSTANCE_TTL: Duration = Duration::from_secs(3);
/// How often, behind Sentinel, the sentinels are asked whether the master moved.
const MASTER_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Log entries read per tick at most.
const READ_COUNT: u64 = 1000;

/// A change of the registry, from Redis to this instance's shards.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Put(ClientRecord),
    Delete(String),
    /// The whole registry: clients not in it are removed.
    Snapshot(Vec<ClientRecord>),
}

/// Where the registry's changes go (the limiter's shards), and what this instance holds (to
/// seed a Redis that lost its data).
pub trait Replica: Send + 'static {
    fn apply(&self, change: Change);
    fn local_clients(&self) -> LocalBoxFuture<'static, Vec<ClientRecord>>;
}

struct Agent {
    cluster: Cluster,
    replica: Box<dyn Replica>,
    /// Where the cluster's configuration goes (`cluster.share_config`), if shared.
    config: Option<Box<dyn ConfigReplica>>,
    /// The last log entry applied.
    last_id: String,
    /// Background calls may take longer than admissions: nobody waits on them.
    slow: Duration,
    /// The sentinels are being asked for the master.
    checking_master: bool,
}

/// Starts the agent on an arbiter of its own, as `instance` (unless the settings named this
/// instance; the server passes the bound address). `replica` receives the registry's changes,
/// `config` the cluster's configuration (ignored unless `cluster.share_config`).
pub fn start_agent(
    cluster: &Cluster,
    instance: String,
    replica: Box<dyn Replica>,
    config: Box<dyn ConfigReplica>,
) {
    cluster.name_unless_named(instance);
    let cluster = cluster.clone();
    let config = cluster.inner.share_config.then_some(config);
    let slow = (cluster.inner.timeout * 4).max(Duration::from_secs(1));
    Agent::start_in_arbiter(&Arbiter::new().handle(), move |_| Agent {
        cluster,
        replica,
        config,
        last_id: "0-0".to_owned(),
        slow,
        checking_master: false,
    });
}

impl Actor for Agent {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.tick(ctx);
        ctx.run_interval(TICK, Self::tick);
        ctx.run_interval(HEARTBEAT_EVERY, |agent, ctx| {
            if agent.cluster.is_up() {
                agent.heartbeat(ctx);
            }
        });
        if matches!(self.cluster.inner.target, Target::Sentinel(_)) {
            ctx.run_interval(MASTER_CHECK_EVERY, Self::check_master);
        }
    }
}

impl Agent {
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.cluster.is_up() {
            self.follow_log(ctx);
            self.sync_config(ctx);
        } else {
            self.reconnect(ctx);
        }
    }

    /// Asks the sentinels for the master: another server than the one connected to means a
    /// failover, and this instance moves (Redis down now, reconnected on the next tick). Not
    /// reaching the sentinels is no reason to leave a master that answers.
    fn check_master(&mut self, ctx: &mut Context<Self>) {
        if self.checking_master || !self.cluster.is_up() {
            return;
        }
        self.checking_master = true;
        let cluster = self.cluster.clone();
        let slow = self.slow;
        let ask = async move { cluster.inner.target.master_now(slow).await };
        ctx.spawn(ask.into_actor(self).map(|master, agent, _| {
            agent.checking_master = false;
            let Some(master) = master else {
                return;
            };
            if agent.cluster.is_up() && agent.cluster.server().as_deref() != Some(&master) {
                agent
                    .cluster
                    .mark_down(&format!("the sentinels name another master, {master}"));
            }
        }));
    }

    fn reconnect(&mut self, ctx: &mut Context<Self>) {
        let joined = join(
            self.cluster.clone(),
            self.replica.local_clients(),
            self.slow,
        );
        ctx.wait(
            joined
                .into_actor(self)
                .map(|joined, agent, ctx| match joined {
                    Ok(Joined {
                        connection,
                        server,
                        clients,
                        last_id,
                    }) => {
                        let records = clients.into_iter().map(StoredClient::into_record).collect();
                        agent.replica.apply(Change::Snapshot(records));
                        agent.last_id = last_id;
                        agent.cluster.mark_up(connection, server);
                        agent.heartbeat(ctx);
                    }
                    // Expected while Redis is away; the down transition was logged once.
                    Err(Down(why)) => log::debug!("Redis not reachable yet: {why}"),
                }),
        );
    }

    fn follow_log(&mut self, ctx: &mut Context<Self>) {
        let mut pipe = redis::pipe();
        pipe.cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("STREAMS")
            .arg(self.cluster.log_key())
            .arg(&self.last_id);
        let cluster = self.cluster.clone();
        let slow = self.slow;
        let read = async move {
            cluster
                .query_within::<(Option<Vec<StreamRead>>,)>(&pipe, 1, slow)
                .await
        };
        ctx.wait(read.into_actor(self).map(|answer, agent, _| {
            let Ok((Some(streams),)) = answer else {
                return;
            };
            let me = agent.cluster.instance();
            for (_, entries) in streams {
                for (id, fields) in entries {
                    if let Some(entry) = parse_entry(&fields) {
                        if let Some(action) = entry.action.filter(|_| entry.by != me) {
                            // The writing instance told its own page already.
                            agent.cluster.announce(action, entry.client_id);
                        }
                        agent.replica.apply(entry.change);
                    }
                    agent.last_id = id;
                }
            }
        }));
    }

    /// Publishes a configuration changed here, or applies another version of the cluster's.
    fn sync_config(&mut self, ctx: &mut Context<Self>) {
        if self.config.is_none() {
            return;
        }
        let cluster = self.cluster.clone();
        let slow = self.slow;
        let sync = async move { cluster.sync_config(slow).await };
        ctx.wait(sync.into_actor(self).map(|synced, agent, _| {
            if let (Ok(Some(text)), Some(config)) = (synced, &agent.config) {
                config.apply(text);
            }
        }));
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let cluster = self.cluster.clone();
        let slow = self.slow;
        let beat = async move {
            let mut invocation = cluster.inner.scripts.heartbeat.key(cluster.instances_key());
            invocation
                .key(cluster.instance_versions_key())
                .arg(cluster.instance())
                .arg(INSTANCE_TTL.as_millis() as u64)
                .arg(cluster.config_version().unwrap_or(0));
            let mut pipe = redis::pipe();
            pipe.invoke_script(&invocation);
            let answer = cluster
                .query_within::<(Vec<(String, u64, u64)>,)>(&pipe, 1, slow)
                .await;
            if let Ok((live,)) = answer {
                let instances = live
                    .into_iter()
                    .map(|(name, last_seen_ms, version)| Instance {
                        name,
                        last_seen_ms,
                        config_version: (version > 0).then_some(version),
                    })
                    .collect();
                cluster.set_instances(instances);
            }
        };
        ctx.spawn(beat.into_actor(self));
    }
}

/// `XREAD`'s answer for one stream: its name and its entries (id, flat field list).
type StreamRead = (String, Vec<(String, Vec<String>)>);

/// One entry of the change log.
#[derive(Debug, PartialEq)]
struct Entry {
    change: Change,
    client_id: String,
    /// `created`, `updated` or `deleted`, for the page's event log.
    action: Option<&'static str>,
    /// The instance that wrote it.
    by: String,
}

/// `op put id X client JSON` or `op del id X`, with `action` and `by`; anything else is skipped.
fn parse_entry(fields: &[String]) -> Option<Entry> {
    let map: HashMap<&str, &str> = fields
        .chunks_exact(2)
        .map(|pair| (pair[0].as_str(), pair[1].as_str()))
        .collect();
    let client_id = (*map.get("id")?).to_owned();
    let change = match *map.get("op")? {
        "put" => Change::Put(StoredClient::parse(map.get("client")?)?.into_record()),
        "del" => Change::Delete(client_id.clone()),
        _ => return None,
    };
    let action = match map.get("action").copied() {
        Some("created") => Some("created"),
        Some("updated") => Some("updated"),
        Some("deleted") => Some("deleted"),
        _ => None,
    };
    Some(Entry {
        change,
        client_id,
        action,
        by: map.get("by").copied().unwrap_or_default().to_owned(),
    })
}

/// A fresh connection, ready for shared limiting.
struct Joined {
    connection: Connection,
    /// The server's `host:port` (none on a Redis Cluster).
    server: Option<String>,
    /// The registry, and the log entry it is current to.
    clients: Vec<StoredClient>,
    last_id: String,
}

/// Connects afresh, loads the scripts and reads the registry whole, seeding it from `local`
/// when Redis has lost it.
async fn join(
    cluster: Cluster,
    local: LocalBoxFuture<'static, Vec<ClientRecord>>,
    slow: Duration,
) -> Result<Joined, Down> {
    let (mut connection, server) = cluster.inner.target.connect(slow).await.map_err(Down)?;
    for script in cluster.inner.scripts.all() {
        within(slow, connection.load(script)).await?;
    }
    let (mut clients, mut last_id, log_exists) =
        read_registry(&cluster, &mut connection, slow).await?;
    if clients.is_empty() && !log_exists {
        let local = local.await;
        if !local.is_empty() {
            for record in &local {
                let create = cluster.create_pipe(&StoredClient::from_record(record))?;
                within(slow, connection.query::<(u8,)>(&create)).await?;
            }
            log::warn!(
                "Redis holds no registry (restarted without persistence?): seeded it with this instance's {} clients",
                local.len()
            );
            (clients, last_id, _) = read_registry(&cluster, &mut connection, slow).await?;
        }
    }
    clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    if last_id.is_empty() {
        last_id = "0-0".to_owned();
    }
    Ok(Joined {
        connection,
        server,
        clients,
        last_id,
    })
}

/// The last log entry's id (empty if none), then every client, and whether the log exists.
async fn read_registry(
    cluster: &Cluster,
    connection: &mut Connection,
    slow: Duration,
) -> Result<(Vec<StoredClient>, String, bool), Down> {
    let mut pipe = redis::pipe();
    pipe.cmd("XREVRANGE")
        .arg(cluster.log_key())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .cmd("HGETALL")
        .arg(cluster.clients_key())
        .cmd("EXISTS")
        .arg(cluster.log_key());
    type Answer = (Vec<(String, Vec<String>)>, HashMap<String, String>, u8);
    let (last, all, exists): Answer = within(slow, connection.query(&pipe)).await?;
    let last_id = last
        .into_iter()
        .next()
        .map(|(id, _)| id)
        .unwrap_or_default();
    let clients = all
        .values()
        .filter_map(|json| StoredClient::parse(json))
        .collect();
    Ok((clients, last_id, exists == 1))
}

async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, Down> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) => Err(Down(err.to_string())),
        Err(_) => Err(Down(format!("no answer within {} ms", limit.as_millis()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[&str]) -> Vec<String> {
        pairs.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Log entries become changes; entries that are not ours are skipped, not fatal.
    #[test]
    fn log_entries_parse_into_changes() {
        let put = fields(&[
            "op",
            "put",
            "id",
            "a",
            "client",
            r#"{"client_id":"a","name":null,"capacity":5,"rate_per_sec":0.5}"#,
            "action",
            "created",
            "by",
            "edge-1",
        ]);
        let entry = parse_entry(&put).expect("an entry");
        let Change::Put(record) = entry.change else {
            panic!("a put");
        };
        assert_eq!(
            (record.client_id.as_str(), record.limits.capacity),
            ("a", 5)
        );
        assert_eq!(
            (entry.action, entry.by.as_str()),
            (Some("created"), "edge-1")
        );
        let deleted = parse_entry(&fields(&["op", "del", "id", "a"])).expect("an entry");
        assert_eq!(deleted.change, Change::Delete("a".into()));
        assert_eq!((deleted.action, deleted.by.as_str()), (None, ""));
        for junk in [
            fields(&["op", "put", "id", "a", "client", "{not json"]),
            fields(&[
                "op",
                "put",
                "id",
                "a",
                "client",
                r#"{"client_id":"a","capacity":0,"rate_per_sec":1}"#,
            ]),
            fields(&["op", "rename"]),
            fields(&["odd"]),
        ] {
            assert_eq!(parse_entry(&junk), None, "{junk:?}");
        }
    }
}

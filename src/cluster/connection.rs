//! The connection to Redis: one multiplexed socket to a server (a single Redis, or the master
//! behind Sentinel), or a Redis Cluster's connection, which keeps one per node, follows the
//! slot map and handles `MOVED` and `ASK` itself.

use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, Pipeline, RedisResult, Script, Value};

/// Cheap to clone: clones share the socket(s).
#[derive(Clone)]
pub(super) enum Connection {
    Server(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Connection {
    /// Runs `pipe` and answers its commands' results as a whole. On a Redis Cluster the
    /// commands go each on its own, all at once: their keys may live on different nodes (one
    /// pipeline must stay within one slot), and none of our pipelines needs them in one step.
    pub(super) async fn query<T: FromRedisValue>(&mut self, pipe: &Pipeline) -> RedisResult<T> {
        match self {
            Self::Server(connection) => pipe.query_async(connection).await,
            Self::Cluster(connection) => {
                let answers = join_all(pipe.cmd_iter().map(|command| {
                    let mut connection = connection.clone();
                    async move { command.query_async::<Value>(&mut connection).await }
                }))
                .await;
                let values = answers.into_iter().collect::<RedisResult<Vec<Value>>>()?;
                Ok(redis::from_redis_value(Value::Array(values))?)
            }
        }
    }

    /// Loads `script` (on a Redis Cluster into every master).
    pub(super) async fn load(&mut self, script: &Script) -> RedisResult<String> {
        match self {
            Self::Server(connection) => script.load_async(connection).await,
            Self::Cluster(connection) => script.load_async(connection).await,
        }
    }
}

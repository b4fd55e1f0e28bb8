//! Admissions gathered per worker turn, for the asks that go to a shard's actor: all of them in
//! cluster mode, and a single instance's when the shard's map is busy or an eviction is due
//! (the others are taken on the worker's thread, [`super::map::SharedMap`]). Each such ask
//! needs one answer from its client's shard, and a cross-thread round trip costs a thread
//! wake-up on each side. So a worker does not send one message per request: the requests that
//! ask during one turn of the worker's event loop are queued on the worker thread, and a task
//! spawned by the first of them — which runs after the tasks already woken in that turn —
//! sends each shard one [`AdmitMany`] and hands every request its own answer. A lone request
//! pays one spawn more; under load one round trip serves many requests (docs/performance.md
//! has the figures). The answers are exactly those of one message per request, in arrival
//! order. A request dropped while waiting loses nothing but its answer: the flush does not
//! depend on it.

use std::cell::RefCell;

use actix::{Addr, MailboxError};
use tokio::sync::oneshot;

use super::messages::AdmitMany;
use super::shard::BucketStore;
use crate::client::{Admission, Charge};

type Waiting = (
    Addr<BucketStore>,
    Charge,
    oneshot::Sender<Option<Admission>>,
);
/// One shard's part of a flush: the charges in order, and where each answer goes.
type Group = (
    Addr<BucketStore>,
    Vec<Charge>,
    Vec<oneshot::Sender<Option<Admission>>>,
);

/// This worker thread's admissions not yet sent, and whether a flush is on its way.
#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    flush_scheduled: bool,
}

thread_local! {
    static QUEUE: RefCell<Queue> = RefCell::new(Queue::default());
}

/// Takes what `charge` wants from `shard`, in this turn's batch; `None` when no decision can be
/// made (see [`AdmitMany`]).
pub async fn admit(
    shard: &Addr<BucketStore>,
    charge: Charge,
) -> Result<Option<Admission>, MailboxError> {
    let (answer, answered) = oneshot::channel();
    let first = QUEUE.with(|queue| {
        let mut queue = queue.borrow_mut();
        queue.waiting.push((shard.clone(), charge, answer));
        !std::mem::replace(&mut queue.flush_scheduled, true)
    });
    if first {
        actix_rt::spawn(flush());
    }
    // A dropped sender means the shard stopped (or the worker is going away).
    answered.await.map_err(|_| MailboxError::Closed)
}

/// Sends everything queued so far, one message per shard, and distributes the answers.
async fn flush() {
    let waiting = QUEUE.with(|queue| {
        let mut queue = queue.borrow_mut();
        queue.flush_scheduled = false;
        std::mem::take(&mut queue.waiting)
    });
    let mut groups: Vec<Group> = Vec::with_capacity(1);
    for (shard, charge, answer) in waiting {
        match groups.iter_mut().find(|group| group.0 == shard) {
            Some(group) => {
                group.1.push(charge);
                group.2.push(answer);
            }
            None => groups.push((shard, vec![charge], vec![answer])),
        }
    }
    let sends = groups
        .into_iter()
        .map(|(shard, charges, answers)| async move {
            if let Ok(admissions) = shard.send(AdmitMany(charges)).await {
                for (answer, admission) in answers.into_iter().zip(admissions) {
                    let _ = answer.send(admission);
                }
            }
        });
    futures_util::future::join_all(sends).await;
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use actix_web::http::header::HeaderName;

    use super::super::Limiter;
    use crate::client::{Charge, ClientKey};
    use crate::persistence::{Database, Store};
    use crate::settings::RateLimitSettings;

    fn limiter(dir: &std::path::Path, shards: usize) -> Limiter {
        let db = Database::open(&dir.join("t.sqlite3")).expect("database");
        let settings = RateLimitSettings {
            enabled: true,
            default_capacity: 10,
            default_rate_per_sec: 0.001,
            api_key_header: HeaderName::from_static("x-api-key"),
            trusted_proxies: Vec::new(),
            max_tracked_clients: 1000,
        };
        Limiter::start(
            &settings,
            Duration::from_secs(3600),
            Store::start(db),
            Vec::new(),
            shards,
            None,
        )
    }

    /// Polls `future` once, here and now (no await: the tests hold a lock meanwhile).
    fn poll_now<F: std::future::Future>(
        future: std::pin::Pin<&mut F>,
    ) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
        future.poll(&mut cx)
    }

    /// A request dropped while waiting for its answer (its client went away) holds up no
    /// other: the next admissions are answered. (The test holds the shard's lock at first, so
    /// that the asks go to the shard's actor and wait.)
    #[actix_rt::test]
    async fn a_request_dropped_while_waiting_holds_up_no_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limiter = limiter(dir.path(), 1);
        let key = ClientKey::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let held = limiter.maps[0].lock();
        let mut first = Box::pin(limiter.admit(Charge::plain(key.clone())));
        let polled = poll_now(first.as_mut());
        assert!(polled.is_pending(), "the shard answers from another thread");
        let mut second = Box::pin(limiter.admit(Charge::plain(key.clone())));
        assert!(poll_now(second.as_mut()).is_pending());
        drop(first);
        drop(held);
        let answered = actix_rt::time::timeout(Duration::from_secs(5), second).await;
        assert!(answered.expect("answered in time").is_ok());
        let third =
            actix_rt::time::timeout(Duration::from_secs(5), limiter.admit(Charge::plain(key)))
                .await;
        assert!(third.expect("answered in time").is_ok());
    }

    /// While the shard's map is locked (its actor sweeping or flushing), a worker is not made
    /// to wait: the ask goes to the actor, and is answered, exactly, once the lock is free.
    #[actix_rt::test]
    async fn a_busy_map_sends_the_ask_to_the_shard_without_blocking_the_worker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limiter = limiter(dir.path(), 1);
        let key = ClientKey::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)));
        let held = limiter.maps[0].lock();
        let mut asks: Vec<_> = (0..12)
            .map(|_| Box::pin(limiter.admit(Charge::plain(key.clone()))))
            .collect();
        for ask in &mut asks {
            assert!(poll_now(ask.as_mut()).is_pending());
        }
        drop(held);
        let answers =
            actix_rt::time::timeout(Duration::from_secs(5), futures_util::future::join_all(asks))
                .await
                .expect("answered in time");
        let allowed: Vec<bool> = answers
            .iter()
            .map(|answer| answer.as_ref().expect("answered").decision.allowed)
            .collect();
        assert_eq!(allowed, (0..12).map(|i| i < 10).collect::<Vec<_>>());
        // The next ask is taken on this thread, from the same bucket.
        let next = limiter.admit(Charge::plain(key.clone()));
        let polled = poll_now(std::pin::pin!(next));
        let std::task::Poll::Ready(Ok(admission)) = polled else {
            panic!("an uncontended ask is answered at once: {polled:?}");
        };
        assert!(!admission.decision.allowed);
    }

    /// Four threads, each its own actix system (as the HTTP workers are), take tokens of one
    /// client at once, through the map's lock or the shard's actor as it comes: exactly the
    /// capacity is admitted.
    #[test]
    fn workers_on_several_threads_share_one_bucket_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limiter =
            actix_rt::System::new().block_on(async { std::sync::Arc::new(limiter(dir.path(), 2)) });
        let key = ClientKey::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (limiter, key) = (std::sync::Arc::clone(&limiter), key.clone());
                std::thread::spawn(move || {
                    actix_rt::System::new().block_on(async move {
                        let asks = (0..200).map(|_| limiter.admit(Charge::plain(key.clone())));
                        let answers = futures_util::future::join_all(asks).await;
                        answers
                            .into_iter()
                            .filter(|answer| answer.as_ref().expect("answered").decision.allowed)
                            .count()
                    })
                })
            })
            .collect();
        let allowed: usize = threads
            .into_iter()
            .map(|thread| thread.join().expect("thread"))
            .sum();
        assert_eq!(allowed, 10);
    }

    /// Sixty admissions for two clients on two shards, all asked at once (so most of them are
    /// batched): each client gets exactly its capacity, and the first ones asked are the ones
    /// admitted.
    #[actix_rt::test]
    async fn one_turn_of_admissions_is_answered_exactly_and_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limiter = limiter(dir.path(), 2);
        let clients = [1u8, 2].map(|n| ClientKey::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))));
        let asks: Vec<ClientKey> = (0..60).map(|i| clients[i % 2].clone()).collect();
        let answers = futures_util::future::join_all(
            asks.iter()
                .map(|key| limiter.admit(Charge::plain(key.clone()))),
        )
        .await;
        for client in &clients {
            let allowed: Vec<bool> = asks
                .iter()
                .zip(&answers)
                .filter(|(key, _)| *key == client)
                .map(|(_, answer)| answer.as_ref().expect("answered").decision.allowed)
                .collect();
            let expected: Vec<bool> = (0..30).map(|i| i < 10).collect();
            assert_eq!(allowed, expected, "{client:?}");
        }
    }
}

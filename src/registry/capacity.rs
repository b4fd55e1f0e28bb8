//! What a pool may take on beyond its members' own limits: the line requests wait in when every
//! backend they could use is at its `max_connections` ([`Queue`], for `backends.queue_timeout_ms`
//! at most), and the retry budget (retries in flight at most `backends.retry_budget_percent` of
//! the requests in flight, [`MIN_RETRIES`] always), so a sick pool is not hit by a retry storm.
//! Shared by every view of the pool and by the leases that must give back what they took.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::queue::Queue;

/// Retries in flight that the budget always allows, whatever the share.
pub const MIN_RETRIES: u64 = 3;

/// Why a pool gave no backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoBackend {
    /// None takes requests (down, draining, or already tried by this request).
    Unavailable,
    /// Some would, but each is at its `max_connections` (and the line was full, or the wait
    /// ran out).
    Busy,
    /// A retry, refused by the retry budget.
    OverBudget,
}

/// A pool's line and retry budget.
#[derive(Debug)]
pub struct Capacity {
    pub queue: Queue,
    queue_timeout: Duration,
    retry_budget_percent: u32,
    retries_in_flight: AtomicU64,
}

/// How a wait in line ended, and how long it took (`None`: the request did not wait).
#[derive(Debug)]
pub struct Waited<T> {
    pub result: Result<T, NoBackend>,
    pub waited: Option<Duration>,
}

impl Capacity {
    /// A line of `queue_size` places and `queue_timeout`, and a budget of `retry_budget_percent`.
    pub fn new(queue_size: usize, queue_timeout: Duration, retry_budget_percent: u32) -> Self {
        Self {
            queue: Queue::new(queue_size),
            queue_timeout,
            retry_budget_percent,
            retries_in_flight: AtomicU64::new(0),
        }
    }

    /// A slot of a limited backend came free: the first in line is called. The caller freed it
    /// with a sequentially consistent decrement, so either this sees the waiter or the waiter's
    /// own look after joining sees the slot.
    pub fn slot_freed(&self) {
        if !self.queue.is_empty() {
            self.queue.call_next();
        }
    }

    /// Takes a place in the retry budget when the pool has `in_flight` requests under way;
    /// `false` when the budget is spent.
    pub fn try_retry(&self, in_flight: u64) -> bool {
        let allowed = (in_flight * u64::from(self.retry_budget_percent) / 100).max(MIN_RETRIES);
        let before = self.retries_in_flight.fetch_add(1, Ordering::Relaxed);
        if before < allowed {
            return true;
        }
        self.retry_ended();
        false
    }

    /// A retry's attempt ended (its lease was dropped, or it found no backend).
    pub fn retry_ended(&self) {
        self.retries_in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// `pick` at once unless others wait or every backend is busy; then in line until `pick`
    /// finds room when called, or the timeout: [`NoBackend::Busy`]. A request whose future is
    /// dropped (its client left) leaves the line.
    pub async fn pick_or_wait<T>(
        &self,
        mut pick: impl FnMut() -> Result<T, NoBackend>,
    ) -> Waited<T> {
        if self.queue.is_empty() {
            match pick() {
                Err(NoBackend::Busy) => {}
                result => {
                    return Waited {
                        result,
                        waited: None,
                    }
                }
            }
        }
        let started = Instant::now();
        let Some((mut place, first)) = self.queue.join() else {
            return Waited {
                result: Err(NoBackend::Busy),
                waited: None,
            };
        };
        let deadline = tokio::time::Instant::from_std(started + self.queue_timeout);
        // The first in line looks once more: a slot freed before it joined called no one.
        let mut look = first;
        let result = loop {
            if look {
                fence(Ordering::SeqCst);
                match pick() {
                    Err(NoBackend::Busy) => place.back_in_line(),
                    result => break result,
                }
            }
            if tokio::time::timeout_at(deadline, place.called())
                .await
                .is_err()
            {
                break Err(NoBackend::Busy);
            }
            look = true;
        };
        if result.is_ok() {
            place.served();
        }
        Waited {
            result,
            waited: Some(started.elapsed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// The budget is the share of the requests in flight, never under three.
    #[test]
    fn retry_budget_is_a_share_with_three_always_allowed() {
        let capacity = Capacity::new(0, Duration::from_secs(1), 20);
        assert!((0..3).all(|_| capacity.try_retry(0)));
        assert!(
            !capacity.try_retry(10),
            "3 in flight, 20% of 10 is 2: the floor of 3 holds"
        );
        assert!(capacity.try_retry(20), "20% of 20 is 4");
        assert!(!capacity.try_retry(20));
        capacity.retry_ended();
        assert!(capacity.try_retry(20));
    }

    /// No line: busy at once; with a line, a pick that finds room when called succeeds.
    #[actix_rt::test]
    async fn waits_in_line_until_called_or_busy_without_a_line() {
        let none = Capacity::new(0, Duration::from_secs(5), 20);
        let waited = none.pick_or_wait(|| Err::<(), _>(NoBackend::Busy)).await;
        assert_eq!((waited.result, waited.waited), (Err(NoBackend::Busy), None));

        let capacity = Rc::new(Capacity::new(1, Duration::from_secs(5), 20));
        let room = Rc::new(Cell::new(false));
        let waiting = {
            let (capacity, room) = (Rc::clone(&capacity), Rc::clone(&room));
            actix_rt::spawn(async move {
                let pick = || {
                    if room.get() {
                        Ok(7)
                    } else {
                        Err(NoBackend::Busy)
                    }
                };
                capacity.pick_or_wait(pick).await
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while capacity.queue.is_empty() && Instant::now() < deadline {
            actix_rt::task::yield_now().await;
        }
        assert_eq!(capacity.queue.len(), 1);
        room.set(true);
        capacity.slot_freed();
        let waited = waiting.await.expect("the waiter ran");
        assert_eq!(waited.result, Ok(7));
        assert!(waited.waited.is_some());
        assert!(capacity.queue.is_empty());
    }

    /// A wait that is never called ends busy at the timeout, and leaves the line.
    #[actix_rt::test]
    async fn a_wait_times_out_busy() {
        let capacity = Capacity::new(4, Duration::from_millis(30), 20);
        let waited = capacity
            .pick_or_wait(|| Err::<(), _>(NoBackend::Busy))
            .await;
        assert_eq!(waited.result, Err(NoBackend::Busy));
        assert!(waited.waited.expect("it waited") >= Duration::from_millis(30));
        assert!(capacity.queue.is_empty());
    }
}

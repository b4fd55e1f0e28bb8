//! A pool's waiting line: requests that found every backend they could use at its
//! `max_connections` wait here, first come first served, until a lease on the pool ends and
//! calls the first of them. A [`Place`] is one request's place in line; dropping it (the
//! request was served, timed out, or its client went away) takes it out, and a place that was
//! called but did not use the call passes it on, so no freed slot goes unnoticed.
//!
//! The lock is taken only by requests that wait and by leases that end while someone waits;
//! the length is an atomic every ending lease reads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The line of one pool.
#[derive(Debug)]
pub struct Queue {
    /// Places at most (`backends.queue_size`); 0 = no waiting.
    size: usize,
    /// Places in line now: read without the lock by every lease that ends.
    len: AtomicUsize,
    line: Mutex<Line>,
}

#[derive(Debug, Default)]
struct Line {
    next_ticket: u64,
    /// In ticket order (arrival order).
    waiting: VecDeque<Waiter>,
}

#[derive(Debug)]
struct Waiter {
    ticket: u64,
    call: Arc<Notify>,
}

/// One request's place: in line, or called out of it.
#[derive(Debug)]
pub struct Place<'q> {
    queue: &'q Queue,
    ticket: u64,
    call: Arc<Notify>,
    /// The call was used (a backend was leased): nothing to pass on.
    served: bool,
}

impl Queue {
    /// A line of `size` places.
    pub fn new(size: usize) -> Self {
        Self {
            size,
            len: AtomicUsize::new(0),
            line: Mutex::new(Line::default()),
        }
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A place at the end of the line, and whether the line was empty; `None` when it is full
    /// (or there is no line).
    pub fn join(&self) -> Option<(Place<'_>, bool)> {
        let mut line = self.lock();
        if line.waiting.len() >= self.size {
            return None;
        }
        let ticket = line.next_ticket;
        line.next_ticket += 1;
        let first = line.waiting.is_empty();
        let call = Arc::new(Notify::new());
        line.waiting.push_back(Waiter {
            ticket,
            call: Arc::clone(&call),
        });
        self.len.store(line.waiting.len(), Ordering::SeqCst);
        let place = Place {
            queue: self,
            ticket,
            call,
            served: false,
        };
        Some((place, first))
    }

    /// Calls the first in line, if anyone waits.
    pub fn call_next(&self) {
        let mut line = self.lock();
        if let Some(waiter) = line.waiting.pop_front() {
            self.len.store(line.waiting.len(), Ordering::SeqCst);
            waiter.call.notify_one();
        }
    }

    /// Calls everyone in line (the pool changed: members up, added, limits raised).
    pub fn call_all(&self) {
        if self.is_empty() {
            return;
        }
        let mut line = self.lock();
        for waiter in line.waiting.drain(..) {
            waiter.call.notify_one();
        }
        self.len.store(0, Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, Line> {
        // A panic while holding it cannot leave the line half-changed: every change is one
        // push, pop or removal.
        self.line
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Place<'_> {
    /// Waits until called (a call made before this is awaited is kept).
    pub async fn called(&self) {
        self.call.notified().await;
    }

    /// Called, but there was still no room: back to its place by arrival, ahead of everyone
    /// who came later.
    pub fn back_in_line(&mut self) {
        let mut line = self.queue.lock();
        if line.waiting.iter().any(|w| w.ticket == self.ticket) {
            return;
        }
        let at = line.waiting.partition_point(|w| w.ticket < self.ticket);
        let call = Arc::clone(&self.call);
        line.waiting.insert(
            at,
            Waiter {
                ticket: self.ticket,
                call,
            },
        );
        self.queue.len.store(line.waiting.len(), Ordering::SeqCst);
    }

    /// The request got its backend: out of line if it still was, and the next one called, in
    /// case the slot it took was not the only one free.
    pub fn served(mut self) {
        self.served = true;
        self.leave();
        if !self.queue.is_empty() {
            self.queue.call_next();
        }
    }

    /// Out of line; a call it got and did not use goes to the next one.
    fn leave(&mut self) {
        let mut line = self.queue.lock();
        match line.waiting.iter().position(|w| w.ticket == self.ticket) {
            Some(at) => {
                line.waiting.remove(at);
                self.queue.len.store(line.waiting.len(), Ordering::SeqCst);
            }
            None if !self.served => {
                drop(line);
                self.queue.call_next();
            }
            None => {}
        }
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.served {
            self.leave();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Places are taken up to the size; a line of size 0 takes none.
    #[test]
    fn holds_at_most_its_size() {
        let queue = Queue::new(2);
        let (_a, first) = queue.join().expect("a place");
        assert!(first);
        let (_b, first) = queue.join().expect("a place");
        assert!(!first);
        assert!(queue.join().is_none(), "full");
        assert_eq!(queue.len(), 2);
        assert!(Queue::new(0).join().is_none());
    }

    /// Calls go in arrival order; one called back into line goes ahead of later arrivals.
    #[actix_rt::test]
    async fn calls_in_arrival_order_and_keeps_a_place_on_return() {
        let queue = Queue::new(3);
        let (mut a, _) = queue.join().expect("a");
        let (b, _) = queue.join().expect("b");
        queue.call_next();
        a.called().await;
        assert_eq!(queue.len(), 1);
        a.back_in_line();
        assert_eq!(queue.len(), 2);
        queue.call_next();
        a.called().await;
        a.served();
        // Served with someone waiting: the next is called at once.
        b.called().await;
        drop(b);
        assert!(queue.is_empty());
    }

    /// A place dropped while in line leaves it; one dropped after an unused call passes it on.
    #[actix_rt::test]
    async fn leaving_takes_the_place_out_and_passes_a_call_on() {
        let queue = Queue::new(3);
        let (a, _) = queue.join().expect("a");
        let (b, _) = queue.join().expect("b");
        let (c, _) = queue.join().expect("c");
        drop(b);
        assert_eq!(queue.len(), 2);
        queue.call_next();
        drop(a);
        c.called().await;
        assert!(queue.is_empty());
    }

    /// Calling everyone empties the line and each place hears it.
    #[actix_rt::test]
    async fn calling_all_reaches_every_place() {
        let queue = Queue::new(3);
        let places: Vec<_> = (0..3).map(|_| queue.join().expect("place").0).collect();
        queue.call_all();
        assert!(queue.is_empty());
        for place in &places {
            place.called().await;
        }
    }
}

//! `--offload N`: the loop's side of the helper pool (zen-utils'
//! `offload`). This is libuv's design, the one behind Node.js's file I/O:
//! the loop hands `--work cpu|block` to a pool of plain threads through a
//! queue, and goes back to its other clients; a helper that is done
//! queues the completion and wakes the loop's poller (`poller.rs`), which
//! ends the wait, and the loop gives the connection its answer.
//!
//! A connection has at most one job, since its conversation reads nothing
//! while it owes an answer. When the pool's queue is full, the work is
//! parked here, in order: the connection is not read from until a job
//! ends and frees room (backpressure), and nothing is dropped.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use zen_utils::serve::offload::{Helpers, Ticket};
use zen_utils::{Shutdown, Work};

use zen_utils::serve::raw_loop::ids::ConnId;

use crate::poller::PollerWaker;

/// The helpers, and the completions on their way back to the loop.
pub(crate) struct Offload {
    helpers: Helpers,
    /// Works done and not yet given to their connections, in the order the
    /// helpers finished them, each with whether it finished (`false`: the
    /// shutdown grace cut it short).
    done: Arc<Mutex<Vec<(ConnId, bool)>>>,
    /// Works that found the queue full, in the order they came.
    parked: VecDeque<(ConnId, Work)>,
    /// The works queued or running, each with the flag that cancels it
    /// if its connection closes first: a helper then skips it.
    in_flight: HashMap<ConnId, Arc<AtomicBool>>,
    /// The loop's waker, shared with the shutdown trigger.
    waker: Arc<PollerWaker>,
    shutdown: Shutdown,
}

impl Offload {
    /// Starts `helpers` threads that wake the loop through `waker`.
    pub(crate) fn start(
        helpers: usize,
        waker: Arc<PollerWaker>,
        shutdown: Shutdown,
    ) -> io::Result<Self> {
        Ok(Self {
            helpers: Helpers::start(helpers)?,
            done: Arc::new(Mutex::new(Vec::new())),
            parked: VecDeque::new(),
            in_flight: HashMap::new(),
            waker,
            shutdown,
        })
    }

    /// Hands connection `conn`'s `work` to a helper, or parks it behind
    /// the others already waiting for room.
    pub(crate) fn submit(&mut self, conn: ConnId, work: Work) {
        if self.parked.is_empty() {
            if let Some(ticket) = self.helpers.try_ticket() {
                return self.send(ticket, conn, work);
            }
        }
        self.parked.push_back((conn, work));
    }

    fn send(&mut self, ticket: Ticket, conn: ConnId, work: Work) {
        let done = Arc::clone(&self.done);
        let waker = Arc::clone(&self.waker);
        let cancelled = Arc::new(AtomicBool::new(false));
        self.in_flight.insert(conn, Arc::clone(&cancelled));
        let shutdown = self.shutdown.clone();
        self.helpers
            .submit(ticket, work, shutdown, cancelled, move |finished| {
                let mut done = done.lock().unwrap_or_else(PoisonError::into_inner);
                // One wake per batch: a list that is not empty has woken
                // the loop already, and the loop has not taken it yet.
                let wake = done.is_empty();
                done.push((conn, finished));
                drop(done);
                if wake {
                    waker.wake();
                }
            });
    }

    /// The works done since the last call; then hands the parked works
    /// (of connections still `open`) to the room those freed.
    pub(crate) fn take_done(&mut self, open: impl Fn(ConnId) -> bool) -> Vec<(ConnId, bool)> {
        let done = std::mem::take(&mut *self.done.lock().unwrap_or_else(PoisonError::into_inner));
        for (conn, _) in &done {
            self.in_flight.remove(conn);
        }
        while let Some(&(conn, work)) = self.parked.front() {
            if !open(conn) {
                self.parked.pop_front();
                continue;
            }
            let Some(ticket) = self.helpers.try_ticket() else {
                break;
            };
            self.parked.pop_front();
            self.send(ticket, conn, work);
        }
        done
    }

    /// Connection `conn` closed: its work, queued or parked, is no longer
    /// wanted. A helper skips a queued one (one already running goes on:
    /// a sleep cannot be interrupted), and a parked one is forgotten, so
    /// that clients that ask and leave cannot grow the parked list.
    pub(crate) fn forget(&mut self, conn: ConnId) {
        if let Some(cancelled) = self.in_flight.remove(&conn) {
            cancelled.store(true, Ordering::Relaxed);
        } else if self.parked.iter().any(|(parked, _)| *parked == conn) {
            self.parked.retain(|(parked, _)| *parked != conn);
        }
    }
}

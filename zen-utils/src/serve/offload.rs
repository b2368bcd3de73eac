//! `--offload N`: helper threads that do an event loop's blocking work, so
//! that the loop goes on serving everyone else meanwhile.
//!
//! ```text
//!   event loop (one thread)                 helpers (N threads)
//!   ───────────────────────                 ───────────────────
//!   question needs cpu/block work
//!     ├─ a ticket? (the bound) ── no ──► park the connection: it is not
//!     │                                  read from until a ticket frees
//!     └─ yes: submit(job) ─────────────► queue ─► a helper runs the work
//!   ...serves every other client...                    │
//!   woken ◄──────────── done(finished) ◄───────────────┘ (ticket returned)
//!   the answer joins the connection's output, in order
//! ```
//!
//! This is the cure every real event-driven system uses for work that
//! blocks: Flash's helper processes (the AMPED design), libuv's thread
//! pool behind Node.js's file I/O, tokio's `spawn_blocking`, nginx's
//! thread pools. One pool serves srv-poll (a callback that queues the
//! completion and wakes the loop, libuv's design), and srv-async and
//! srv-hybrid (an `async` wait on the completion, `spawn_blocking`'s
//! shape); srv-hybrid's runtimes share one pool, so N is the server's.
//!
//! Bounded like everything else in the server:
//! - a connection has at most one job at a time: its conversation owes
//!   one answer and reads nothing more until it is given, so work queued
//!   for it counts toward its bound as an answer not yet sent does;
//! - the jobs queued or running are bounded in total by the tickets,
//!   [`QUEUED_PER_HELPER`] per helper. Without a ticket a connection waits
//!   for one and is not read from meanwhile (backpressure); nothing is
//!   dropped.
//!
//! Work is for clients that are still there. A client that resets while
//! its work is queued cancels it, and the helper that reaches it skips it
//! (its ticket is given back then); work a helper has begun goes on, as a
//! sleep cannot be interrupted. Each model watches for the reset its own
//! way: srv-poll's loop hears it from epoll (a reset is reported whatever
//! the connection is registered for) and cancels when it closes the
//! connection; srv-async's task, waiting on [`Helpers::run`], also waits
//! for an error on its socket, and drops the wait when one comes. A client
//! that only sends more, or half-closes, is still waiting for its answer:
//! its work stays.
//!
//! At shutdown a connection waits for its job within the grace, as for
//! `--work wait`; the end of the grace cuts `cpu` short. Dropping the pool
//! drops the jobs not started and lets the helpers go without waiting for
//! them: a helper in a `block` sleep hears nothing until it ends.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Shutdown, Work};

/// The most helpers `--offload` starts.
pub const MAX_OFFLOAD: usize = 1024;

/// Jobs queued or running per helper, at most. 64 lets the 64 clients of
/// the comparison's experiments all have their work queued on one helper;
/// past it, a connection waits for room and is not read meanwhile.
pub const QUEUED_PER_HELPER: usize = 64;

/// A job as a helper runs it.
type Job = Box<dyn FnOnce() + Send>;

/// The helpers, their queue and the tickets that bound it.
pub struct Helpers {
    queue: Arc<Queue>,
    /// One per job queued or running.
    tickets: Arc<Semaphore>,
    threads: usize,
}

/// The queue the helpers take jobs from, in order.
struct Queue {
    jobs: Mutex<Jobs>,
    more: Condvar,
}

struct Jobs {
    waiting: VecDeque<Job>,
    /// The pool was dropped: helpers stop once they see it.
    closed: bool,
}

/// Room for one job in the queue, held until the job is done: dropping it
/// gives the room back.
#[derive(Debug)]
pub struct Ticket(#[allow(dead_code, reason = "held for its drop")] OwnedSemaphorePermit);

impl Helpers {
    /// Starts `threads` helpers (1 to [`MAX_OFFLOAD`]).
    pub fn start(threads: usize) -> io::Result<Self> {
        if !(1..=MAX_OFFLOAD).contains(&threads) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--offload takes 1 to {MAX_OFFLOAD} helpers, not {threads}"),
            ));
        }
        let helpers = Self {
            queue: Arc::new(Queue {
                jobs: Mutex::new(Jobs {
                    waiting: VecDeque::new(),
                    closed: false,
                }),
                more: Condvar::new(),
            }),
            tickets: Arc::new(Semaphore::new(threads * QUEUED_PER_HELPER)),
            threads,
        };
        for i in 0..threads {
            let queue = Arc::clone(&helpers.queue);
            // On an error, dropping `helpers` stops those already started.
            thread::Builder::new()
                .name(format!("helper-{i}"))
                .spawn(move || helper(&queue))
                .map_err(|error| {
                    io::Error::new(
                        error.kind(),
                        format!(
                            "cannot start --offload helper {} of {threads}: {error}",
                            i + 1
                        ),
                    )
                })?;
        }
        Ok(helpers)
    }

    /// How many helpers there are.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Room for a job, if the queue has some now: for a loop that must
    /// never wait. `None`: park the connection and try again when a job
    /// is done.
    pub fn try_ticket(&self) -> Option<Ticket> {
        Arc::clone(&self.tickets)
            .try_acquire_owned()
            .ok()
            .map(Ticket)
    }

    /// Queues `work`; a helper does it and then calls `done` with whether
    /// it finished (`false`: the shutdown grace cut it short, or it was
    /// `cancelled` before a helper took it: its connection is gone, and a
    /// helper is not spent on an answer nobody will read). The ticket is
    /// given back before `done` runs, so whoever `done` wakes finds the
    /// room it freed.
    pub fn submit(
        &self,
        ticket: Ticket,
        work: Work,
        shutdown: Shutdown,
        cancelled: Arc<AtomicBool>,
        done: impl FnOnce(bool) + Send + 'static,
    ) {
        let job = Box::new(move || {
            let finished = !cancelled.load(Ordering::Relaxed) && work.run_within(&shutdown);
            drop(ticket);
            done(finished);
        });
        let mut jobs = self
            .queue
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        jobs.waiting.push_back(job);
        drop(jobs);
        self.queue.more.notify_one();
    }

    /// Does `work` on a helper and resolves when it is done, with whether
    /// it finished: the async way, `spawn_blocking` with a bound. Waiting
    /// for a ticket is the backpressure: the task that awaits this reads
    /// nothing meanwhile, and the runtime serves the others. Dropped
    /// before a helper began the work, the work is skipped: the caller
    /// drops it when its client resets, which it must watch for itself
    /// while it waits (this future does not look at the socket).
    pub async fn run(&self, work: Work, shutdown: Shutdown) -> bool {
        let Ok(permit) = Arc::clone(&self.tickets).acquire_owned().await else {
            return false; // Never closed; nothing to wait for if it were.
        };
        let (finished, done) = tokio::sync::oneshot::channel();
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        self.submit(
            Ticket(permit),
            work,
            shutdown,
            Arc::clone(&cancel.0),
            move |ended| {
                let _ = finished.send(ended);
            },
        );
        // A job dropped unrun (the pool is gone) did not finish.
        done.await.unwrap_or(false)
    }
}

/// Cancels a job when the future waiting for it is dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Helpers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helpers")
            .field("threads", &self.threads)
            .field("free_tickets", &self.tickets.available_permits())
            .finish_non_exhaustive()
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        let mut jobs = self
            .queue
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        jobs.closed = true;
        jobs.waiting.clear();
        drop(jobs);
        self.queue.more.notify_all();
    }
}

/// A helper's life: take the next job, run it, until the pool is dropped.
fn helper(queue: &Queue) {
    loop {
        let job = {
            let mut jobs = queue.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if jobs.closed {
                    return;
                }
                if let Some(job) = jobs.waiting.pop_front() {
                    break job;
                }
                jobs = queue
                    .more
                    .wait(jobs)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkKind;
    use std::sync::mpsc;
    use std::time::Duration;

    fn block(ms: u64) -> Work {
        Work {
            kind: WorkKind::Block,
            duration: Duration::from_millis(ms),
        }
    }

    #[test]
    fn every_job_is_done_once_and_gives_its_ticket_back() {
        let helpers = Helpers::start(2).unwrap();
        let (done, finished) = mpsc::channel();
        for i in 0..10 {
            let ticket = helpers.try_ticket().unwrap();
            let done = done.clone();
            helpers.submit(
                ticket,
                block(1),
                Shutdown::new(),
                Arc::default(),
                move |ended| {
                    done.send((i, ended)).unwrap();
                },
            );
        }
        let mut seen: Vec<(i32, bool)> = (0..10).map(|_| finished.recv().unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).map(|i| (i, true)).collect::<Vec<_>>());
        // Every ticket is back: all 2 × QUEUED_PER_HELPER can be taken again.
        let tickets: Vec<Ticket> = (0..2 * QUEUED_PER_HELPER)
            .map(|_| helpers.try_ticket().unwrap())
            .collect();
        assert!(helpers.try_ticket().is_none(), "the bound holds");
        drop(tickets);
        assert!(helpers.try_ticket().is_some());
    }

    #[test]
    fn no_helpers_or_too_many_is_refused_in_words() {
        for threads in [0, MAX_OFFLOAD + 1] {
            let error = Helpers::start(threads).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            assert!(error.to_string().contains("--offload"), "{error}");
        }
        assert!(crate::config::parse_offload("1025").is_err());
        assert_eq!(crate::config::parse_offload("0"), Ok(0));
        assert_eq!(crate::config::parse_offload("1024"), Ok(1024));
    }

    #[test]
    fn a_job_cancelled_before_a_helper_takes_it_is_skipped() {
        let helpers = Helpers::start(1).unwrap();
        let (done, finished) = mpsc::channel();
        // The one helper sleeps in the first job while the second is
        // cancelled in the queue: the second is skipped, not slept.
        let first = done.clone();
        helpers.submit(
            helpers.try_ticket().unwrap(),
            block(200),
            Shutdown::new(),
            Arc::default(),
            move |ended| {
                first.send(("first", ended)).unwrap();
            },
        );
        let cancelled = Arc::new(AtomicBool::new(false));
        helpers.submit(
            helpers.try_ticket().unwrap(),
            block(60_000),
            Shutdown::new(),
            Arc::clone(&cancelled),
            move |ended| {
                done.send(("second", ended)).unwrap();
            },
        );
        cancelled.store(true, Ordering::Relaxed);
        assert_eq!(finished.recv().unwrap(), ("first", true));
        assert_eq!(finished.recv().unwrap(), ("second", false));
    }

    #[test]
    fn the_async_way_resolves_with_the_work_done() {
        let helpers = Helpers::start(1).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let finished = runtime.block_on(helpers.run(block(1), Shutdown::new()));
        assert!(finished);
    }

    #[test]
    fn cpu_work_is_cut_short_by_the_end_of_the_grace() {
        let helpers = Helpers::start(1).unwrap();
        let shutdown = Shutdown::new();
        shutdown.trigger();
        // A year of computation, cut at the end of the grace.
        let work = Work {
            kind: WorkKind::Cpu,
            duration: Duration::from_secs(365 * 24 * 3600),
        };
        let (done, finished) = mpsc::channel();
        let ticket = helpers.try_ticket().unwrap();
        helpers.submit(ticket, work, shutdown, Arc::default(), move |ended| {
            done.send(ended).unwrap();
        });
        assert!(!finished.recv().unwrap());
    }
}

//! `--max-conns`: how many connections are open, and whether one more may
//! be. Every model that keeps a count uses this one (srv-threaded's pool
//! and its thread per connection, srv-poll's and srv-uring's loops,
//! srv-async and srv-hybrid's runtimes): an admitted connection holds a
//! [`Permit`], its place under the limit, and dropping the permit gives the
//! place back, exactly once, however the connection ends (as a semaphore's
//! owned permit does in tokio, and mini-redis's connection limit with it).
//! One more connection than the limit is turned away with
//! [`listener::turn_away`](crate::serve::listener::turn_away).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The count of open connections, shared by every thread that accepts.
pub struct Admission {
    open: AtomicUsize,
    max: usize,
    /// Run when the last open connection's permit is dropped: srv-async's
    /// drain at shutdown waits for it.
    on_empty: Option<Box<dyn Fn() + Send + Sync>>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("open", &self.open)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// One open connection's place under the limit. Whoever serves the
/// connection holds it; dropping it gives the place back.
#[derive(Debug)]
#[must_use = "dropping the permit gives the place back at once"]
pub struct Permit {
    admission: Arc<Admission>,
}

impl Admission {
    /// No connection open yet; at most `max` at once.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
            on_empty: None,
        })
    }

    /// As [`new`](Self::new), and `on_empty` runs (on the thread that drops
    /// it) each time the last open connection's permit is dropped.
    pub fn waking(max: usize, on_empty: impl Fn() + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
            on_empty: Some(Box::new(on_empty)),
        })
    }

    /// A place, if fewer than the maximum are open. The check and the
    /// increment are one atomic step, so two threads that accept at the
    /// same moment cannot both take the last place; and a permit exists
    /// only once its place is taken, so a refusal gives nothing back.
    pub fn try_admit(self: &Arc<Self>) -> Option<Permit> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| Permit {
                admission: Arc::clone(self),
            })
    }

    /// How many connections are open now. Acquire, so that a drain that
    /// reads 0 sees every connection's work done.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    /// Gives the place back. Acquire-release, so that a drain that reads 0
    /// with [`Admission::open`] sees this connection's work done.
    fn drop(&mut self) {
        let admission = &self.admission;
        if admission.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(on_empty) = &admission.on_empty {
                on_empty();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_maximum_and_again_after_a_permit_is_dropped() {
        let admission = Admission::new(2);
        let first = admission.try_admit().unwrap();
        let second = admission.try_admit().unwrap();
        assert!(admission.try_admit().is_none());
        assert_eq!(admission.open(), 2);
        drop(first);
        assert_eq!(admission.open(), 1);
        let third = admission.try_admit().unwrap();
        drop((second, third));
        assert_eq!(admission.open(), 0);
    }

    #[test]
    fn refusals_give_nothing_back() {
        let admission = Admission::new(1);
        let held = admission.try_admit().unwrap();
        for _ in 0..100 {
            assert!(admission.try_admit().is_none());
        }
        assert_eq!(admission.open(), 1);
        drop(held);
        assert_eq!(admission.open(), 0);
    }

    #[test]
    fn the_last_permit_dropped_runs_on_empty_and_only_it() {
        let emptied = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&emptied);
        let admission = Admission::waking(3, move || {
            count.fetch_add(1, Ordering::Relaxed);
        });
        let (a, b) = (
            admission.try_admit().unwrap(),
            admission.try_admit().unwrap(),
        );
        drop(a);
        assert_eq!(emptied.load(Ordering::Relaxed), 0);
        drop(b);
        assert_eq!(emptied.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn threads_racing_for_the_last_places_never_exceed_the_maximum() {
        let admission = Admission::new(100);
        let permits: Vec<Permit> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        (0..50)
                            .filter_map(|_| admission.try_admit())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });
        assert_eq!(permits.len(), 100);
        assert_eq!(admission.open(), 100);
        drop(permits);
        assert_eq!(admission.open(), 0);
    }
}

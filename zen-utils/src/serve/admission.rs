//! `--max-conns`: how many connections are open, and whether one more may
//! be. The same count in every model that accepts on several threads
//! (srv-threaded's pool and its thread per connection, srv-async and
//! srv-hybrid's runtimes); one more connection than the limit is turned
//! away with [`listener::turn_away`](crate::serve::listener::turn_away).

use std::sync::atomic::{AtomicUsize, Ordering};

/// The count of open connections, shared by every thread that accepts.
#[derive(Debug)]
pub struct Admission {
    open: AtomicUsize,
    max: usize,
}

impl Admission {
    /// No connection open yet; at most `max` at once.
    pub fn new(max: usize) -> Self {
        Self {
            open: AtomicUsize::new(0),
            max,
        }
    }

    /// Takes a place if fewer than the maximum are open; returns whether
    /// it did. The check and the increment are one atomic step, so two
    /// threads that accept at the same moment cannot both take the last
    /// place. Whoever took a place gives it back with
    /// [`release`](Self::release) when the connection closes, however it
    /// closes.
    pub fn try_admit(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok()
    }

    /// Gives a place back; returns how many connections are still open.
    /// Acquire-release, so that a drain that reads 0 with
    /// [`open`](Self::open) sees every connection's work done.
    pub fn release(&self) -> usize {
        self.open.fetch_sub(1, Ordering::AcqRel) - 1
    }

    /// How many connections are open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_maximum_and_again_after_a_release() {
        let admission = Admission::new(2);
        assert!(admission.try_admit());
        assert!(admission.try_admit());
        assert!(!admission.try_admit());
        assert_eq!(admission.open(), 2);
        assert_eq!(admission.release(), 1);
        assert!(admission.try_admit());
        assert_eq!(admission.release(), 1);
        assert_eq!(admission.release(), 0);
    }

    #[test]
    fn threads_racing_for_the_last_places_never_exceed_the_maximum() {
        let admission = Admission::new(100);
        let admitted: usize = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| (0..50).filter(|_| admission.try_admit()).count()))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).sum()
        });
        assert_eq!(admitted, 100);
        assert_eq!(admission.open(), 100);
    }
}

//! `-n`: the run's questions, shared by every load thread.
//!
//! One pool for the whole run, not a share per thread: a thread whose
//! connections all go to a slow or dead server would otherwise keep its
//! share to itself, and the run would wait for it. A connection takes
//! questions from the pool as it asks them, and gives back those it had
//! taken when it fails, so that any other connection can ask them.

use std::sync::atomic::{AtomicU64, Ordering};

/// The questions of a `-n` run.
///
/// Two relaxed counters on a cache line of their own, shared by every
/// thread: a thread touches them once per batch of answers in the closed
/// loop (once per question in the open loop, whose questions go out one
/// at a time), and nothing else is read through them, so no stronger
/// ordering is needed.
#[repr(align(128))]
pub(crate) struct Budget {
    /// Questions no connection has taken.
    unclaimed: AtomicU64,
    /// Questions not answered yet, taken or not: 0 ends the run.
    unanswered: AtomicU64,
}

impl Budget {
    /// A pool of `questions`.
    pub(crate) fn new(questions: u64) -> Self {
        Self {
            unclaimed: AtomicU64::new(questions),
            unanswered: AtomicU64::new(questions),
        }
    }

    /// Takes up to `count` questions; returns how many it got.
    pub(crate) fn claim(&self, count: usize) -> usize {
        if count == 0 {
            return 0;
        }
        let wanted = count as u64;
        match self
            .unclaimed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                (left > 0).then(|| left - left.min(wanted))
            }) {
            Ok(left) => left.min(wanted) as usize,
            Err(_) => 0,
        }
    }

    /// Gives back `count` questions that were taken and will not be
    /// answered where they were asked.
    pub(crate) fn release(&self, count: u64) {
        if count > 0 {
            self.unclaimed.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// `count` questions taken from the pool have been answered.
    pub(crate) fn answered(&self, count: u64) {
        if count > 0 {
            self.unanswered.fetch_sub(count, Ordering::Relaxed);
        }
    }

    /// How many questions no connection has taken.
    pub(crate) fn unclaimed(&self) -> u64 {
        self.unclaimed.load(Ordering::Relaxed)
    }

    /// Whether every question has been taken (for now: a failing
    /// connection may give some back).
    pub(crate) fn spent(&self) -> bool {
        self.unclaimed.load(Ordering::Relaxed) == 0
    }

    /// Whether every question has been answered.
    pub(crate) fn done(&self) -> bool {
        self.unanswered.load(Ordering::Relaxed) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_never_exceed_the_pool_and_released_questions_come_back() {
        let budget = Budget::new(10);
        assert_eq!(budget.claim(4), 4);
        assert_eq!(budget.claim(0), 0);
        assert_eq!(budget.claim(100), 6);
        assert!(budget.spent());
        assert_eq!(budget.claim(1), 0);
        budget.release(3);
        assert!(!budget.spent());
        assert_eq!(budget.claim(5), 3);
        budget.answered(9);
        assert!(!budget.done());
        budget.answered(1);
        assert!(budget.done());
    }
}

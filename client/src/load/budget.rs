//! `-n`: the run's questions, shared by every load thread.
//!
//! One pool for the whole run, not a share per thread: a thread whose
//! connections all go to a slow or dead server would otherwise keep its
//! share to itself, and the run would wait for it. A connection takes
//! questions from the pool as it asks them, and gives back those it had
//! taken when it fails, so that any other connection can ask them again.
//!
//! Questions given back are kept apart from those never asked, and taken
//! first: each one is asked again exactly once more per failure, so the
//! count of questions asked again is exact, and a question is neither
//! counted twice (it is answered once: only its last asking is) nor lost
//! (the run ends only once every question is answered).

use std::sync::atomic::{AtomicU64, Ordering};

/// The questions of a `-n` run.
///
/// Relaxed counters on a cache line of their own, shared by every thread:
/// a thread touches them once per batch of answers in the closed loop
/// (once per question in the open loop, whose questions go out one at a
/// time), and nothing else is read through them, so no stronger ordering
/// is needed.
#[repr(align(128))]
pub(crate) struct Budget {
    /// Questions no connection has asked yet.
    fresh: AtomicU64,
    /// Questions given back by a connection that failed, to be asked again.
    again: AtomicU64,
    /// Questions not answered yet, taken or not: 0 ends the run.
    unanswered: AtomicU64,
}

/// What a claim took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    /// Questions taken in all.
    pub(crate) taken: usize,
    /// Of those, questions given back, asked again.
    pub(crate) again: u64,
}

impl Budget {
    /// A pool of `questions`.
    pub(crate) fn new(questions: u64) -> Self {
        Self {
            fresh: AtomicU64::new(questions),
            again: AtomicU64::new(0),
            unanswered: AtomicU64::new(questions),
        }
    }

    /// Takes up to `count` questions, those given back first.
    pub(crate) fn claim(&self, count: usize) -> Claim {
        let wanted = count as u64;
        // A plain load first: on the hot path, nothing has been given back.
        let again = if self.again.load(Ordering::Relaxed) > 0 {
            take(&self.again, wanted)
        } else {
            0
        };
        let fresh = take(&self.fresh, wanted - again);
        Claim {
            taken: (again + fresh) as usize,
            again,
        }
    }

    /// Gives back `count` questions that were taken and will not be
    /// answered where they were asked.
    pub(crate) fn release(&self, count: u64) {
        if count > 0 {
            self.again.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Gives back `count` questions that were taken but never asked: they
    /// are fresh again, not asked again.
    pub(crate) fn unclaim(&self, count: u64) {
        if count > 0 {
            self.fresh.fetch_add(count, Ordering::Relaxed);
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
        self.fresh.load(Ordering::Relaxed) + self.again.load(Ordering::Relaxed)
    }

    /// Whether every question has been taken (for now: a failing
    /// connection may give some back).
    pub(crate) fn spent(&self) -> bool {
        self.unclaimed() == 0
    }

    /// Whether every question has been answered.
    pub(crate) fn done(&self) -> bool {
        self.unanswered.load(Ordering::Relaxed) == 0
    }
}

/// Takes up to `wanted` from `pool`; returns how many it got.
fn take(pool: &AtomicU64, wanted: u64) -> u64 {
    if wanted == 0 {
        return 0;
    }
    pool.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
        (left > 0).then(|| left - left.min(wanted))
    })
    .map_or(0, |left| left.min(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_never_exceed_the_pool_and_released_questions_come_back() {
        let budget = Budget::new(10);
        assert_eq!(budget.claim(4).taken, 4);
        assert_eq!(budget.claim(0).taken, 0);
        assert_eq!(budget.claim(100).taken, 6);
        assert!(budget.spent());
        assert_eq!(budget.claim(1).taken, 0);
        budget.release(3);
        assert!(!budget.spent());
        assert_eq!(budget.claim(5), Claim { taken: 3, again: 3 });
        budget.answered(9);
        assert!(!budget.done());
        budget.answered(1);
        assert!(budget.done());
    }

    #[test]
    fn questions_given_back_are_asked_again_first_and_counted_once() {
        let budget = Budget::new(10);
        assert_eq!(budget.claim(4), Claim { taken: 4, again: 0 });
        budget.release(2);
        assert_eq!(budget.claim(3), Claim { taken: 3, again: 2 });
        assert_eq!(budget.claim(10), Claim { taken: 5, again: 0 });
        assert!(budget.spent());
    }

    #[test]
    fn questions_never_asked_go_back_as_fresh() {
        let budget = Budget::new(6);
        assert_eq!(budget.claim(6).taken, 6);
        budget.unclaim(2);
        assert_eq!(budget.unclaimed(), 2);
        assert_eq!(budget.claim(5), Claim { taken: 2, again: 0 });
        budget.answered(6);
        assert!(budget.done());
    }
}

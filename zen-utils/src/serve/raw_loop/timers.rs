//! An event loop's timer queue: the BitTorrent RawServer's `add_task`,
//! with a binary heap instead of a sorted list. srv-poll's and srv-uring's
//! loops share it.
//!
//! A loop never sleeps on a timer: it arms one kernel timer for the
//! earliest task (srv-poll a timerfd in its epoll set, its own with
//! `--poller epoll`, the `polling` crate's otherwise; srv-uring one
//! io_uring Timeout operation), so an event and a timer wake the same
//! single thread in the same wait.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Tasks due at instants, earliest first. Ties come out in the tasks' own
/// order, which keeps the queue deterministic.
///
/// A task cannot be cancelled: whoever pops it checks that it still
/// applies (a connection's generation, say), which keeps both `add` and
/// `pop_due` at O(log n).
#[derive(Debug)]
pub struct Timers<T> {
    heap: BinaryHeap<Reverse<(Instant, T)>>,
}

impl<T: Ord> Default for Timers<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Ord> Timers<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }

    /// Schedules `task` for `at` (RawServer's `add_task`).
    pub fn add(&mut self, at: Instant, task: T) {
        self.heap.push(Reverse((at, task)));
    }

    /// When the next task is due (`None`: no tasks): the loop's timer is
    /// armed for it.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The earliest task due at or before `now`, removed from the queue.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, task))| task),
            _ => None,
        }
    }

    /// How many tasks are scheduled.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pops_due_tasks_earliest_first() {
        let start = Instant::now();
        let mut timers = Timers::new();
        timers.add(start + ms(30), "c");
        timers.add(start + ms(10), "a");
        timers.add(start + ms(20), "b");
        let now = start + ms(25);
        assert_eq!(timers.pop_due(now), Some("a"));
        assert_eq!(timers.pop_due(now), Some("b"));
        assert_eq!(timers.pop_due(now), None, "c is not due yet");
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.pop_due(start + ms(30)), Some("c"));
        assert_eq!(timers.pop_due(start + ms(1000)), None);
    }

    #[test]
    fn a_task_is_due_exactly_at_its_instant() {
        let at = Instant::now() + ms(5);
        let mut timers = Timers::new();
        timers.add(at, 1);
        assert_eq!(timers.pop_due(at - Duration::from_nanos(1)), None);
        assert_eq!(timers.pop_due(at), Some(1));
    }

    #[test]
    fn the_timer_is_armed_for_the_earliest_task() {
        let start = Instant::now();
        let mut timers = Timers::new();
        assert_eq!(timers.next_due(), None, "no task: wait for I/O alone");
        timers.add(start + ms(50), 2);
        timers.add(start + ms(20), 1);
        assert_eq!(timers.next_due(), Some(start + ms(20)));
        timers.pop_due(start + ms(20));
        assert_eq!(timers.next_due(), Some(start + ms(50)));
    }

    #[test]
    fn ties_come_out_in_task_order() {
        let at = Instant::now();
        let mut timers = Timers::new();
        for task in [(3, 1), (1, 9), (2, 0)] {
            timers.add(at, task);
        }
        let popped: Vec<_> = std::iter::from_fn(|| timers.pop_due(at)).collect();
        assert_eq!(popped, [(1, 9), (2, 0), (3, 1)]);
    }
}

//! What a raw loop's timer queue holds ([`Deadline`]), when its next wait
//! ends or the loop does ([`next_turn`]), and when the idle scan runs
//! ([`schedule_idle_scan`]; the scan itself is each loop's
//! `scan_for_timeouts`, RawServer's): one timer for all connections rather
//! than one per connection, so that the queue does not grow with
//! connections that come and go, and a scan of even 10,000 connections
//! costs well under a millisecond.

use std::time::{Duration, Instant};

use crate::serve::raw_loop::ids::{AttemptId, ConnId};
use crate::serve::raw_loop::timers::Timers;
use crate::{Config, Shutdown};

/// How many idle scans run per idle timeout. A connection is closed between
/// one and `1 + 1/IDLE_SCANS_PER_TIMEOUT` timeouts after its last question.
pub const IDLE_SCANS_PER_TIMEOUT: u32 = 8;

/// A task in a raw loop's timer queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Deadline {
    /// A `--work wait` is over: the connection's pending answer is ready.
    Answer(ConnId),
    /// Time to close connections whose idle deadline passed.
    IdleScan,
    /// The accept backoff after running out of descriptors is over.
    ResumeAccepting,
    /// A peer being asked had `--peer-timeout` to connect and answer: if
    /// that attempt is still in progress, the peer failed.
    PeerAttempt(AttemptId),
}

/// Schedules the next idle scan, `now` plus a fraction of the idle timeout
/// (none without an idle timeout).
pub fn schedule_idle_scan(timers: &mut Timers<Deadline>, config: &Config, now: Instant) {
    if let Some(timeout) = config.idle_timeout {
        let period = (timeout / IDLE_SCANS_PER_TIMEOUT).max(Duration::from_millis(1));
        timers.add(now + period, Deadline::IdleScan);
    }
}

/// What a raw loop does at the top of a turn, as the shutdown and its
/// timers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Wait until this instant at the latest (its earliest timer, or the
    /// end of the shutdown's grace, whichever comes first; `None`: until
    /// an event comes).
    WaitUntil(Option<Instant>),
    /// The loop is over: the shutdown began and no connection is left
    /// open, or its grace is over (whatever is left is closed then).
    Over,
}

/// The next turn of a loop with `open` connections.
pub fn next_turn<T: Ord>(shutdown: &Shutdown, open: usize, timers: &Timers<T>) -> Turn {
    let grace_deadline = shutdown.grace_deadline();
    if let Some(deadline) = grace_deadline {
        if open == 0 || Instant::now() >= deadline {
            return Turn::Over;
        }
    }
    let due = [timers.next_due(), grace_deadline]
        .into_iter()
        .flatten()
        .min();
    Turn::WaitUntil(due)
}

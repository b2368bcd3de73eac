//! What a raw loop's timer queue holds ([`Deadline`]), and the idle scan:
//! RawServer's `scan_for_timeouts`, one timer for all connections rather
//! than one per connection, so that the queue does not grow with
//! connections that come and go, and a scan of even 10,000 connections
//! costs well under a millisecond.

use std::time::{Duration, Instant};

use crate::serve::raw_loop::ids::{AttemptId, ConnId};
use crate::serve::raw_loop::timers::Timers;
use crate::Config;

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

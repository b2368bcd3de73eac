//! One connection of the load generator: its socket, the questions it has
//! in flight, and where it is in its life (connecting, open, waiting to
//! reconnect, closing).

use std::net::{SocketAddr, TcpStream};

use super::workload::AnswerCheck;

/// How long a failed connection waits before its first reconnect: short,
/// so that a restarted server is found again within a few milliseconds.
pub(crate) const BACKOFF_MIN: u64 = 10_000_000;
/// The longest wait between reconnects: the back-off doubles up to here,
/// so that a server that stays down costs a connect a second per
/// connection, not a busy loop.
pub(crate) const BACKOFF_MAX: u64 = 1_000_000_000;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A non-blocking connect is in progress since this time.
    Connecting { since: u64 },
    /// Asking and being answered.
    Open,
    /// Failed; reconnects at this time.
    Waiting { until: u64 },
    /// Done asking: its sending side is shut, and it reads until the
    /// server closes (since this time), so that the server sees a clean
    /// close rather than a reset.
    Draining { since: u64 },
    /// Closed for good.
    Done,
}

/// One connection, and every question it has asked and not yet had
/// answered. Everything here is allocated once, before the run.
pub(crate) struct Conn {
    /// The connection's number across the whole run (0..connections): its
    /// place in the open loop's schedule and in the fairness counts.
    pub(crate) slot: usize,
    pub(crate) server: SocketAddr,
    /// The index of `server` among the run's targets (the picker's target
    /// number).
    pub(crate) target: usize,
    /// The server that failed this connection last: its next connect goes
    /// to another one, if there is another.
    pub(crate) avoid: Option<SocketAddr>,
    /// A fixed list's server for this connection (with several servers):
    /// after a failure there the connection goes to another, but only
    /// until `away_until`, so that a server that comes back gets its
    /// share of the load again.
    pub(crate) home: Option<(usize, SocketAddr)>,
    /// Away from home: when to stop asking, and go back once answered.
    pub(crate) away_until: Option<u64>,
    /// How long the next stay away lasts: doubled by every failure at
    /// home, up to [`BACKOFF_MAX`], and back to [`BACKOFF_MIN`] once home
    /// answers.
    pub(crate) home_backoff: u64,
    /// `None` while waiting to reconnect and once done.
    pub(crate) stream: Option<TcpStream>,
    pub(crate) phase: Phase,
    /// Whether the poller also watches for room to write (only while a
    /// short write left bytes unsent).
    pub(crate) writing: bool,
    /// The questions in flight, oldest first.
    pub(crate) inflight: InFlight,
    /// The cycle index of the oldest question in flight: the answer that
    /// comes next must be its answer.
    pub(crate) head: usize,
    /// The newest `unsent` questions in flight are not fully written; the
    /// first `unsent_skip` bytes of the oldest of them are.
    pub(crate) unsent: usize,
    pub(crate) unsent_skip: usize,
    /// When questions were last (re)sent after a reconnect: the timeout of
    /// a question asked again runs from here, not from its first send.
    pub(crate) resent_at: u64,
    /// The answer being received.
    pub(crate) check: AnswerCheck,
    /// Answers counted in the measured window.
    pub(crate) answers: u64,
    /// How long the next reconnect waits.
    pub(crate) backoff: u64,
    /// Open loop: questions scheduled so far, and when the next one is due.
    pub(crate) issued: u64,
    pub(crate) next_due: u64,
    /// Open loop: whether the thread's schedule heap holds this connection.
    pub(crate) in_heap: bool,
    /// `-n`: being reopened for questions that a failed connection gave
    /// back, not after a failure of its own.
    pub(crate) reopening: bool,
    /// `--reconnect-every`: being opened in place of a connection that
    /// closed after its N answers, not after a failure.
    pub(crate) renewing: bool,
    /// `--reconnect-every N`: how many more questions this connection may
    /// ask (N as it opens, less those it asks again there); `u64::MAX`
    /// without the flag.
    pub(crate) quota: u64,
    /// `--reconnect-every N` with `-n`: questions taken from the run's
    /// budget for this connection and not asked yet (see
    /// `Shared::reserve`).
    pub(crate) reserved: u64,
}

impl Conn {
    /// A connection that has not connected yet.
    pub(crate) fn new(slot: usize, server: SocketAddr, target: usize, pipeline: usize) -> Self {
        Self {
            slot,
            server,
            target,
            avoid: None,
            home: None,
            away_until: None,
            home_backoff: BACKOFF_MIN,
            stream: None,
            phase: Phase::Done,
            writing: false,
            inflight: InFlight::new(pipeline),
            head: 0,
            unsent: 0,
            unsent_skip: 0,
            resent_at: 0,
            check: AnswerCheck::default(),
            answers: 0,
            backoff: BACKOFF_MIN,
            issued: 0,
            next_due: 0,
            in_heap: false,
            reopening: false,
            renewing: false,
            quota: u64::MAX,
            reserved: 0,
        }
    }

    /// Whether the connection is away from home past its time: it asks
    /// nothing more, and goes home once its questions are answered.
    pub(crate) fn heading_home(&self, now: u64) -> bool {
        self.away_until.is_some_and(|until| now >= until)
    }

    /// The cycle index of the oldest question not fully written.
    pub(crate) fn first_unsent(&self, cycle: usize) -> usize {
        (self.head + self.inflight.len() - self.unsent) % cycle
    }
}

/// A ring of the questions in flight on one connection: when each was
/// first sent, and when it should have been (the open loop's schedule; the
/// same as sent in the closed loop). Fixed capacity: `--pipeline`.
pub(crate) struct InFlight {
    sent: Box<[u64]>,
    intended: Box<[u64]>,
    head: usize,
    len: usize,
}

impl InFlight {
    fn new(capacity: usize) -> Self {
        Self {
            sent: vec![0; capacity].into_boxed_slice(),
            intended: vec![0; capacity].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == self.sent.len()
    }

    /// Adds the newest question.
    ///
    /// # Panics
    /// If the ring is full: callers never ask more than `--pipeline`.
    pub(crate) fn push(&mut self, sent: u64, intended: u64) {
        assert!(!self.is_full(), "more questions in flight than --pipeline");
        let at = (self.head + self.len) % self.sent.len();
        self.sent[at] = sent;
        self.intended[at] = intended;
        self.len += 1;
    }

    /// Removes the oldest question: `(sent, intended)`.
    pub(crate) fn pop(&mut self) -> Option<(u64, u64)> {
        if self.len == 0 {
            return None;
        }
        let taken = (self.sent[self.head], self.intended[self.head]);
        self.head = (self.head + 1) % self.sent.len();
        self.len -= 1;
        Some(taken)
    }

    /// Forgets every question in flight.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// How many of the questions in flight were first sent at `since` or
    /// later.
    pub(crate) fn sent_since(&self, since: u64) -> u64 {
        (0..self.len)
            .filter(|k| self.sent[(self.head + k) % self.sent.len()] >= since)
            .count() as u64
    }

    /// When the oldest question was sent.
    pub(crate) fn oldest_sent(&self) -> Option<u64> {
        (self.len > 0).then(|| self.sent[self.head])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_order_across_wrap_around() {
        let mut ring = InFlight::new(3);
        for round in 0..5 {
            ring.push(round * 10, round * 10 + 1);
            ring.push(round * 10 + 2, round * 10 + 3);
            assert_eq!(ring.oldest_sent(), Some(round * 10));
            assert_eq!(ring.pop(), Some((round * 10, round * 10 + 1)));
            assert_eq!(ring.pop(), Some((round * 10 + 2, round * 10 + 3)));
        }
        assert_eq!(ring.pop(), None);
        for i in 0..3 {
            ring.push(i, i);
        }
        assert!(ring.is_full());
        assert_eq!(ring.sent_since(1), 2);
        ring.clear();
        assert_eq!((ring.len(), ring.sent_since(0)), (0, 0));
    }
}

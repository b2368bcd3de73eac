//! `--max-conns`: one atomic count of open connections, shared by every
//! thread, and the busy answer for a connection over the limit.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};

use zen_utils::{listener, Config, Stats};

/// How many connections are open, and how many may be.
pub(crate) struct OpenConnections {
    count: AtomicUsize,
    max: usize,
}

/// One open connection's place under the limit. Whoever serves the
/// connection holds it, and dropping it (however the conversation ends)
/// frees the place.
pub(crate) struct Slot<'a> {
    open: &'a OpenConnections,
}

impl OpenConnections {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            count: AtomicUsize::new(0),
            max,
        }
    }

    /// Takes a place if fewer than the maximum are open.
    ///
    /// The check and the increment are one atomic step, so two threads that
    /// accept at the same moment cannot both take the last place. Relaxed
    /// ordering is enough: the count guards no other data.
    pub(crate) fn try_open(&self) -> Option<Slot<'_>> {
        self.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot { open: self })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.open.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers a connection over `--max-conns` with `Error: server busy.` and
/// closes it (by dropping it), counting the refusal as an error.
///
/// The write is best effort: the connection closes next whatever happens.
/// It cannot block, because the send buffer of a socket just accepted is
/// empty and the answer is a few bytes, so the thread that accepted goes
/// straight back to its work.
pub(crate) fn refuse(stream: TcpStream, peer: SocketAddr, config: &Config, stats: &Stats) {
    listener::turn_away(&stream, peer, config, stats);
}

//! `--max-conns`: zen-utils' one count of open connections, shared by
//! every thread, held as a slot for each connection; and the busy answer
//! for a connection over the limit.

use std::net::{SocketAddr, TcpStream};

use zen_utils::serve::admission::Admission;
use zen_utils::{serve::listener, Config, Stats};

/// One open connection's place under the limit. Whoever serves the
/// connection holds it, and dropping it (however the conversation ends)
/// frees the place.
pub(crate) struct Slot<'a> {
    open: &'a Admission,
}

/// Takes a place under the limit, if one is free.
///
/// The `Slot` is built only once the place is taken (`then`, lazily):
/// built eagerly and dropped on a refusal, it would give back a place
/// that was never taken, and the count would drift down with every
/// refusal until it wrapped.
pub(crate) fn try_open(open: &Admission) -> Option<Slot<'_>> {
    open.try_admit().then(|| Slot { open })
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.open.release();
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

//! `--poll-mode`, a performance device: level-triggered registration saves
//! a system call per answer over edge-triggered and oneshot.
//!
//! - **level** (the default): epoll reports a socket at every wait while it
//!   is ready, so nothing is re-armed per event, and a short read may end
//!   the reading: if more arrives, the next wait says so. The loop calls
//!   `epoll_ctl` only when a connection's interest really changes (output
//!   pending, backpressure, a `--work wait`).
//! - **edge**: epoll reports only *new* readiness, so a connection must
//!   read until `WouldBlock`: one more `read` per answer.
//! - **oneshot**: epoll disables a socket after each event, and each event
//!   costs one more `epoll_ctl` to re-arm it.
//!
//! docs/targets.md gives the system calls per answer of each mode, as
//! measured with `strace -c -f`. The service is the same in all three.

use std::io;
use std::os::fd::AsFd;

use zen_utils::serve::raw_loop::epoll::Interest;

use crate::poller::Poller;

/// How sockets are registered with epoll.
pub use zen_utils::serve::raw_loop::epoll::Trigger as PollMode;

/// Whether a short read may be taken to mean "nothing more to read now":
/// not when edge-triggered, where a socket with bytes left is never
/// reported again.
pub(crate) fn short_read_drains(mode: PollMode) -> bool {
    mode != PollMode::Edge
}

/// What one source is registered for now, so that the loop calls
/// `epoll_ctl` only when that changes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Registration {
    interest: Interest,
}

impl Registration {
    /// A source just added with `interest`.
    pub(crate) fn new(interest: Interest) -> Self {
        Self { interest }
    }

    /// What is registered now: the readiness an event may report.
    pub(crate) fn interest(&self) -> Interest {
        self.interest
    }

    /// The poller delivered an event: a oneshot registration is now
    /// disabled, so the next [`update`](Self::update) re-arms it.
    pub(crate) fn delivered(&mut self, mode: PollMode) {
        if mode == PollMode::Oneshot {
            self.interest = Interest::NONE;
        }
    }

    /// Registers `wanted` for `source` under `key`, if it differs from what
    /// is registered: the one `epoll_ctl` that level-triggered mode needs.
    ///
    /// Interest in reading is dropped lazily when level-triggered: a
    /// connection that stops reading while its answer is worked on (a
    /// `--work wait` timer, a helper, a peer) keeps it registered as long
    /// as nothing is known to wait unread (`drained`). Its client, waiting
    /// for the answer, sends nothing, so no event comes, and the answer
    /// costs no `epoll_ctl` to drop the interest and none to take it back:
    /// two system calls per answer on that path. If bytes do arrive, the
    /// event says so, `drained` is false at the next update, and the
    /// interest is dropped then, before level-triggering could report it
    /// again.
    pub(crate) fn update(
        &mut self,
        poller: &Poller,
        source: impl AsFd,
        key: u64,
        mut wanted: Interest,
        mode: PollMode,
        drained: bool,
    ) -> io::Result<()> {
        if mode == PollMode::Level && drained && self.interest.readable && !wanted.readable {
            wanted.readable = true;
        }
        if wanted != self.interest {
            poller.modify(source, key, wanted)?;
            self.interest = wanted;
        }
        Ok(())
    }
}

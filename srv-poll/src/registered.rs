//! What one source is registered for with the poller now, so that the
//! loop calls `epoll_ctl` only when that changes: `--poll-mode`'s
//! bookkeeping per source (a client connection, a peer call's attempt).

use std::io;
use std::os::fd::AsFd;

use zen_utils::serve::raw_loop::epoll::Interest;

use crate::poll_mode::PollMode;
use crate::poller::Poller;

/// What one source is registered for now, so that the loop calls
/// `epoll_ctl` only when that changes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RegisteredInterest {
    interest: Interest,
}

impl RegisteredInterest {
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

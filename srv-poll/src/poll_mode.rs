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

/// How sockets are registered with epoll.
pub use zen_utils::serve::raw_loop::epoll::Trigger as PollMode;

/// Whether a short read may be taken to mean "nothing more to read now":
/// not when edge-triggered, where a socket with bytes left is never
/// reported again.
pub(crate) fn short_read_drains(mode: PollMode) -> bool {
    mode != PollMode::Edge
}

//! srv-poll: one thread, non-blocking sockets, a raw readiness loop on the
//! `polling` crate (epoll on Linux).
//!
//! ```text
//!            ┌──────────────── one thread ────────────────────────────────┐
//!            │  wait(events, timeout = time to the next timer)            │
//!            │     │                                                      │
//!  listener ─┼──► SERVER ready ──► accept until WouldBlock ──► slab       │
//!  client A ─┼──► key 0 ready  ──► read ─► answer ─► write   (no waiting) │
//!  client B ─┼──► key 1 ready  ──► read ─► start a wait timer ──┐         │
//!            │  timers due ──► B's answer ─► write ◄────────────┘         │
//!            │             ──► idle scan ─► close the silent ones         │
//!            └──────────────────────────────────────────────────────────┘
//! ```
//!
//! - **Threads:** one. It runs the loop: wait for readiness, then do every
//!   read, answer and write that can be done without blocking.
//! - **What blocks:** only `Poller::wait`, and only until a socket is
//!   ready, the next timer is due, or the shutdown wakes it. Sockets are
//!   non-blocking; `WouldBlock` means "later", not "error". `--work cpu`
//!   and `--work block` run inline on the loop, as they would in any real
//!   event loop, so while one answer computes or sleeps *every* client
//!   waits: that is the lesson they are there to measure. `--work wait` is
//!   a timer instead: the loop serves others until it is due.
//! - **Per-connection state:** a [`slab::Slab`] of `Connection`s keyed by
//!   their poll key (the listener's key is the constant `SERVER`): the
//!   protocol's conversation (zen-utils' `Conversation`: the framing
//!   decoder, the answers not yet sent, the answer being waited for, the
//!   idle deadline), the interest registered with the poller and what the
//!   loop knows of the socket's readiness. There is no stack to keep it
//!   between events, so all of it is in the struct. Buffers are allocated at first use and an output buffer
//!   that grew is freed once drained, so a connection that has sent
//!   nothing costs only its slab entry in the server's memory (the README's
//!   performance table measures it, with 10,000 idle connections), plus the
//!   kernel's socket. One that has asked keeps its decoder's buffer
//!   (`--max-request` + 4 KiB).
//! - **What limits concurrency:** `--max-conns` (a connection beyond it gets
//!   `Error: server busy.` and is closed), the descriptor limit (on EMFILE
//!   the loop stops listening for [`ACCEPT_BACKOFF`](zen_utils::listener::ACCEPT_BACKOFF)
//!   rather than spin, and goes on serving), and one CPU. Per connection,
//!   output is bounded by [`OUTPUT_LIMIT`](zen_utils::protocol::OUTPUT_LIMIT):
//!   past it, the loop stops reading from that client until it drains.
//! - **Timers:** a binary heap of `(instant, task)`, the BitTorrent
//!   RawServer's `add_task`: a `--work wait` answer, the periodic idle scan
//!   (RawServer's `scan_for_timeouts`: one timer for all connections), the
//!   end of an accept backoff. A task carries the connection's generation,
//!   so one left by a closed connection whose slab slot was reused is
//!   ignored. The next due task is `wait`'s timeout.
//! - **Shutdown:** [`Shutdown::on_trigger`] calls `Poller::notify`, which
//!   wakes `wait` at once. The loop deletes and closes the listener, reads
//!   from every connection what has already arrived, answers every
//!   complete question it holds (waiting out `--work wait` timers), closes
//!   each connection as soon as its answers are sent (idle ones at once),
//!   and closes whatever is left after
//!   [`SHUTDOWN_GRACE`](zen_utils::shutdown::SHUTDOWN_GRACE).
//! - **Fairness:** a connection makes at most 16 reads per turn of the
//!   loop (`READS_PER_TURN`). A client that pipelines as fast as it is
//!   answered always has more to read; without the cap it would hold the
//!   only thread for as long as it kept going. One cut off with more to
//!   read is advanced again after the next wait, which then does not block.
//!
//! ## Registration mode, in system calls per answer
//!
//! `polling` registers sources in oneshot mode by default: epoll disables a
//! socket after each event, and every event costs one more `epoll_ctl` to
//! re-arm it. This server registers level-triggered instead ([`serve`]
//! falls back to oneshot where the OS has no level mode) and calls `modify`
//! only when the interest really changes: writable while answers are
//! pending, readable off while the client is over its output bound or an
//! answer waits with more questions queued behind it. Level-triggered also
//! lets a short read end the reading: epoll reports the socket again at the
//! next `wait` if more arrives, so the read that would only return
//! `WouldBlock` is skipped. Edge-triggered must read until `WouldBlock`.
//!
//! Measured with `strace -c -f` on the release build, 50 clients each
//! asking one question at a time for 5 s (`--poll-mode` selects the mode),
//! system calls per answer:
//!
//! | `--poll-mode` | `recvfrom` | `sendto` | `epoll_ctl` | `epoll_pwait` + `timerfd_settime` + `read` | total |
//! |---|---|---|---|---|---|
//! | **level** (default) | 1.00 | 1.00 | 0.04 | 0.06 | **2.1** |
//! | level, reading until `WouldBlock` | 2.00 | 1.00 | 0.04 | 0.06 | 3.1 |
//! | edge | 2.00 | 1.00 | 0.04 | 0.06 | 3.1 |
//! | oneshot (polling's default) | 1.00 | 1.00 | 1.04 | 0.06 | 3.1 |
//!
//! Level mode needs no `epoll_ctl` of its own here: the 0.04 is `polling`'s.
//! Each `Poller::wait` costs five system calls (`epoll_pwait`, a
//! `timerfd_settime` for its timeout, a `read` of its notify eventfd, and
//! two `epoll_ctl` re-arming both), shared by every event the wait returns:
//! about 50 here (0.1 per answer), but just one with a single client, where
//! an answer costs 7 system calls instead of 2.1.
//!
//! ```text
//! cargo run --release -p srv-poll -- -p 1060
//! ```

mod connection;
mod event_loop;
mod timers;

use std::io;
use std::net::TcpListener;

pub use polling::PollMode;
use zen_utils::{Config, Shutdown, Summary};

/// Serves every client from one thread on `listener` until `shutdown` is
/// triggered, then returns the summary. Registers sockets level-triggered.
pub fn serve(listener: TcpListener, config: Config, shutdown: Shutdown) -> io::Result<Summary> {
    serve_with_mode(listener, config, shutdown, PollMode::Level)
}

/// [`serve`] with the poller's registration mode chosen: `Level`, `Edge`
/// or `Oneshot` (a mode the OS does not support falls back to `Oneshot`).
/// Only the system calls per answer differ; the service is the same.
pub fn serve_with_mode(
    listener: TcpListener,
    config: Config,
    shutdown: Shutdown,
    mode: PollMode,
) -> io::Result<Summary> {
    event_loop::EventLoop::new(listener, config, shutdown, mode)?.run()
}

//! srv-poll: one thread, non-blocking sockets, a readiness loop on the
//! portable `polling` crate or, with `--poller epoll`, on raw epoll.
//!
//! ```text
//!            ┌──────────────── one thread ────────────────────────────────┐
//!            │  wait(events: sockets, the timer, the shutdown waker)      │
//!            │     │                                                      │
//!  listener ─┼──► SERVER ready ──► accept until WouldBlock ──► slab       │
//!  client A ─┼──► key 0 ready  ──► read ─► answer ─► write   (no waiting) │
//!  client B ─┼──► key 1 ready  ──► read ─► start a wait timer ──┐         │
//!            │  timers due ──► B's answer ─► write ◄────────────┘         │
//!            │             ──► idle scan ─► close the silent ones         │
//!  client C ─┼──► key 2 ready  ──► read ─► not known here: connect ──┐    │
//!  peer     ◄┼── call ready ──► connected: write; reply: C's answer ◄┘    │
//!            │  timers due ──► a silent peer's deadline ─► the next peer  │
//!            └────────────────────────────────────────────────────────────┘
//! ```
//!
//! The loop, in `event_loop.rs`, is this:
//!
//! ```text
//! loop {
//!     wait until a socket is ready, the timer fires, or the waker wakes;
//!     for each event:
//!         the listener: accept everyone waiting (or turn them away);
//!         a connection: tell it, and do what it answers (connection.rs):
//!             Wait(interest)        register that interest, if it changed
//!             AnotherTurn(interest) it had more to read: again after the others
//!             Close(end)            close it (and cancel its peer call), count
//!                                   and log why
//!           then start the peer calls its turn asked for: a non-blocking
//!           connect to the first peer, and its deadline on the timer queue;
//!         a peer call: its attempt goes on (peer_call.rs): connected, write
//!             the request, read the reply; once the peer replied or failed,
//!             ask the next peer, or give the answer to its connection (as
//!             for a connection above);
//!     run the due timers: `--work wait` answers, the idle scan, the end of
//!         an accept backoff, a peer's deadline (it failed: the next peer);
//!     give the connections that had more to read their next turn;
//! }
//! ```
//!
//! - **Threads:** one. It runs the loop: wait for readiness, then do every
//!   read, answer and write that can be done without blocking.
//! - **What blocks:** only the wait, and only until a socket is ready, the
//!   next timer is due, or the shutdown wakes it. Sockets are
//!   non-blocking; `WouldBlock` means "later", not "error". `--work cpu`
//!   and `--work block` run inline on the loop, as they would in any real
//!   event loop, so while one answer computes or sleeps *every* client
//!   waits: that is the lesson they are there to measure. `--work wait` is
//!   a timer instead: the loop serves others until it is due. Nor does it
//!   ever wait on a peer.
//! - **The cure, `--offload N`** (`offload.rs`): `--work cpu|block` goes
//!   to N helper threads through a queue; a helper that is done queues the
//!   completion and wakes the loop's poller, and the loop gives the
//!   answer as it does when a timer is due. libuv's design, behind
//!   Node.js's file I/O. A connection that finds the queue full is parked,
//!   unread, until a helper frees room.
//! - **Asking peers** (`--peer`, a question this server does not know):
//!   the loop drives outgoing connections beside its clients, RawServer's
//!   `start_connection`. Each forwarded question is a peer call (a slab of
//!   its own, `peer_call.rs`): one outgoing non-blocking connection per
//!   peer asked, connecting, then writing the request, then reading one
//!   reply, each step as far as the socket allows, peer after peer until
//!   one answers. Each peer's `--peer-timeout` (connect and answer
//!   together) is a task on the same timer queue. Meanwhile its client's
//!   later questions wait behind it (answers stay in order) and every
//!   other client is served. A call's poll keys have bit 62 set and carry
//!   the attempt's generation, as its deadline does: an event or a
//!   deadline of an attempt that is over is ignored. A connection the
//!   loop closes (its client stopped reading, an error) cancels its call;
//!   a client's own close is seen once its answer is given (owing one, it
//!   is not read from), as with `--work wait`. Only the configured peers
//!   are ever dialled.
//! - **Per-connection state:** a [`slab::Slab`] of connections keyed by
//!   their poll key: the protocol's conversation (zen-utils'
//!   `Conversation`: the framing decoder, the answers not yet sent, the
//!   answer being waited for, the idle deadline) and what the socket can
//!   do as far as the events said. Beside it, the loop's own bookkeeping:
//!   the interest registered with epoll. There is no stack to keep any of
//!   it between events, so all of it is in the slab. Buffers are allocated
//!   at first use and an output buffer that grew is freed once drained, so
//!   a connection that has sent nothing costs only its slab entry in the
//!   server's memory, plus the kernel's socket. One that has asked keeps
//!   its decoder's buffer (`--max-request` + 4 KiB).
//! - **What limits concurrency:** `--max-conns` (zen-utils' `Admission`:
//!   each connection holds a permit; one beyond it gets
//!   `Error: server busy.` and is closed), the descriptor limit (on EMFILE
//!   the loop stops listening for [`ACCEPT_BACKOFF`](zen_utils::serve::listener::ACCEPT_BACKOFF)
//!   rather than spin, and goes on serving), and one CPU. Per connection,
//!   output is bounded by [`OUTPUT_LIMIT`](zen_utils::protocol::OUTPUT_LIMIT):
//!   past it, the loop stops reading from that client until it drains.
//! - **Timers:** a binary heap of `(instant, task)`, the BitTorrent
//!   RawServer's `add_task` (zen-utils' `raw_loop::timers`, its tasks the
//!   `Deadline`s of `raw_loop::deadline`, both shared with srv-uring): a
//!   `--work wait` answer, the periodic idle scan
//!   (RawServer's `scan_for_timeouts`: one timer for all connections), the
//!   end of an accept backoff, a peer's deadline. A task carries the
//!   connection's (or the peer call attempt's) generation, so one left by
//!   a closed connection whose slab slot was reused, or by an attempt that
//!   is over, is ignored. The earliest task (or the end of the shutdown's
//!   grace) is the poller's deadline: it wakes the wait (`poller.rs`).
//! - **Shutdown:** [`Shutdown::on_trigger`] (through zen-utils'
//!   `wake_on_shutdown`) uses the poller's waker, which wakes the wait at
//!   once. The loop closes the listener,
//!   reads from every connection what has already arrived, answers every
//!   complete question it holds (waiting out `--work wait` timers and peer
//!   calls, each within its timeouts), closes each connection as soon as
//!   its answers are sent (idle ones at once), and closes whatever is left
//!   (peer calls in flight too) after
//!   [`SHUTDOWN_GRACE`](zen_utils::serve::shutdown::SHUTDOWN_GRACE).
//! - **Fairness:** a connection makes at most 16 reads per turn of the
//!   loop (`READS_PER_TURN`). A client that pipelines as fast as it is
//!   answered always has more to read; without the cap it would hold the
//!   only thread for as long as it kept going. One cut off with more to
//!   read gets another turn after the next wait, which then does not block.
//!
//! Performance devices, each in a module of its own: `poll_mode`
//! (`--poll-mode`: level-triggered registration saves a system call per
//! answer; `registered` keeps what each source is registered for, so that
//! `epoll_ctl` is called only when that changes) and `poller` (`--poller`:
//! the portable `polling` crate, whose wait costs five system calls, or
//! zen-utils' raw `epoll`, whose wait is one).
//!
//! ```text
//! cargo run --release -p srv-poll -- -p 1060
//! ```

mod connection;
mod event_loop;
mod offload;
mod peer_call;
mod poll_mode;
mod poller;
mod registered;

use std::io;
use std::net::TcpListener;

pub use poll_mode::PollMode;
pub use poller::PollerKind;
use zen_utils::{Config, Shutdown, Summary};

/// Serves every client from one thread on `listener` until `shutdown` is
/// triggered, then returns the summary. Waits on the `polling` crate and
/// registers sockets level-triggered.
pub fn serve(listener: TcpListener, config: Config, shutdown: Shutdown) -> io::Result<Summary> {
    serve_with(
        listener,
        config,
        shutdown,
        PollerKind::Polling,
        PollMode::Level,
    )
}

/// [`serve`] with the poller (`Polling` or `Epoll`) and the sockets'
/// registration mode (`Level`, `Edge` or `Oneshot`) chosen. Only the
/// system calls per answer differ; the service is the same.
pub fn serve_with(
    listener: TcpListener,
    config: Config,
    shutdown: Shutdown,
    poller: PollerKind,
    mode: PollMode,
) -> io::Result<Summary> {
    event_loop::EventLoop::new(listener, config, shutdown, poller, mode)?.run()
}

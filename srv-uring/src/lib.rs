//! srv-uring: one thread, a raw io_uring completion loop.
//!
//! srv-poll asks the kernel *which sockets are ready*, then reads and
//! writes them itself, one system call each. srv-uring hands the kernel
//! *the operations themselves* ("accept every connection", "receive into
//! one of these buffers", "send these bytes") through a submission queue
//! in shared memory, and reaps what is done from a completion queue in
//! shared memory. One system call per turn of the loop submits every
//! operation written since the last turn and waits for completions.
//!
//! ```text
//!            ┌──────────────── one thread ─────────────────────────────────────┐
//!            │  submission queue ──► io_uring_enter(submit all, wait ≥ 1) ──┐  │
//!            │       ▲                                                      │  │
//!            │       │ next operations            completion queue ◄────────┘  │
//!            │       │                               │                         │
//!  listener ─┼───────┼─ Accept (multishot): fd ◄─────┤ admit, arm its receive  │
//!  client A ─┼───────┼─ Recv (multishot): bytes in ◄─┤ copy into its decoder,  │
//!            │       │    provided buffer #7         │ give #7 back, answer    │
//!            │       └── Send A's answers ◄──────────┤ (one send per batch)    │
//!  client B ─┼─ Recv ─► a `--work wait` question ────┤ a timer; Timeout (alarm)│
//!  client C ─┼─ Recv ─► not known here ──────────────┤ Connect, Send, Recv to  │
//!  peer     ◄┼──────────────────────────────────────►│ a peer, with deadline   │
//!  shutdown ─┼─ Read (eventfd) completes ────────────┘ cancel accept, drain    │
//!            └─────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The loop, in `event_loop.rs`, is this:
//!
//! ```text
//! loop {
//!     arm the alarm (a Timeout) for the earliest timer, if that changed;
//!     publish the buffers given back to the pool;
//!     io_uring_enter: submit every entry written, wait for one completion
//!         (the only place the loop waits);
//!     reap every completion; for each:
//!         Accept    a new connection: admit it (or turn it away) and arm its
//!                   multishot receive; rearm the accept if it stopped
//!         Recv      bytes in a provided buffer: the connection copies them
//!                   into its decoder, answers, writes a Send; the buffer
//!                   goes back to the pool at once (connection.rs)
//!         Send      n bytes went: the connection sends the rest, and the
//!                   answers made meanwhile, with the next Send
//!         Peer      a peer call's connect, send or receive is done: the
//!                   next step, or the answer (peer_call.rs)
//!         Waker     the shutdown: the loop's top begins it
//!         Alarm     a timer is due
//!     run the due timers: `--work wait` answers, the idle scan, the end of
//!         an accept backoff, a peer's deadline (it failed: the next peer);
//! }
//! ```
//!
//! - **Threads:** one. It runs the loop; the kernel does the reading and
//!   writing, during the loop's one system call per turn (with
//!   `DEFER_TASKRUN`, completion work runs only then, in a batch, not as
//!   each packet arrives).
//! - **What blocks:** only `io_uring_enter`, and only until a completion
//!   comes (the alarm's, when the next timer is due). `--work cpu` and
//!   `--work block` run inline on the loop, as in srv-poll: while one
//!   answer computes or sleeps *every* client waits, and so does every
//!   completion (the answers made before it are submitted first).
//!   `--work wait` is a timer, which the alarm turns into a completion.
//!   Nor does the loop ever wait on a peer.
//! - **What is in flight, per connection:** at most one multishot receive
//!   and one send. The receive names no buffer: it draws one from the
//!   shared pool (a provided-buffer ring, `buf_ring.rs`) only when bytes
//!   arrive, so an idle connection pins none. The send reads `flight`, a
//!   copy of the answers made so far: the kernel owns it from submission
//!   to completion, and nothing writes it meanwhile.
//! - **Who owns a buffer, when:** a pool buffer is the kernel's until its
//!   receive completes, then the loop's, which copies the bytes into the
//!   connection's decoder and gives it back the same turn. A connection's
//!   `flight`, a peer attempt's address, request and reply buffer, and the
//!   eventfd's read buffer are the kernel's while their operation is in
//!   flight. Nothing of that memory is freed before its completion.
//! - **How a cancel works:** a connection that ends (the client closed,
//!   a send failed, its idle deadline passed: a client that stopped
//!   reading is closed then, its send still in flight) gets an
//!   `AsyncCancel` for each of its operations in flight and is marked
//!   closed: its end is counted then, but its slab slot, its socket and
//!   its `flight` stay until the last cancelled operation's completion
//!   came (with `-ECANCELED`, or its result if it had finished). Only then
//!   is it freed. A peer attempt abandoned at its deadline is kept the same
//!   way while its call goes on to the next peer. So a completion always
//!   names a live slot, and `user_data` needs no generation.
//! - **Per-connection state:** a [`slab::Slab`] of connections: the
//!   protocol's conversation (zen-utils' `Conversation`: the framing
//!   decoder, the answers not yet sent, in flight included, the answer
//!   being waited for, the idle deadline), what is in flight, and bytes
//!   received that the conversation could not take yet (`held`). An idle
//!   connection holds no buffer: its slab entry and the kernel's socket
//!   and pending receive.
//! - **What limits concurrency:** `--max-conns` (zen-utils' `Admission`,
//!   a permit per connection until it closes; beyond it, `Error: server
//!   busy.` and close), the descriptor limit (on EMFILE the accept is
//!   cancelled for
//!   [`ACCEPT_BACKOFF`](zen_utils::serve::listener::ACCEPT_BACKOFF), and
//!   the loop goes on serving), the pool (a turn with more arrivals than
//!   buffers ends some receives with `ENOBUFS`; they are armed again), and
//!   one CPU. Per connection, output is bounded by
//!   [`OUTPUT_LIMIT`](zen_utils::protocol::OUTPUT_LIMIT): past it, the
//!   connection's receive is cancelled, and the client's bytes wait in the
//!   kernel's socket buffer until its answers drain.
//! - **Timers:** the binary heap of `(instant, task)` srv-poll uses too,
//!   RawServer's `add_task` (zen-utils' `raw_loop::timers`, its tasks the
//!   `Deadline`s of `raw_loop::deadline`), and one io_uring `Timeout`
//!   operation armed for the earliest task (`alarm.rs`), moved only when
//!   that changes: its completion wakes the loop's wait like any other.
//! - **Shutdown:** [`Shutdown::on_trigger`] (through zen-utils'
//!   `wake_on_shutdown`) writes to an eventfd, zen-utils' `EventfdWaker`
//!   in blocking mode, whose read is always in flight: it completes, and
//!   the wait returns. The loop cancels the accept and closes the
//!   listener, cancels every receive (after its last completion, a
//!   connection reads with non-blocking `recv` what arrived since, once),
//!   answers every complete question it holds (waiting out `--work wait`
//!   timers and peer calls), closes each connection once its answers are
//!   sent, and closes whatever is left after
//!   [`SHUTDOWN_GRACE`](zen_utils::serve::shutdown::SHUTDOWN_GRACE). Then it
//!   cancels its own operations and reaps until the kernel has handed
//!   back every buffer, and only then drops the ring and the pool.
//! - **Accepting with several processes:** `--processes N` workers share
//!   one listener, and a multishot accept waits on it *exclusively*,
//!   first in line for good: one worker would take every connection. The
//!   workers accept one at a time instead ([`Accept::OneAtATime`]), so
//!   they take turns.
//!
//! **System calls per answer**, counted with `perf stat -e
//! raw_syscalls:sys_enter` on the server while `client load -d 4s` runs
//! (2 cores, loopback, 2026-12-01; `strace -c -f` says the same, but its
//! own cost per system call makes the loop's batches larger):
//!
//! | load | srv-uring | srv-poll |
//! |---|---|---|
//! | 50 connections, 1 in flight | 0.12–0.18 (6–8 answers per `io_uring_enter`) | 2.02–2.09 (`epoll_pwait` shared, `recvfrom`, `sendto`) |
//! | 50 connections, 16 in flight | 0.009 | 0.13 |
//! | 1 connection, 1 in flight | 2.0 | 3.0 (`epoll_pwait`, `recvfrom`, `sendto`) |
//!
//! At one connection nothing can be batched: one `io_uring_enter`
//! submits the send, which completes at once, and its completion ends
//! that call; a second waits for the next question. The CPU per answer
//! is then about srv-poll's (both pay the same two context switches per
//! round trip, most of the cost in a virtual machine); the batches of
//! many connections are where a completion loop wins.
//!
//! ```text
//! cargo run --release -p srv-uring -- -p 1060
//! ```

mod alarm;
mod buf_ring;
mod connection;
mod event_loop;
mod peer_call;
mod ring;

use std::io;
use std::net::TcpListener;

pub use ring::available;
use zen_utils::{Config, Shutdown, Summary};

/// How the loop accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// One multishot accept: one submission, a completion per connection.
    /// For a listener this process alone accepts on.
    Multishot,
    /// One accept at a time, submitted again after each completion. For a
    /// listener shared with other processes (`--processes` workers): a
    /// multishot accept waits on the listener *exclusively* and stays
    /// first in its wait queue, so the first worker to arm one would take
    /// every connection; a single accept leaves the queue when it
    /// completes and joins it again at the back, so the workers take
    /// turns.
    OneAtATime,
}

/// Serves every client from one thread on `listener` until `shutdown` is
/// triggered, then returns the summary. Fails at once, in one line, if
/// io_uring cannot be used here.
pub fn serve(listener: TcpListener, config: Config, shutdown: Shutdown) -> io::Result<Summary> {
    serve_with(listener, config, shutdown, Accept::Multishot)
}

/// [`serve`], with the way of accepting chosen.
pub fn serve_with(
    listener: TcpListener,
    config: Config,
    shutdown: Shutdown,
    accept: Accept,
) -> io::Result<Summary> {
    event_loop::EventLoop::new(listener, config, shutdown, accept)?.run()
}

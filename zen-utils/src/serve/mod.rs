//! How one process serves many clients, whatever its model: the listener
//! and its accept errors, `--max-conns`, shutdown, the counters and the
//! log, the conversation driven by a thread that blocks, `--offload`'s
//! helper threads, and what the raw event loops share.
//!
//! - [`listener`]: socket2 listener setup, `RLIMIT_NOFILE`, accept errors,
//!   the busy answer.
//! - [`admission`]: `--max-conns`, one count of open connections, a
//!   permit per connection.
//! - [`shutdown`]: the [`Shutdown`](crate::Shutdown) trigger, SIGINT/SIGTERM.
//! - [`stats`]: relaxed-atomic counters and the one-line summary.
//! - [`log`]: the servers' `tracing` subscriber.
//! - [`blocking`]: the conversation on a thread that blocks.
//! - [`connect`]: a non-blocking connect, for the peers and the client.
//! - [`offload`]: `--offload N`'s helper threads.
//! - [`raw_loop`]: what the hand-written loops share: epoll, the waker,
//!   the timer queue and its deadlines, connection and attempt ids,
//!   admission into a loop, how a connection ends.

pub mod admission;
pub mod blocking;
pub mod connect;
pub mod listener;
pub mod log;
pub mod offload;
pub mod raw_loop;
pub mod shutdown;
pub mod stats;

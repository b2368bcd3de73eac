//! srv-threaded: many threads, each running srv-single's blocking
//! conversation with one client at a time.
//!
//! ```text
//!   pool (the default, the book's design): N workers share one listener
//!     worker 1:  accept() ──► converse with A until it leaves ──► accept() ──► …
//!     worker 2:  accept() ──► converse with B until it leaves ──► accept() ──► …
//!     worker N:  accept() ──► converse with …
//!     client N+1: connected (the kernel queued it), not answered until a worker is free
//!
//!   --per-connection: one accept loop, one new thread per client
//!     main:      accept() ──► spawn ──► accept() ──► spawn ──► accept() ──► …
//!                               │                    │
//!                               ▼                    ▼
//!                  thread: converse with A   thread: converse with B
//! ```
//!
//! - **Threads:** in the pool, `--workers` threads (default
//!   [`DEFAULT_WORKERS`]) plus the caller of [`serve`], which only waits to
//!   join them. With `--per-connection`, the caller runs the accept loop and
//!   there is one more thread per open connection, each with a small
//!   [`STACK_SIZE`] stack so that thousands fit.
//! - **What blocks:** everything, as in srv-single, but only the thread it
//!   happens on. Every worker blocks in `accept()` on the *same* listener
//!   (the kernel hands each new connection to one of them), then in
//!   `read()`, `write()` and `--work` on its one client until that client
//!   leaves. In per-connection mode only the main thread calls `accept()`.
//! - **Per-connection state:** the local variables of
//!   [`srv_single::converse`], on the stack of the thread serving that
//!   client. Nothing about a connection is shared, except one atomic count
//!   of the connections open and the server-wide counters.
//! - **What bounds concurrency:** in the pool, `--workers`: a worker serves
//!   one client from accept to close, so at most `--workers` clients are
//!   served at once and the rest wait in the kernel's backlog, connected
//!   but unanswered. The pool is a rate limiter: with blocking waits, its
//!   throughput is about `workers / wait time`. In per-connection mode,
//!   `--max-conns` (the book's `ThreadingMixIn` has no bound; this one
//!   must, or a flood of clients would spawn threads until the process
//!   dies). In both modes a connection accepted while `--max-conns` are
//!   open is answered `Error: server busy.` and closed at once; in the
//!   pool that can only happen when `--max-conns` is below `--workers`,
//!   since each worker holds at most one connection.
//! - **Asking peers** (`--peer`): the thread serving the client blocks on
//!   the peer, up to `--peer-timeout` (or the end of the shutdown grace);
//!   the other threads go on. Each question opens its own connection,
//!   closed once answered: a kept one would hold one of a blocking peer's
//!   threads (all of srv-single) for as long as it stayed open. While it
//!   waits, the question's connection holds a thread of the peer, so a
//!   pool smaller than its clients plus its peers' questions starves
//!   (experiment 12).
//! - **Shutdown:** every blocking call waits at most a [`TICK`]:
//!   `accept()` through the listener's `SO_RCVTIMEO`, `read()` and
//!   `write()` inside `converse`. So every thread sees the shutdown flag
//!   within a tick, wherever it is blocked (the price: each idle thread
//!   wakes once a tick, a few microseconds of CPU each time);
//!   conversations answer what they have already received and close, the
//!   accept loops stop, [`serve`] joins every thread and returns the
//!   summary. Clients still waiting in the backlog are reset when the
//!   listener closes.
//!
//! The conversation itself is [`srv_single::converse`], called unchanged:
//! the only difference between the two crates is how many threads call it.
//!
//! ```text
//! cargo run --release -p srv-threaded -- -p 1060 --workers 64
//! cargo run --release -p srv-threaded -- -p 1060 --per-connection --max-conns 10000
//! ```

mod per_connection;
mod pool;

use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use socket2::SockRef;
use zen_utils::serve::listener::AcceptErrors;
use zen_utils::serve::shutdown::TICK;
use zen_utils::{Config, Shutdown, Stats, Summary};

use zen_utils::serve::admission::Admission;

/// Workers in the pool when `--workers` is not given.
///
/// A worker is taken for a whole connection, not for one question, so this
/// is how many clients are served at once; with `--work wait:10ms` it caps
/// the rate at `64 / 10ms` = 6,400 answers/s. The comparison's experiments run
/// 50 to 64 clients, and 64 serves them all; the threads cost little
/// (small stacks, asleep in `accept()`), and a much larger pool would only
/// blur the lesson that the pool is a limit.
pub const DEFAULT_WORKERS: usize = 64;

/// The stack of every thread that runs a conversation.
///
/// `converse` keeps its buffers on the heap and needs a few KiB of stack;
/// Rust's default of 2 MiB per thread would reserve 20 GiB of address space
/// for 10,000 connections. 64 KiB leaves ample room for logging and error
/// formatting while thousands of threads fit.
pub const STACK_SIZE: usize = 64 * 1024;

/// How the threads are organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A fixed pool of `workers` threads that all block in `accept()` on the
    /// one listener (at least one, whatever is asked).
    Pool {
        /// How many threads serve clients, each one client at a time.
        workers: usize,
    },
    /// One thread per accepted connection, bounded by `--max-conns`.
    PerConnection,
}

impl Default for Mode {
    fn default() -> Self {
        Self::Pool {
            workers: DEFAULT_WORKERS,
        }
    }
}

/// Serves clients on `listener` with threads organised as `mode` says until
/// `shutdown` is triggered, then joins every thread and returns the summary.
pub fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: Shutdown,
    mode: Mode,
) -> io::Result<Summary> {
    // accept() honours SO_RCVTIMEO on Linux: every thread blocked in it
    // wakes each tick to look at the shutdown flag.
    SockRef::from(&listener).set_read_timeout(Some(TICK))?;
    let shared = Shared {
        open: Admission::new(config.max_conns),
        stats: Stats::new(),
        accept_errors: AcceptErrors::new(),
        config,
        shutdown,
    };
    match mode {
        Mode::Pool { workers } => pool::run(&listener, &shared, workers.max(1))?,
        Mode::PerConnection => per_connection::run(&listener, &shared),
    }
    Ok(shared.stats.summary())
}

/// What every thread of the server borrows. It lives on the stack of
/// [`serve`], and the threads are scoped: they cannot outlive it, so
/// nothing needs an `Arc`.
struct Shared {
    config: Config,
    shutdown: Shutdown,
    stats: Stats,
    /// Shared by every accepting thread, so that an episode of failed
    /// accepts is logged once a second for the server, not per thread.
    accept_errors: AcceptErrors,
    /// The count behind `--max-conns`: a permit is taken after each
    /// accept and held by whoever serves the connection.
    open: Arc<Admission>,
}

/// A thread that runs conversations: named, for `top -H` and debuggers
/// (Linux keeps 15 bytes of a name), and with the small [`STACK_SIZE`].
fn serving_thread(name: String) -> std::thread::Builder {
    std::thread::Builder::new()
        .name(name)
        .stack_size(STACK_SIZE)
}

//! srv-async: tokio's single-threaded runtime, a task per connection: the
//! book's asyncio server, in Rust.
//!
//! ```text
//!   one thread, one tokio runtime (current_thread flavor):
//!
//!     epoll ──► I/O driver and timers ──► wake the tasks whose socket or timer is ready
//!                                             │
//!     accept task   accept() ─► spawn a task ─┤  the thread runs one ready task
//!     conn task A   read ─► answer all ─► write   until it awaits, then the next:
//!     conn task B   sleep(--work wait) …      │  many conversations, interleaved
//!     conn task C   awaiting a read (idle) …  ┘  on one thread
//! ```
//!
//! - **Threads:** one, the caller of [`serve`]. It runs the runtime: the
//!   accept loop, every connection task, and the I/O driver that sleeps in
//!   `epoll_wait` when no task is ready.
//! - **What blocks:** nothing should. Every wait is an `.await` that hands
//!   the thread to another task: a read with nothing to read, a write to a
//!   client that does not read, `--work wait` (the connection's kernel
//!   timer, awaited on the reactor). But `--work cpu` (a busy loop) and
//!   `--work block` (`std::thread::sleep`) run inline on the task and hold
//!   the one thread: while one connection
//!   computes or sleeps, no other connection is answered and nobody is
//!   accepted. That is experiment 5's lesson: blocking an event loop turns
//!   it back into srv-single.
//! - **The cure, `--offload N`:** `--work cpu|block` runs on N helper
//!   threads (zen-utils' `offload`, shared by srv-poll and srv-hybrid), and
//!   the task awaits its completion as it awaits a timer: tokio's
//!   `spawn_blocking`, with a bound. The thread goes on serving every other
//!   task meanwhile; a task that finds the helpers' queue full waits for
//!   room, and its connection is not read meanwhile.
//! - **Per-connection state:** the task's future: a framing decoder (its
//!   buffer allocated only when the first bytes arrive, so an idle
//!   connection costs no buffer), the unsent answers, an idle timer. No
//!   thread stack per connection, which is why 10,000 idle connections fit.
//! - **What limits concurrency:** `--max-conns`, an atomic count of open
//!   connections in [`Shared`]; one more is answered `Error: server busy.`
//!   and closed. Per connection, unsent answers are bounded by
//!   [`OUTPUT_LIMIT`](zen_utils::protocol::OUTPUT_LIMIT): at the bound the
//!   task stops taking questions and awaits the write, so a client that does
//!   not read is not read from either (backpressure).
//! - **Asking peers** (`--peer`): the task awaits the peer (its own
//!   connection for the question, bounded by `--peer-timeout`, in
//!   `peers.rs`); the thread serves every other connection meanwhile.
//!   The answer joins the connection's output in question order, like an
//!   answer that waited on `--work wait`.
//! - **Shutdown:** the trigger wakes a tokio `Notify` that every task of
//!   the runtime waits on alongside its read. The accept loop stops and
//!   closes the listener; each connection answers what it has received (one
//!   last non-blocking read takes bytes already in the socket), has
//!   [`SHUTDOWN_GRACE`] to deliver them, and closes; idle ones close at
//!   once. [`serve`] waits, bounded, for the open-connection count to reach
//!   zero, and returns the summary.
//!
//! The runtime is the only thing that makes this crate single-threaded:
//! [`accept_loop`] and [`handle_connection`] are `Send` and keep their
//! shared state in atomics, so srv-hybrid runs the very same code on many
//! threads.
//!
//! ```text
//! cargo run --release -p srv-async -- -p 1060
//! ```

mod connection;
mod peers;
mod precise_sleep;
mod small_task;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use zen_utils::serve::admission::Admission;
use zen_utils::serve::listener::{self, AcceptErrors, AcceptFailure, ACCEPT_BACKOFF};
use zen_utils::serve::offload::Helpers;
use zen_utils::serve::shutdown::SHUTDOWN_GRACE;
use zen_utils::{Config, Shutdown, Stats, Summary};

pub use connection::handle_connection;

/// How long [`serve_listener`] waits for connections after their
/// [`SHUTDOWN_GRACE`], before it gives up on them. A connection ends itself
/// when its grace runs out, but `--work cpu|block` cannot be interrupted
/// and the last writes and closes take a moment; past this margin the
/// runtime drops whatever is left, so `serve` always returns.
pub const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// Serves connections on `listener` until `shutdown` is triggered, then
/// returns the summary: one thread, one task per connection.
pub fn serve(
    listener: std::net::TcpListener,
    config: Config,
    shutdown: Shutdown,
) -> io::Result<Summary> {
    // The current-thread flavor: the thread that calls `serve` is the
    // runtime's only thread, like asyncio's event loop. Tasks never run in
    // parallel, so this server uses one core however many it has; that is
    // the model being taught (srv-hybrid is the many-thread version).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let shared = Shared::new(config, shutdown)?;
    runtime.block_on(serve_listener(listener, Arc::clone(&shared)))?;
    Ok(shared.summary())
}

/// Accepts on `listener`, on the runtime this is awaited in, until the
/// shutdown; then waits (bounded) until every connection of the server is
/// closed. Each runtime that accepts runs it once: srv-async's one,
/// srv-hybrid's work-stealing one, each of srv-hybrid's per-core ones.
pub async fn serve_listener(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
) -> io::Result<()> {
    // tokio drives non-blocking sockets only; `from_std` registers the
    // listener with the I/O driver of the runtime it is called in, which is
    // why the conversion happens here and not in `main`.
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    accept_loop(listener, Arc::clone(&shared)).await;
    // The listener is closed now. Waiting for the whole server's count,
    // not just this runtime's tasks, is enough: this runtime accepts no
    // more, so once the count is zero none of its tasks is left; and it
    // keeps driving its tasks while it waits.
    let drain = SHUTDOWN_GRACE + DRAIN_MARGIN;
    if tokio::time::timeout(drain, shared.all_closed())
        .await
        .is_err()
    {
        let open = shared.open.open();
        tracing::warn!(
            "warning: {open} connections still open {drain:?} after shutdown; dropping them"
        );
    }
    Ok(())
}

/// Accepts connections and spawns a [`handle_connection`] task for each,
/// until the shutdown; then returns, dropping (closing) the listener.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // One shutdown signal per accept loop, so per runtime: its tasks wait
    // on a `Notify` that no other runtime's tasks touch (see [`Stop`]).
    let stop = Stop::new(&shared.shutdown);
    let stopped = stop.stopped();
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            // The shutdown wins over a waiting client: stop means stop accepting.
            biased;
            () = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                shared.stats.connection();
                match shared.open.try_admit() {
                    Some(permit) => {
                        let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
                        // The task owns its permit: however it ends, even by
                        // a panic or by the runtime dropping it, its place
                        // under `--max-conns` is given back.
                        tokio::spawn(async move {
                            let _permit = permit;
                            handle_connection(stream, peer, &shared, &stop).await;
                        });
                    }
                    None => turn_away(&stream, peer, &shared),
                }
            }
            Err(error) => on_accept_error(&error, &shared).await,
        }
    }
}

/// What every connection task of one server shares, whether they run on
/// one thread or many: the configuration, the counters, and the count of
/// open connections. Everything in it is immutable or atomic, so no task
/// ever waits on a lock held by another, but for the helpers' queue
/// (`--offload`), locked for the moment a work is queued.
#[derive(Debug)]
pub struct Shared {
    config: Config,
    stats: Stats,
    /// Shared by every accept loop, so that an episode of failed accepts
    /// is logged once a second for the server, not per runtime.
    accept_errors: AcceptErrors,
    /// Connections open right now, across every thread and runtime of the
    /// server: `--max-conns` is checked against it at accept, and the
    /// drain at shutdown waits for it to reach zero. Each connection task
    /// holds a permit that counts it.
    open: Arc<Admission>,
    /// Woken when `open` drops to zero (the last permit dropped wakes it).
    closed: Arc<Notify>,
    shutdown: Shutdown,
    /// `--offload`: the helper threads that do `--work cpu|block`, shared
    /// by every runtime of the server (zen-utils' `offload`).
    helpers: Option<Helpers>,
}

impl Shared {
    /// The state of a new server; its shutdown is `shutdown`. Starts the
    /// helpers of `--offload`, if any.
    pub fn new(config: Config, shutdown: Shutdown) -> io::Result<Arc<Self>> {
        let helpers = match config.offload {
            0 => None,
            threads => Some(Helpers::start(threads)?),
        };
        let closed = Arc::new(Notify::new());
        let last_one_out = Arc::clone(&closed);
        Ok(Arc::new(Self {
            open: Admission::waking(config.max_conns, move || last_one_out.notify_waiters()),
            config,
            stats: Stats::new(),
            accept_errors: AcceptErrors::new(),
            closed,
            shutdown,
            helpers,
        }))
    }

    /// The server's totals so far.
    pub fn summary(&self) -> Summary {
        self.stats.summary()
    }

    /// Resolves once no connection is open.
    async fn all_closed(&self) {
        loop {
            // Created before the count is read, so a close in between is
            // not missed: a `Notified` receives `notify_waiters` from the
            // moment it exists.
            let closed = self.closed.notified();
            if self.open.open() == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// The shutdown as the tasks of one runtime see it.
///
/// A tokio `Notify` takes a lock whenever a task waiting on it is polled
/// again, so one `Notify` for the whole server would be a lock shared by
/// every core on every read. Each accept loop (one per runtime) makes its
/// own instead and registers it with [`Shutdown::on_trigger`]: srv-hybrid's
/// per-core runtimes then share nothing on the hot path.
#[derive(Debug, Default)]
pub struct Stop {
    /// When the shutdown began; set before `notify` wakes anyone.
    began: OnceLock<Instant>,
    notify: Notify,
}

impl Stop {
    /// A signal that `shutdown`'s trigger sets and wakes.
    pub fn new(shutdown: &Shutdown) -> Arc<Self> {
        let stop = Arc::new(Self::default());
        let signal = Arc::clone(&stop);
        // Runs on whichever thread triggers the shutdown (the signal
        // thread, a test): `Notify` may be woken from any thread, and wakes
        // each waiting task on its own runtime.
        shutdown.on_trigger(move || {
            let _ = signal.began.set(Instant::now());
            signal.notify.notify_waiters();
        });
        stop
    }

    /// Resolves once the shutdown has begun.
    pub async fn stopped(&self) {
        // Created before the flag is read, so a trigger in between is not
        // missed (see `Shared::all_closed`).
        let notified = self.notify.notified();
        if self.began.get().is_none() {
            notified.await;
        }
    }

    /// When connections must be done: [`SHUTDOWN_GRACE`] after the
    /// shutdown began (or from now, if it has not).
    fn grace_deadline(&self) -> Instant {
        self.began.get().copied().unwrap_or_else(Instant::now) + SHUTDOWN_GRACE
    }
}

/// Answers a connection beyond `--max-conns` `Error: server busy.` and
/// closes it (by dropping it, at the caller).
fn turn_away(stream: &TcpStream, peer: SocketAddr, shared: &Shared) {
    // It goes straight to the socket, whatever readiness tokio has
    // recorded for it: no task will ever wait on this one.
    listener::turn_away(stream, peer, &shared.config, &shared.stats);
}

/// Logs a failed `accept()` (running out of resources at most once a
/// second, server-wide) and, when descriptors or memory ran out, pauses
/// accepting. The pause is a tokio timer, so the connection tasks keep
/// running meanwhile; only accepting waits.
async fn on_accept_error(error: &io::Error, shared: &Shared) {
    if shared.accept_errors.on_error(error) == AcceptFailure::OutOfResources {
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }
}

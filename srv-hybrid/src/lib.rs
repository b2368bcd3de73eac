//! srv-hybrid: async on many threads. srv-async's accept loop and
//! connection handler, unchanged, on one of two kinds of runtime.
//!
//! ```text
//!   --runtime work-stealing (default): one tokio runtime, N worker threads
//!
//!     listener ─► accept task ─► spawn ─► worker 1: [task task task] ◄─┐ an idle worker
//!                                         worker 2: [task]           ──┤ steals half of a
//!                                         worker N: [ ]              ◄─┘ busy one's queue
//!                 one epoll and one timer wheel, driven by whichever worker is free
//!
//!   --runtime per-core: N threads, each with its own current-thread runtime
//!
//!     kernel ─┬─► SO_REUSEPORT listener 1 ─► thread 1: accept, its tasks, its epoll, its timers
//!     (picks  ├─► SO_REUSEPORT listener 2 ─► thread 2: accept, its tasks, its epoll, its timers
//!     one)    └─► SO_REUSEPORT listener N ─► thread N: …
//! ```
//!
//! - **Threads:** `--workers N` (default: the number of CPUs) run
//!   connections: the runtime's N workers, or N per-core runtimes. The
//!   caller of [`serve`] only waits for them.
//! - **What blocks:** as in srv-async, nothing should: every wait is an
//!   `.await`. `--work cpu|block` hold the thread they run on. With work
//!   stealing, the other workers steal the connections queued behind it;
//!   per core, the connections of that core wait while the other cores go
//!   on. Either way N threads can block at once, so `--work block` gives N
//!   times srv-single's rate, not more.
//! - **Per-connection state:** a task, exactly srv-async's. With work
//!   stealing it may run on any worker and move between them at any
//!   `.await`; per core it lives and dies on the thread that accepted it.
//! - **What limits concurrency:** `--max-conns`, one atomic count of open
//!   connections shared by every thread ([`srv_async::Shared`]); one more
//!   is answered `Error: server busy.`, whichever thread accepted it.
//! - **Asking peers** (`--peer`): as srv-async, which it runs: the task
//!   awaits the peer, and its runtime's threads serve the rest.
//! - **Shutdown:** every accept loop, so every runtime, registers its own
//!   waker with the [`Shutdown`]; the trigger reaches them all at once. Each
//!   stops accepting, its connections answer what they have received and
//!   close (within the shutdown grace), and each runtime waits, bounded,
//!   for the server-wide count of open connections to reach zero. The
//!   counters are shared too, so [`serve`] returns one summary for all.
//!
//! # Work stealing or one runtime per core?
//!
//! **Work stealing** keeps one pool of tasks for all threads: each worker
//! has its own queue, and a worker that runs dry steals from the others.
//! It balances uneven load by itself: the connections queued behind a hot
//! or blocked one move to idle workers. The price is sharing: the queues
//! are synchronised between threads, a task woken by one thread may run on
//! another (its data follows it from cache to cache), idle workers are
//! parked and must be woken when work appears, and all of them share one
//! I/O driver and one timer wheel.
//!
//! **One runtime per core** (nginx's design) shares nothing on the hot
//! path: each thread has its own run queue, epoll and timers, and a
//! connection never leaves its thread, so there is no cross-thread wakeup
//! and no lock between cores (they share only the relaxed-atomic counters
//! and the open-connection count). Balancing happens once, in the kernel,
//! at accept time: it hashes each new connection to one listener of the
//! `SO_REUSEPORT` group. That spreads connections evenly by number but
//! blind to their load: a hot or blocked connection hurts only its own
//! core, yet the connections stuck behind it cannot move to an idle one.
//!
//! # The per-core listeners
//!
//! [`serve`] gets one listener. If it was bound with `SO_REUSEPORT` (the
//! binary does so for `--runtime per-core`), [`listeners`] binds N-1 more
//! on the same address with `SO_REUSEPORT`: the kernel's group. If it was not
//! (the conformance kit binds its listeners without it), no other socket
//! can join its port, and rebinding is no option: closing it to bind anew
//! would refuse connections meanwhile and could lose the port. So the N
//! runtimes then share that one socket, each accepting on its own
//! `try_clone` of it: one accept queue, whose every new connection wakes
//! all N runtimes and goes to the one that accepts first. Everything else
//! about per-core is unchanged.
//!
//! ```text
//! cargo run --release -p srv-hybrid -- -p 1060 --workers 2 --runtime per-core
//! ```

use std::io;
use std::net::TcpListener;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::thread;

use clap::ValueEnum;
use socket2::SockRef;
use srv_async::{serve_listener, Shared};
use zen_utils::{serve::listener, Config, Shutdown, Summary};

/// How the worker threads share the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Runtime {
    /// One multi-threaded tokio runtime whose workers steal tasks from each other
    #[default]
    WorkStealing,
    /// One single-threaded runtime per worker, each with its own SO_REUSEPORT listener
    PerCore,
}

/// srv-hybrid's own options, beside the shared [`Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HybridOptions {
    /// Threads that run connections: the runtime's workers, or the number
    /// of per-core runtimes.
    pub workers: NonZeroUsize,
    /// Work stealing or one runtime per core.
    pub runtime: Runtime,
    /// The listen backlog of the per-core listeners that [`listeners`] binds.
    pub backlog: i32,
}

/// The most `--workers`: far more threads than any machine has cores, and
/// few enough that their runtimes' descriptors and stacks always fit.
pub const MAX_WORKERS: usize = 1024;

/// Everything [`serve_prepared`] needs that can fail to be made: the
/// listeners and the runtimes with their threads. The binary makes it
/// before it prints `listening on`, so that the line means ready.
pub struct Prepared {
    listeners: Vec<TcpListener>,
    runtimes: Runtimes,
}

/// The runtimes of either kind, built.
enum Runtimes {
    WorkStealing(tokio::runtime::Runtime),
    PerCore(Vec<tokio::runtime::Runtime>),
}

/// The number of CPUs this process may use: the default `--workers`.
pub fn default_workers() -> NonZeroUsize {
    thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// Serves connections on `listener` with srv-async's handler on
/// `options.workers` threads, until `shutdown` is triggered; then returns
/// the summary of all of them.
pub fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: Shutdown,
    options: HybridOptions,
) -> io::Result<Summary> {
    serve_prepared(prepare(listener, options)?, config, shutdown)
}

/// Makes the listeners ([`listeners`]) and the runtimes for `options`.
pub fn prepare(listener: TcpListener, options: HybridOptions) -> io::Result<Prepared> {
    let listeners = listeners(listener, options)?;
    let runtimes = match options.runtime {
        // The multi-thread flavor: `workers` threads, each with a local
        // queue of tasks, stealing from each other when they run dry.
        Runtime::WorkStealing => Runtimes::WorkStealing(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(options.workers.get())
                .thread_name("zen-worker")
                .enable_all()
                .build()?,
        ),
        // Every runtime is built before any core accepts. A runtime needs
        // descriptors of its own (an epoll, an eventfd): built by each core
        // as it starts, a flood of clients accepted by the first cores
        // could take the last descriptors from a core still starting, and
        // that core's failure would stop the whole server.
        Runtime::PerCore => Runtimes::PerCore(
            listeners
                .iter()
                .map(|_| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                })
                .collect::<io::Result<_>>()?,
        ),
    };
    Ok(Prepared {
        listeners,
        runtimes,
    })
}

/// The listeners that [`serve_prepared`] accepts on: `listener` alone for
/// work stealing; per core, `listener` and `workers - 1` more for the same
/// address (see the module doc). [`prepare`] calls it, before the binary
/// prints `listening on`, so that the whole group is ready when tools
/// connect.
pub fn listeners(listener: TcpListener, options: HybridOptions) -> io::Result<Vec<TcpListener>> {
    match options.runtime {
        Runtime::WorkStealing => Ok(vec![listener]),
        Runtime::PerCore => listener_group(listener, options),
    }
}

/// [`serve`] on what [`prepare`] made.
pub fn serve_prepared(
    prepared: Prepared,
    config: Config,
    shutdown: Shutdown,
) -> io::Result<Summary> {
    let shared = Shared::new(config, shutdown.clone())?;
    let Prepared {
        listeners,
        runtimes,
    } = prepared;
    match runtimes {
        Runtimes::WorkStealing(runtime) => work_stealing(&runtime, listeners, &shared, &shutdown)?,
        Runtimes::PerCore(runtimes) => per_core(runtimes, listeners, &shared, &shutdown)?,
    }
    Ok(shared.summary())
}

/// One multi-threaded runtime; srv-async's accept loop is one of its tasks
/// (one per listener: [`listeners`] gives work stealing just one).
fn work_stealing(
    runtime: &tokio::runtime::Runtime,
    listeners: Vec<TcpListener>,
    shared: &Arc<Shared>,
    shutdown: &Shutdown,
) -> io::Result<()> {
    // The accept loop runs as a task on a worker rather than on this
    // thread in `block_on`: the connections it spawns then start in that
    // worker's own queue, where idle workers steal them, instead of all
    // passing through the runtime's shared injection queue.
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            runtime.spawn(serve_or_stop_all(
                listener,
                Arc::clone(shared),
                shutdown.clone(),
            ))
        })
        .collect();
    runtime.block_on(async {
        let mut result = Ok(());
        for accept_loop in accepting {
            result = result.and(accept_loop.await.map_err(io::Error::other)?);
        }
        result
    })
}

/// One thread per listener, each running its current-thread runtime on it.
fn per_core(
    runtimes: Vec<tokio::runtime::Runtime>,
    listeners: Vec<TcpListener>,
    shared: &Arc<Shared>,
    shutdown: &Shutdown,
) -> io::Result<()> {
    thread::scope(|scope| {
        let mut result = Ok(());
        let mut cores = Vec::with_capacity(listeners.len());
        for (core, (listener, runtime)) in listeners.into_iter().zip(runtimes).enumerate() {
            let shared = Arc::clone(shared);
            let spawned = thread::Builder::new()
                .name(format!("zen-core-{core}"))
                .spawn_scoped(scope, move || {
                    run_core(&runtime, listener, shared, shutdown)
                });
            match spawned {
                Ok(thread) => cores.push(thread),
                Err(error) => {
                    // The cores already running stop too: a server missing
                    // a core would serve its share of the port with no one.
                    shutdown.trigger();
                    result = Err(error);
                    break;
                }
            }
        }
        for core in cores {
            let ended = core
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a per-core runtime panicked")));
            result = result.and(ended);
        }
        result
    })
}

/// One core: a current-thread runtime accepting on its own listener, as
/// srv-async does, until the shutdown and the drain.
fn run_core(
    runtime: &tokio::runtime::Runtime,
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: &Shutdown,
) -> io::Result<()> {
    runtime.block_on(serve_or_stop_all(listener, shared, shutdown.clone()))
}

/// srv-async's accept loop on one of the listeners; if it fails, the
/// others stop too, so that [`serve`] returns the error rather than wait
/// for loops that nobody stops. (Per core there is one loop per core;
/// work stealing gets one listener from [`listeners`], but
/// [`work_stealing`] runs one loop for each listener it is given.)
async fn serve_or_stop_all(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) -> io::Result<()> {
    let served = serve_listener(listener, shared).await;
    if served.is_err() {
        shutdown.trigger();
    }
    served
}

/// The per-core listeners: `listener` and `workers - 1` more accepting for
/// the same address.
fn listener_group(listener: TcpListener, options: HybridOptions) -> io::Result<Vec<TcpListener>> {
    let more = options.workers.get() - 1;
    let mut group = Vec::with_capacity(options.workers.get());
    if SockRef::from(&listener).reuse_port()? {
        // The kernel's way: one accept queue per listener, and each new
        // connection hashed to one of them.
        let addr = listener.local_addr()?;
        for _ in 0..more {
            group.push(listener::bind(addr, options.backlog, true)?);
        }
    } else {
        // No group can be joined: share the one socket instead.
        for _ in 0..more {
            group.push(listener.try_clone()?);
        }
    }
    group.insert(0, listener);
    Ok(group)
}

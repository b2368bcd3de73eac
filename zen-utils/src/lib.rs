//! What every zen server shares, so that the six servers differ only in
//! their concurrency model.
//!
//! - [`protocol`]: the aphorism table and the fixed answers, exact bytes.
//! - [`conversation`]: one conversation with one client, with no I/O: the
//!   protocol written once, driven by every model.
//! - [`blocking`]: its driver on a thread that blocks (srv-single,
//!   srv-threaded, and every server under inetd's `nowait`).
//! - [`frame`]: the framing decoder. It never touches a socket: bytes in,
//!   questions out, the same for blocking, polling and async servers.
//! - [`config`]: the protocol's shared flags as one clap [`ServerArgs`] struct,
//!   `DUR` parsing, and the [`Config`] a server runs with.
//! - [`work`]: `--work wait|cpu|block:DUR`.
//! - [`admission`]: `--max-conns`, one count of open connections for every
//!   thread that accepts.
//! - [`listener`]: socket2 listener setup, `RLIMIT_NOFILE`, accept errors.
//! - [`log`]: the servers' `tracing` subscriber (`-v`/`-q` are levels), whose
//!   lines, like [`log_line!`]'s, are dropped rather than panic when stderr
//!   is gone.
//! - [`stats`]: relaxed-atomic counters and the one-line [`Summary`].
//! - [`end`]: why a connection ended, counted and logged alike everywhere.
//! - [`epoll`]: epoll with a one-system-call wait, for srv-poll and the
//!   load generator.
//! - [`shutdown`]: the [`Shutdown`] trigger and SIGINT/SIGTERM handling.
//! - [`server`]: the `main` that every server binary shares.
//! - [`started`]: started by someone else: socket activation, inetd,
//!   systemd's readiness notifications, `--exit-idle`.
//! - [`components`]: private ZooKeeper and HAProxy instances, for
//!   `client compare` and the tests.
//! - [`peers`]: servers that ask servers: the table part, the forwarded
//!   question and its history, what a peer's reply means.
//! - [`registry`]: ZooKeeper: a server's registration, a client's watcher.
//! - [`supervisor`]: `--processes N`, pre-forked workers that share the
//!   listener.
//! - `testkit` (feature `testkit`): the one conformance suite, stamped out
//!   in each server crate by [`conformance_suite!`].
//!
//! Every server crate exposes the same entry point,
//! `serve(listener, config, shutdown) -> io::Result<Summary>`, which is what
//! lets the tests, the benches and `client compare` start any of them alike.

#![warn(missing_docs)]

pub mod admission;
pub mod blocking;
pub mod components;
pub mod config;
pub mod conversation;
pub mod end;
pub mod epoll;
pub mod frame;
pub mod listener;
pub mod log;
pub mod offload;
pub mod peers;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod shutdown;
pub mod started;
pub mod stats;
pub mod supervisor;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod timers;
pub mod work;

pub use config::{Config, OffloadArgs, ServerArgs, Verbosity};
pub use end::{End, Leftover, Stall};
pub use frame::Decoder;
pub use shutdown::Shutdown;
pub use stats::{Stats, Summary};
pub use work::{Work, WorkKind};

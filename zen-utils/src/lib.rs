//! What every zen server shares, so that the six servers differ only in
//! their concurrency model. The folders are the architecture, in the order
//! a byte travels:
//!
//! - [`protocol`]: what is said, with no I/O. The aphorism table, the
//!   framing decoder, one [`Conversation`](protocol::conversation::Conversation)
//!   with one client (the protocol written once, driven by every model),
//!   why a connection ended, `--work`, and the peers rule.
//! - [`serve`]: how one process serves many clients: the listener,
//!   `--max-conns` admission (a permit per connection), shutdown,
//!   counters, logs, the driver on a thread that blocks, `--offload`'s
//!   helper threads, a non-blocking connect, and the parts the raw event
//!   loops share (epoll, the waker, the timer queue and its deadlines,
//!   connection ids, admission into a loop, the last word).
//! - [`deploy`]: how a server is started, found and supervised: the `main`
//!   every server binary shares, socket activation and inetd, the
//!   `--processes` supervisor, the ZooKeeper registry.
//! - [`config`] and [`duration`]: the shared flags, and `DUR`.
//! - `components` (feature `components`): private ZooKeeper and HAProxy
//!   instances, for `client compare` and the tests; no server links it.
//!   Within it, `stuck`: a server's serving threads stopped, its registry's
//!   left running.
//! - `testkit` (feature `testkit`): the one conformance suite, stamped out
//!   in each server crate by `conformance_suite!`.
//!
//! Every server crate exposes the same entry point,
//! `serve(listener, config, shutdown) -> io::Result<Summary>`, which is what
//! lets the tests, the benches and `client compare` start any of them alike.

#![warn(missing_docs)]

#[cfg(feature = "components")]
pub mod components;
pub mod config;
pub mod deploy;
pub mod duration;
pub mod protocol;
pub mod serve;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::{Config, OffloadArgs, ServerArgs, Verbosity};
pub use protocol::end::{End, Leftover, Stall};
pub use protocol::frame::Decoder;
pub use protocol::work::{Work, WorkKind};
pub use serve::shutdown::Shutdown;
pub use serve::stats::{Stats, Summary};

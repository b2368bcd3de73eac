//! How a server is started, found and supervised, beyond one process.
//!
//! - [`server`]: the `main` every server binary shares.
//! - [`started`]: started by someone else: socket activation, inetd,
//!   systemd's readiness notifications, `--exit-idle`.
//! - [`supervisor`]: `--processes N`, pre-forked workers sharing the
//!   listener.
//! - [`registry`]: ZooKeeper: a server's registration, a client's watcher.

pub mod registry;
pub mod server;
pub mod started;
pub mod supervisor;

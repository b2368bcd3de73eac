//! How a server is started, found and supervised, beyond one process.
//!
//! - [`server`]: the `main` every server binary shares.
//! - [`started`]: started by someone else: socket activation, inetd,
//!   systemd's readiness notifications, `--exit-idle`.
//! - [`supervisor`]: `--processes N`, pre-forked workers sharing the
//!   listener.
//! - [`registry`]: ZooKeeper: a server's registration, a client's watcher.
//! - [`health`]: a registered server's probe of itself, which takes it
//!   out of the registry while it answers nothing.

pub mod health;
pub mod registry;
pub mod server;
pub mod started;
pub mod supervisor;

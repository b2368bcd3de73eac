//! The runs: every server started fresh for every run (`process.rs`),
//! loaded and measured (`measure.rs`), and the experiments with their own
//! shape (`dead_server.rs`, `servers_ask_servers.rs`).

pub(crate) mod dead_server;
pub(crate) mod process;
pub(crate) mod servers_ask_servers;

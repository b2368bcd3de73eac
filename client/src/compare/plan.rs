//! The plan: what a comparison runs, decided before any server starts.
//! Who is compared (`lineup.rs`), the ten experiments that run every
//! server (`experiments.rs`) and what their tables should show
//! (`checks.rs`), and the experiments run apart, whose rows are not one
//! server each (`dead_server.rs`, `servers_ask_servers.rs`).

pub(crate) mod checks;
pub(crate) mod dead_server;
pub(crate) mod experiments;
pub(crate) mod lineup;
pub(crate) mod servers_ask_servers;

//! The zen client: talks to any zen server (or, for `load`, any
//! request/reply TCP server) and reports what it saw.
//!
//! The library is the load engine, for whoever wants to measure a server
//! in-process (`client compare`, the criterion benches):
//!
//! - [`load::measure`] runs a load described by [`load::Options`] and
//!   returns a [`report::LoadReport`];
//! - [`load::Workload`] is what the load asks, [`load::Length`] when it
//!   ends, [`load::Watch`] how its caller follows it;
//! - [`report`] holds the report's types, as `client load --json` prints
//!   them.
//!
//! The `client` binary is [`cli::Cli`]: the subcommands `ask`, `load`,
//! `hold` and `compare` on top of the same engine.

#![warn(missing_docs)]

pub mod cli;
pub mod load;
pub mod report;

mod ask;
mod compare;
mod event_loop;
mod flags;
mod hold;
mod servers;
mod target;

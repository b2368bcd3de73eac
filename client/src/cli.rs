//! The `client` command line: its subcommands, and what each one runs.
//! The binary is this module's [`Cli`], parsed and run.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{ask, compare, hold, load};

/// Ask a zen server questions, load it and measure it, hold idle
/// connections to it, or compare every server side by side.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ask N different random questions, one at a time, and print each
    /// question with its answer (the book's client)
    Ask(ask::AskArgs),
    /// Keep CONNS connections busy asking questions, check every answer,
    /// and report throughput, latency percentiles, errors and fairness
    /// (exit code 1 if any error happened; the report is printed anyway)
    Load(load::LoadArgs),
    /// Open CONNS connections, keep them idle for DUR, and report what the
    /// server did with them (kept, busy, idle timeout, closed)
    Hold(hold::HoldArgs),
    /// Run every server through the twelve experiments side by side, and
    /// write a report (--quick: about a minute and a half on 2 cores; full:
    /// about five and a half minutes)
    ///
    /// The experiments: one client, many clients, slow backend, CPU-bound,
    /// blocking in the event loop, pipelining, slow clients, C10K, work
    /// stealing vs runtime per core, short connections, then two run
    /// apart: three ways to survive a failed server, and servers that ask
    /// servers. Each server binary is started on port 0, loaded in-process
    /// by `client load`'s engine, and stopped with SIGTERM. A table per
    /// experiment is printed, with each server's CPU time and context
    /// switches per answer (from /proc) and, after experiment 1 has
    /// measured one client's round trip, the rate each cost model predicts
    /// beside the measured one (with --only, name one-client too to get
    /// the predictions); results.json, report.md, report.html and
    /// SVG charts are written into --out. System calls per answer are not
    /// counted here: scripts/syscalls-per-answer counts them with perf or
    /// strace.
    Compare(compare::CompareArgs),
}

impl Cli {
    /// Runs the subcommand. Whatever went wrong is logged on stderr as one
    /// line, the chain of causes joined by ": ", and the exit code is 1.
    pub fn run(self) -> ExitCode {
        let result = match self.command {
            Command::Ask(args) => ask::run(&args).map(|()| ExitCode::SUCCESS),
            Command::Load(args) => load::run(&args),
            Command::Hold(args) => hold::run(&args),
            Command::Compare(args) => compare::run(&args),
        };
        match result {
            Ok(code) => code,
            Err(error) => {
                zen_utils::log_line!("client: {error:#}");
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}

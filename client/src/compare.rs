//! `client compare`: every server through every experiment, side by side.
//!
//! ```text
//!  plan     --only, --servers, the binaries, --out: refused before any
//!           server starts; every run decided          compare/plan.rs
//!  ───────────────────────────────────────────────────────────────────────────
//!  run      for each experiment (plan/experiments.rs), each server
//!           (plan/lineup.rs):                          compare/run.rs
//!            start the binary with -p 0 ─► read `listening on IP:PORT`
//!                                                      run/process.rs
//!            [hold idle connections: `client hold`'s engine, on a thread]
//!            `client load`'s engine, in-process ─► /proc CPU time at the
//!              edges of the measured window, RSS at the end
//!                                                      run/measure.rs
//!            SIGTERM ─► exit 0 and a `summary:` line, or flagged
//!           a table per experiment on stdout as it ends
//!           then the experiments run apart: 11 and 12  run/dead_server.rs,
//!                                                      run/servers_ask_servers.rs
//!  ───────────────────────────────────────────────────────────────────────────
//!  report   results.json, report.md, report.html and SVG charts in --out
//!                                                      compare/report.rs
//!  ───────────────────────────────────────────────────────────────────────────
//!  exit     1 when a run failed or a server did not stop cleanly
//! ```
//!
//! Each phase depends only on those before it and on the two leaves:
//! `model.rs` (every type of results.json) and `format.rs` (how a figure
//! is written).
//!
//! Each run gets a fresh server process, so that every table row starts
//! from the same place and the server's own summary counts that run only.
//! The load runs in this process (the same engine as `client load`, called
//! as a function), on half the cores by default, next to the server, which
//! runs at a lower priority so that its threads never preempt the load
//! (`model::SERVER_NICE`).

mod format;
mod model;
mod plan;
mod report;
mod run;

use std::process::ExitCode;
use std::time::Instant;

use model::{Results, Status};
pub(crate) use plan::CompareArgs;
use plan::Plan;

/// Runs the comparison and writes the report. Exits 1 (after writing it)
/// when a run failed or a server did not exit cleanly.
pub(crate) fn run(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::make(args, run::uring_refusal)?;
    let started = Instant::now();
    let results = run::everything(&plan);
    report::write(&results, &args.out)?;
    zen_utils::log_line!(
        "client compare: done in {:.0}s; wrote {}",
        started.elapsed().as_secs_f64(),
        args.out.join("report.md").display()
    );
    Ok(exit_code(&results))
}

/// Failure when a run failed, a server did not stop cleanly (each named
/// on stderr) or the comparison was interrupted.
fn exit_code(results: &Results) -> ExitCode {
    let problems: Vec<String> = results
        .experiments
        .iter()
        .flat_map(|experiment| {
            experiment.runs.iter().filter_map(move |run| {
                let unclean = run.exit.as_ref().is_some_and(|exit| !exit.clean);
                (run.status == Status::Failed || unclean)
                    .then(|| format!("{} in {}", run.row_name(), experiment.key))
            })
        })
        .collect();
    if !problems.is_empty() {
        zen_utils::log_line!(
            "client compare: failed or not stopped cleanly (see the report): {}",
            problems.join(", ")
        );
    }
    if problems.is_empty() && !results.interrupted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! The runs, in the plan's order: every per-server experiment, each
//! server started fresh for each run (`process.rs`) and measured
//! (`measure.rs`), its table printed as the experiment ends
//! (`progress.rs`); then the experiments run apart (`dead_server.rs`,
//! `servers_ask_servers.rs`). Everything runs on the thread that runs
//! `main`, which the servers' lifetimes hang on (see `process.rs`).

pub(crate) mod dead_server;
mod measure;
pub(crate) mod process;
mod progress;
pub(crate) mod servers_ask_servers;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

use super::model::{ExperimentResult, Machine, Results, Settings};
use super::plan::experiments::Take;
use super::plan::lineup::Kind;
use super::plan::{self, Apart, Plan, Planned};
use super::report::{apart, tables};
use crate::load;
use process::Server;
use progress::Progress;

/// Runs everything `plan` holds and returns what was measured: all of it,
/// or, once Ctrl-C or SIGTERM came, what was measured until then.
pub(crate) fn everything(plan: &Plan) -> Results {
    // 10,000 idle connections need 10,000 descriptors here too.
    let _ = zen_utils::serve::listener::raise_fd_limit();
    let progress = Progress::new(plan.runs());
    let interrupted = stop_flag();
    let mut results = Results {
        machine: Machine::now(),
        settings: settings(plan),
        experiments: Vec::new(),
        round_trip: None,
        dead_server: None,
        ask_peers: None,
        interrupted: false,
    };
    progress.say(&plan.summary());
    for planned in &plan.experiments {
        let result = experiment(plan, planned, &results.experiments, &progress, &interrupted);
        if result.key == "one-client" {
            results.round_trip = plan::experiments::round_trip(&result);
        }
        let result = ExperimentResult {
            predictions: results.round_trip.as_ref().map_or_else(Vec::new, |rtt| {
                plan::experiments::predicted(&planned.experiment, &result.runs, rtt)
            }),
            ..result
        };
        progress.print(&tables::for_terminal(&result, results.round_trip.as_ref()));
        results.experiments.push(result);
        if interrupted.load(Ordering::Relaxed) {
            results.interrupted = true;
            break;
        }
    }
    for &experiment in &plan.apart {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        run_apart(experiment, plan, &progress, &interrupted, &mut results);
        progress.advance(plan.runs_apart(experiment));
        if let Some(section) = apart::section(&results, experiment.key()) {
            progress.print(&section.for_terminal());
        }
    }
    progress.done();
    results
}

/// How the comparison was run, for the report.
fn settings(plan: &Plan) -> Settings {
    Settings {
        quick: plan.quick,
        duration_seconds: plan.sizes.duration.as_secs_f64(),
        warmup_seconds: plan.sizes.warmup.as_secs_f64(),
        pool_workers: plan.sizes.pool_workers,
        c10k_connections: plan.sizes.c10k,
        bin_dir: plan.bin_dir.display().to_string(),
        load_threads: load::default_threads(),
        load_timeout_seconds: measure::LOAD_TIMEOUT.as_secs_f64(),
    }
}

/// One per-server experiment: its rows in turn, then its checks.
fn experiment(
    plan: &Plan,
    planned: &Planned,
    earlier: &[ExperimentResult],
    progress: &Progress,
    interrupted: &AtomicBool,
) -> ExperimentResult {
    let experiment = &planned.experiment;
    let mut runs = Vec::new();
    for (contender, take) in &planned.rows {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        let run = match take {
            Take::Skip(why) => measure::skipped(experiment, contender, why),
            _ => {
                progress.start(experiment, contender);
                let program = match contender.kind {
                    Kind::Redis => plan.redis.clone().unwrap_or_default(),
                    _ => plan.bin_dir.join(contender.bin),
                };
                let run = measure::run_one(&program, experiment, contender, interrupted);
                progress.finish(experiment, &run);
                run
            }
        };
        runs.push(run);
    }
    // Only the servers that ran are judged: a check on one not run is
    // "not measured", never failed.
    let checks = experiment
        .checks
        .iter()
        .map(|check| check.evaluate(&runs, earlier))
        .collect();
    ExperimentResult {
        number: experiment.number,
        key: experiment.key.to_owned(),
        title: experiment.title.to_owned(),
        lesson: experiment.lesson.clone(),
        runs,
        checks,
        predictions: Vec::new(),
    }
}

/// An experiment run apart, announced, its result kept in `results`.
fn run_apart(
    experiment: Apart,
    plan: &Plan,
    progress: &Progress,
    interrupted: &AtomicBool,
    results: &mut Results,
) {
    match experiment {
        Apart::DeadServer { model } => {
            let timing = plan::dead_server::timing(plan.quick);
            progress.say(&format!(
                "client compare: {} with {model} backends, {} runs of {:.1} s",
                plan::dead_server::TITLE,
                plan::dead_server::pairs().len(),
                timing.seconds.as_secs_f64()
            ));
            let bin = plan.bin_dir.join(model);
            results.dead_server = Some(dead_server::run(&bin, timing, interrupted));
        }
        Apart::ServersAskServers => {
            let duration = plan::servers_ask_servers::duration(plan.quick);
            progress.say(&format!(
                "client compare: {}, {:.0} s per model",
                plan::servers_ask_servers::TITLE,
                duration.as_secs_f64()
            ));
            results.ask_peers = Some(servers_ask_servers::run(
                &plan.bin_dir,
                plan.pairs(),
                duration,
                interrupted,
            ));
        }
    }
}

/// Why srv-uring cannot serve here (it exits with one line when io_uring
/// is refused), as a row's note; `None` when it starts. Leaked: one short
/// string, once per comparison, where a row's note is `&'static str`.
pub(crate) fn uring_refusal(bin: &Path) -> Option<&'static str> {
    match Server::start_zen(bin, &["-q".to_owned()]) {
        Ok(server) => {
            server.kill();
            None
        }
        Err(error) => {
            let why = format!("not run: {error:#}");
            zen_utils::log_line!("client compare: srv-uring {why}");
            Some(Box::leak(why.into_boxed_str()))
        }
    }
}

/// A flag that the first SIGINT (Ctrl-C) or SIGTERM sets: no other run
/// starts, the load of the run in progress stops at once, its server is
/// stopped like any other, and the report of what was measured is
/// written. A second of either exits at once (status 130 or 143), with no
/// report; the kernel then stops the servers (see `process::spawn_piped`).
/// Register it once per process.
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered in this order, the shutdown sees the flag still unset
        // on the first signal and set on the second.
        let _ = signal_hook::flag::register_conditional_shutdown(
            signal,
            128 + signal,
            Arc::clone(&stop),
        );
        let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
    }
    stop
}

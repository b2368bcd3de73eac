//! What a comparison shows while it runs: on a terminal a spinner line
//! for the run in progress and a line per finished run above it;
//! otherwise a line per finished run. The tables go to stdout as each
//! experiment ends.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::compare::format::{group_digits, micros};
use crate::compare::model::{RunResult, Status};
use crate::compare::plan::experiments::Experiment;
use crate::compare::plan::lineup::Contender;

/// The progress shown while it runs: on a terminal a spinner line for the
/// run in progress and a line per finished run above it; otherwise a
/// line per finished run.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    runs: usize,
    done: std::cell::Cell<usize>,
}

impl Progress {
    pub(crate) fn new(runs: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(runs as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            runs,
            done: std::cell::Cell::new(0),
        }
    }

    pub(crate) fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => zen_utils::log_line!("{line}"),
        }
    }

    pub(crate) fn start(&self, experiment: &Experiment, contender: &Contender) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}: {}", experiment.key, contender.label));
        }
    }

    pub(crate) fn finish(&self, experiment: &Experiment, run: &RunResult) {
        self.done.set(self.done.get() + 1);
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        let outcome = match (run.status, run.measured()) {
            (Status::Ok, Some(load)) => format!(
                "{} answers/s, p99 {}, served {}/{}",
                group_digits(load.rps),
                micros(load.latency_us.p99),
                load.served_conns,
                load.connections
            ),
            _ => format!("failed: {}", run.note.as_deref().unwrap_or("unknown error")),
        };
        let unclean = match &run.exit {
            Some(exit) if !exit.clean => format!(
                " [server: {}]",
                exit.problem.as_deref().unwrap_or("not clean")
            ),
            _ => String::new(),
        };
        self.say(&format!(
            "[{}/{}] {}: {}: {outcome}{unclean}",
            self.done.get(),
            self.runs,
            experiment.key,
            run.row_name()
        ));
    }

    /// Counts `runs` done that had no line of their own (the ways and pairs
    /// of the experiments run apart).
    pub(crate) fn advance(&self, runs: usize) {
        self.done.set(self.done.get() + runs);
        if let Some(bar) = &self.bar {
            bar.inc(runs as u64);
        }
    }

    /// Prints a table on stdout, clear of the progress line. A table that
    /// cannot be written (stdout closed: `client compare | head -1`) is
    /// dropped rather than a panic: the report still has it.
    pub(crate) fn print(&self, table: &str) {
        let print = || {
            let _ = writeln!(std::io::stdout().lock(), "{table}");
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    pub(crate) fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

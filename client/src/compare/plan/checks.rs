//! Checks: the shape each experiment's table should have, as data next to
//! the experiment ("srv-single served 1 of 64", "srv-poll ≥ 2 × srv-single").
//! Each is evaluated on the figures measured, and says whether the lesson
//! showed on this run: held, did not hold, or not measured (its servers did
//! not run, or failed). A check that does not hold is reported, never an
//! error: machines vary, and the exit status is about runs that failed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::compare::model::{CheckResult, ExperimentResult, RunResult};

/// One expectation of an experiment.
#[derive(Clone)]
pub(crate) struct Check {
    /// What should hold, as the report says it.
    pub(crate) text: String,
    /// `Some(held)`, or `None` when a figure it needs was not measured.
    judge: Arc<Judge>,
}

/// A check's verdict on the figures: `Some(held)`, or `None` when a
/// figure it needs was not measured.
type Judge = dyn Fn(&Figures<'_>) -> Option<bool> + Send + Sync;

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check").field("text", &self.text).finish()
    }
}

impl Check {
    pub(crate) fn new(
        text: impl Into<String>,
        judge: impl Fn(&Figures<'_>) -> Option<bool> + Send + Sync + 'static,
    ) -> Self {
        Self {
            text: text.into(),
            judge: Arc::new(judge),
        }
    }

    /// Evaluates the check on an experiment's `runs`, with the experiments
    /// measured before it (`earlier`) for comparisons across experiments.
    pub(crate) fn evaluate(&self, runs: &[RunResult], earlier: &[ExperimentResult]) -> CheckResult {
        let figures = Figures {
            runs,
            earlier,
            used: RefCell::new(BTreeMap::new()),
        };
        let held = (self.judge)(&figures);
        CheckResult {
            text: self.text.clone(),
            held,
            figures: figures.used.into_inner(),
        }
    }
}

/// The measured figures a check reads; each figure read is recorded, so
/// that the report can show what the verdict rests on.
pub(crate) struct Figures<'a> {
    runs: &'a [RunResult],
    earlier: &'a [ExperimentResult],
    used: RefCell<BTreeMap<String, f64>>,
}

impl Figures<'_> {
    fn read(
        &self,
        runs: &[RunResult],
        server: &str,
        name: String,
        value: impl Fn(&RunResult) -> Option<f64>,
    ) -> Option<f64> {
        let run = runs.iter().find(|run| run.server == server)?;
        run.measured()?;
        let value = value(run)?;
        self.used.borrow_mut().insert(name, value);
        Some(value)
    }

    /// A server's answers per second.
    pub(crate) fn rps(&self, server: &str) -> Option<f64> {
        self.read(self.runs, server, format!("{server} answers/s"), |run| {
            run.measured().map(|load| load.rps)
        })
    }

    /// A server's answers per second in an earlier experiment (`key`).
    pub(crate) fn rps_in(&self, key: &str, server: &str) -> Option<f64> {
        let earlier = self.earlier.iter().find(|e| e.key == key)?;
        self.read(
            &earlier.runs,
            server,
            format!("{server} answers/s in {key}"),
            |run| run.measured().map(|load| load.rps),
        )
    }

    /// The connections a server answered at least once.
    pub(crate) fn served(&self, server: &str) -> Option<f64> {
        self.read(self.runs, server, format!("{server} served"), |run| {
            run.measured().map(|load| load.served_conns as f64)
        })
    }

    /// A server's 90th percentile latency, µs.
    pub(crate) fn p90(&self, server: &str) -> Option<f64> {
        self.read(self.runs, server, format!("{server} p90 µs"), |run| {
            run.measured()
                .filter(|load| load.requests > 0)
                .map(|load| load.latency_us.p90)
        })
    }

    /// What an idle connection cost a server in resident memory, bytes.
    pub(crate) fn idle_bytes(&self, server: &str) -> Option<f64> {
        self.read(
            self.runs,
            server,
            format!("{server} RSS bytes per idle connection"),
            |run| {
                run.server_usage
                    .as_ref()?
                    .idle
                    .as_ref()?
                    .bytes_per_connection
            },
        )
    }
}

/// Whether `each` holds for every one of `servers` that was measured;
/// not measured when none of them was.
pub(crate) fn every(servers: &[&str], each: impl Fn(&str) -> Option<bool>) -> Option<bool> {
    let verdicts: Vec<bool> = servers.iter().filter_map(|server| each(server)).collect();
    (!verdicts.is_empty()).then(|| verdicts.iter().all(|&held| held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_is_not_measured_without_any_server() {
        assert_eq!(every(&["a", "b"], |_| None), None);
        assert_eq!(
            every(&["a", "b"], |s| (s == "a").then_some(true)),
            Some(true)
        );
        assert_eq!(every(&["a", "b"], |s| Some(s == "a")), Some(false));
    }
}

//! What `client load` and `client hold` report: one type each, printed as
//! a table for people or as one JSON object (`--json`) for tools.
//! [`LoadReport`] is also what [`measure`](crate::load::measure) returns.
//!
//! Both types deserialize as well as serialize, so that a tool can read a
//! `--json` report back into them.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Prints a report on stdout: one line of JSON, or the table. A closed
/// stdout (`| head`) is an error to report, not a panic.
pub(crate) fn print<R: Serialize + fmt::Display>(report: &R, json: bool) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let written = if json {
        serde_json::to_writer(&mut stdout, report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(stdout))
    } else {
        write!(stdout, "{report}")
    };
    written
        .and_then(|()| stdout.flush())
        .context("cannot print the report")
}

/// The report of one `client load` run.
///
/// The first seven fields are the protocol's contract for `--json` (docs/protocol.md); the rest say how the run
/// was made and what went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Connections the client kept open (`-c`).
    pub connections: usize,
    /// Questions answered right within the measured window (with `-d`,
    /// answers received between the warmup and the end; with `-n`, the
    /// answers to the questions asked after the warmup); wrong answers are
    /// only counted in `errors`, so garbage cannot inflate the rate.
    pub requests: u64,
    /// Length of the measured window: `-d`, or with `-n` the time from the
    /// start to the last answer.
    pub seconds: f64,
    /// `requests / seconds`.
    pub rps: f64,
    /// All errors: the sum of `errors_by_kind`.
    pub errors: u64,
    /// Connections that got at least one right answer (an `Error: server
    /// busy.` is not being served).
    pub served_conns: usize,
    /// Latency percentiles of the right answers, in microseconds. With `--rate`, measured from
    /// when each question should have been sent (corrected for coordinated
    /// omission); otherwise from when it was sent.
    pub latency_us: Percentiles,
    /// With `--rate` only: the same latencies measured from when each
    /// question was actually sent, which hides the server's stalls.
    pub uncorrected_latency_us: Option<Percentiles>,
    /// `errors`, by kind.
    pub errors_by_kind: ErrorCounts,
    /// How evenly the answers were spread across the connections.
    pub fairness: Fairness,
    /// Connections re-established after a failure.
    pub reconnects: u64,
    /// `--reconnect-every N`: connections opened in place of one that
    /// closed itself after its N answers (counted as the new one opens, so
    /// `-c 1 -n 30 --reconnect-every 3` makes 9; a connection closed at the
    /// end of the run has none in its place). Never a failure: not in
    /// `reconnects` nor in `errors`. With no failure and no warmup, the
    /// connections a server accepted are `connections + planned_reconnects`.
    #[serde(default)]
    pub planned_reconnects: u64,
    /// `--reconnect-every N`: the most questions one connection asked
    /// before it closed and another took its place; `None` without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_every: Option<u64>,
    /// Questions asked again because their connection failed before their
    /// answer came (on the new connection with `-d`, on any with `-n`):
    /// each is answered once, so none is lost and none counted twice.
    #[serde(default)]
    pub reasked: u64,
    /// Questions in flight per connection (`--pipeline`).
    pub pipeline: usize,
    /// Event-loop threads the connections were split across.
    pub threads: usize,
    /// The open loop's total rate in requests per second (`--rate`);
    /// `None` for the closed loop.
    pub rate: Option<f64>,
    /// Seconds of warmup before the measured window (`--warmup`).
    pub warmup_seconds: f64,
    /// What was asked: the table, one question, or a fixed request.
    pub workload: String,
    /// The servers, `HOST:PORT` each: the fixed list, whose servers the
    /// connections are dealt round robin; or every server picked from the
    /// registry.
    pub targets: Vec<String>,
    /// `--registry`: where the servers were found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Why the run ended before its `-d` or `-n` was reached, if it did.
    pub stopped_early: Option<String>,
    /// Each target's right answers and latencies, in `targets` order (one
    /// entry, the run's own figures, with one fixed target): a slow or
    /// dead server among several shows here, not only at p99.9.
    #[serde(default)]
    pub per_target: Vec<TargetReport>,
    /// `--every DUR`: the length of one interval of `series`, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_seconds: Option<f64>,
    /// `--every DUR`: the measured window, interval by interval, as the
    /// lines printed during the run said it. Its answers add up to
    /// `requests`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<Interval>,
}

/// One interval of a run's `--every` series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// When it ends, seconds into the measured window.
    pub end_seconds: f64,
    /// Right answers received in it.
    pub answers: u64,
    /// Errors in it, of every kind.
    pub errors: u64,
    /// Questions asked again in it, their connection having failed.
    pub reasked: u64,
    /// The 99th percentile of its answers' latencies, in microseconds
    /// (two significant digits); none without an answer.
    pub p99_us: Option<f64>,
    /// The same, for each target in `targets` order, when there are
    /// several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_target: Vec<IntervalShare>,
}

/// One target's share of an [`Interval`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalShare {
    /// `HOST:PORT`.
    pub target: String,
    /// Right answers from it.
    pub answers: u64,
    /// Errors on connections to it.
    pub errors: u64,
    /// Questions asked again on connections to it.
    pub reasked: u64,
    /// The 99th percentile of its answers' latencies, in microseconds.
    pub p99_us: Option<f64>,
}

impl fmt::Display for Interval {
    /// One line: `  1.2s  answers 3120  errors 0  re-asked 0  p99 410 µs`,
    /// then each target's share when there are several.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p99 = |p99: Option<f64>| match p99 {
            None => "–".to_owned(),
            Some(us) if us < 1000.0 => format!("{us:.0} µs"),
            Some(us) => format!("{:.1} ms", us / 1000.0),
        };
        write!(
            f,
            "{:6.1}s  answers {}  errors {}  re-asked {}  p99 {}",
            self.end_seconds,
            self.answers,
            self.errors,
            self.reasked,
            p99(self.p99_us)
        )?;
        for share in &self.per_target {
            write!(
                f,
                "  | {}: {} answers, {} errors, {} re-asked, p99 {}",
                share.target,
                share.answers,
                share.errors,
                share.reasked,
                p99(share.p99_us)
            )?;
        }
        Ok(())
    }
}

/// One target's share of a load run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    /// `HOST:PORT`.
    pub target: String,
    /// Right answers from it in the measured window.
    pub requests: u64,
    /// Latency percentiles of those answers, in microseconds (two
    /// significant digits).
    pub latency_us: Percentiles,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The 99.9th percentile.
    pub p999: f64,
    /// The slowest.
    pub max: f64,
}

/// Errors by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Answers that were not the answer to the question asked.
    pub wrong_answer: u64,
    /// Answers `Error: ...` (server busy, idle timeout, unknown aphorism),
    /// asked for or not: the server may say its last word unasked.
    pub error_answer: u64,
    /// Answers when no question was waiting for one (other than `Error:
    /// ...`): the server broke the protocol, and its connection was closed
    /// and opened again.
    #[serde(default)]
    pub unasked_answer: u64,
    /// Connects refused (nothing listening): one per attempt.
    pub refused: u64,
    /// Connections reset by the server.
    pub reset: u64,
    /// Connections the server closed while the client was using them.
    pub closed: u64,
    /// Connects, or questions, not answered within `--timeout`.
    pub timeout: u64,
    /// Any other I/O error.
    pub other: u64,
}

/// Right answers per connection, across all connections (served or not).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Fairness {
    /// The fewest answers a connection got.
    pub min: u64,
    /// The median connection's answers.
    pub median: u64,
    /// The most answers a connection got.
    pub max: u64,
    /// Jain's fairness index, `(Σx)² / (n·Σx²)`: 1 when every connection
    /// got as many answers as every other, `1/n` when one got them all;
    /// 0 when none got any.
    pub jain: f64,
}

/// The report of one `client hold` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct HoldReport {
    /// Connections attempted (`-c`).
    pub(crate) connections: usize,
    /// How long they were held (`-d`).
    pub(crate) seconds: f64,
    /// Connects that succeeded.
    pub(crate) connected: usize,
    /// Connections still open at the end: connected and never closed.
    pub(crate) open: usize,
    /// Connections answered `Error: server busy.` (then closed).
    pub(crate) busy: usize,
    /// Connections closed with `Error: idle timeout.`, and when.
    pub(crate) idle_timeout: IdleCloses,
    /// Connections the server closed without either message.
    pub(crate) closed: usize,
    /// Connects that failed, by kind.
    pub(crate) connect_failed: ConnectFailures,
    /// The server, `HOST:PORT`, or the registry `zk://...`.
    pub(crate) target: String,
    /// From a registry: the connections held by each server, by
    /// `HOST:PORT`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) per_server: BTreeMap<String, usize>,
}

/// Idle-timeout closes, and how long after its connect each came.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct IdleCloses {
    pub(crate) count: usize,
    /// Seconds from connect to close; all 0 when `count` is 0.
    pub(crate) after_min: f64,
    pub(crate) after_median: f64,
    pub(crate) after_max: f64,
}

/// Connects that failed, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct ConnectFailures {
    pub(crate) refused: usize,
    /// Not connected within `--timeout` (a server that never accepts and
    /// whose backlog is full).
    pub(crate) timeout: usize,
    pub(crate) other: usize,
}

impl ErrorCounts {
    /// The sum of every kind.
    pub fn total(&self) -> u64 {
        self.kinds().iter().map(|(_, count)| count).sum()
    }

    /// Adds `other`'s counts to these.
    pub(crate) fn add(&mut self, other: &Self) {
        self.wrong_answer += other.wrong_answer;
        self.error_answer += other.error_answer;
        self.unasked_answer += other.unasked_answer;
        self.refused += other.refused;
        self.reset += other.reset;
        self.closed += other.closed;
        self.timeout += other.timeout;
        self.other += other.other;
    }

    /// Each kind that happened, as `"kind count"`.
    pub(crate) fn named(&self) -> Vec<String> {
        self.kinds()
            .iter()
            .filter(|(_, count)| *count > 0)
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect()
    }

    fn kinds(&self) -> [(&'static str, u64); 8] {
        [
            ("wrong answer", self.wrong_answer),
            ("error answer", self.error_answer),
            ("unasked answer", self.unasked_answer),
            ("refused", self.refused),
            ("reset", self.reset),
            ("closed by server", self.closed),
            ("timeout", self.timeout),
            ("other", self.other),
        ]
    }
}

impl ConnectFailures {
    /// The sum of every kind.
    pub(crate) fn total(&self) -> usize {
        self.refused + self.timeout + self.other
    }
}

impl Fairness {
    /// The fairness of these per-connection answer counts.
    pub(crate) fn of(counts: &[u64]) -> Self {
        if counts.is_empty() {
            return Self::default();
        }
        let mut sorted = counts.to_vec();
        sorted.sort_unstable();
        let sum: f64 = sorted.iter().map(|&x| x as f64).sum();
        let squares: f64 = sorted.iter().map(|&x| (x as f64) * (x as f64)).sum();
        Self {
            min: sorted[0],
            median: sorted[(sorted.len() - 1) / 2],
            max: sorted[sorted.len() - 1],
            jain: if squares > 0.0 {
                sum * sum / (sorted.len() as f64 * squares)
            } else {
                0.0
            },
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        write!(f, "target        {}", self.targets.join(", "))?;
        match &self.registry {
            Some(registry) => writeln!(f, " (from {registry})")?,
            None => writeln!(f)?,
        }
        writeln!(f, "workload      {}", self.workload)?;
        let threads = self.threads;
        let looping = match self.rate {
            Some(rate) => format!("open loop at {rate} requests/s"),
            None => "closed loop".to_owned(),
        };
        writeln!(
            f,
            "connections   {} on {threads} thread{}, pipeline {}, {looping}",
            self.connections,
            plural(threads),
            self.pipeline,
        )?;
        let warmup = if self.warmup_seconds > 0.0 {
            format!(" (after {:.2}s of warmup)", self.warmup_seconds)
        } else {
            String::new()
        };
        writeln!(
            f,
            "requests      {} in {:.2}s = {:.0} per second{warmup}",
            self.requests, self.seconds, self.rps
        )?;
        write!(f, "errors        {}", self.errors)?;
        let kinds = self.errors_by_kind.named();
        if !kinds.is_empty() {
            write!(f, " ({})", kinds.join(", "))?;
        }
        writeln!(f)?;
        writeln!(f, "reconnects    {}", self.reconnects)?;
        if let Some(every) = self.reconnect_every {
            writeln!(
                f,
                "planned       {} reconnects (a new connection every {every} answer{})",
                self.planned_reconnects,
                plural(every as usize)
            )?;
        }
        writeln!(f, "re-asked      {}", self.reasked)?;
        writeln!(
            f,
            "served conns  {} of {}; answers per connection: min {}, median {}, max {}; \
             Jain's index {:.3}",
            self.served_conns,
            self.connections,
            self.fairness.min,
            self.fairness.median,
            self.fairness.max,
            self.fairness.jain
        )?;
        writeln!(
            f,
            "latency (us)  {:>10} {:>10} {:>10} {:>10} {:>10}",
            "p50", "p90", "p99", "p99.9", "max"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, p: &Percentiles| {
            writeln!(
                f,
                "  {name:<11} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                p.p50, p.p90, p.p99, p.p999, p.max
            )
        };
        match &self.uncorrected_latency_us {
            Some(uncorrected) => {
                row(f, "corrected", &self.latency_us)?;
                row(f, "uncorrected", uncorrected)?;
            }
            None => row(f, "", &self.latency_us)?,
        }
        if self.per_target.len() > 1 || self.registry.is_some() {
            writeln!(
                f,
                "per target    {:>10} {:>10} {:>10}",
                "answers", "p50 (us)", "p99 (us)"
            )?;
            for share in &self.per_target {
                writeln!(
                    f,
                    "  {:<11} {:>10} {:>10.1} {:>10.1}",
                    share.target, share.requests, share.latency_us.p50, share.latency_us.p99
                )?;
            }
        }
        if let Some(reason) = &self.stopped_early {
            writeln!(f, "stopped early: {reason}")?;
        }
        Ok(())
    }
}

impl fmt::Display for HoldReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "target          {}", self.target)?;
        if !self.per_server.is_empty() {
            let shares: Vec<String> = self
                .per_server
                .iter()
                .map(|(server, held)| format!("{server} {held}"))
                .collect();
            writeln!(f, "per server      {}", shares.join(", "))?;
        }
        writeln!(
            f,
            "connections     {} held idle for {:.2}s",
            self.connections, self.seconds
        )?;
        writeln!(f, "connected       {}", self.connected)?;
        writeln!(
            f,
            "open at end     {} (connected and never closed)",
            self.open
        )?;
        writeln!(f, "server busy     {}", self.busy)?;
        write!(f, "idle timeout    {}", self.idle_timeout.count)?;
        if self.idle_timeout.count > 0 {
            write!(
                f,
                " (after {:.3}s min, {:.3}s median, {:.3}s max)",
                self.idle_timeout.after_min,
                self.idle_timeout.after_median,
                self.idle_timeout.after_max
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "closed          {} (by the server, without a message)",
            self.closed
        )?;
        let failed = &self.connect_failed;
        writeln!(
            f,
            "connect failed  {} (refused {}, timeout {}, other {})",
            failed.total(),
            failed.refused,
            failed.timeout,
            failed.other
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_is_one_when_fair_and_one_over_n_when_one_gets_all() {
        let fair = Fairness::of(&[5, 5, 5, 5]);
        assert!((fair.jain - 1.0).abs() < 1e-9);
        assert_eq!((fair.min, fair.median, fair.max), (5, 5, 5));
        let unfair = Fairness::of(&[0, 0, 0, 8]);
        assert!((unfair.jain - 0.25).abs() < 1e-9);
        assert_eq!((unfair.min, unfair.median, unfair.max), (0, 0, 8));
        assert_eq!(Fairness::of(&[0, 0]).jain, 0.0);
        assert_eq!(Fairness::of(&[]), Fairness::default());
    }

    #[test]
    fn error_kinds_add_up() {
        let mut errors = ErrorCounts {
            reset: 2,
            timeout: 1,
            ..ErrorCounts::default()
        };
        errors.add(&ErrorCounts {
            wrong_answer: 3,
            ..ErrorCounts::default()
        });
        assert_eq!(errors.total(), 6);
    }
}

//! What one load thread counts: latency histograms, errors by kind,
//! reconnects. Each thread has its own, so counting costs no
//! synchronisation; they are merged once, at the end. Only `--every`'s
//! series is shared with the main thread, handed over once an interval
//! (see `series.rs`).

use std::io;

use hdrhistogram::Histogram;

use super::series;
use crate::report::{ErrorCounts, Percentiles};

/// The longest latency a histogram holds; longer ones are recorded as
/// this. A minute is far beyond any timeout a run would use.
const HISTOGRAM_MAX_NS: u64 = 60_000_000_000;
/// Three significant digits: a 25.3 µs latency is told from a 25.4 µs one,
/// at a few hundred KiB per histogram.
const HISTOGRAM_DIGITS: u8 = 3;
/// Two significant digits for each target's own histogram (only its p99
/// and its median are reported), so that many `--server`s stay cheap.
pub(super) const TARGET_HISTOGRAM_DIGITS: u8 = 2;

/// Why a connection failed, or what was wrong with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    WrongAnswer,
    ErrorAnswer,
    /// An answer that came when no question was waiting for one: the
    /// server broke the protocol, so its connection is closed.
    Unasked,
    Refused,
    Reset,
    Closed,
    Timeout,
    Other,
}

impl Failure {
    /// The kind of a failed connect, read or write.
    pub(crate) fn of(error: &io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::ConnectionRefused => Self::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Self::Reset,
            io::ErrorKind::TimedOut => Self::Timeout,
            _ => Self::Other,
        }
    }
}

/// One thread's counts.
pub(crate) struct Tally {
    /// Latency from when each question was first sent, in nanoseconds.
    pub(crate) latency: Histogram<u64>,
    /// Open loop: latency from when each question should have been sent.
    pub(crate) corrected: Histogram<u64>,
    pub(crate) errors: ErrorCounts,
    /// Connections re-established after a failure.
    pub(crate) reconnects: u64,
    /// `--reconnect-every`: connections opened in place of one that closed
    /// after its N answers.
    pub(crate) planned_reconnects: u64,
    /// Questions asked again because their connection failed first.
    pub(crate) reasked: u64,
    /// Answers in the measured window.
    pub(crate) answers: u64,
    /// When the last counted answer came (monotonic nanoseconds; 0: none).
    pub(crate) last_answer: u64,
    /// Whether each target's figures are kept (not with one fixed target,
    /// whose figures are the run's).
    by_target: bool,
    /// Each target's answers and latencies, by target number; grown by
    /// [`Tally::track`] as connections go to new targets.
    pub(crate) per_target: Vec<TargetTally>,
    /// `--every`: counts per interval of the window, by target, handed to
    /// the main thread interval by interval (see `series.rs`).
    pub(crate) series: Option<series::Counter>,
}

/// One target's share of a thread's counts.
pub(crate) struct TargetTally {
    pub(crate) answers: u64,
    pub(crate) latency: Histogram<u64>,
}

pub(super) fn histogram(digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, digits).expect("valid histogram bounds")
}

impl Tally {
    /// Empty counts; `by_target`: keep each target's figures too.
    pub(crate) fn new(by_target: bool) -> Self {
        Self {
            latency: histogram(HISTOGRAM_DIGITS),
            corrected: histogram(HISTOGRAM_DIGITS),
            errors: ErrorCounts::default(),
            reconnects: 0,
            planned_reconnects: 0,
            reasked: 0,
            answers: 0,
            last_answer: 0,
            by_target,
            per_target: Vec::new(),
            series: None,
        }
    }

    /// Counts into `series` (`--every`) from now on.
    pub(crate) fn keep_series(&mut self, series: series::Shared) {
        self.series = Some(series::Counter::new(series));
    }

    /// Makes room for target `target`'s figures: called as a connection
    /// opens, so that counting an answer never allocates.
    pub(crate) fn track(&mut self, target: usize) {
        while self.by_target && self.per_target.len() <= target {
            self.per_target.push(TargetTally {
                answers: 0,
                latency: histogram(TARGET_HISTOGRAM_DIGITS),
            });
        }
    }

    /// Counts one right answer from target `target`, received at `now`,
    /// to a question sent at `sent` and due at `intended`. On the hot path:
    /// inlined into the read loop.
    #[inline]
    pub(crate) fn answer(
        &mut self,
        target: usize,
        sent: u64,
        intended: u64,
        now: u64,
        open_loop: bool,
    ) {
        self.latency.saturating_record(now.saturating_sub(sent));
        if open_loop {
            self.corrected
                .saturating_record(now.saturating_sub(intended));
        }
        if let Some(share) = self.per_target.get_mut(target) {
            share.answers += 1;
            // The latency the run reports: from the due time in the open loop.
            let from = if open_loop { intended } else { sent };
            share.latency.saturating_record(now.saturating_sub(from));
        }
        if let Some(series) = &mut self.series {
            let from = if open_loop { intended } else { sent };
            series.answer(target, now, now.saturating_sub(from));
        }
        self.answers += 1;
        self.last_answer = now;
    }

    /// Counts one error, on a connection to `target`, at `now`.
    pub(crate) fn error(&mut self, failure: Failure, target: usize, now: u64) {
        if let Some(series) = &mut self.series {
            series.error(target, now);
        }
        let errors = &mut self.errors;
        let count = match failure {
            Failure::WrongAnswer => &mut errors.wrong_answer,
            Failure::ErrorAnswer => &mut errors.error_answer,
            Failure::Unasked => &mut errors.unasked_answer,
            Failure::Refused => &mut errors.refused,
            Failure::Reset => &mut errors.reset,
            Failure::Closed => &mut errors.closed,
            Failure::Timeout => &mut errors.timeout,
            Failure::Other => &mut errors.other,
        };
        *count += 1;
    }

    /// Counts `n` questions asked again, on a connection to `target`, at
    /// `now`.
    pub(crate) fn reask(&mut self, n: u64, target: usize, now: u64) {
        self.reasked += n;
        if let Some(series) = &mut self.series {
            series.reasked(target, now, n);
        }
    }

    /// Adds another thread's counts to these (not its series: each
    /// thread's is read where it is shared).
    pub(crate) fn merge(&mut self, other: &Self) {
        // Both have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.corrected.add(&other.corrected);
        self.errors.add(&other.errors);
        self.reconnects += other.reconnects;
        self.planned_reconnects += other.planned_reconnects;
        self.reasked += other.reasked;
        self.answers += other.answers;
        self.last_answer = self.last_answer.max(other.last_answer);
        if let Some(last) = other.per_target.len().checked_sub(1) {
            self.track(last);
        }
        for (mine, theirs) in self.per_target.iter_mut().zip(&other.per_target) {
            mine.answers += theirs.answers;
            let _ = mine.latency.add(&theirs.latency);
        }
    }
}

/// The percentiles of a histogram of nanoseconds, in microseconds.
pub(crate) fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    if histogram.is_empty() {
        return Percentiles::default();
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    Percentiles {
        p50: us(histogram.value_at_quantile(0.50)),
        p90: us(histogram.value_at_quantile(0.90)),
        p99: us(histogram.value_at_quantile(0.99)),
        p999: us(histogram.value_at_quantile(0.999)),
        max: us(histogram.max()),
    }
}

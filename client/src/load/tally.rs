//! What one load thread counts: latency histograms, errors by kind,
//! reconnects. Each thread has its own, so counting costs no
//! synchronisation; they are merged once, at the end.

use std::io;

use hdrhistogram::Histogram;

use crate::report::{ErrorCounts, Percentiles};

/// The longest latency a histogram holds; longer ones are recorded as
/// this. A minute is far beyond any timeout a run would use.
const HISTOGRAM_MAX_NS: u64 = 60_000_000_000;
/// Three significant digits: a 25.3 µs latency is told from a 25.4 µs one,
/// at a few hundred KiB per histogram.
const HISTOGRAM_DIGITS: u8 = 3;

/// Why a connection failed, or what was wrong with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    WrongAnswer,
    ErrorAnswer,
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
    pub(crate) reconnects: u64,
    /// Answers in the measured window.
    pub(crate) answers: u64,
    /// When the last counted answer came (monotonic nanoseconds; 0: none).
    pub(crate) last_answer: u64,
}

impl Tally {
    pub(crate) fn new() -> Self {
        let histogram = || {
            Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, HISTOGRAM_DIGITS)
                .expect("valid histogram bounds")
        };
        Self {
            latency: histogram(),
            corrected: histogram(),
            errors: ErrorCounts::default(),
            reconnects: 0,
            answers: 0,
            last_answer: 0,
        }
    }

    /// Counts one error.
    pub(crate) fn error(&mut self, failure: Failure) {
        let errors = &mut self.errors;
        let count = match failure {
            Failure::WrongAnswer => &mut errors.wrong_answer,
            Failure::ErrorAnswer => &mut errors.error_answer,
            Failure::Refused => &mut errors.refused,
            Failure::Reset => &mut errors.reset,
            Failure::Closed => &mut errors.closed,
            Failure::Timeout => &mut errors.timeout,
            Failure::Other => &mut errors.other,
        };
        *count += 1;
    }

    /// Adds another thread's counts to these.
    pub(crate) fn merge(&mut self, other: &Self) {
        // Both have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.corrected.add(&other.corrected);
        self.errors.add(&other.errors);
        self.reconnects += other.reconnects;
        self.answers += other.answers;
        self.last_answer = self.last_answer.max(other.last_answer);
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

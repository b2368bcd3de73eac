//! `--every DUR`: the run cut into intervals of the measured window, each
//! with its answers, errors, questions asked again and p99, by target.
//! A failing server shows in it as it happens: the answers drop, the
//! errors and the questions asked again come, and the rate comes back.
//!
//! Each load thread counts into its own [`Series`] behind a mutex that
//! only the main thread also takes, once per interval, to print the
//! interval that just ended; the report's series is all of them merged
//! at the end, so the lines printed and the report's figures are the same
//! counts.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

use crate::report::{Interval, IntervalShare};

/// Latencies of one interval of one target: two significant digits (only
/// the p99 is reported).
const DIGITS: u8 = 2;
/// The longest latency recorded, as the run's histograms.
const MAX_NS: u64 = 60_000_000_000;

/// One thread's counts per interval, by target.
pub(crate) struct Series {
    /// The window's start (monotonic nanoseconds).
    origin: u64,
    /// One interval, nanoseconds.
    interval: u64,
    /// `cells[i][target]`.
    cells: Vec<Vec<Cell>>,
}

/// What one target did in one interval.
pub(crate) struct Cell {
    answers: u64,
    errors: u64,
    reasked: u64,
    latency: Option<Histogram<u64>>,
}

impl Cell {
    fn new() -> Self {
        Self {
            answers: 0,
            errors: 0,
            reasked: 0,
            latency: None,
        }
    }

    fn add(&mut self, other: &Self) {
        self.answers += other.answers;
        self.errors += other.errors;
        self.reasked += other.reasked;
        if let Some(theirs) = &other.latency {
            let mine = self.latency.get_or_insert_with(histogram);
            let _ = mine.add(theirs);
        }
    }

    fn p99_us(&self) -> Option<f64> {
        let latency = self.latency.as_ref().filter(|h| !h.is_empty())?;
        Some(latency.value_at_quantile(0.99) as f64 / 1000.0)
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, DIGITS).expect("valid histogram bounds")
}

/// A thread's series, shared with the main thread.
pub(crate) type Shared = Arc<Mutex<Series>>;

impl Series {
    /// Empty, for a window opening at `origin`, cut every `interval` ns.
    pub(crate) fn shared(origin: u64, interval: u64) -> Shared {
        Arc::new(Mutex::new(Self {
            origin,
            interval: interval.max(1),
            cells: Vec::new(),
        }))
    }

    /// The cell of `target` at `now`. A new interval makes its cells
    /// (an allocation once per interval, not per answer).
    fn cell(&mut self, target: usize, now: u64) -> &mut Cell {
        let i = usize::try_from(now.saturating_sub(self.origin) / self.interval).unwrap_or(0);
        if self.cells.len() <= i {
            self.cells.resize_with(i + 1, Vec::new);
        }
        let row = &mut self.cells[i];
        if row.len() <= target {
            row.resize_with(target + 1, Cell::new);
        }
        &mut row[target]
    }

    /// A right answer from `target` at `now`, `latency_ns` after its
    /// question.
    pub(crate) fn answer(&mut self, target: usize, now: u64, latency_ns: u64) {
        let cell = self.cell(target, now);
        cell.answers += 1;
        cell.latency
            .get_or_insert_with(histogram)
            .saturating_record(latency_ns);
    }

    /// An error on a connection to `target` at `now`.
    pub(crate) fn error(&mut self, target: usize, now: u64) {
        self.cell(target, now).errors += 1;
    }

    /// `n` questions asked again at `now`, on a connection to `target`.
    pub(crate) fn reasked(&mut self, target: usize, now: u64, n: u64) {
        if n > 0 {
            self.cell(target, now).reasked += n;
        }
    }

    /// The intervals counted so far.
    fn len(&self) -> usize {
        self.cells.len()
    }
}

/// Locks a series (a thread that panicked holding it left counts that are
/// still counts).
fn lock(series: &Shared) -> std::sync::MutexGuard<'_, Series> {
    series.lock().unwrap_or_else(|e| e.into_inner())
}

/// Interval `i` of every thread's series, merged, as the report says it;
/// `targets` names the targets (by their number); `by_target`: the run
/// keeps each target's figures (each target's share is given when there
/// are several).
pub(crate) fn interval(
    series: &[Shared],
    i: usize,
    targets: &[SocketAddr],
    by_target: bool,
) -> Interval {
    let mut merged: Vec<Cell> = Vec::new();
    let mut seconds = 0.0;
    for thread in series {
        let thread = lock(thread);
        seconds = (i + 1) as f64 * thread.interval as f64 / 1e9;
        if let Some(row) = thread.cells.get(i) {
            if merged.len() < row.len() {
                merged.resize_with(row.len(), Cell::new);
            }
            for (mine, theirs) in merged.iter_mut().zip(row) {
                mine.add(theirs);
            }
        }
    }
    let mut total = Cell::new();
    for cell in &merged {
        total.add(cell);
    }
    let per_target = if by_target && targets.len() > 1 {
        targets
            .iter()
            .enumerate()
            .map(|(target, addr)| {
                let cell = merged.get(target);
                IntervalShare {
                    target: addr.to_string(),
                    answers: cell.map_or(0, |c| c.answers),
                    errors: cell.map_or(0, |c| c.errors),
                    reasked: cell.map_or(0, |c| c.reasked),
                    p99_us: cell.and_then(Cell::p99_us),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    Interval {
        end_seconds: seconds,
        answers: total.answers,
        errors: total.errors,
        reasked: total.reasked,
        p99_us: total.p99_us(),
        per_target,
    }
}

/// How many intervals the series of a window `window_ns` long has: every
/// interval the window touches, and any that counted something.
pub(crate) fn intervals(series: &[Shared], interval_ns: u64, window_ns: u64) -> usize {
    let touched = window_ns.div_ceil(interval_ns.max(1));
    let counted = series.iter().map(|s| lock(s).len()).max().unwrap_or(0);
    usize::try_from(touched).unwrap_or(usize::MAX).max(counted)
}

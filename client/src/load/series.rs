//! `--every DUR`: the run cut into intervals of the measured window, each
//! with its answers, errors, questions asked again and p99, by target.
//! A failing server shows in it as it happens: the answers drop, the
//! errors and the questions asked again come, and the rate comes back.
//!
//! Each load thread counts the interval it is in with no lock (its
//! [`Counter`]), and hands that interval to its own [`Series`], behind a
//! mutex, once the interval is over (the thread's loop looks at least
//! every few milliseconds): one lock per interval, not per answer. The
//! main thread takes the same mutex once per interval to print the
//! interval that just ended; the report's series is all of them merged at
//! the end.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

use super::tally;
use crate::report::{Interval, IntervalShare};

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
        if let Some(theirs) = other.latency.as_ref().filter(|h| !h.is_empty()) {
            let mine = self.latency.get_or_insert_with(histogram);
            let _ = mine.add(theirs);
        }
    }

    /// Zero again, its histogram's memory kept for the next interval.
    fn clear(&mut self) {
        self.answers = 0;
        self.errors = 0;
        self.reasked = 0;
        if let Some(latency) = &mut self.latency {
            latency.reset();
        }
    }

    fn p99_us(&self) -> Option<f64> {
        let latency = self.latency.as_ref().filter(|h| !h.is_empty())?;
        Some(latency.value_at_quantile(0.99) as f64 / 1000.0)
    }
}

/// Latencies of one interval of one target: as a target's own histogram
/// (only the p99 is reported).
fn histogram() -> Histogram<u64> {
    tally::histogram(tally::TARGET_HISTOGRAM_DIGITS)
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

    /// The cell of `target` in interval `i`. A new interval makes its
    /// cells (an allocation once per interval, not per answer).
    fn cell(&mut self, i: usize, target: usize) -> &mut Cell {
        if self.cells.len() <= i {
            self.cells.resize_with(i + 1, Vec::new);
        }
        let row = &mut self.cells[i];
        if row.len() <= target {
            row.resize_with(target + 1, Cell::new);
        }
        &mut row[target]
    }

    /// The intervals counted so far.
    fn len(&self) -> usize {
        self.cells.len()
    }
}

/// A load thread's counts of the interval it is in, kept with no lock and
/// handed to its shared [`Series`] in one lock when the interval changes
/// (or the run ends).
pub(crate) struct Counter {
    shared: Shared,
    origin: u64,
    interval: u64,
    /// The interval `row` counts.
    current: usize,
    /// `row[target]`.
    row: Vec<Cell>,
    /// Whether `row` holds anything not handed over yet.
    counted: bool,
}

impl Counter {
    /// Counts into `shared`.
    pub(crate) fn new(shared: Shared) -> Self {
        let (origin, interval) = {
            let series = lock(&shared);
            (series.origin, series.interval)
        };
        Self {
            shared,
            origin,
            interval,
            current: 0,
            row: Vec::new(),
            counted: false,
        }
    }

    /// The cell of `target` at `now`, handing over the interval before
    /// if `now` is in another.
    fn cell(&mut self, target: usize, now: u64) -> &mut Cell {
        self.turn(now);
        self.counted = true;
        if self.row.len() <= target {
            self.row.resize_with(target + 1, Cell::new);
        }
        &mut self.row[target]
    }

    /// Called as time goes by (each turn of the thread's loop): once `now`
    /// is in another interval, the one counted so far is handed over.
    pub(crate) fn turn(&mut self, now: u64) {
        let i = usize::try_from(now.saturating_sub(self.origin) / self.interval).unwrap_or(0);
        if i != self.current {
            self.hand_over();
            self.current = i;
        }
    }

    /// Adds the interval counted so far to the shared series, in one lock.
    pub(crate) fn hand_over(&mut self) {
        if !self.counted {
            return;
        }
        let mut series = lock(&self.shared);
        for (target, cell) in self.row.iter_mut().enumerate() {
            series.cell(self.current, target).add(cell);
            cell.clear();
        }
        self.counted = false;
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

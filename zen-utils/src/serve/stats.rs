//! Counters shared by a server's threads, and the one-line summary.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a server counts while it runs. Each counter is a relaxed atomic:
/// no thread ever waits on another to count, and nothing reads them until
/// the summary.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    connections: AtomicU64,
    answered: AtomicU64,
    errors: AtomicU64,
    dropped: AtomicU64,
}

/// The server's totals, printed to stderr as one line when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Connections accepted, including the ones turned away as busy.
    pub connections: u64,
    /// Answers sent for complete questions, error answers included.
    pub answered: u64,
    /// Error answers sent (unknown aphorism, request too long, server busy,
    /// idle timeout) plus connections that failed with an I/O error.
    pub errors: u64,
    /// Questions received and never answered: incomplete ones when the
    /// client closed or the server shut down, and complete ones whose
    /// answers the end of the shutdown grace cut short.
    pub dropped: u64,
    /// How long the server ran.
    pub uptime: Duration,
}

/// Connections accepted and connections open in this process, across
/// every [`Stats`]: what `--exit-idle` watches, from outside the model
/// that serves them. A binary runs one server, so the process's count is
/// the server's.
static ACCEPTED: AtomicU64 = AtomicU64::new(0);
static OPEN: AtomicI64 = AtomicI64::new(0);

/// This process's connections so far: (accepted, open now).
pub fn process_connections() -> (u64, i64) {
    (
        ACCEPTED.load(Ordering::Relaxed),
        OPEN.load(Ordering::Relaxed),
    )
}

impl Stats {
    /// Counters at zero; uptime starts now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            connections: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Counts one accepted connection, open until [`closed`](Self::closed).
    pub fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        OPEN.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection counted by [`connection`](Self::connection) is closed
    /// (its end recorded, or turned away).
    pub fn closed(&self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts `answers` answers, of which `errors` were error answers.
    /// Servers count a whole batch at once, not each answer.
    pub fn answered(&self, answers: u64, errors: u64) {
        if answers > 0 {
            self.answered.fetch_add(answers, Ordering::Relaxed);
        }
        self.error(errors);
    }

    /// Counts `errors` errors that were not answers to questions.
    pub fn error(&self, errors: u64) {
        if errors > 0 {
            self.errors.fetch_add(errors, Ordering::Relaxed);
        }
    }

    /// Counts `questions` questions dropped unanswered at close.
    pub fn dropped(&self, questions: u64) {
        if questions > 0 {
            self.dropped.fetch_add(questions, Ordering::Relaxed);
        }
    }

    /// The totals so far.
    pub fn summary(&self) -> Summary {
        Summary {
            connections: self.connections.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            uptime: self.started.elapsed(),
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Summary {
    /// Adds `other`'s counts to these (the uptime is the longer one): a
    /// supervisor's total over its workers.
    pub fn add(&mut self, other: &Self) {
        self.connections += other.connections;
        self.answered += other.answered;
        self.errors += other.errors;
        self.dropped += other.dropped;
        self.uptime = self.uptime.max(other.uptime);
    }
}

/// A line that is not a [`Summary`] as its `Display` writes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a summary line: {0:?}")]
pub struct NotASummary(String);

impl std::str::FromStr for Summary {
    type Err = NotASummary;

    /// Reads back the line that `Display` writes (how a worker process
    /// reports its summary to its supervisor).
    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let fail = || NotASummary(line.to_owned());
        let rest = line.trim().strip_prefix("summary: ").ok_or_else(fail)?;
        let mut fields = rest.split(", ");
        let mut count = |unit: &str| -> Result<u64, NotASummary> {
            let field = fields.next().ok_or_else(fail)?;
            let number = field.strip_suffix(unit).ok_or_else(fail)?;
            number.parse().map_err(|_| fail())
        };
        let connections = count(" connections")?;
        let answered = count(" questions answered")?;
        let errors = count(" errors")?;
        let dropped = count(" questions dropped")?;
        let uptime = fields
            .next()
            .and_then(|field| field.strip_prefix("uptime "))
            .and_then(|field| field.strip_suffix('s'))
            .and_then(|secs| secs.parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .ok_or_else(fail)?;
        Ok(Self {
            connections,
            answered,
            errors,
            dropped,
            uptime: Duration::from_secs_f64(uptime),
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "summary: {} connections, {} questions answered, {} errors, \
             {} questions dropped, uptime {:.1}s",
            self.connections,
            self.answered,
            self.errors,
            self.dropped,
            self.uptime.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_summarises_in_one_line() {
        let stats = Stats::new();
        stats.connection();
        stats.connection();
        stats.answered(5, 1);
        stats.error(1);
        stats.dropped(1);
        let summary = stats.summary();
        assert_eq!(
            (summary.connections, summary.answered, summary.errors),
            (2, 5, 2)
        );
        let line = summary.to_string();
        assert!(line.starts_with(
            "summary: 2 connections, 5 questions answered, 2 errors, \
             1 questions dropped, uptime "
        ));
        assert!(!line.contains('\n'));
    }

    #[test]
    fn a_summary_reads_back_as_it_is_written_and_adds_up() {
        let one = Summary {
            connections: 3,
            answered: 1_000_000,
            errors: 2,
            dropped: 1,
            uptime: Duration::from_millis(1500),
        };
        let read: Summary = one.to_string().parse().unwrap();
        assert_eq!(read, one);
        let mut total = Summary::default();
        total.add(&read);
        total.add(&read);
        assert_eq!(
            (
                total.connections,
                total.answered,
                total.errors,
                total.dropped
            ),
            (6, 2_000_000, 4, 2)
        );
        for bad in ["", "summary: 3 connections", "summary: x connections, 1 questions answered, 0 errors, 0 questions dropped, uptime 1.0s", "summary: 1 connections, 1 questions answered, 0 errors, 0 questions dropped, uptime -1s"] {
            assert!(bad.parse::<Summary>().is_err(), "{bad:?}");
        }
    }
}

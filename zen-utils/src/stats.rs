//! Counters shared by a server's threads, and the one-line summary.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// Counts one accepted connection.
    pub fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
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
}

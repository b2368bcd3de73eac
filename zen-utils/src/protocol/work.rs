//! `--work KIND:DUR`: the simulated work of answering a question.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::duration::{format_duration, parse_duration, DurationError};
use crate::serve::shutdown::{Shutdown, TICK};

/// The simulated work of answering one question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    /// How the work is done.
    pub kind: WorkKind,
    /// How long it takes.
    pub duration: Duration,
}

/// The three kinds of work of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkKind {
    /// Waiting on something slow outside the server, each model its own
    /// way: a sleeping thread, a timer in the poll loop, an async sleep.
    Wait,
    /// Computation: a busy loop on the thread that serves the connection.
    Cpu,
    /// A blocking `std::thread::sleep` on the serving thread in every
    /// model, event loops included: the classic mistake, kept to measure it.
    Block,
}

/// A `--work` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WorkError {
    /// Not `KIND:DUR` with a known kind and a `DUR` that parses.
    #[error("invalid work `{0}`: expected wait:DUR, cpu:DUR or block:DUR, e.g. wait:10ms")]
    Invalid(String),
    /// A `DUR` longer than [`crate::duration::MAX_DURATION`].
    #[error(transparent)]
    TooLong(DurationError),
}

impl Work {
    /// Does this work on the calling thread, the way a thread-per-connection
    /// server does it (and an event loop does `cpu` and `block`): `wait`
    /// and `block` sleep, `cpu` spins. Returns whether the work was done:
    /// `false` when the shutdown grace ended first and cut it short (the
    /// answer is then dropped). `wait` sleeps a [`TICK`] at a time and
    /// `cpu` looks at the clock as it spins, so either stops at the
    /// deadline; `block` cannot be cut short, since that is its lesson: a
    /// thread blocked in a sleep hears nothing.
    pub fn run_within(self, shutdown: &Shutdown) -> bool {
        if self.kind == WorkKind::Block {
            std::thread::sleep(self.duration);
            return true;
        }
        let end = Instant::now() + self.duration;
        loop {
            let now = Instant::now();
            if now >= end {
                return true;
            }
            if shutdown.grace_over(now) {
                return false;
            }
            if self.kind == WorkKind::Wait {
                let mut nap = (end - now).min(TICK);
                if let Some(deadline) = shutdown.grace_deadline() {
                    nap = nap.min(deadline - now);
                }
                std::thread::sleep(nap);
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

impl FromStr for Work {
    type Err = WorkError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || WorkError::Invalid(text.to_owned());
        let (kind, duration) = text.split_once(':').ok_or_else(error)?;
        let kind = match kind {
            "wait" => WorkKind::Wait,
            "cpu" => WorkKind::Cpu,
            "block" => WorkKind::Block,
            _ => return Err(error()),
        };
        let duration = parse_duration(duration).map_err(|reason| match reason {
            DurationError::TooLong(_) => WorkError::TooLong(reason),
            DurationError::Invalid(_) => error(),
        })?;
        Ok(Self { kind, duration })
    }
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            WorkKind::Wait => "wait",
            WorkKind::Cpu => "cpu",
            WorkKind::Block => "block",
        };
        write!(f, "{kind}:{}", format_duration(self.duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        let work: Work = "wait:10ms".parse().unwrap();
        assert_eq!(
            work,
            Work {
                kind: WorkKind::Wait,
                duration: Duration::from_millis(10)
            }
        );
        assert_eq!("cpu:200us".parse::<Work>().unwrap().kind, WorkKind::Cpu);
        assert_eq!("block:1s".parse::<Work>().unwrap().to_string(), "block:1s");
        for bad in ["wait", "wait:", "sleep:1s", "cpu:fast", ":1s"] {
            assert_eq!(bad.parse::<Work>(), Err(WorkError::Invalid(bad.to_owned())));
        }
    }

    #[test]
    fn a_duration_too_long_says_so() {
        let error = "wait:10000000000000000000s".parse::<Work>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "duration `10000000000000000000s` is too long: at most a year (525600m)"
        );
    }

    #[test]
    fn the_end_of_the_grace_cuts_wait_and_cpu_short() {
        let long = |kind| Work {
            kind,
            duration: Duration::from_secs(3600),
        };
        let shutdown = Shutdown::new();
        shutdown.trigger();
        // Triggered long enough ago: the grace is over.
        let over = shutdown.grace_deadline().unwrap();
        while Instant::now() < over {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!long(WorkKind::Wait).run_within(&shutdown));
        assert!(!long(WorkKind::Cpu).run_within(&shutdown));
        let short = Work {
            kind: WorkKind::Wait,
            duration: Duration::from_millis(1),
        };
        assert!(short.run_within(&Shutdown::new()));
    }

    #[test]
    fn work_takes_at_least_its_duration() {
        for kind in [WorkKind::Wait, WorkKind::Cpu, WorkKind::Block] {
            let work = Work {
                kind,
                duration: Duration::from_millis(2),
            };
            let start = Instant::now();
            assert!(work.run_within(&Shutdown::new()));
            assert!(start.elapsed() >= Duration::from_millis(2), "{kind:?}");
        }
    }
}

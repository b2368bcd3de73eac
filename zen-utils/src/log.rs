//! Logs on stderr that can never stop a server or the client.
//!
//! The servers log through `tracing`: connections at `debug` (shown with
//! `-v`), start, warnings and the summary at `info` and `warn` (shown by
//! default), errors at `error` (shown even with `-q`). [`init`] installs
//! the one subscriber, which prints each line as it is, with no time,
//! level or target, so that the lines read as the book's servers print.
//!
//! A log line that cannot be written is dropped. `eprintln!` panics when
//! stderr cannot be written (a pipe whose reader has gone, as in `server
//! 2>&1 | head -3`), and so does `tracing-subscriber` when its writer
//! fails (it reports the failure with `eprintln!`): the subscriber's
//! writer, [`BestEffortStderr`], swallows the failure instead. A log line
//! is never worth a server. [`log_line!`](crate::log_line) is the same
//! promise for the few lines written before the subscriber or without it
//! (the client's).

use std::fmt;
use std::io::{self, Write};

use tracing::level_filters::LevelFilter;

use crate::Verbosity;

/// Installs the process's logger at the level of `verbosity`. Called once,
/// first thing in a server's `main`; a second call changes nothing.
pub fn init(verbosity: Verbosity) {
    let level = match verbosity {
        Verbosity::Quiet => LevelFilter::ERROR,
        Verbosity::Normal => LevelFilter::INFO,
        Verbosity::Verbose => LevelFilter::DEBUG,
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(|| BestEffortStderr)
        .with_max_level(level)
        .without_time()
        .with_target(false)
        .with_level(false)
        .try_init();
}

/// Stderr, where a failed write is dropped, not reported: the subscriber's
/// writer. The subscriber formats each line whole and writes it with one
/// `write_all`, and stderr is unbuffered, so the lines of different
/// threads do not mix.
pub struct BestEffortStderr;

impl Write for BestEffortStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes one line to stderr, whole; a line that cannot be written is
/// dropped.
pub fn line(args: fmt::Arguments<'_>) {
    // Formatted first, so that it leaves in one write.
    let _ = BestEffortStderr.write_all(format!("{args}\n").as_bytes());
}

/// `eprintln!` that never panics: a line that cannot be written is
/// dropped. Takes what `format!` takes.
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {
        $crate::log::line(::std::format_args!($($arg)*))
    };
}

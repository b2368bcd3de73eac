//! Logs on stderr (or in `--log-file`) that can never stop a server or the
//! client.
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
//! writer, [`BestEffortLog`], swallows the failure instead. A log line
//! is never worth a server. [`log_line!`](crate::log_line) is the same
//! promise for the few lines written before the subscriber or without it
//! (the client's).

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::Verbosity;

/// The `--log-file`, once opened: every log line goes there instead of
/// stderr.
static LOG_FILE: OnceLock<File> = OnceLock::new();

/// Installs the process's logger at the level of `verbosity`, writing to
/// `file` (opened for appending) if given, else to stderr. Called once,
/// first thing in a server's `main`; a second call changes nothing.
pub fn init(verbosity: Verbosity, file: Option<File>) {
    if let Some(file) = file {
        let _ = LOG_FILE.set(file);
    }
    let level = match verbosity {
        Verbosity::Quiet => LevelFilter::ERROR,
        Verbosity::Normal => LevelFilter::INFO,
        Verbosity::Verbose => LevelFilter::DEBUG,
    };
    // The registry's ZooKeeper client logs its protocol at `debug`: only
    // its warnings and errors are the server's business.
    let filter = Targets::new()
        .with_default(level)
        .with_target("zookeeper_client", level.min(LevelFilter::WARN));
    let _ = tracing_subscriber::fmt()
        .with_writer(|| BestEffortLog)
        .with_max_level(level)
        .without_time()
        .with_target(false)
        .with_level(false)
        .finish()
        .with(filter)
        .try_init();
}

/// Stderr (or the `--log-file`), where a failed write is dropped, not
/// reported: the subscriber's writer. The subscriber formats each line whole and writes it with one
/// `write_all`, and stderr is unbuffered, so the lines of different
/// threads do not mix.
pub struct BestEffortLog;

impl Write for BestEffortLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = match LOG_FILE.get() {
            Some(mut file) => file.write_all(buf),
            None => io::stderr().write_all(buf),
        };
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
    let _ = BestEffortLog.write_all(format!("{args}\n").as_bytes());
}

/// `eprintln!` that never panics: a line that cannot be written is
/// dropped. Takes what `format!` takes.
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {
        $crate::serve::log::line(::std::format_args!($($arg)*))
    };
}

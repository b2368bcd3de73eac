//! Log lines on stderr that can never stop a server or the client.
//!
//! `eprintln!` panics when stderr cannot be written: a pipe whose reader
//! has gone (`server 2>&1 | head -3`), a full disk. A log line is never
//! worth a server: [`log_line!`](crate::log_line) writes the line or,
//! failing that, drops it.

use std::fmt;
use std::io::{self, Write as _};

/// Writes one line to stderr, whole (stderr is unbuffered: one `write`
/// per line from a locked handle, so lines of different threads do not
/// mix); a line that cannot be written is dropped.
pub fn line(args: fmt::Arguments<'_>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_fmt(format_args!("{args}\n"));
}

/// `eprintln!` that never panics: a line that cannot be written is
/// dropped. Takes what `format!` takes.
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {
        $crate::log::line(::std::format_args!($($arg)*))
    };
}

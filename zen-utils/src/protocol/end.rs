//! How a connection ended: counted and logged the same way by every server.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::Stats;

/// What a connection still held, unanswered, when it ended: counted as
/// dropped, so that nothing is lost without a trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leftover {
    /// Bytes of a question begun and not ended.
    pub partial: usize,
    /// Complete questions never answered: the shutdown grace ran out while
    /// their answers were still being worked on or waited for.
    pub unanswered: u64,
}

/// What a write to a client that does not read was cut short by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// The idle timeout: no question completed, and no answer left, for
    /// `--idle-timeout`.
    IdleTimeout,
    /// The end of the shutdown grace.
    Shutdown,
}

/// Why a connection ended.
#[derive(Debug)]
pub enum End {
    /// The client closed its side, and every complete question was answered.
    ClientClosed,
    /// `--max-request` bytes arrived with no `?`.
    TooLong,
    /// No question completed for `--idle-timeout`.
    IdleTimeout,
    /// The server is shutting down.
    Shutdown,
    /// The client did not read its answers in time: the server, unable to
    /// write them, gave up at the idle deadline or at the end of the
    /// shutdown grace. An error, as a failure is.
    Unread(Stall),
    /// A read or write failed (a reset, say). A client that did not read
    /// its answers in time is [`Unread`](Self::Unread).
    Failed(io::Error),
}

impl End {
    /// Counts this end in `stats` and logs it at `-v`: an I/O failure is an
    /// error, and so is the last word of a request too long or an idle
    /// timeout (`Error: request too long.`, `Error: idle timeout.`, sent
    /// just before, best effort); complete questions left unanswered are
    /// dropped questions, and
    /// so is a partial question when the client closed or the server shut
    /// down (after a limit or a failure, the stream was broken anyway).
    pub fn record(&self, peer: SocketAddr, left: Leftover, stats: &Stats) {
        stats.closed();
        let partial_dropped =
            left.partial > 0 && matches!(self, Self::ClientClosed | Self::Shutdown);
        stats.dropped(left.unanswered + u64::from(partial_dropped));
        if let Self::Failed(_) | Self::Unread(_) | Self::TooLong | Self::IdleTimeout = self {
            stats.error(1);
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let mut dropped = String::new();
            if left.unanswered > 0 {
                dropped = format!(", dropped {} unanswered questions", left.unanswered);
            }
            if partial_dropped {
                dropped += &format!(", dropped an incomplete question of {} bytes", left.partial);
            }
            tracing::debug!("connection from {peer} closed: {self}{dropped}");
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientClosed => f.write_str("client closed"),
            Self::TooLong => f.write_str("request too long"),
            Self::IdleTimeout => f.write_str("idle timeout"),
            Self::Shutdown => f.write_str("server shutting down"),
            Self::Unread(Stall::IdleTimeout) => {
                f.write_str("error: the client did not read its answers for the idle timeout")
            }
            Self::Unread(Stall::Shutdown) => {
                f.write_str("error: the client did not read its answers before shutdown")
            }
            Self::Failed(error) => write!(f, "error: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_dropped_questions_and_failures() {
        let stats = Stats::new();
        let peer = "127.0.0.1:9".parse().unwrap();
        let partial = |partial| Leftover {
            partial,
            unanswered: 0,
        };
        End::ClientClosed.record(peer, partial(5), &stats);
        End::ClientClosed.record(peer, partial(0), &stats);
        End::TooLong.record(peer, partial(5), &stats);
        let cut = Leftover {
            partial: 5,
            unanswered: 3,
        };
        End::Shutdown.record(peer, cut, &stats);
        End::Failed(io::ErrorKind::ConnectionReset.into()).record(peer, partial(0), &stats);
        End::Unread(Stall::Shutdown).record(peer, partial(0), &stats);
        let summary = stats.summary();
        assert_eq!((summary.dropped, summary.errors), (5, 3));
        assert_eq!(End::IdleTimeout.to_string(), "idle timeout");
    }
}

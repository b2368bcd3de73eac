//! How a connection ended: counted and logged the same way by every server.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::{Config, Stats};

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
    /// A read or write failed (a reset, say), or the client did not read its
    /// answers in time.
    Failed(io::Error),
}

impl End {
    /// Counts this end in `stats` and logs it at `-v`: an I/O failure is an
    /// error, and `partial` bytes of a question left when the client closed
    /// are a dropped question.
    pub fn record(&self, peer: SocketAddr, partial: usize, config: &Config, stats: &Stats) {
        match self {
            Self::ClientClosed if partial > 0 => stats.dropped(),
            Self::Failed(_) => stats.error(1),
            _ => {}
        }
        if config.log_connections() {
            let dropped = if partial > 0 {
                format!(", dropped an incomplete question of {partial} bytes")
            } else {
                String::new()
            };
            crate::log_line!("connection from {peer} closed: {self}{dropped}");
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
        let config = Config {
            verbosity: crate::Verbosity::Quiet,
            ..Config::default()
        };
        let peer = "127.0.0.1:9".parse().unwrap();
        End::ClientClosed.record(peer, 5, &config, &stats);
        End::ClientClosed.record(peer, 0, &config, &stats);
        End::Shutdown.record(peer, 5, &config, &stats);
        End::Failed(io::ErrorKind::ConnectionReset.into()).record(peer, 0, &config, &stats);
        let summary = stats.summary();
        assert_eq!((summary.dropped, summary.errors), (1, 1));
        assert_eq!(End::IdleTimeout.to_string(), "idle timeout");
    }
}

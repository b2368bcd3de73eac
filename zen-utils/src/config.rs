//! The command-line flags every server shares (the contract of docs/protocol.md), and the
//! configuration they produce.

use std::fmt;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use thiserror::Error;

use crate::duration::{format_duration, parse_duration, positive_duration};
use crate::protocol::work::Work;
use crate::serve::listener;

/// The book's port.
pub const DEFAULT_PORT: u16 = 1060;
/// Enough for the C10K experiment's 10,000 idle connections plus busy ones;
/// the file-descriptor limit is raised at start so that they fit.
pub const DEFAULT_MAX_CONNS: usize = 20_000;
/// The protocol's default bound on one question.
pub const DEFAULT_MAX_REQUEST: usize = 1024;
/// The largest `--max-request`: 16 MiB, far beyond any question, and small
/// enough that a connection's buffer (which grows up to it) is never an
/// allocation the machine cannot make.
pub const MAX_MAX_REQUEST: usize = 16 * 1024 * 1024;
/// The protocol's default idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Deep enough for the C10K experiment's 10,000 connections arriving at
/// once: with 1,024, a thread-per-connection server that starts threads
/// more slowly than clients connect overflowed its accept queue. Linux caps
/// it at `net.core.somaxconn` (4,096 by default).
pub const DEFAULT_BACKLOG: i32 = 4096;

/// The most worker processes `--processes` starts.
pub const MAX_PROCESSES: u16 = 256;

/// The flags of the protocol's command-line contract; each server flattens them
/// into its own command with `#[command(flatten)]`.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to listen on: an IP address or a host name
    #[arg(default_value = "127.0.0.1")]
    pub host: String,

    /// TCP port to listen on; 0 asks the OS for a free one
    #[arg(short, long, default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Most connections served at once; one more is answered
    /// "Error: server busy." and closed
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNS,
          value_parser = parse_positive)]
    pub max_conns: usize,

    /// Close a connection when no question completed for this long
    /// (e.g. 500ms, 60s; 0 turns it off)
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Longest question in bytes, `?` included (at most 16777216); a
    /// longer one is answered "Error: request too long." and the
    /// connection closes
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_REQUEST,
          value_parser = parse_max_request)]
    pub max_request: usize,

    /// Simulated work per answer: wait:DUR (a slow backend, waited the
    /// model's way), cpu:DUR (a busy loop) or block:DUR (a blocking sleep,
    /// even in an event loop)
    #[arg(long, value_name = "KIND:DUR")]
    pub work: Option<Work>,

    /// Length of the kernel's queue of connections not yet accepted
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BACKLOG)]
    pub backlog: i32,

    /// Log every connection (accepted, closed, errors)
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Log only errors
    #[arg(short, long)]
    pub quiet: bool,

    /// Started by inetd: fd 0 is a connection (nowait: serve it, then
    /// exit) or a listener (wait: serve it until --exit-idle). Nothing is
    /// written to fds 1 and 2, which are the client's socket
    #[arg(long, help_heading = "Started by someone else")]
    pub inetd: bool,

    /// Under --inetd wait, exit once no connection has been open for this
    /// long
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration,
          requires = "inetd", help_heading = "Started by someone else")]
    pub exit_idle: Duration,

    /// Append logs and the summary to this file instead of stderr (under
    /// --inetd, without it, they are dropped)
    #[arg(long, value_name = "PATH", help_heading = "Started by someone else")]
    pub log_file: Option<PathBuf>,

    /// Run as a supervisor of N worker processes of this server, which
    /// share its listener; 1: no supervisor (at most 256)
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=MAX_PROCESSES as i64),
          conflicts_with = "inetd", help_heading = "Started by someone else")]
    pub processes: u16,

    /// Know only the aphorisms at positions K, K+N, K+2N... of the table
    /// (1-based); ask --peer about the others
    #[arg(long, value_name = "K/N", default_value = "1/1",
          value_parser = crate::protocol::peers::parse_part, help_heading = "Servers that ask servers")]
    pub table_part: (usize, usize),

    /// A server to ask about a question this one does not know
    /// (repeatable; asked in order; the only servers it ever connects to)
    #[arg(
        long,
        value_name = "IP:PORT",
        help_heading = "Servers that ask servers"
    )]
    pub peer: Vec<SocketAddr>,

    /// Forward a question only while its history, this server added, is
    /// shorter than this
    #[arg(long, value_name = "N", default_value_t = crate::protocol::peers::DEFAULT_MAX_HOPS,
          value_parser = parse_hops,
          help_heading = "Servers that ask servers")]
    pub max_hops: usize,

    /// How long one peer may take to connect and answer
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = positive_duration,
          help_heading = "Servers that ask servers")]
    pub peer_timeout: Duration,

    /// Register in ZooKeeper once listening (an ephemeral znode under
    /// PATH, deleted at shutdown): zk://HOST:PORT[,HOST:PORT...]/PATH
    #[arg(long, value_name = "URL", help_heading = "Found through a registry")]
    pub register: Option<crate::deploy::registry::RegistryUrl>,

    /// The address others reach this server at: what --register registers
    /// and what a forwarded question's history names it by (default: the
    /// bound one; needed with either when bound to 0.0.0.0 or ::)
    #[arg(
        long,
        value_name = "IP:PORT",
        help_heading = "Found through a registry"
    )]
    pub advertise: Option<SocketAddr>,

    /// Authenticate to ZooKeeper with its digest scheme, USER:PASSWORD:
    /// the znode (and the path made for it) then lets only this user
    /// write it, and anyone read it. Without it, znodes are open to all
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        value_parser = crate::deploy::registry::AuthParser,
        requires = "register",
        help_heading = "Found through a registry"
    )]
    pub registry_auth: Option<crate::deploy::registry::RegistryAuth>,

    /// With --register: how often the server asks itself a question over
    /// loopback, each ask bounded by it; 0 turns the probe off
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration,
          help_heading = "Found through a registry")]
    pub health_interval: Duration,

    /// With --register: the misses in a row after which the server leaves
    /// the registry (it registers again once it answers)
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=1000),
          help_heading = "Found through a registry")]
    pub health_fails: u32,
}

/// What a server needs to know besides its listener: the parsed limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most connections open at once.
    pub max_conns: usize,
    /// How long a connection may go without completing a question; `None` is forever.
    pub idle_timeout: Option<Duration>,
    /// Longest question in bytes.
    pub max_request: usize,
    /// Simulated work per answer.
    pub work: Option<Work>,
    /// How much to log.
    pub verbosity: Verbosity,
    /// What part of the table it knows and which peers it may ask.
    pub peers: crate::protocol::peers::PeerConfig,
    /// Helper threads for `--work cpu|block` (`--offload`, the event-driven
    /// servers only); 0: the work runs on the thread that serves the
    /// connection.
    pub offload: usize,
}

/// How much a server logs to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// `-q`: errors only.
    Quiet,
    /// The default: start, warnings and the summary.
    Normal,
    /// `-v`: every connection too.
    Verbose,
}

/// Why a server could not start listening.
#[derive(Debug, Error)]
pub enum BindError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The name as given.
        host: String,
        /// What the resolver said.
        source: std::io::Error,
    },
    /// The socket could not be bound or could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address tried.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl ServerArgs {
    /// The limits these flags set.
    pub fn config(&self) -> Config {
        Config {
            max_conns: self.max_conns,
            idle_timeout: Some(self.idle_timeout).filter(|timeout| !timeout.is_zero()),
            max_request: self.max_request,
            work: self.work,
            verbosity: match (self.verbose, self.quiet) {
                (true, _) => Verbosity::Verbose,
                (_, true) => Verbosity::Quiet,
                _ => Verbosity::Normal,
            },
            peers: crate::protocol::peers::PeerConfig {
                part: self.table_part,
                peers: self.peer.clone(),
                max_hops: self.max_hops,
                timeout: self.peer_timeout,
                // Known once bound: the shared main fills it in.
                me: self.advertise,
            },
            // A flag of the event-driven servers only: they set it.
            offload: 0,
        }
    }

    /// Resolves `HOST` and binds a listener on the first address found.
    ///
    /// `reuse_port` lets several listeners share the port (srv-hybrid's
    /// per-core runtimes); each server binds once, without it, first.
    pub fn bind(&self, reuse_port: bool) -> Result<TcpListener, BindError> {
        let addr = self.addr()?;
        listener::bind(addr, self.backlog, reuse_port)
            .map_err(|source| BindError::Listen { addr, source })
    }

    /// `HOST:PORT` resolved to the first address found.
    pub fn addr(&self) -> Result<SocketAddr, BindError> {
        let resolve_error = |source| BindError::Resolve {
            host: self.host.clone(),
            source,
        };
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(resolve_error)?
            .next()
            .ok_or_else(|| resolve_error(std::io::ErrorKind::NotFound.into()))
    }
}

impl Default for Config {
    /// The limits a server has when started with no flags.
    fn default() -> Self {
        Self {
            max_conns: DEFAULT_MAX_CONNS,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_request: DEFAULT_MAX_REQUEST,
            work: None,
            verbosity: Verbosity::Normal,
            peers: crate::protocol::peers::PeerConfig::default(),
            offload: 0,
        }
    }
}

/// `--offload N`: the flag of the event-driven servers (srv-poll,
/// srv-async, srv-hybrid), flattened into their commands.
#[derive(Args, Debug, Clone, Copy)]
pub struct OffloadArgs {
    /// Run --work cpu and block on N helper threads (at most 1024), so
    /// that the event loop serves everyone else meanwhile; 0 runs them on
    /// the loop's own thread, which blocks every client of that thread
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = parse_offload)]
    pub offload: usize,
}

impl OffloadArgs {
    /// `config` with these helpers.
    pub fn apply(self, mut config: Config) -> Config {
        config.offload = self.offload;
        config
    }
}

/// `--offload`: from 0 to [`crate::serve::offload::MAX_OFFLOAD`].
pub fn parse_offload(text: &str) -> Result<usize, String> {
    let helpers: usize = text.parse().map_err(|error| format!("{error}"))?;
    if helpers > crate::serve::offload::MAX_OFFLOAD {
        return Err(format!(
            "must be at most {}",
            crate::serve::offload::MAX_OFFLOAD
        ));
    }
    Ok(helpers)
}

/// `--max-hops`: 1 to 64.
fn parse_hops(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(hops @ 1..=64) => Ok(hops),
        _ => Err("expected a number of hops from 1 to 64".to_owned()),
    }
}

fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(error) => Err(error.to_string()),
    }
}

/// `--max-request`: from 1 to [`MAX_MAX_REQUEST`].
fn parse_max_request(text: &str) -> Result<usize, String> {
    match parse_positive(text)? {
        n if n > MAX_MAX_REQUEST => Err(format!("must be at most {MAX_MAX_REQUEST} (16 MiB)")),
        n => Ok(n),
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idle = self
            .idle_timeout
            .map_or_else(|| "off".to_owned(), format_duration);
        write!(
            f,
            "max-conns {}, idle-timeout {idle}, max-request {}",
            self.max_conns, self.max_request
        )?;
        if let Some(work) = self.work {
            write!(f, ", work {work}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_spec() {
        let cli = Cli::try_parse_from(["srv"]).unwrap();
        assert_eq!(cli.server.host, "127.0.0.1");
        assert_eq!(cli.server.port, 1060);
        assert_eq!(cli.server.config(), Config::default());
    }

    #[test]
    fn zero_idle_timeout_turns_it_off() {
        let cli = Cli::try_parse_from(["srv", "--idle-timeout", "0", "-v"]).unwrap();
        let config = cli.server.config();
        assert_eq!(config.idle_timeout, None);
        assert_eq!(config.verbosity, Verbosity::Verbose);
    }

    #[test]
    fn rejects_bad_flags() {
        for args in [
            &["srv", "--max-conns", "0"][..],
            &["srv", "--max-request", "0"],
            &["srv", "--max-request", "16777217"],
            &["srv", "--max-request", "18446744073709551615"],
            &["srv", "--idle-timeout", "60"],
            &["srv", "--work", "sleep:1s"],
            &["srv", "-v", "-q"],
            &["srv", "-p", "70000"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} should fail");
        }
    }
}

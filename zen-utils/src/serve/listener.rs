//! Listener setup with socket2, and what to do when `accept` fails.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::protocol::SERVER_BUSY;
use crate::{Config, Stats};

/// How long to pause accepting after the process ran out of file
/// descriptors. Long enough that the loop does not spin the CPU while
/// nothing can change, short enough that a freed descriptor is used soon.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The most often a server warns that `accept` keeps failing for lack of
/// descriptors or memory. Such an episode fails every accept for as long as
/// it lasts, once per [`ACCEPT_BACKOFF`] and accepting thread: 20 lines a
/// second, 1,280 with srv-threaded's 64 workers. The first failure is
/// logged at once; after it, one line per interval says how many more came,
/// which tells the episode as well without burying every other line.
pub const ACCEPT_WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// Binds a TCP listener on `addr` with `SO_REUSEADDR` (a restarted server
/// may reuse the port while old connections linger in TIME_WAIT) and, if
/// asked, `SO_REUSEPORT` (several listeners share the port and the kernel
/// spreads connections across them).
pub fn bind(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Prepares an accepted connection: `TCP_NODELAY`, because answers are a
/// few bytes each and must not wait for Nagle's algorithm to batch them.
/// It takes any socket (std, tokio, ...), so that every model prepares its
/// connections alike.
pub fn prepare_accepted(stream: &impl AsFd) -> io::Result<()> {
    SockRef::from(stream).set_nodelay(true)
}

/// Turns a connection away at `--max-conns`, the same way in every model:
/// one `Error: server busy.` sent without blocking (a fresh socket's send
/// buffer is empty, so the send takes the whole answer, or fails because
/// the client is gone: best effort either way), counted as an error and
/// logged at `-v`. The caller then drops the connection.
pub fn turn_away(stream: &impl AsFd, peer: SocketAddr, config: &Config, stats: &Stats) {
    stats.error(1);
    stats.closed();
    let _ = SockRef::from(stream).send_with_flags(SERVER_BUSY, libc::MSG_DONTWAIT);
    tracing::debug!(
        "connection from {peer} turned away: server busy ({} open)",
        config.max_conns
    );
}

/// Waits at most `patience` for a connection to accept on `listener`,
/// for a blocking server whose listener turned out non-blocking: one
/// handed down by systemd (`NonBlocking=yes`) or shared with event-loop
/// workers. Its `accept` then returns `WouldBlock` at once, and without
/// this wait the accept loop would spin.
pub fn wait_for_connection(listener: &impl AsFd, patience: Duration) {
    ready_within(listener, rustix::event::PollFlags::IN, patience);
}

/// Whether `socket` became ready for `flags` (or failed) within `wait`:
/// one `poll`, for a thread that blocks.
pub(crate) fn ready_within(
    socket: &impl AsFd,
    flags: rustix::event::PollFlags,
    wait: Duration,
) -> bool {
    let mut fds = [rustix::event::PollFd::new(socket, flags)];
    let timeout = rustix::time::Timespec {
        tv_sec: wait.as_secs() as _,
        tv_nsec: wait.subsec_nanos() as _,
    };
    matches!(rustix::event::poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
}

/// Sets the `SO_LINGER` of a socket; `Some(ZERO)` makes close send a reset.
pub fn set_linger(stream: &TcpStream, linger: Option<Duration>) -> io::Result<()> {
    SockRef::from(stream).set_linger(linger)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, so that thousands of
/// connections fit; returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let (_, hard) = rlimit::Resource::NOFILE.get()?;
    rlimit::Resource::NOFILE.set(hard, hard)?;
    Ok(hard)
}

/// What a server should do after `accept` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptFailure {
    /// Nothing was waiting (`WouldBlock`, a timeout, a signal): carry on.
    Retry,
    /// The connection was gone before it was accepted (`ECONNABORTED`, a
    /// reset): log it at `-v` and accept the next one at once.
    ConnectionLost,
    /// The process or the system is out of descriptors or memory (`EMFILE`,
    /// `ENFILE`, `ENOBUFS`, `ENOMEM`): log it, pause for
    /// [`ACCEPT_BACKOFF`] so the CPU does not spin, then go on serving.
    OutOfResources,
}

impl AcceptFailure {
    /// Classifies an `accept` error. Every error is survivable: a server
    /// never exits because one accept failed.
    pub fn of(error: &io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                Self::Retry
            }
            io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused => Self::ConnectionLost,
            _ => Self::OutOfResources,
        }
    }
}

/// The accept-error policy of a whole server, shared by every thread or
/// runtime that accepts: classify the error, log it, and rate-limit the
/// warning about running out of resources to one per
/// [`ACCEPT_WARNING_INTERVAL`], server-wide.
///
/// The pause itself is the caller's, because each model waits its own way:
/// a sleep, a timer in the poll loop, an async sleep.
#[derive(Debug)]
pub struct AcceptErrors {
    /// The origin of the instants below, which are kept as nanoseconds
    /// since it so that they fit in atomics: accepting threads never wait
    /// on each other to log.
    epoch: Instant,
    /// When the next warning may be printed (nanoseconds since `epoch`).
    next_warning: AtomicU64,
    /// Failures for lack of resources not logged since the last warning.
    unlogged: AtomicU64,
}

impl AcceptErrors {
    /// No failure yet: the first one is logged at once.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            next_warning: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
        }
    }

    /// Classifies a failed `accept`, logs it (a lost connection at `-v`;
    /// running out of resources as a rate-limited warning), and returns
    /// what the caller should do: after [`AcceptFailure::OutOfResources`],
    /// pause for [`ACCEPT_BACKOFF`].
    pub fn on_error(&self, error: &io::Error) -> AcceptFailure {
        let failure = AcceptFailure::of(error);
        match failure {
            AcceptFailure::Retry => {}
            AcceptFailure::ConnectionLost => {
                tracing::debug!("accept: connection lost before it was accepted: {error}");
            }
            AcceptFailure::OutOfResources => self.out_of_resources("accept", error),
        }
        failure
    }

    /// Logs, rate-limited like the accept failures it shares the interval
    /// and the count with, that `what` failed for lack of resources just
    /// after an accept (srv-threaded: starting a connection's thread). The
    /// caller pauses for [`ACCEPT_BACKOFF`] as after a failed accept.
    pub fn out_of_resources(&self, what: &str, error: &io::Error) {
        let warning = self.warning(what, error, Instant::now());
        if let Some(warning) = warning {
            tracing::warn!("{warning}");
        }
    }

    /// The warning to print for one more failure for lack of resources at
    /// `now`, or `None` if one was printed less than an interval ago (the
    /// failure is then counted, and the next warning says how many).
    fn warning(&self, what: &str, error: &io::Error, now: Instant) -> Option<String> {
        let at = nanos(now.saturating_duration_since(self.epoch));
        let next = self.next_warning.load(Ordering::Relaxed);
        let interval = nanos(ACCEPT_WARNING_INTERVAL);
        // Of threads failing at the same moment, the one whose exchange
        // succeeds logs; the others count.
        if at < next
            || self
                .next_warning
                .compare_exchange(
                    next,
                    at.saturating_add(interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let more = match self.unlogged.swap(0, Ordering::Relaxed) {
            0 => String::new(),
            n => format!(" (and {n} more not logged since the last warning)"),
        };
        Some(format!(
            "warning: {what} failed: {error}{more}; pausing accepts for {ACCEPT_BACKOFF:?} \
             each time, warning at most every {ACCEPT_WARNING_INTERVAL:?}"
        ))
    }
}

impl Default for AcceptErrors {
    fn default() -> Self {
        Self::new()
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_listener_on_a_busy_port_fails() {
        let first = bind("127.0.0.1:0".parse().unwrap(), 16, false).unwrap();
        let addr = first.local_addr().unwrap();
        let error = bind(addr, 16, false).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn reuse_port_listeners_share_a_port() {
        let first = bind("127.0.0.1:0".parse().unwrap(), 16, true).unwrap();
        let second = bind(first.local_addr().unwrap(), 16, true).unwrap();
        assert_eq!(first.local_addr().unwrap(), second.local_addr().unwrap());
    }

    #[test]
    fn classifies_accept_errors() {
        let emfile = io::Error::from_raw_os_error(24);
        assert_eq!(AcceptFailure::of(&emfile), AcceptFailure::OutOfResources);
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(AcceptFailure::of(&aborted), AcceptFailure::ConnectionLost);
        let would_block = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(AcceptFailure::of(&would_block), AcceptFailure::Retry);
    }

    #[test]
    fn raises_the_soft_fd_limit_to_the_hard_limit() {
        let raised = raise_fd_limit().unwrap();
        assert_eq!(rlimit::Resource::NOFILE.get().unwrap(), (raised, raised));
    }

    #[test]
    fn warns_of_the_first_accept_failure_then_once_an_interval_with_a_count() {
        let errors = AcceptErrors::new();
        let emfile = io::Error::from_raw_os_error(24);
        let start = errors.epoch;
        let at = |ms: u64| start + Duration::from_millis(ms);
        let first = errors
            .warning("accept", &emfile, at(0))
            .expect("the first is logged");
        assert!(first.starts_with("warning: accept failed: "), "{first}");
        assert!(!first.contains("not logged"), "{first}");
        // An episode: every 50 ms for 2.5 s, as a backing-off thread fails.
        let logged: Vec<String> = (1..=50)
            .filter_map(|step| errors.warning("accept", &emfile, at(step * 50)))
            .collect();
        assert_eq!(logged.len(), 2, "{logged:?}");
        assert!(logged[0].contains("(and 19 more not logged since the last warning)"));
        assert!(logged[1].contains("(and 19 more not logged since the last warning)"));
        // After a quiet spell, a new episode is logged at once, with the
        // tail of the last one counted.
        let again = errors.warning("accept", &emfile, at(10_000)).unwrap();
        assert!(again.contains("(and 10 more not logged"), "{again}");
    }

    #[test]
    fn other_failures_after_an_accept_share_the_interval_and_the_count() {
        let errors = AcceptErrors::new();
        let eagain = io::Error::from_raw_os_error(11);
        let start = errors.epoch;
        let at = |ms: u64| start + Duration::from_millis(ms);
        let first = errors.warning("starting a thread", &eagain, at(0)).unwrap();
        assert!(
            first.starts_with("warning: starting a thread failed: "),
            "{first}"
        );
        assert_eq!(errors.warning("accept", &eagain, at(50)), None);
        let next = errors
            .warning("starting a thread", &eagain, at(1_050))
            .unwrap();
        assert!(next.contains("(and 1 more not logged"), "{next}");
    }
}

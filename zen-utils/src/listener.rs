//! Listener setup with socket2, and what to do when `accept` fails.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// How long to pause accepting after the process ran out of file
/// descriptors. Long enough that the loop does not spin the CPU while
/// nothing can change, short enough that a freed descriptor is used soon.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
}

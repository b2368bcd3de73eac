//! A non-blocking TCP connect, written once: srv-poll's peer calls, the
//! blocking thread's peer calls and the client's load generator start a
//! connect, wait for the socket to be writable their own way (a poller, a
//! `poll` a tick at a time), and then ask whether it succeeded.
//!
//! The socket has `TCP_NODELAY`: questions, replies and forwarded requests
//! are tiny, and each must leave at once.

use std::io;
use std::net::{SocketAddr, TcpStream};

use socket2::{Domain, Protocol, Socket, Type};

/// How a non-blocking connect began.
#[derive(Debug)]
pub enum Connecting {
    /// Connected already (it happens on loopback).
    Done(TcpStream),
    /// In progress: the socket becomes writable when it has finished, either
    /// way; [`finish`] then says which.
    InProgress(TcpStream),
}

/// Starts a non-blocking connect to `addr`, from a non-blocking socket with
/// `TCP_NODELAY`. An error is a connect that failed at once (no route, no
/// address, out of descriptors).
pub fn start(addr: SocketAddr) -> io::Result<Connecting> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => Ok(Connecting::Done(socket.into())),
        Err(error) if is_in_progress(&error) => Ok(Connecting::InProgress(socket.into())),
        Err(error) => Err(error),
    }
}

/// After a socket with a connect in progress was reported writable (or
/// failed): whether the connect succeeded.
pub fn finish(stream: &TcpStream) -> io::Result<()> {
    match stream.take_error()? {
        Some(error) => Err(error),
        // Writable with no pending error: connected. `peer_addr` confirms
        // it (a spurious wake-up would say "not connected").
        None => stream.peer_addr().map(drop),
    }
}

/// Whether a non-blocking connect's error only says "in progress":
/// `EINPROGRESS` by its number (`ErrorKind::InProgress` is not stable
/// yet), or `WouldBlock`, which some systems say instead.
fn is_in_progress(error: &io::Error) -> bool {
    error.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error())
        || error.kind() == io::ErrorKind::WouldBlock
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Waits until `stream` is writable (or failed), as a poller would.
    fn wait_writable(stream: &TcpStream) {
        let mut fds = [rustix::event::PollFd::new(
            stream,
            rustix::event::PollFlags::OUT,
        )];
        rustix::event::poll(&mut fds, None).unwrap();
    }

    fn connected(addr: SocketAddr) -> io::Result<TcpStream> {
        match start(addr)? {
            Connecting::Done(stream) => Ok(stream),
            Connecting::InProgress(stream) => {
                wait_writable(&stream);
                finish(&stream).map(|()| stream)
            }
        }
    }

    #[test]
    fn a_connect_to_a_listener_succeeds_non_blocking_and_without_delay() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = connected(listener.local_addr().unwrap()).unwrap();
        assert!(stream.nodelay().unwrap());
        let mut byte = [0];
        let read = io::Read::read(&mut &stream, &mut byte);
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_connect_to_nothing_fails() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let error = connected(addr).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    }
}

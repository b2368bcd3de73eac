//! The client's event loop primitives: zen-utils' epoll (a wait that is
//! one `epoll_wait`, a precise timer, a monotonic clock in nanoseconds),
//! and non-blocking connects to many addresses at once.
//!
//! Why not the `polling` crate: its `wait` costs four system calls on top
//! of `epoll_wait`. A load generator with one connection does one `write`
//! and one `read` per request, so those four would more than double its
//! system calls and make the client, not the server, the thing being
//! measured. Sockets are registered level-triggered, so no event ever
//! needs re-arming. The price is that the client runs on Linux only.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
pub(crate) use zen_utils::serve::raw_loop::epoll::{
    nanos, now_ns, Interest, Poller, Timer, Trigger,
};

/// A level-triggered poller that reports at most `capacity` events per wait.
pub(crate) fn poller(capacity: usize) -> io::Result<Poller> {
    Poller::new(capacity, Trigger::Level)
}

/// A connection that connected: its stream (non-blocking, `TCP_NODELAY`)
/// and when the connect completed.
pub(crate) type Connected = (TcpStream, u64);

/// Connects to every address in `addrs` at once, without blocking: all
/// the connects are started, then one poller waits for them, for at most
/// `timeout` in all. Each result is a non-blocking stream with
/// `TCP_NODELAY`, or why it failed (`TimedOut` for a connect still
/// pending at the deadline).
pub(crate) fn connect_all(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> io::Result<Vec<io::Result<Connected>>> {
    let mut poller = poller(1024)?;
    let mut results: Vec<io::Result<Connected>> = Vec::with_capacity(addrs.len());
    let mut pending: Vec<Option<TcpStream>> = Vec::with_capacity(addrs.len());
    let mut left = 0;
    for (key, addr) in addrs.iter().enumerate() {
        match start_connect(*addr) {
            Ok(Started::Done(stream)) => {
                results.push(Ok((stream, now_ns())));
                pending.push(None);
            }
            Ok(Started::InProgress(stream)) => {
                poller.add(&stream, key as u64, Interest::READ_WRITE)?;
                results.push(Err(io::ErrorKind::TimedOut.into()));
                pending.push(Some(stream));
                left += 1;
            }
            Err(error) => {
                results.push(Err(error));
                pending.push(None);
            }
        }
    }
    let deadline = now_ns().saturating_add(nanos(timeout));
    while left > 0 && now_ns() < deadline {
        poller.wait(Some(deadline))?;
        for i in 0..poller.len() {
            let key = poller.event(i).key as usize;
            let Some(stream) = pending.get_mut(key).and_then(Option::take) else {
                continue;
            };
            left -= 1;
            results[key] = finish_connect(&stream).map(|()| (stream, now_ns()));
        }
    }
    Ok(results)
}

/// How a non-blocking connect began.
pub(crate) enum Started {
    /// Connected already (it happens on loopback).
    Done(TcpStream),
    /// In progress: the socket becomes writable when it has finished.
    InProgress(TcpStream),
}

/// Starts a non-blocking connect to `addr` from a socket with
/// `TCP_NODELAY` (questions are tiny and must leave at once).
pub(crate) fn start_connect(addr: SocketAddr) -> io::Result<Started> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => Ok(Started::Done(socket.into())),
        Err(error) if is_in_progress(&error) => Ok(Started::InProgress(socket.into())),
        Err(error) => Err(error),
    }
}

/// After a socket with a connect in progress became writable: whether the
/// connect succeeded.
pub(crate) fn finish_connect(stream: &TcpStream) -> io::Result<()> {
    match stream.take_error()? {
        Some(error) => Err(error),
        // Writable with no pending error: connected. `peer_addr` confirms
        // it (a spurious wake-up would say "not connected").
        None => stream.peer_addr().map(drop),
    }
}

fn is_in_progress(error: &io::Error) -> bool {
    error.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error())
        || error.kind() == io::ErrorKind::WouldBlock
}

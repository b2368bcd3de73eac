//! The client's event loop primitives: zen-utils' epoll (a wait that is
//! one `epoll_wait`, a precise timer, a monotonic clock in nanoseconds),
//! its non-blocking connect, and connects to many addresses at once.
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

pub(crate) use zen_utils::serve::connect::{self, Connecting};
pub(crate) use zen_utils::serve::raw_loop::epoll::{
    nanos, now_ns, Interest, Poller, Timerfd, Trigger,
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
        match connect::start(*addr) {
            Ok(Connecting::Done(stream)) => {
                results.push(Ok((stream, now_ns())));
                pending.push(None);
            }
            Ok(Connecting::InProgress(stream)) => {
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
            results[key] = connect::finish(&stream).map(|()| (stream, now_ns()));
        }
    }
    Ok(results)
}

//! A blocking thread asks its peers: one new connection per peer asked,
//! closed once the peer replied.
//!
//! No connection is kept for the next question. A kept connection holds
//! whatever serves it at the peer: all of srv-single, one of a pool's
//! threads, for as long as the peer's idle timeout lets it stay open,
//! and nothing in a peer's replies tells the asker which kind of peer it
//! is. A kept connection also goes stale: the peer's idle timeout closes
//! it with `Error: idle timeout.`, bytes that arrive before any question
//! was sent and belong to none. A connection per question costs a connect
//! to the peer (and, to a thread-per-connection peer, a thread), which is
//! what the event-driven models pay too.
//!
//! Each wait (the connect, the reply) is cut into ticks, so that the end
//! of the shutdown grace ends it, as it ends `--work wait`: no server
//! outlives the grace because a peer is slow.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::protocol::peers::{Asking, Forward, Reply, ReplyRead, ReplyReader};
use crate::protocol::UNKNOWN_APHORISM;
use crate::serve::connect::{self, Connecting};
use crate::serve::listener;
use crate::serve::shutdown::TICK;
use crate::Shutdown;

/// The shutdown grace ended while a peer was asked: the question is
/// dropped unanswered.
pub(super) struct GraceOver;

/// Asks the peers of `forward`, one after another, each within `timeout`
/// (connect and answer together); the answer to give.
pub(super) fn ask_peers(
    forward: Forward,
    timeout: Duration,
    shutdown: &Shutdown,
) -> Result<&'static [u8], GraceOver> {
    let mut asking = Asking::new(forward);
    while let Some(peer) = asking.next_peer() {
        let waiting = Waiting {
            deadline: Instant::now() + timeout,
            shutdown,
        };
        let reply = ask_one(peer, asking.request(), &waiting)?;
        if let Some(answer) = asking.heard(reply) {
            return Ok(answer);
        }
    }
    Ok(UNKNOWN_APHORISM)
}

/// How long one peer may still be waited on: until its deadline, or the
/// end of the shutdown grace, whichever comes first.
struct Waiting<'a> {
    deadline: Instant,
    shutdown: &'a Shutdown,
}

impl Waiting<'_> {
    /// The next wait, at most a tick; `Ok(None)`: the peer's time is up.
    fn next(&self) -> Result<Option<Duration>, GraceOver> {
        let now = Instant::now();
        if self.shutdown.grace_over(now) {
            return Err(GraceOver);
        }
        let left = self.deadline.saturating_duration_since(now);
        Ok((!left.is_zero()).then(|| left.min(TICK)))
    }
}

/// One peer's reply to `request`, on a new connection.
fn ask_one(peer: SocketAddr, request: &[u8], waiting: &Waiting<'_>) -> Result<Reply, GraceOver> {
    let Some(stream) = connect(peer, waiting)? else {
        return Ok(Reply::Failed);
    };
    exchange(stream, request, waiting)
}

/// A connection to `peer`, or `None` if it was refused or took too long.
fn connect(peer: SocketAddr, waiting: &Waiting<'_>) -> Result<Option<TcpStream>, GraceOver> {
    // Non-blocking, so that the connect is waited for a tick at a time.
    let stream = match connect::start(peer) {
        Ok(Connecting::Done(stream)) => stream,
        Ok(Connecting::InProgress(stream)) => {
            loop {
                let Some(wait) = waiting.next()? else {
                    return Ok(None);
                };
                if listener::ready_within(&stream, rustix::event::PollFlags::OUT, wait) {
                    break;
                }
            }
            // Writable: connected, or failed (refused, unreachable).
            if connect::finish(&stream).is_err() {
                return Ok(None);
            }
            stream
        }
        Err(_) => return Ok(None),
    };
    if stream.set_nonblocking(false).is_err() {
        return Ok(None);
    }
    Ok(Some(stream))
}

/// Writes `request` and reads one reply.
fn exchange(
    mut stream: TcpStream,
    request: &[u8],
    waiting: &Waiting<'_>,
) -> Result<Reply, GraceOver> {
    // The request is small and the connection new, with an empty send
    // buffer: the write takes it at once.
    let Some(wait) = waiting.next()? else {
        return Ok(Reply::Failed);
    };
    let _ = stream.set_write_timeout(Some(wait));
    if stream.write_all(request).is_err() {
        return Ok(Reply::Failed);
    }
    let mut reader = ReplyReader::new();
    loop {
        let Some(wait) = waiting.next()? else {
            return Ok(Reply::Failed);
        };
        let _ = stream.set_read_timeout(Some(wait));
        let read = match stream.read(reader.room()) {
            Ok(n) => reader.received(n),
            Err(error) if super::is_tick(&error) => continue,
            Err(_) => return Ok(Reply::Failed),
        };
        match read {
            ReplyRead::NeedMore => {}
            ReplyRead::Complete(reply) => return Ok(reply),
            ReplyRead::TooLong | ReplyRead::ClosedEarly => return Ok(Reply::Failed),
        }
    }
}

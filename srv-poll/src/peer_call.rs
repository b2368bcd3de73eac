//! Asking the peers, the readiness loop's way: the BitTorrent RawServer's
//! `start_connection`. A question this server does not know becomes a
//! [`PeerCall`]: outgoing non-blocking connections, one peer after another,
//! driven by the same loop, the same poller and the same timer queue as
//! the clients. The loop never waits on a peer: while one connects,
//! writes or stays silent, every other client is served.
//!
//! Each attempt (one peer) opens its own connection, asks the one
//! question and reads the one reply: no two calls ever share a
//! connection, so no call can read another's answer. It goes through
//! three states, each only as far as the socket allows without blocking:
//!
//! ```text
//! Connecting ──writable──► Writing ──request sent──► Reading ──a reply──► heard
//!     │                       │                         │
//!     └── refused, reset, EOF, garbage, or its deadline ┴──────► heard(Failed)
//! ```
//!
//! Its deadline (`--peer-timeout`, connect and answer together) is a task
//! in the loop's timer queue. The zen_utils `Asking` decides what a reply
//! means and whether to ask the next peer; only the peers it names (from
//! `--peer`, never from a request) are ever dialled.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use zen_utils::protocol::peers::{complete_reply, Asking, Forward, Reply, MAX_PEER_REPLY};
use zen_utils::protocol::UNKNOWN_APHORISM;
use zen_utils::serve::raw_loop::epoll::Interest;

use crate::connection::{ConnId, Timer};
use crate::poll_mode::{PollMode, Registration};
use crate::poller::Poller;
use zen_utils::serve::raw_loop::timers::Timers;

/// The poll keys of peer calls have this bit set (and the top bit clear,
/// which sets them apart from the loop's own keys at the top of the range);
/// a client connection's key, its slab key, never reaches it.
const PEER_CALL_BIT: u64 = 1 << 62;
/// Below [`PEER_CALL_BIT`], an attempt's poll key holds its generation
/// (30 bits of it) above its call's slab key (32 bits).
const KEY_BITS: u32 = 32;
const GENERATION_MASK: u64 = (1 << (62 - KEY_BITS)) - 1;

/// One attempt of one call: the call's slab key, and the attempt's
/// generation, a number the loop never gives twice. The slab reuses keys,
/// and a call asks peer after peer: the generation tells a deadline (or an
/// event) of an attempt that is over from one of the attempt in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CallId {
    pub(crate) key: usize,
    pub(crate) generation: u64,
}

impl CallId {
    /// The attempt's socket's poll key.
    fn poll_key(self) -> u64 {
        debug_assert!((self.key as u64) < 1 << KEY_BITS);
        PEER_CALL_BIT | (self.generation & GENERATION_MASK) << KEY_BITS | self.key as u64
    }

    /// The attempt a poll key names, if it is a peer call's: its key, and
    /// its generation's low 30 bits (a key and those bits cannot both come
    /// round again between a socket's close and its last event).
    pub(crate) fn of_poll_key(poll_key: u64) -> Option<Self> {
        (poll_key >> 62 == PEER_CALL_BIT >> 62).then_some(Self {
            key: (poll_key & ((1 << KEY_BITS) - 1)) as usize,
            generation: (poll_key >> KEY_BITS) & GENERATION_MASK,
        })
    }
}

/// What an attempt needs from the loop: its poller, its timer queue, the
/// timeout, and the generation counter.
pub(crate) struct CallContext<'a> {
    pub(crate) poller: &'a Poller,
    pub(crate) mode: PollMode,
    pub(crate) timers: &'a mut Timers<Timer>,
    /// `--peer-timeout`, per peer asked.
    pub(crate) timeout: Duration,
    /// The next attempt's generation.
    pub(crate) next_generation: &'a mut u64,
}

/// The asking of the peers about one question, in the loop's slab of
/// calls.
pub(crate) struct PeerCall {
    /// The client connection that owes the answer.
    pub(crate) client: ConnId,
    asking: Asking,
    /// The peer being asked now; `None` only between two attempts.
    attempt: Option<Attempt>,
}

/// One peer being asked: one outgoing connection.
struct Attempt {
    id: CallId,
    peer: SocketAddr,
    stream: TcpStream,
    /// What the socket is registered for.
    registration: Registration,
    state: State,
}

/// How far an attempt got.
enum State {
    /// The non-blocking connect is in progress: writable says it ended.
    Connecting,
    /// Sending the request; `written` bytes of it went.
    Writing { written: usize },
    /// Waiting for the reply, one at most [`MAX_PEER_REPLY`] bytes long.
    Reading {
        buf: [u8; MAX_PEER_REPLY],
        filled: usize,
    },
}

/// What an attempt does after a turn.
enum Progress {
    /// Waits for its socket to be ready for this.
    Wait(Interest),
    /// It is over: this is what the peer said (or that it failed).
    Heard(Reply),
}

impl PeerCall {
    /// Starts asking the peers of `forward` for `client`, as call `key` of
    /// the loop's slab. The answer, if it is decided at once (no peer could
    /// even be dialled: out of descriptors, say); `None`: it waits on its
    /// socket, and the loop tells it when that is ready or its deadline is
    /// due.
    pub(crate) fn start(
        client: ConnId,
        forward: Forward,
        key: usize,
        ctx: &mut CallContext<'_>,
    ) -> (Self, Option<&'static [u8]>) {
        let mut call = Self {
            client,
            asking: Asking::new(forward),
            attempt: None,
        };
        let answer = call.ask_next(key, ctx);
        (call, answer)
    }

    /// The socket of attempt `generation` (low bits, from its poll key) is
    /// ready: it goes as far as it can. The answer, once it is decided.
    pub(crate) fn on_ready(
        &mut self,
        id: CallId,
        ctx: &mut CallContext<'_>,
    ) -> Option<&'static [u8]> {
        let attempt = self
            .attempt
            .as_mut()
            .filter(|attempt| attempt.id.generation & GENERATION_MASK == id.generation)?;
        attempt.registration.delivered(ctx.mode);
        let reply = match attempt.advance(self.asking.request()) {
            Progress::Wait(interest) => {
                let poll_key = attempt.id.poll_key();
                match attempt.registration.update(
                    ctx.poller,
                    &attempt.stream,
                    poll_key,
                    interest,
                    ctx.mode,
                    false,
                ) {
                    Ok(()) => return None,
                    Err(error) => {
                        tracing::debug!("peer {}: {error}", attempt.peer);
                        Reply::Failed
                    }
                }
            }
            Progress::Heard(reply) => reply,
        };
        self.heard(reply, id.key, ctx)
    }

    /// Attempt `id`'s deadline is due: if that attempt is still the one in
    /// progress, its peer failed. The answer, once it is decided.
    pub(crate) fn on_deadline(
        &mut self,
        id: CallId,
        ctx: &mut CallContext<'_>,
    ) -> Option<&'static [u8]> {
        let attempt = self.attempt.as_ref()?;
        if attempt.id != id {
            return None; // An earlier attempt's: it is over.
        }
        tracing::debug!("peer {}: no reply within the peer timeout", attempt.peer);
        self.heard(Reply::Failed, id.key, ctx)
    }

    /// The attempt in progress is over with `reply`: its socket closes, and
    /// either the answer is decided or the next peer is asked.
    fn heard(
        &mut self,
        reply: Reply,
        key: usize,
        ctx: &mut CallContext<'_>,
    ) -> Option<&'static [u8]> {
        self.cancel(ctx.poller);
        match self.asking.heard(reply) {
            Some(answer) => Some(answer),
            None => self.ask_next(key, ctx),
        }
    }

    /// Ends the attempt in progress, if any: its socket closes (deleted
    /// from the poller first, where the poller needs it).
    pub(crate) fn cancel(&mut self, poller: &Poller) {
        if let Some(attempt) = self.attempt.take() {
            poller.closing(&attempt.stream);
        }
    }

    /// Starts attempts, peer after peer, until one waits on its socket
    /// (`None`) or the answer is decided.
    fn ask_next(&mut self, key: usize, ctx: &mut CallContext<'_>) -> Option<&'static [u8]> {
        loop {
            // `Asking` has a next peer whenever it has not decided; with
            // none to ask, the answer is unknown (as zen_utils' blocking
            // `ask_peers` says).
            let Some(peer) = self.asking.next_peer() else {
                return Some(UNKNOWN_APHORISM);
            };
            let id = CallId {
                key,
                generation: *ctx.next_generation,
            };
            *ctx.next_generation += 1;
            let reply = match Attempt::start(id, peer, self.asking.request(), ctx) {
                Ok(attempt) => {
                    self.attempt = Some(attempt);
                    return None;
                }
                Err(reply) => reply,
            };
            if let Some(answer) = self.asking.heard(reply) {
                return Some(answer);
            }
        }
    }
}

impl Attempt {
    /// Connects to `peer` without blocking, goes as far as it can, and
    /// registers the socket and the deadline; or what the peer said, if
    /// that is known already (it could not even be dialled).
    fn start(
        id: CallId,
        peer: SocketAddr,
        request: &[u8],
        ctx: &mut CallContext<'_>,
    ) -> Result<Self, Reply> {
        let failed = |error: io::Error| {
            tracing::debug!("peer {peer}: {error}");
            Reply::Failed
        };
        let (stream, state) = start_connect(peer).map_err(failed)?;
        let mut attempt = Self {
            id,
            peer,
            stream,
            registration: Registration::new(Interest::NONE),
            state,
        };
        let interest = match attempt.state {
            // Writable says when the connect is over, either way.
            State::Connecting => Interest::new(false, true),
            _ => match attempt.advance(request) {
                Progress::Wait(interest) => interest,
                Progress::Heard(reply) => return Err(reply),
            },
        };
        ctx.poller
            .add(&attempt.stream, id.poll_key(), interest)
            .map_err(failed)?;
        attempt.registration = Registration::new(interest);
        ctx.timers
            .add(Instant::now() + ctx.timeout, Timer::PeerDeadline(id));
        Ok(attempt)
    }

    /// Does all it can without blocking: finish the connect, write the
    /// request, read the reply.
    fn advance(&mut self, request: &[u8]) -> Progress {
        match self.try_advance(request) {
            Ok(progress) => progress,
            Err(error) => {
                tracing::debug!("peer {}: {error}", self.peer);
                Progress::Heard(Reply::Failed)
            }
        }
    }

    fn try_advance(&mut self, request: &[u8]) -> io::Result<Progress> {
        loop {
            match &mut self.state {
                State::Connecting => {
                    // Called on an event only: writable, or failed.
                    finish_connect(&self.stream)?;
                    self.state = State::Writing { written: 0 };
                }
                State::Writing { written } => match (&self.stream).write(&request[*written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        *written += n;
                        if *written == request.len() {
                            self.state = State::Reading {
                                buf: [0; MAX_PEER_REPLY],
                                filled: 0,
                            };
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Progress::Wait(Interest::new(false, true)));
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                },
                State::Reading { buf, filled } => match (&self.stream).read(&mut buf[*filled..]) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => {
                        *filled += n;
                        // One reply, and nothing after it: the peer answers
                        // one question, the one it was asked.
                        match complete_reply(&buf[..*filled]) {
                            Ok(Some(end)) if end == *filled => {
                                return Ok(Progress::Heard(Reply::of(&buf[..end])))
                            }
                            Ok(Some(_)) | Err(_) => {
                                return Err(io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    "not a reply",
                                ))
                            }
                            Ok(None) => {}
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Progress::Wait(Interest::READ));
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                },
            }
        }
    }
}

/// Begins a non-blocking connect to `peer`: the socket, connecting (or
/// connected already, which loopback may do).
///
/// A connect that failed at once (no route, no address) is waited on as
/// one in progress: its socket, closed, reports a hang-up at the next wait,
/// and [`finish_connect`] says it failed. This spares telling EINPROGRESS
/// from the errors by number (`ErrorKind::InProgress` is not stable yet),
/// and it costs a wait only when the connect already failed.
fn start_connect(peer: SocketAddr) -> io::Result<(TcpStream, State)> {
    let socket = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    match socket.connect(&peer.into()) {
        Ok(()) => Ok((socket.into(), State::Writing { written: 0 })),
        Err(_) => Ok((socket.into(), State::Connecting)),
    }
}

/// After a socket with a connect in progress was reported writable (or
/// failed): whether the connect succeeded.
fn finish_connect(stream: &TcpStream) -> io::Result<()> {
    match stream.take_error()? {
        Some(error) => Err(error),
        // Writable with no pending error: connected. `peer_addr` confirms
        // it (a connect still in progress would say "not connected").
        None => stream.peer_addr().map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_keys_name_the_attempt_and_never_a_client_or_the_loop() {
        let id = CallId {
            key: 7,
            generation: (1 << 40) + 5,
        };
        let back = CallId::of_poll_key(id.poll_key()).unwrap();
        assert_eq!(back.key, 7);
        assert_eq!(back.generation, id.generation & GENERATION_MASK);
        for not_a_call in [0, 1, 1 << 40, u64::MAX, u64::MAX - 1, u64::MAX - 2] {
            assert_eq!(CallId::of_poll_key(not_a_call), None, "{not_a_call}");
        }
    }
}

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

use zen_utils::protocol::peers::{Asking, Forward, Reply, ReplyReader};
use zen_utils::protocol::UNKNOWN_APHORISM;
use zen_utils::serve::connect::{self, Connecting};
use zen_utils::serve::raw_loop::deadline::Deadline;
use zen_utils::serve::raw_loop::epoll::Interest;
use zen_utils::serve::raw_loop::ids::{AttemptId, ConnId};
use zen_utils::serve::raw_loop::timers::Timers;

use crate::poll_mode::PollMode;
use crate::poller::Poller;
use crate::registered::RegisteredInterest;

/// The poll keys of peer calls have this bit set (and the top bit clear,
/// which sets them apart from the loop's own keys at the top of the range);
/// a client connection's key, its slab key, never reaches it.
const PEER_CALL_BIT: u64 = 1 << 62;
/// Below [`PEER_CALL_BIT`], an attempt's poll key holds its generation
/// (30 bits of it) above its call's slab key (32 bits).
const KEY_BITS: u32 = 32;
const GENERATION_MASK: u64 = (1 << (62 - KEY_BITS)) - 1;

/// The poll key of attempt `id`'s socket: the attempt's call's slab key,
/// and the attempt's generation, a number the loop never gives twice. The
/// slab reuses keys, and a call asks peer after peer: the generation tells
/// an event of an attempt that is over from one of the attempt in
/// progress.
fn poll_key(id: AttemptId) -> u64 {
    debug_assert!((id.key as u64) < 1 << KEY_BITS);
    PEER_CALL_BIT | (id.generation & GENERATION_MASK) << KEY_BITS | id.key as u64
}

/// The attempt a poll key names, if it is a peer call's: its call's key,
/// and its generation's low 30 bits (a key and those bits cannot both come
/// round again between a socket's close and its last event).
pub(crate) fn attempt_of_poll_key(poll_key: u64) -> Option<AttemptId> {
    (poll_key >> 62 == PEER_CALL_BIT >> 62).then_some(AttemptId {
        key: (poll_key & ((1 << KEY_BITS) - 1)) as usize,
        generation: (poll_key >> KEY_BITS) & GENERATION_MASK,
    })
}

/// What an attempt needs from the loop: its poller and `--poll-mode`, its
/// timer queue, the timeout, and the generation counter.
pub(crate) struct CallContext<'a> {
    pub(crate) poller: &'a Poller,
    pub(crate) mode: PollMode,
    pub(crate) timers: &'a mut Timers<Deadline>,
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
    id: AttemptId,
    peer: SocketAddr,
    stream: TcpStream,
    /// What the socket is registered for.
    registered: RegisteredInterest,
    state: State,
}

/// How far an attempt got.
enum State {
    /// The non-blocking connect is in progress: writable says it ended.
    Connecting,
    /// Sending the request; `written` bytes of it went.
    Writing { written: usize },
    /// Waiting for the reply (zen-utils' reader says when it is whole).
    Reading(ReplyReader),
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

    /// The socket of attempt `id` (its generation's low bits only, from its
    /// poll key) is ready: it goes as far as it can. The answer, once it is
    /// decided.
    pub(crate) fn on_ready(
        &mut self,
        id: AttemptId,
        ctx: &mut CallContext<'_>,
    ) -> Option<&'static [u8]> {
        let attempt = self
            .attempt
            .as_mut()
            .filter(|attempt| attempt.id.generation & GENERATION_MASK == id.generation)?;
        attempt.registered.delivered(ctx.mode);
        let reply = match attempt.advance(self.asking.request()) {
            Progress::Wait(interest) => {
                let poll_key = poll_key(attempt.id);
                match attempt.registered.update(
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
        id: AttemptId,
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
            let id = AttemptId {
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
        id: AttemptId,
        peer: SocketAddr,
        request: &[u8],
        ctx: &mut CallContext<'_>,
    ) -> Result<Self, Reply> {
        let failed = |error: io::Error| {
            tracing::debug!("peer {peer}: {error}");
            Reply::Failed
        };
        let (stream, state) = match connect::start(peer).map_err(failed)? {
            Connecting::Done(stream) => (stream, State::Writing { written: 0 }),
            Connecting::InProgress(stream) => (stream, State::Connecting),
        };
        let mut attempt = Self {
            id,
            peer,
            stream,
            registered: RegisteredInterest::new(Interest::NONE),
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
            .add(&attempt.stream, poll_key(id), interest)
            .map_err(failed)?;
        attempt.registered = RegisteredInterest::new(interest);
        ctx.timers
            .add(Instant::now() + ctx.timeout, Deadline::PeerAttempt(id));
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
                    connect::finish(&self.stream)?;
                    self.state = State::Writing { written: 0 };
                }
                State::Writing { written } => match (&self.stream).write(&request[*written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        *written += n;
                        if *written == request.len() {
                            self.state = State::Reading(ReplyReader::new());
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Progress::Wait(Interest::new(false, true)));
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                },
                State::Reading(reader) => {
                    let read = match (&self.stream).read(reader.room()) {
                        Ok(n) => reader.received(n),
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(Progress::Wait(Interest::READ));
                        }
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                        Err(error) => return Err(error),
                    };
                    if let Some(reply) = read.into_result()? {
                        return Ok(Progress::Heard(reply));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_keys_name_the_attempt_and_never_a_client_or_the_loop() {
        let id = AttemptId {
            key: 7,
            generation: (1 << 40) + 5,
        };
        let back = attempt_of_poll_key(poll_key(id)).unwrap();
        assert_eq!(back.key, 7);
        assert_eq!(back.generation, id.generation & GENERATION_MASK);
        for not_a_call in [0, 1, 1 << 40, u64::MAX, u64::MAX - 1, u64::MAX - 2] {
            assert_eq!(attempt_of_poll_key(not_a_call), None, "{not_a_call}");
        }
    }
}

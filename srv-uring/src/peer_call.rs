//! Asking the peers, the completion loop's way. A question this server
//! does not know becomes a [`PeerCall`]: one attempt per peer, one after
//! another, each an outgoing connection driven by operations on the same
//! ring as the clients. The loop never waits on a peer.
//!
//! An attempt has one operation in flight at a time:
//!
//! ```text
//! Connect ──ok──► Send (the request, until all sent) ──► Recv (until one reply) ──► heard
//!    └── refused, reset, EOF, garbage ─────────────────────────────────────────► heard(Failed)
//! ```
//!
//! Its deadline (`--peer-timeout`, connect and answer together) is a task
//! in the loop's timer queue. When it is due, or when the client that
//! asked closes, the attempt is *abandoned*: its operation is cancelled,
//! and the call goes on to the next peer (or ends) at once. But the
//! abandoned attempt's memory (the peer's address the connect reads, the
//! request the send reads, the reply buffer the receive writes) stays
//! allocated until the cancelled operation's completion comes: only then
//! does the kernel no longer touch it, and only then is it freed.
//!
//! Only the peers `Asking` names (from `--peer`, never from a request) are
//! ever dialled.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{opcode, types};
use slab::Slab;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use zen_utils::protocol::peers::{Asking, Forward, Reply, ReplyReader};
use zen_utils::protocol::UNKNOWN_APHORISM;
use zen_utils::serve::raw_loop::deadline::Deadline;
use zen_utils::serve::raw_loop::ids::{AttemptId, ConnId};
use zen_utils::serve::raw_loop::timers::Timers;

use crate::ring::{Op, Ring};

/// The asking of the peers about one question.
pub(crate) struct PeerCall {
    /// The client connection that owes the answer.
    client: ConnId,
    asking: Asking,
    /// The attempt in progress; `None` only between two attempts.
    attempt: Option<AttemptId>,
}

/// One peer being asked: one outgoing connection, and the memory its
/// operations name. Boxed in its slab, so that the slab growing never
/// moves what the kernel holds pointers to.
struct Attempt {
    generation: u64,
    /// The call it works for; `None` once abandoned: it only waits for its
    /// operation's completion to be freed.
    call: Option<usize>,
    peer: SocketAddr,
    socket: Socket,
    /// Read by the kernel during the connect.
    addr: SockAddr,
    /// A copy of the request, read by the kernel during each send.
    request: Vec<u8>,
    written: usize,
    /// The reply so far: its room is written by the kernel during each
    /// receive.
    reply: ReplyReader,
    step: Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connecting,
    Sending,
    Receiving,
}

/// Every call in flight and every attempt whose memory the kernel may
/// still use.
pub(crate) struct PeerCalls {
    calls: Slab<PeerCall>,
    attempts: Slab<Box<Attempt>>,
    next_generation: u64,
    /// `--peer-timeout`, per peer asked.
    timeout: Duration,
}

/// What the loop lends the calls while they advance.
pub(crate) struct CallContext<'a> {
    pub(crate) ring: &'a mut Ring,
    pub(crate) timers: &'a mut Timers<Deadline>,
}

/// A call decided its answer: the client that owes it, and the answer.
pub(crate) type Decided = (ConnId, &'static [u8]);

impl PeerCalls {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            calls: Slab::new(),
            attempts: Slab::new(),
            next_generation: 0,
            timeout,
        }
    }

    /// Starts asking the peers of `forward` for `client`: `Ok(key)` of the
    /// call, its first attempt under way, or the answer if it is decided
    /// at once (no peer could even be dialled).
    pub(crate) fn start(
        &mut self,
        client: ConnId,
        forward: Forward,
        ctx: &mut CallContext<'_>,
    ) -> Result<usize, &'static [u8]> {
        let key = self.calls.insert(PeerCall {
            client,
            asking: Asking::new(forward),
            attempt: None,
        });
        match self.ask_next(key, ctx) {
            None => Ok(key),
            Some(answer) => {
                self.calls.remove(key);
                Err(answer)
            }
        }
    }

    /// An attempt's operation completed with `result`.
    pub(crate) fn completed(
        &mut self,
        key: usize,
        result: i32,
        ctx: &mut CallContext<'_>,
    ) -> Option<Decided> {
        let attempt = self.attempts.get_mut(key)?;
        let Some(call) = attempt.call else {
            // Abandoned: this was its last operation; the kernel is done
            // with its memory, which goes now (and its socket closes).
            self.attempts.remove(key);
            return None;
        };
        let progress = match attempt.advance(result) {
            Ok(None) => attempt.submit(key, ctx.ring),
            Ok(Some(reply)) => Err(reply),
            Err(error) => {
                tracing::debug!("peer {}: {error}", attempt.peer);
                Err(Reply::Failed)
            }
        };
        let reply = progress.err()?;
        // Heard: nothing of it is in flight any more.
        self.attempts.remove(key);
        self.calls[call].attempt = None;
        self.heard(call, reply, ctx)
    }

    /// Attempt `id`'s deadline is due: if it is still in progress, its
    /// peer failed.
    pub(crate) fn deadline(&mut self, id: AttemptId, ctx: &mut CallContext<'_>) -> Option<Decided> {
        let attempt = self.attempts.get(id.key)?;
        if attempt.generation != id.generation {
            return None; // An attempt that is over: its slot was reused.
        }
        let call = attempt.call?;
        tracing::debug!("peer {}: no reply within the peer timeout", attempt.peer);
        self.abandon(id.key, ctx.ring);
        self.calls[call].attempt = None;
        self.heard(call, Reply::Failed, ctx)
    }

    /// The client of call `key` closed: the call ends, its attempt is
    /// abandoned.
    pub(crate) fn cancel(&mut self, key: usize, ring: &mut Ring) {
        if let Some(call) = self.calls.try_remove(key) {
            if let Some(attempt) = call.attempt {
                self.abandon(attempt.key, ring);
            }
        }
    }

    /// Abandons every call (the shutdown grace is over).
    pub(crate) fn cancel_all(&mut self, ring: &mut Ring) {
        let keys: Vec<usize> = self.calls.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.cancel(key, ring);
        }
    }

    /// Whether the kernel may still use an attempt's memory.
    pub(crate) fn in_flight(&self) -> bool {
        !self.attempts.is_empty()
    }

    /// Cancels attempt `key`'s operation; it is freed at its completion.
    fn abandon(&mut self, key: usize, ring: &mut Ring) {
        if let Some(attempt) = self.attempts.get_mut(key) {
            attempt.call = None;
            let _ = ring.cancel(Op::Peer(key));
        }
    }

    /// The attempt of call `key` is over with `reply`: either the answer
    /// is decided or the next peer is asked.
    fn heard(&mut self, key: usize, reply: Reply, ctx: &mut CallContext<'_>) -> Option<Decided> {
        let call = &mut self.calls[key];
        let answer = match call.asking.heard(reply) {
            Some(answer) => answer,
            None => self.ask_next(key, ctx)?,
        };
        let call = self.calls.remove(key);
        Some((call.client, answer))
    }

    /// Starts attempts, peer after peer, until one is under way (`None`)
    /// or the answer is decided.
    fn ask_next(&mut self, key: usize, ctx: &mut CallContext<'_>) -> Option<&'static [u8]> {
        loop {
            let call = &mut self.calls[key];
            // With no peer left to ask, the answer is unknown (as
            // zen_utils' blocking `ask_peers` says).
            let Some(peer) = call.asking.next_peer() else {
                return Some(UNKNOWN_APHORISM);
            };
            let request = call.asking.request().to_vec();
            match self.begin(key, peer, request, ctx) {
                Ok(id) => {
                    self.calls[key].attempt = Some(id);
                    return None;
                }
                Err(error) => {
                    tracing::debug!("peer {peer}: {error}");
                    if let Some(answer) = self.calls[key].asking.heard(Reply::Failed) {
                        return Some(answer);
                    }
                }
            }
        }
    }

    /// Opens a socket to `peer`, submits its connect, and schedules its
    /// deadline.
    fn begin(
        &mut self,
        call: usize,
        peer: SocketAddr,
        request: Vec<u8>,
        ctx: &mut CallContext<'_>,
    ) -> io::Result<AttemptId> {
        let socket = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nodelay(true)?;
        let generation = self.next_generation;
        self.next_generation += 1;
        let entry = self.attempts.vacant_entry();
        let key = entry.key();
        let attempt = entry.insert(Box::new(Attempt {
            generation,
            call: Some(call),
            peer,
            socket,
            addr: SockAddr::from(peer),
            request,
            written: 0,
            reply: ReplyReader::new(),
            step: Step::Connecting,
        }));
        if let Err(reply) = attempt.submit(key, ctx.ring) {
            debug_assert_eq!(reply, Reply::Failed);
            self.attempts.remove(key);
            return Err(io::Error::other("cannot submit the connect"));
        }
        let id = AttemptId { key, generation };
        ctx.timers
            .add(Instant::now() + self.timeout, Deadline::PeerAttempt(id));
        Ok(id)
    }
}

impl Attempt {
    /// Takes in the completion of its operation: `Ok(None)` goes on (the
    /// next operation is to be submitted), `Ok(Some)` heard a reply.
    fn advance(&mut self, result: i32) -> io::Result<Option<Reply>> {
        if result < 0 {
            return Err(io::Error::from_raw_os_error(-result));
        }
        let n = result as usize;
        match self.step {
            Step::Connecting => self.step = Step::Sending,
            Step::Sending => {
                self.written += n;
                if self.written == self.request.len() {
                    self.step = Step::Receiving;
                }
            }
            Step::Receiving => {
                // One reply, and nothing after it: the peer answers one
                // question, the one it was asked.
                return self.reply.received(n).into_result();
            }
        }
        Ok(None)
    }

    /// Submits the operation of its step. `Err(Failed)` if it could not.
    fn submit(&mut self, key: usize, ring: &mut Ring) -> Result<(), Reply> {
        let fd = types::Fd(self.socket.as_raw_fd());
        let entry = match self.step {
            Step::Connecting => {
                opcode::Connect::new(fd, self.addr.as_ptr().cast(), self.addr.len()).build()
            }
            Step::Sending => {
                let rest = &self.request[self.written..];
                opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            }
            Step::Receiving => {
                let room = self.reply.room();
                opcode::Recv::new(fd, room.as_mut_ptr(), room.len() as u32).build()
            }
        };
        let entry = entry.user_data(Op::Peer(key).user_data());
        // SAFETY: the attempt is boxed (its slab growing does not move
        // it), it is removed from the slab only on this operation's
        // completion, and none of the address, request or reply is
        // touched while an operation is in flight.
        unsafe { ring.push(entry) }.map_err(|error| {
            tracing::debug!("peer {}: {error}", self.peer);
            Reply::Failed
        })
    }
}

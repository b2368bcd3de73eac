//! One client of the loop: the driver of its conversation (zen-utils'
//! `Conversation`, the protocol) in the completion style. The loop hands
//! it what the kernel completed (bytes received, bytes sent) and what else
//! happened (its timer is due, the peers answered, the server shuts
//! down); it takes that in, answers what it can, and writes the next
//! operations into the submission queue. The loop never writes into it.
//!
//! What is in flight per connection, at most: one multishot receive and
//! one send.
//!
//! ```text
//!              ┌─ arm ──► Armed ─ CQE with MORE: bytes in a provided buffer ─┐
//!   recv: Idle ┤            │  ◄──────────────────────────────────────────────┘
//!              │            └─ no longer wanted: cancel ──► Cancelling
//!              └◄── the last CQE (no MORE: EOF, error, cancelled, ENOBUFS) ──┘
//!   send: idle ── answers copied into `flight`, Send ──► sending ── CQE: n sent ──► idle
//! ```
//!
//! Who owns what: a received buffer is the kernel's until its completion,
//! then the loop's, which copies the bytes into the decoder and gives it
//! back the same turn. `flight` is the kernel's from a Send's submission
//! to its completion: nothing writes it meanwhile, and the connection is
//! not freed until every operation of it completed (see `event_loop.rs`,
//! `close`).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use io_uring::{opcode, types};
use socket2::SockRef;
use zen_utils::protocol::conversation::{Conversation, Needed, OUTPUT_KEEP};
use zen_utils::protocol::peers::Forward;
use zen_utils::serve::admission::Permit;
use zen_utils::serve::raw_loop::admitted::Admitted;
use zen_utils::serve::raw_loop::deadline::Deadline;
use zen_utils::serve::raw_loop::ending;
use zen_utils::serve::raw_loop::ids::ConnId;
use zen_utils::serve::raw_loop::timers::Timers;
use zen_utils::{Config, End, Leftover, Shutdown, Stats, WorkKind};

use crate::buf_ring::GROUP;
use crate::ring::{Op, Ring};

/// What happened to a connection, as the loop tells it (besides its own
/// completions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The `--work wait` timer of the question in progress is due.
    AnswerDue,
    /// The peers were asked about the question in progress: this is the
    /// answer to give.
    PeersAnswered(&'static [u8]),
    /// The server begins its shutdown: take what has already arrived,
    /// answer it, and end.
    Shutdown,
}

/// What the loop gives a connection to work with.
pub(crate) struct Context<'a> {
    pub(crate) ring: &'a mut Ring,
    pub(crate) config: &'a Config,
    pub(crate) stats: &'a Stats,
    /// The end of its grace cuts `--work cpu` short.
    pub(crate) shutdown: &'a Shutdown,
    pub(crate) timers: &'a mut Timers<Deadline>,
    /// Questions this connection needs its peers to answer: the loop
    /// starts asking them after this turn.
    pub(crate) peer_calls: &'a mut Vec<(ConnId, Forward)>,
}

/// Where the multishot receive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    /// None in flight.
    Idle,
    /// In flight: each arrival is a completion.
    Armed,
    /// A cancel was submitted; its last completion is still to come.
    Cancelling,
}

/// One client, in the loop's slab, from accept until its last operation
/// completed.
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) id: ConnId,
    /// Its place under `--max-conns`, from its accept until it closes
    /// (not until it is freed: the kernel's last completions do not hold a
    /// place).
    pub(crate) permit: Option<Permit>,
    /// The protocol: the decoder, the answers not yet sent (those in
    /// flight included: they count against the output bound until the
    /// kernel says they went), the question being worked on, the idle
    /// deadline, the last word, why it ended.
    conversation: Conversation,
    /// Bytes received that the conversation could not take yet (it stopped
    /// reading: an answer is owed, or its output is at the bound). The
    /// receive is cancelled then, so only the arrivals already completed
    /// land here. Empty, and unallocated, almost always.
    held: Vec<u8>,
    /// The client shut its sending side behind bytes still `held`: the
    /// conversation is told once it has taken them.
    input_ended: bool,
    recv: Recv,
    /// A copy of the answers being sent, owned by the kernel while
    /// `sending`. A copy, because the conversation's output buffer may
    /// move as answers join it, and the kernel must read memory that
    /// stays put.
    flight: Vec<u8>,
    sending: bool,
    /// The server is shutting down: no receive is armed again.
    shutting_down: bool,
    /// Its end is recorded and its operations cancelled; the loop frees it
    /// once the last of them completed.
    pub(crate) closed: bool,
    /// The key of its peer call in flight, if the peers are being asked its
    /// question: cancelled if the connection closes first.
    pub(crate) call: Option<usize>,
}

impl Connection {
    /// A connection just accepted, holding its place under `--max-conns`.
    /// Its receive is armed by the first [`start`](Self::start).
    pub(crate) fn new(admitted: Admitted, config: &Config) -> Self {
        Self {
            stream: admitted.stream,
            peer: admitted.peer,
            id: admitted.id,
            permit: Some(admitted.permit),
            conversation: Conversation::new(config, Instant::now()),
            held: Vec::new(),
            input_ended: false,
            recv: Recv::Idle,
            flight: Vec::new(),
            sending: false,
            shutting_down: false,
            closed: false,
            call: None,
        }
    }

    /// Arms the first receive.
    pub(crate) fn start(&mut self, ctx: &mut Context<'_>) -> Result<(), End> {
        self.pump(ctx)
    }

    /// A receive completed: `bytes` arrived (empty with `result` 0: the
    /// client shut its sending side), or it failed.
    pub(crate) fn received(
        &mut self,
        result: i32,
        more: bool,
        bytes: &[u8],
        ctx: &mut Context<'_>,
    ) -> Result<(), End> {
        if !more {
            self.recv = Recv::Idle;
        }
        if self.closed {
            return Ok(());
        }
        match result {
            0 if self.held.is_empty() => self.conversation.received(0),
            0 => self.input_ended = true,
            n if n > 0 => self.take_in(bytes, ctx)?,
            // Cancelled by us, or out of provided buffers for a moment:
            // not the client's doing. The receive is armed again if wanted.
            error if error == -libc::ECANCELED || error == -libc::ENOBUFS => {}
            error => {
                let error = io::Error::from_raw_os_error(-error);
                return Err(self.conversation.read_failed(error));
            }
        }
        self.pump(ctx)
    }

    /// A send completed: `result` bytes went, or it failed.
    pub(crate) fn sent(&mut self, result: i32, ctx: &mut Context<'_>) -> Result<(), End> {
        self.sending = false;
        if self.flight.capacity() > OUTPUT_KEEP {
            self.flight = Vec::new(); // A burst's buffer is not kept while idle.
        }
        if self.closed {
            return Ok(());
        }
        match result {
            0 => return Err(End::Failed(io::ErrorKind::WriteZero.into())),
            n if n > 0 => self.conversation.wrote(n as usize),
            error => return Err(End::Failed(io::Error::from_raw_os_error(-error))),
        }
        self.pump(ctx)
    }

    /// Something other than its own completions happened.
    pub(crate) fn wake(&mut self, wake: Wake, ctx: &mut Context<'_>) -> Result<(), End> {
        if self.closed {
            return Ok(());
        }
        let now = Instant::now();
        let needed = match wake {
            Wake::AnswerDue => self.conversation.worked(now, ctx.config, ctx.stats),
            Wake::PeersAnswered(reply) => self
                .conversation
                .forwarded(reply, now, ctx.config, ctx.stats),
            Wake::Shutdown => {
                self.shutting_down = true;
                self.conversation.shutdown();
                None
            }
        };
        self.work(needed, ctx).map_err(End::Failed)?;
        self.pump(ctx)
    }

    /// Feeds bytes that arrived to the conversation, answering as it goes;
    /// what it cannot take now waits in `held`.
    fn take_in(&mut self, bytes: &[u8], ctx: &mut Context<'_>) -> Result<(), End> {
        if !self.held.is_empty() {
            self.held.extend_from_slice(bytes); // Behind what waits already.
            return Ok(());
        }
        let rest = self.feed(bytes, ctx).map_err(End::Failed)?;
        self.held.extend_from_slice(&bytes[bytes.len() - rest..]);
        Ok(())
    }

    /// Feeds `bytes` while the conversation wants them; returns how many
    /// are left over.
    fn feed(&mut self, mut bytes: &[u8], ctx: &mut Context<'_>) -> io::Result<usize> {
        while !bytes.is_empty() && self.conversation.wants_read() {
            let room = self.conversation.read_buf();
            let n = room.len().min(bytes.len());
            room[..n].copy_from_slice(&bytes[..n]);
            self.conversation.received(n);
            bytes = &bytes[n..];
            self.answer(ctx)?;
        }
        Ok(bytes.len())
    }

    /// One turn after anything happened: feed what is held, answer, send,
    /// and (dis)arm the receive. Each step can unblock another (sent
    /// answers make room under the output bound, so held questions can
    /// be answered), which the completions that follow take care of.
    fn pump(&mut self, ctx: &mut Context<'_>) -> Result<(), End> {
        if !self.held.is_empty() && self.conversation.wants_read() {
            let held = std::mem::take(&mut self.held);
            let rest = self.feed(&held, ctx).map_err(End::Failed)?;
            if rest > 0 {
                self.held = held[held.len() - rest..].to_vec();
            }
        }
        if self.input_ended && self.held.is_empty() {
            self.input_ended = false;
            self.conversation.received(0);
        }
        // Questions left behind the output bound, now under it.
        if self.conversation.has_questions() {
            self.answer(ctx).map_err(End::Failed)?;
        }
        if self.shutting_down && self.recv == Recv::Idle && self.held.is_empty() {
            self.read_what_arrived(ctx)?;
        }
        self.start_send(ctx.ring).map_err(End::Failed)?;
        self.arm_or_cancel_recv(ctx.ring).map_err(End::Failed)?;
        match self.end() {
            Some(end) => Err(end),
            None => Ok(()),
        }
    }

    /// Shutting down, with the receive over: reads what has already
    /// arrived in the socket (the multishot receive was cancelled, and
    /// bytes may have come since its last completion) with non-blocking
    /// reads of its own, then tells the conversation it is drained. Only
    /// at shutdown: a few system calls per connection, once.
    fn read_what_arrived(&mut self, ctx: &mut Context<'_>) -> Result<(), End> {
        while self.conversation.wants_read() {
            let room = self.conversation.read_buf();
            // The socket is in blocking mode (the ring does the waiting);
            // MSG_DONTWAIT makes this one read non-blocking.
            let read = SockRef::from(&self.stream).recv_with_flags(
                // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and
                // recv only writes initialised bytes into it.
                unsafe { &mut *(std::ptr::from_mut(room) as *mut [std::mem::MaybeUninit<u8>]) },
                libc::MSG_DONTWAIT,
            );
            match read {
                Ok(n) => {
                    self.conversation.received(n);
                    self.answer(ctx).map_err(End::Failed)?;
                    if n == 0 {
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.conversation.drained();
                    break;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.conversation.read_failed(error)),
            }
        }
        Ok(())
    }

    /// Answers the complete questions received, in order, doing or
    /// starting each one's `--work`.
    fn answer(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        if !self.conversation.has_questions() {
            return Ok(()); // Nothing to answer: not even a clock read.
        }
        let needed = self
            .conversation
            .answer(Instant::now(), ctx.config, ctx.stats);
        self.work(needed, ctx)
    }

    /// Does what the next answer needs, the completion loop's way.
    fn work(&mut self, mut needed: Option<Needed>, ctx: &mut Context<'_>) -> io::Result<()> {
        while let Some(next) = needed {
            let work = match next {
                Needed::Work(work) => work,
                Needed::Peers(forward) => {
                    // The loop asks the peers with operations of its own
                    // (connect, send, receive), and this connection resumes
                    // when they decided the answer.
                    ctx.peer_calls.push((self.id, forward));
                    return Ok(());
                }
            };
            if work.kind == WorkKind::Wait {
                // The loop's way to wait: a timer, which bounds the loop's
                // wait. The thread goes back to the other connections.
                ctx.timers
                    .add(Instant::now() + work.duration, Deadline::Answer(self.id));
                return Ok(());
            }
            // cpu and block run right here, on the loop's only thread:
            // every other connection waits meanwhile, and so does every
            // completion. That is the lesson of `--work block`. Answers
            // made so far are submitted first (one more system call), so
            // they go out before the thread stops. The end of the shutdown
            // grace cuts cpu short.
            self.start_send(ctx.ring)?;
            ctx.ring.submit()?;
            if !work.run_within(ctx.shutdown) {
                return Ok(());
            }
            needed = self
                .conversation
                .worked(Instant::now(), ctx.config, ctx.stats);
        }
        Ok(())
    }

    /// Submits a send of the answers not yet sent, unless one is in
    /// flight (answers made meanwhile go with the next: one send per
    /// batch, and never two sends racing on one socket).
    fn start_send(&mut self, ring: &mut Ring) -> io::Result<()> {
        let output = self.conversation.output();
        if self.sending || output.is_empty() {
            return Ok(());
        }
        self.flight.clear();
        self.flight.extend_from_slice(output);
        let entry = opcode::Send::new(
            types::Fd(self.stream.as_raw_fd()),
            self.flight.as_ptr(),
            self.flight.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(Op::Send(self.id.key).user_data());
        // SAFETY: `flight` is written only in this function, which does
        // nothing while `sending`; the connection, which owns `flight` and
        // the socket, is freed only once `sending` is false (the send's
        // completion came).
        unsafe { ring.push(entry)? };
        self.sending = true;
        Ok(())
    }

    /// Arms the multishot receive if the conversation wants input and
    /// none is in flight; cancels it if it no longer does (the output
    /// bound is the backpressure: a client that does not read is not
    /// read from, and its bytes stay in the kernel's socket buffer, where
    /// TCP's window stops the client).
    fn arm_or_cancel_recv(&mut self, ring: &mut Ring) -> io::Result<()> {
        let wanted = self.conversation.wants_read() && self.held.is_empty() && !self.shutting_down;
        match (self.recv, wanted) {
            (Recv::Idle, true) => {
                let entry = opcode::RecvMulti::new(types::Fd(self.stream.as_raw_fd()), GROUP)
                    .build()
                    .user_data(Op::Recv(self.id.key).user_data());
                // SAFETY: the receive names no memory of ours, only the
                // pool (which outlives the ring) and the socket, which the
                // connection keeps open until the receive's last completion.
                unsafe { ring.push(entry)? };
                self.recv = Recv::Armed;
            }
            (Recv::Armed, false) => self.cancel_recv(ring)?,
            _ => {}
        }
        Ok(())
    }

    fn cancel_recv(&mut self, ring: &mut Ring) -> io::Result<()> {
        if self.recv == Recv::Armed {
            ring.cancel(Op::Recv(self.id.key))?;
            self.recv = Recv::Cancelling;
        }
        Ok(())
    }

    /// The connection closes: cancels what it has in flight. Its memory
    /// stays until [`in_flight`](Self::in_flight) says the kernel is done
    /// with it.
    pub(crate) fn cancel_all(&mut self, ring: &mut Ring) {
        self.closed = true;
        let _ = self.cancel_recv(ring);
        if self.sending {
            // A client that never reads would hold this send for ever.
            let _ = ring.cancel(Op::Send(self.id.key));
        }
    }

    /// Whether the kernel still has an operation of this connection.
    pub(crate) fn in_flight(&self) -> bool {
        self.sending || self.recv != Recv::Idle
    }

    /// Why the connection is over, if it is, as the conversation says,
    /// after its last word (sent best effort with one non-blocking send: a
    /// client that does not read cannot hold the connection for it).
    fn end(&mut self) -> Option<End> {
        let stream = &self.stream;
        ending::last_word_then_end(&mut self.conversation, |word| {
            send_now(stream, word);
        })
    }

    /// Whether the idle deadline has passed.
    pub(crate) fn idle_expired(&self, now: Instant) -> bool {
        !self.closed && self.conversation.idle_expired(now)
    }

    /// The idle deadline passed: how the connection ends (its last word
    /// sent as [`end`](Self::end) sends it).
    pub(crate) fn idle_end(&mut self, now: Instant) -> End {
        let stream = &self.stream;
        ending::idle_end(&mut self.conversation, now, |word| {
            send_now(stream, word);
        })
    }

    /// The shutdown grace is over: how the connection ends.
    pub(crate) fn grace_over(&mut self) -> End {
        self.conversation.grace_over()
    }

    /// What the connection holds unanswered if it closes now.
    pub(crate) fn leftover(&mut self) -> Leftover {
        self.conversation.leftover()
    }
}

/// Sends `word` with one non-blocking send, best effort.
fn send_now(stream: &TcpStream, word: &[u8]) {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let _ = SockRef::from(stream).send_with_flags(word, flags);
}

#[cfg(test)]
mod tests {
    use super::*;
    use zen_utils::serve::raw_loop::admitted::Admitter;

    /// The C10K budget is 2 KiB of server memory per idle connection; an
    /// idle connection holds no buffer (its receive draws from the pool
    /// only when bytes arrive), so it is its slab entry alone.
    #[test]
    fn an_idle_connection_holds_no_buffer_and_stays_small() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        let (config, stats) = (Config::default(), Stats::new());
        let admitted = Admitter::new(1)
            .admit(stream, peer, 0, &config, &stats, |_| Ok(()))
            .unwrap();
        let conn = Connection::new(admitted, &config);
        assert_eq!(conn.conversation.memory(), 0);
        assert_eq!(conn.held.capacity() + conn.flight.capacity(), 0);
        assert!(
            size_of::<Connection>() <= 512,
            "{}",
            size_of::<Connection>()
        );
    }
}

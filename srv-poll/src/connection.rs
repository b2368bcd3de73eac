//! One client of the loop: the driver of its conversation (zen-utils'
//! `Conversation`, the protocol). The loop tells it what happened (its
//! socket is ready, its timer is due, the server shuts down); it does all
//! it can without blocking and tells the loop what it wants next
//! ([`Next`]). The loop never writes into it.
//!
//! Nothing here blocks. Every read and write is non-blocking, and
//! `WouldBlock` is not an error: it means "not now", and the connection
//! asks to be told when to try again. All of its state lives in this
//! struct, in the loop's slab: there is no stack to hold it between events.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use zen_utils::protocol::conversation::{Conversation, Needed};
use zen_utils::protocol::peers::Forward;
use zen_utils::serve::admission::Permit;
use zen_utils::serve::raw_loop::admitted::Admitted;
use zen_utils::serve::raw_loop::deadline::Deadline;
use zen_utils::serve::raw_loop::ending;
use zen_utils::serve::raw_loop::epoll::Interest;
use zen_utils::serve::raw_loop::ids::ConnId;
use zen_utils::serve::raw_loop::timers::Timers;
use zen_utils::{Config, End, Leftover, Shutdown, Stats, Work, WorkKind};

/// How many reads one connection may make per turn of the loop. A client
/// that pipelines as fast as the server answers always has more to read,
/// and reading it until `WouldBlock` would keep the only thread on that one
/// client for as long as it goes on: every other client would starve. 16
/// reads of up to `--max-request` + 4 KiB are some 3,000 questions, enough
/// to amortise a turn, little enough that the others' turn comes soon.
const READS_PER_TURN: usize = 16;

/// What happened, as the loop tells a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The poller reported the socket `ready` for what it was registered
    /// for. `unasked` is readiness it was not registered for: epoll
    /// reports an error or a hang-up even to a socket with no interest, and
    /// level-triggered it would report it at every wait, so the error is
    /// collected now.
    Ready { ready: Interest, unasked: bool },
    /// The work of the question in progress is over: its `--work wait`
    /// timer is due, or a helper did it (`--offload`).
    AnswerDue,
    /// The peers were asked about the question in progress: this is the
    /// answer to give.
    PeersAnswered(&'static [u8]),
    /// Its last turn ended with more to read, and every other ready
    /// connection has had its turn since.
    NextTurn,
    /// The server begins its shutdown: read what has already arrived,
    /// answer it, and end.
    Shutdown,
}

/// What a connection wants from the loop after a turn.
#[derive(Debug)]
pub(crate) enum Next {
    /// Tell me when the socket is ready for this (or a timer is due).
    Wait(Interest),
    /// I used my whole turn with more to read: give me another after the
    /// others had theirs (edge-triggered, no event would come for it), and
    /// meanwhile watch for this.
    AnotherTurn(Interest),
    /// Close me: the conversation ended this way.
    Close(End),
}

/// What a connection needs from the loop while it advances.
pub(crate) struct Context<'a> {
    pub(crate) config: &'a Config,
    pub(crate) stats: &'a Stats,
    /// The end of its grace cuts `--work cpu` short.
    pub(crate) shutdown: &'a Shutdown,
    pub(crate) timers: &'a mut Timers<Deadline>,
    /// Questions this connection needs its peers to answer: the loop
    /// starts asking them once the connection's turn is over.
    pub(crate) peer_calls: &'a mut Vec<(ConnId, Forward)>,
    /// `--work cpu|block` this connection hands to the helpers
    /// (`--offload`): the loop submits it once the connection's turn is
    /// over. `None`: no helpers, the work runs right here.
    pub(crate) offloaded: Option<&'a mut Vec<(ConnId, Work)>>,
    /// Whether a short read may be taken to mean "nothing more to read"
    /// (see `poll_mode`): it saves the read that would only return
    /// `WouldBlock`, one system call per answer.
    pub(crate) short_read_drains: bool,
}

/// One client, in the slab, from accept to close: its socket, the
/// protocol's conversation, and what the loop's events said the socket can
/// do.
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) id: ConnId,
    /// Its place under `--max-conns`, given back when the connection is
    /// dropped.
    _permit: Permit,
    /// The protocol: what was received, the answers not yet sent and their
    /// bound, the question being worked on, the idle deadline, the last
    /// word, why it ended. Its buffers are allocated at first use, and an
    /// output buffer that grew is freed once drained.
    conversation: Conversation,
    /// What the socket can do as far as we know: `readable` from an event
    /// until a read finds it drained; `writable` until a write returns
    /// `WouldBlock`, and again from an event. Remembered rather than asked
    /// again, so a connection that stopped reading at the output bound
    /// resumes as soon as its answers drain, without waiting for an event.
    socket: Interest,
}

impl Connection {
    /// A connection just accepted, registered as readable, holding its
    /// place under `--max-conns`.
    pub(crate) fn new(admitted: Admitted, config: &Config) -> Self {
        Self {
            stream: admitted.stream,
            peer: admitted.peer,
            id: admitted.id,
            _permit: admitted.permit,
            conversation: Conversation::new(config, Instant::now()),
            socket: Interest::new(false, true),
        }
    }

    /// Takes in what happened, does everything that can be done now without
    /// blocking (send pending answers, answer complete questions, read
    /// more), and says what it wants next.
    pub(crate) fn advance(&mut self, wake: Wake, ctx: &mut Context<'_>) -> Next {
        match self.turn(wake, ctx) {
            Ok(more_to_read) => match self.end() {
                Some(end) => Next::Close(end),
                None if more_to_read => Next::AnotherTurn(self.interest()),
                None => Next::Wait(self.interest()),
            },
            Err(end) => Next::Close(end),
        }
    }

    /// One turn: read, answer, send. Each step can unblock another (sent
    /// answers make room under the output bound, so more questions can be
    /// answered, so more can be read), so the three repeat until none of
    /// them makes progress, or until the connection has had its
    /// [`READS_PER_TURN`].
    /// Returns whether it stopped with more to read.
    fn turn(&mut self, wake: Wake, ctx: &mut Context<'_>) -> Result<bool, End> {
        let mut work_done = false;
        let mut forwarded = None;
        match wake {
            Wake::Ready { ready, unasked } => {
                self.socket.readable |= ready.readable;
                self.socket.writable |= ready.writable;
                if unasked {
                    match self.stream.take_error() {
                        Ok(None) => {}
                        Ok(Some(error)) | Err(error) => {
                            return Err(self.conversation.read_failed(error))
                        }
                    }
                }
            }
            Wake::AnswerDue => work_done = true,
            Wake::PeersAnswered(reply) => {
                // It joins the output here; the questions behind it are
                // answered in the turn below.
                forwarded = Some(reply);
            }
            Wake::NextTurn => {}
            Wake::Shutdown => {
                // Read at least once: whatever has already arrived.
                self.socket.readable = true;
                self.conversation.shutdown();
            }
        }
        let mut reads = 0;
        loop {
            let read = reads < READS_PER_TURN
                && self
                    .read(ctx)
                    .map_err(|error| self.conversation.read_failed(error))?;
            reads += usize::from(read);
            if !self.socket.readable {
                // Shutting down, everything that had arrived is read: no
                // more reads. (Otherwise this does nothing.)
                self.conversation.drained();
            }
            let answered = self
                .answer(std::mem::take(&mut work_done), forwarded.take(), ctx)
                .map_err(End::Failed)?;
            let sent = self.flush().map_err(End::Failed)?;
            if !(read || answered || sent) {
                return Ok(false);
            }
            if reads == READS_PER_TURN {
                // What the last read brought is answered and sent: yield.
                return Ok(self.socket.readable && self.conversation.wants_read());
            }
        }
    }

    /// Sends pending answers until they are all sent or the socket's buffer
    /// is full. A short write is not an error: the rest stays in the
    /// conversation's output and goes when the poller says writable.
    /// Returns whether any byte went.
    fn flush(&mut self) -> io::Result<bool> {
        let mut sent = false;
        while !self.conversation.output().is_empty() && self.socket.writable {
            match self.stream.write(self.conversation.output()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.conversation.wrote(n);
                    sent = true;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.socket.writable = false;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(sent)
    }

    /// Answers the complete questions received, in order, while the output
    /// is under its bound and no answer waits on a timer, doing or starting
    /// each one's `--work` (`work_done`: the one waited for is due).
    /// Returns whether it answered (or began working on) any.
    fn answer(
        &mut self,
        work_done: bool,
        forwarded: Option<&'static [u8]>,
        ctx: &mut Context<'_>,
    ) -> io::Result<bool> {
        if !work_done && forwarded.is_none() && !self.conversation.has_questions() {
            return Ok(false); // Nothing to answer: not even a clock read.
        }
        let before = self.conversation.output().len();
        let now = Instant::now();
        let mut work = match forwarded {
            Some(reply) => self
                .conversation
                .forwarded(reply, now, ctx.config, ctx.stats),
            None if work_done => self.conversation.worked(now, ctx.config, ctx.stats),
            None => self.conversation.answer(now, ctx.config, ctx.stats),
        };
        let mut progressed = self.conversation.output().len() != before;
        while let Some(needed) = work {
            progressed = true;
            let needed = match needed {
                Needed::Work(work) => work,
                Needed::Peers(forward) => {
                    // The loop asks the peers without blocking: the asking
                    // is the loop's (an outgoing connection beside the
                    // clients'), and this connection resumes when it ends.
                    ctx.peer_calls.push((self.id, forward));
                    break;
                }
            };
            if needed.kind == WorkKind::Wait {
                // The loop's way to wait: a timer. The thread goes back to
                // the other connections, and this one resumes when the
                // timer is due.
                ctx.timers
                    .add(Instant::now() + needed.duration, Deadline::Answer(self.id));
                break;
            }
            if let Some(offloaded) = ctx.offloaded.as_mut() {
                // `--offload`: a helper thread does it, and this
                // connection resumes when the helper is done, as after a
                // timer. Meanwhile the loop serves everyone else.
                offloaded.push((self.id, needed));
                break;
            }
            // cpu and block run right here, on the loop's only thread:
            // every other connection waits meanwhile. That is the lesson of
            // `--work block`. Answers made so far go out first. The end of
            // the shutdown grace cuts cpu short (block cannot be: it is a
            // sleep that hears nothing), and the loop then closes everyone.
            self.flush()?;
            if !needed.run_within(ctx.shutdown) {
                break;
            }
            work = self
                .conversation
                .worked(Instant::now(), ctx.config, ctx.stats);
        }
        Ok(progressed)
    }

    /// Reads once, if this connection wants input and the socket may have
    /// some. Returns whether anything happened (bytes, end of input).
    fn read(&mut self, ctx: &Context<'_>) -> io::Result<bool> {
        if !(self.socket.readable && self.conversation.wants_read()) {
            return Ok(false);
        }
        let room = self.conversation.read_buf();
        let capacity = room.len();
        if capacity == 0 {
            // Cannot happen while `wants_read` holds (complete questions
            // are taken before reading); reading into nothing would look
            // like the end of input.
            return Ok(false);
        }
        match self.stream.read(room) {
            Ok(n) => {
                self.conversation.received(n);
                if n < capacity && n > 0 && ctx.short_read_drains {
                    self.socket.readable = false;
                }
                Ok(true)
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                self.socket.readable = false;
                Ok(false)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(error) => Err(error),
        }
    }

    /// The interest to register now: readable while the conversation wants
    /// input (not past the output bound, which is the backpressure; not
    /// while an answer is owed; never again once the input ended), writable
    /// only while answers are pending (asking for writable with nothing to
    /// send would wake the loop for nothing, constantly when
    /// level-triggered).
    fn interest(&self) -> Interest {
        Interest::new(self.conversation.wants_read(), self.owes_output())
    }

    /// Whether, as far as the events and reads said, nothing waits unread
    /// on the socket (see `RegisteredInterest::update`).
    pub(crate) fn drained(&self) -> bool {
        !self.socket.readable
    }

    /// Why the connection is over, if it is, as the conversation says,
    /// after its last word (sent best effort: with whatever room the socket
    /// has now, as the connection closes next whatever happens).
    fn end(&mut self) -> Option<End> {
        let stream = &mut self.stream;
        ending::last_word_then_end(&mut self.conversation, |word| {
            let _ = stream.write(word);
        })
    }

    /// Whether the idle deadline has passed. A connection whose answer is
    /// being worked on is not idle: the server owes it that answer.
    pub(crate) fn idle_expired(&self, now: Instant) -> bool {
        self.conversation.idle_expired(now)
    }

    /// The idle deadline passed: how the connection ends (with the last
    /// word `Error: idle timeout.`, sent best effort, unless answers were
    /// left unread).
    pub(crate) fn idle_end(&mut self, now: Instant) -> End {
        let stream = &mut self.stream;
        ending::idle_end(&mut self.conversation, now, |word| {
            let _ = stream.write(word);
        })
    }

    /// The shutdown grace is over: how the connection ends, whatever it
    /// still owes.
    pub(crate) fn grace_over(&mut self) -> End {
        self.conversation.grace_over()
    }

    /// What the connection holds unanswered if it closes now: the bytes of
    /// a question begun but not ended, and complete questions not answered
    /// (the one being worked on and those behind it), which it gives up.
    pub(crate) fn leftover(&mut self) -> Leftover {
        self.conversation.leftover()
    }

    /// Whether answers are still waiting to be sent: the client has not
    /// read them.
    fn owes_output(&self) -> bool {
        !self.conversation.output().is_empty()
    }

    /// Bytes this connection holds in the server's memory: the struct in
    /// the slab plus its buffers.
    #[cfg(test)]
    fn memory(&self) -> usize {
        size_of::<Self>() + self.conversation.memory()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::SockRef;
    use zen_utils::protocol::conversation::OUTPUT_KEEP;
    use zen_utils::protocol::frame::READ_CHUNK;
    use zen_utils::protocol::OUTPUT_LIMIT;
    use zen_utils::serve::raw_loop::admitted::Admitter;

    /// The read buffer of a connection that has read, at the default
    /// `--max-request`: what its memory holds besides its output buffer.
    const READ_BUFFER: usize = zen_utils::config::DEFAULT_MAX_REQUEST + READ_CHUNK;
    use std::net::TcpListener;

    /// The C10K budget: at most 2 KiB of server memory per idle connection.
    const IDLE_BUDGET: usize = 2048;

    fn accepted_pair() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        let (config, stats) = (Config::default(), Stats::new());
        let admitted = Admitter::new(1)
            .admit(stream, peer, 0, &config, &stats, |_| Ok(()))
            .unwrap();
        (Connection::new(admitted, &config), client)
    }

    #[test]
    fn an_idle_connection_stays_small() {
        let (connection, _client) = accepted_pair();
        assert_eq!(connection.conversation.memory(), 0, "no buffer while idle");
        assert!(
            connection.memory() <= IDLE_BUDGET / 4,
            "{} bytes",
            connection.memory()
        );
    }

    #[test]
    fn a_burst_of_answers_does_not_stay_allocated() {
        const QUESTIONS: usize = 100_000;
        let (mut connection, mut client) = accepted_pair();
        // Fixed socket buffers, so that answers back up in `out` while the
        // client does not read: 600,000 bytes of answers cannot all fit in
        // them. The client's is not made tiny: below the loopback's segment
        // size (64 KiB), a receiver announces no window update, and the
        // sender learns of room only from its zero-window probes, whose
        // back-off grows to a minute.
        SockRef::from(&connection.stream)
            .set_send_buffer_size(4096)
            .unwrap();
        SockRef::from(&client)
            .set_recv_buffer_size(128 * 1024)
            .unwrap();
        let mut writer = client.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            writer
                .write_all(&b"Now is better than?".repeat(QUESTIONS))
                .unwrap();
        });
        let (config, stats, mut timers) = (Config::default(), Stats::new(), Timers::new());
        let shutdown = Shutdown::new();
        let mut ctx = Context {
            config: &config,
            stats: &stats,
            shutdown: &shutdown,
            timers: &mut timers,
            peer_calls: &mut Vec::new(),
            offloaded: None,
            short_read_drains: true,
        };
        let both = Wake::Ready {
            ready: Interest::READ_WRITE,
            unasked: false,
        };
        let mut step = |connection: &mut Connection| {
            let next = connection.advance(both, &mut ctx);
            assert!(!matches!(next, Next::Close(_)), "{next:?}");
            std::thread::yield_now();
        };
        // The client does not read: the output grows to its bound. (A
        // bound on time, not on steps: on a busy machine the sender thread
        // may get little CPU while this one spins.)
        let started = Instant::now();
        let hung = || started.elapsed() > std::time::Duration::from_secs(60);
        while connection.conversation.output().len() < OUTPUT_LIMIT {
            step(&mut connection);
            assert!(!hung(), "the output never reached its bound");
        }
        assert!(connection.conversation.memory() > READ_BUFFER + OUTPUT_KEEP);
        // Now it reads every answer; the output drains and is freed.
        let want = b"never.".repeat(QUESTIONS);
        let mut got = Vec::new();
        client.set_nonblocking(true).unwrap();
        while got.len() < want.len() {
            step(&mut connection);
            let mut chunk = [0; 16 * 1024];
            if let Ok(n) = client.read(&mut chunk) {
                got.extend_from_slice(&chunk[..n]);
            }
            assert!(!hung(), "the answers never all came");
        }
        sender.join().unwrap();
        assert!(got == want, "every answer, in order");
        assert_eq!(connection.conversation.output().len(), 0);
        assert!(connection.conversation.memory() <= READ_BUFFER + OUTPUT_KEEP);
        assert_eq!(stats.summary().answered, QUESTIONS as u64);
    }
}

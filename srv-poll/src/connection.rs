//! One client of the loop: the driver of its conversation (zen-utils'
//! `Conversation`, the protocol), and what it does each time the loop
//! tells it that its socket is ready or its timer is due.
//!
//! Nothing here blocks. Every read and write is non-blocking, and
//! `WouldBlock` is not an error: it means "not now", and the connection
//! asks the loop (through [`Connection::wanted_interest`]) to be told when
//! to try again. All of its state lives in this struct, in the loop's slab:
//! there is no stack to hold it between events.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use zen_utils::conversation::Conversation;
use zen_utils::{Config, End, Leftover, Shutdown, Stats, WorkKind};

use crate::timers::Timers;

/// How many reads one connection may make per turn of the loop. A client
/// that pipelines as fast as the server answers always has more to read,
/// and reading it until `WouldBlock` would keep the only thread on that one
/// client for as long as it goes on: every other client would starve. 16
/// reads of up to `--max-request` + 4 KiB are some 3,000 questions, enough
/// to amortise a turn, little enough that the others' turn comes soon.
const READS_PER_TURN: usize = 16;

/// Which connection a timer is for. The slab reuses keys, so the key alone
/// could name a newer connection; the generation tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ConnId {
    pub(crate) key: usize,
    pub(crate) generation: u64,
}

/// What the loop's timer queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A `--work wait` is over: the connection's pending answer is ready.
    Answer(ConnId),
    /// Time to close connections whose idle deadline passed (RawServer's
    /// `scan_for_timeouts`).
    IdleScan,
    /// The accept backoff after running out of descriptors is over.
    ResumeAccepting,
}

/// Readiness a connection asks the poller for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interest {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
}

impl Interest {
    pub(crate) const NONE: Self = Self {
        readable: false,
        writable: false,
    };
    pub(crate) const READABLE: Self = Self {
        readable: true,
        writable: false,
    };
}

/// What a connection needs from the loop while it advances.
pub(crate) struct Context<'a> {
    pub(crate) config: &'a Config,
    pub(crate) stats: &'a Stats,
    /// The end of its grace cuts `--work cpu` short.
    pub(crate) shutdown: &'a Shutdown,
    pub(crate) timers: &'a mut Timers<Timer>,
    /// Whether a short read may be taken to mean "nothing more to read".
    /// True for level-triggered and oneshot registrations: the poller
    /// reports bytes still in the socket (or arriving later) at the next
    /// wait, so reading again now would only earn a `WouldBlock`, one
    /// system call per answer. An edge-triggered registration reports only
    /// *new* bytes, so there reading must go on until `WouldBlock`.
    pub(crate) short_read_drains: bool,
}

/// One client, in the slab, from accept to close: its socket, the
/// protocol's conversation, and what the loop knows of the socket's
/// readiness.
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) id: ConnId,
    /// The interest registered with the poller now. The loop calls
    /// `modify` only when [`wanted_interest`](Self::wanted_interest)
    /// differs from it: in level-triggered mode interest changes only at
    /// backpressure, pending output and `--work wait`, not per event.
    pub(crate) registered: Interest,
    /// The protocol: what was received, the answers not yet sent and their
    /// bound, the question being worked on, the idle deadline, the last
    /// word, why it ended. Its buffers are allocated at first use, and an
    /// output buffer that grew is freed once drained.
    conversation: Conversation,
    /// A `--work wait` timer is due: the answer it held joins the output
    /// at the next advance, and the questions behind it proceed.
    work_done: bool,
    /// The poller said readable and no read has returned `WouldBlock` since:
    /// there may be bytes to read. Readiness is remembered rather than
    /// re-asked, so a connection that stopped reading at the output bound
    /// resumes as soon as its answers drain, without waiting for an event.
    read_ready: bool,
    /// A write returned `WouldBlock` and the poller has not said writable
    /// since: trying again now would only fail again.
    write_blocked: bool,
    /// The server is shutting down and this connection takes what has
    /// already arrived: it reads until the socket has nothing more (over
    /// as many turns as that takes), then stops reading.
    draining: bool,
    /// The connection used its whole turn ([`READS_PER_TURN`]) with more to
    /// read: the loop advances it again once the others had their turn,
    /// rather than wait for an event that, edge-triggered, may never come.
    pub(crate) unfinished: bool,
    /// The loop holds this connection in its list of unfinished ones.
    pub(crate) queued: bool,
    /// A read or write failed: close now.
    failed: Option<io::Error>,
}

impl Connection {
    /// A connection just accepted, registered as `READABLE`.
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, id: ConnId, config: &Config) -> Self {
        Self {
            stream,
            peer,
            id,
            registered: Interest::READABLE,
            conversation: Conversation::new(config, Instant::now()),
            work_done: false,
            read_ready: false,
            write_blocked: false,
            draining: false,
            unfinished: false,
            queued: false,
            failed: None,
        }
    }

    /// The poller reported readiness. `unasked` is readiness that was not
    /// registered: epoll reports a hang-up or an error even to a socket
    /// with no interest, and in level-triggered mode it would report it
    /// again at every wait, so the error is collected now.
    pub(crate) fn on_ready(&mut self, ready: Interest, unasked: bool) {
        self.read_ready |= ready.readable;
        self.write_blocked &= !ready.writable;
        if unasked {
            if let Ok(Some(error)) | Err(error) = self.stream.take_error() {
                self.failed.get_or_insert(error);
            }
        }
    }

    /// The `--work wait` timer of the question in progress is due: its
    /// answer joins the output at the next [`advance`](Self::advance).
    pub(crate) fn on_answer_ready(&mut self) {
        self.work_done = true;
    }

    /// Does everything that can be done now without blocking: send pending
    /// answers, answer complete questions, read more. Returns why the
    /// connection is over, if it is.
    ///
    /// Each step can unblock another (sent answers make room under the
    /// output bound, so more questions can be answered, so more can be
    /// read), so the three repeat until none of them makes progress, or
    /// until the connection has had its [`READS_PER_TURN`] (then it is
    /// left [`unfinished`](Self::unfinished)).
    pub(crate) fn advance(&mut self, ctx: &mut Context<'_>) -> Option<End> {
        let mut reads = 0;
        self.unfinished = false;
        while self.failed.is_none() {
            let sent = self.flush();
            let answered = self.answer(ctx);
            if reads == READS_PER_TURN {
                self.unfinished = self.read_ready && self.wants_read();
                break;
            }
            let read = self.read(ctx);
            reads += usize::from(read);
            if self.draining && !self.read_ready {
                // Everything that had arrived is read: no more reads.
                self.conversation.drained();
            }
            if !(sent || answered || read) {
                break;
            }
        }
        self.end(ctx.stats)
    }

    /// Sends pending answers until they are all sent or the socket's buffer
    /// is full. A short write is not an error: the rest stays in the
    /// conversation's output and goes when the poller says writable.
    /// Returns whether any byte went.
    fn flush(&mut self) -> bool {
        let mut sent = false;
        while !self.conversation.output().is_empty() && !self.write_blocked && self.failed.is_none()
        {
            match self.stream.write(self.conversation.output()) {
                Ok(0) => self.fail(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.conversation.wrote(n);
                    sent = true;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => self.fail(error),
            }
        }
        sent
    }

    /// Answers the complete questions received, in order, while the output
    /// is under its bound and no answer waits on a timer, doing or starting
    /// each one's `--work`. Returns whether it answered (or began working
    /// on) any.
    fn answer(&mut self, ctx: &mut Context<'_>) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let before = self.conversation.output().len();
        let now = Instant::now();
        let mut work = if std::mem::take(&mut self.work_done) {
            self.conversation.worked(now, ctx.config, ctx.stats)
        } else {
            self.conversation.answer(now, ctx.config, ctx.stats)
        };
        let mut progressed = self.conversation.output().len() != before;
        while let Some(needed) = work {
            progressed = true;
            if needed.kind == WorkKind::Wait {
                // The loop's way to wait: a timer. The thread goes back to
                // the other connections, and this one resumes when the
                // timer is due.
                ctx.timers
                    .add(Instant::now() + needed.duration, Timer::Answer(self.id));
                break;
            }
            // cpu and block run right here, on the loop's only thread:
            // every other connection waits meanwhile. That is the lesson of
            // `--work block`. Answers made so far go out first. The end of
            // the shutdown grace cuts cpu short (block cannot be: it is a
            // sleep that hears nothing), and the loop then closes everyone.
            self.flush();
            if !needed.run_within(ctx.shutdown) {
                break;
            }
            work = self
                .conversation
                .worked(Instant::now(), ctx.config, ctx.stats);
        }
        progressed
    }

    /// Reads once, if this connection wants input and the socket may have
    /// some. Returns whether anything happened (bytes, end of input, an
    /// error).
    fn read(&mut self, ctx: &Context<'_>) -> bool {
        if !(self.read_ready && self.wants_read()) {
            return false;
        }
        let room = self.conversation.read_buf();
        let capacity = room.len();
        if capacity == 0 {
            // Cannot happen while `wants_read` holds (complete questions
            // are taken before reading); reading into nothing would look
            // like the end of input.
            return false;
        }
        match self.stream.read(room) {
            Ok(0) => self.conversation.received(0),
            Ok(n) => {
                self.conversation.received(n);
                if n < capacity && ctx.short_read_drains {
                    self.read_ready = false;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                self.read_ready = false;
                return false;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => self.fail(error),
        }
        true
    }

    /// Whether to read more from the client now: as the conversation says
    /// (not past the output bound, which is the backpressure; not while an
    /// answer is owed; never again once the input ended), and not after a
    /// failure.
    fn wants_read(&self) -> bool {
        self.failed.is_none() && self.conversation.wants_read()
    }

    /// The interest to register now: readable while it wants input,
    /// writable only while answers are pending (asking for writable with
    /// nothing to send would wake the loop for nothing, constantly in
    /// level-triggered mode).
    pub(crate) fn wanted_interest(&self) -> Interest {
        Interest {
            readable: self.wants_read(),
            writable: self.owes_output(),
        }
    }

    /// Why the connection is over, if it is: an error at once; otherwise
    /// as the conversation says, after its last word (sent best effort:
    /// with whatever room the socket has now, as the connection closes
    /// next whatever happens).
    fn end(&mut self, stats: &Stats) -> Option<End> {
        if let Some(error) = self.failed.take() {
            return Some(End::Failed(error));
        }
        if let Some(word) = self.conversation.last_word(stats) {
            let _ = self.stream.write(word);
        }
        self.conversation.end()
    }

    /// The server begins its shutdown: the connection reads what has
    /// already arrived (`read_ready` is set, so it tries at least once),
    /// stops reading once a read finds the socket drained, and ends once
    /// its answers are sent. A client that never stops sending keeps it
    /// reading until the shutdown grace closes it.
    pub(crate) fn last_read(&mut self) {
        self.read_ready = true;
        self.draining = true;
        self.conversation.shutdown();
    }

    /// Whether the idle deadline has passed. A connection whose answer is
    /// being worked on is not idle: the server owes it that answer.
    pub(crate) fn idle_expired(&self, now: Instant) -> bool {
        self.conversation.idle_expired(now)
    }

    /// The idle deadline passed: how the connection ends. With answers
    /// unsent, the client did not read them (an error); otherwise with the
    /// last word `Error: idle timeout.`, sent best effort.
    pub(crate) fn idle_end(&mut self, now: Instant, stats: &Stats) -> End {
        if let Some(end) = self.conversation.check_idle(now) {
            return end;
        }
        self.end(stats).unwrap_or(End::IdleTimeout)
    }

    /// What the connection holds unanswered if it closes now: the bytes of
    /// a question begun but not ended, and complete questions not answered
    /// (the one being worked on and those behind it), which it gives up.
    pub(crate) fn leftover(&mut self) -> Leftover {
        self.conversation.leftover()
    }

    /// Whether answers are still waiting to be sent: the client has not
    /// read them.
    pub(crate) fn owes_output(&self) -> bool {
        !self.conversation.output().is_empty()
    }

    fn fail(&mut self, error: io::Error) {
        self.failed.get_or_insert(error);
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
    use zen_utils::conversation::OUTPUT_KEEP;
    use zen_utils::frame::READ_CHUNK;
    use zen_utils::protocol::OUTPUT_LIMIT;

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
        let id = ConnId {
            key: 0,
            generation: 0,
        };
        (
            Connection::new(stream, peer, id, &Config::default()),
            client,
        )
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
            short_read_drains: true,
        };
        let both = Interest {
            readable: true,
            writable: true,
        };
        let mut step = |connection: &mut Connection| {
            connection.on_ready(both, false);
            assert!(connection.advance(&mut ctx).is_none());
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

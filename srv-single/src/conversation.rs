//! One blocking conversation with one client, from accept to close.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use zen_utils::frame::RequestTooLong;
use zen_utils::protocol::{self, IDLE_TIMEOUT, OUTPUT_LIMIT, REQUEST_TOO_LONG};
use zen_utils::shutdown::TICK;
use zen_utils::{listener, Config, Decoder, End, Leftover, Shutdown, Stall, Stats};

/// Serves one client until it leaves, breaks a limit, or the server shuts
/// down; counts what happened in `stats` and logs it at `-v`.
///
/// The thread that calls it does nothing else meanwhile: every read and
/// write blocks, for at most a [`TICK`] at a time so that the idle deadline
/// and the shutdown flag are checked while the client is silent.
pub fn converse(
    stream: TcpStream,
    peer: SocketAddr,
    config: &Config,
    shutdown: &Shutdown,
    stats: &Stats,
) {
    tracing::debug!("accepted connection from {peer}");
    let mut conversation = Conversation::new(stream, config);
    let end = conversation.run(shutdown, stats);
    // Complete questions still in the decoder (a client that did not read
    // its answers when the grace ended, say) are dropped too; what is left
    // after them is a partial question.
    let unanswered = conversation.unanswered + conversation.decoder.drop_complete();
    let left = Leftover {
        partial: conversation.decoder.partial().len(),
        unanswered,
    };
    end.record(peer, left, stats);
}

/// The state of one conversation: all of it lives on the serving thread's
/// stack.
struct Conversation<'a> {
    stream: TcpStream,
    decoder: Decoder,
    /// Answers not yet written; written whenever the input is used up,
    /// before any work, and whenever it reaches [`OUTPUT_LIMIT`].
    out: Vec<u8>,
    config: &'a Config,
    /// When the idle timeout closes the connection unless a question
    /// completes first; `None` when the timeout is off.
    idle_deadline: Option<Instant>,
    /// The socket's read timeout as last set (zero: not set yet).
    read_timeout: Duration,
    /// Complete questions left unanswered when the shutdown grace cut
    /// their work short.
    unanswered: u64,
}

/// What answering the buffered questions came to.
enum Answered {
    /// Every complete question is answered.
    All,
    /// ... and the request after them is too long.
    TooLong,
    /// The shutdown grace ran out during a question's `--work`: it and the
    /// questions after it are dropped.
    CutByShutdown,
}

/// How a blocked read or write came back without moving any byte.
enum Stalled {
    /// The tick passed; check deadlines and try again.
    Tick,
    /// The connection failed.
    Failed(io::Error),
}

impl<'a> Conversation<'a> {
    fn new(stream: TcpStream, config: &'a Config) -> Self {
        Self {
            stream,
            decoder: Decoder::new(config.max_request),
            out: Vec::new(),
            config,
            idle_deadline: config.idle_timeout.map(|timeout| Instant::now() + timeout),
            read_timeout: Duration::ZERO,
            unanswered: 0,
        }
    }

    fn run(&mut self, shutdown: &Shutdown, stats: &Stats) -> End {
        if let Err(error) = self.setup() {
            return End::Failed(error);
        }
        loop {
            // Answer every complete question received so far, then send all
            // the answers at once: a pipelining client costs one read and
            // one write per batch, not per question.
            let answered = match self.answer_buffered(stats, shutdown) {
                Ok(answered) => answered,
                Err(end) => return end,
            };
            if let Err(end) = self.flush(shutdown) {
                return end;
            }
            if let Answered::CutByShutdown = answered {
                return End::Shutdown;
            }
            if let Answered::TooLong = answered {
                self.say_last(REQUEST_TOO_LONG, stats);
                return End::TooLong;
            }
            if self
                .idle_deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                self.say_last(IDLE_TIMEOUT, stats);
                return End::IdleTimeout;
            }
            // A client that never stops sending would otherwise keep the
            // reads of what "has already arrived" going for ever: past the
            // grace, the conversation ends with what it has answered.
            if shutdown.grace_over(Instant::now()) {
                return End::Shutdown;
            }
            let read = if shutdown.is_triggered() {
                // Shutting down: take only what has already arrived.
                match self.read_arrived() {
                    Ok(0) => return End::Shutdown,
                    read => read,
                }
            } else {
                self.read_tick()
            };
            match read {
                Ok(0) => return End::ClientClosed,
                Ok(n) => self.decoder.filled(n),
                Err(Stalled::Tick) => {}
                Err(Stalled::Failed(error)) => return End::Failed(error),
            }
        }
    }

    fn setup(&self) -> io::Result<()> {
        listener::prepare_accepted(&self.stream)?;
        self.stream.set_write_timeout(Some(TICK))
    }

    /// Answers the complete questions in the decoder, doing `--work` for
    /// each, unless the shutdown grace cuts the work short.
    fn answer_buffered(&mut self, stats: &Stats, shutdown: &Shutdown) -> Result<Answered, End> {
        let (mut answers, mut errors) = (0, 0);
        let result = loop {
            let reply = match self.decoder.next_question() {
                Ok(Some(question)) => protocol::answer(question),
                Ok(None) => break Ok(Answered::All),
                Err(RequestTooLong { .. }) => break Ok(Answered::TooLong),
            };
            if let Some(work) = self.config.work {
                // Answers already made go out before the work begins, so a
                // pipelining client gets each one as soon as it is ready.
                if let Err(error) = self.flush(shutdown) {
                    break Err(error);
                }
                // The thread sleeps (or spins) through the work, looking up
                // every tick: the end of the shutdown grace cuts it short,
                // as it does in every model, so no wait outlives the grace.
                if !work.run_within(shutdown) {
                    self.unanswered = 1 + self.decoder.drop_complete();
                    break Ok(Answered::CutByShutdown);
                }
            }
            self.out.extend_from_slice(reply);
            answers += 1;
            errors += u64::from(protocol::is_error(reply));
            if self.out.len() >= OUTPUT_LIMIT {
                if let Err(error) = self.flush(shutdown) {
                    break Err(error);
                }
            }
        };
        if answers > 0 {
            stats.answered(answers, errors);
            self.idle_deadline = self
                .config
                .idle_timeout
                .map(|timeout| Instant::now() + timeout);
        }
        result
    }

    /// Writes every pending answer. A client that does not read makes this
    /// block, which is the backpressure: no more is read from it meanwhile.
    /// Gives up when the client has not read for the idle timeout, or when
    /// the shutdown grace has passed.
    fn flush(&mut self, shutdown: &Shutdown) -> Result<(), End> {
        let mut written = 0;
        let result = loop {
            if written == self.out.len() {
                break Ok(());
            }
            match self.stream.write(&self.out[written..]) {
                Ok(0) => break Err(End::Failed(io::ErrorKind::WriteZero.into())),
                Ok(n) => written += n,
                Err(error) => match stalled(error) {
                    Stalled::Tick => {
                        if let Err(end) = self.check_write_deadlines(shutdown) {
                            break Err(end);
                        }
                    }
                    Stalled::Failed(error) => break Err(End::Failed(error)),
                },
            }
        };
        self.out.clear();
        result
    }

    fn check_write_deadlines(&mut self, shutdown: &Shutdown) -> Result<(), End> {
        let now = Instant::now();
        if shutdown.grace_over(now) {
            return Err(End::Unread(Stall::Shutdown));
        }
        if self.idle_deadline.is_some_and(|deadline| now >= deadline) {
            return Err(End::Unread(Stall::IdleTimeout));
        }
        Ok(())
    }

    /// Sends a final error answer, best effort: the connection closes next
    /// whatever happens, so a failure to send it changes nothing.
    fn say_last(&mut self, error: &[u8], stats: &Stats) {
        stats.error(1);
        let _ = self.stream.write_all(error);
    }

    /// Blocks until bytes arrive, for at most a tick or until the idle
    /// deadline, whichever is sooner.
    fn read_tick(&mut self) -> Result<usize, Stalled> {
        let mut wait = TICK;
        if let Some(deadline) = self.idle_deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            // A zero timeout would mean "forever"; the deadline check at
            // the top of the loop handles an expired one.
            wait = wait.min(left).max(Duration::from_millis(1));
        }
        // Setting the timeout is a system call; it is almost always the
        // same tick, so it is set only when it changes.
        if self.read_timeout != wait {
            self.stream
                .set_read_timeout(Some(wait))
                .map_err(Stalled::Failed)?;
            self.read_timeout = wait;
        }
        self.stream.read(self.decoder.read_buf()).map_err(stalled)
    }

    /// Reads what has already arrived without waiting; `Ok(0)` when nothing
    /// has (or the client closed).
    fn read_arrived(&mut self) -> Result<usize, Stalled> {
        let set = |nonblocking| {
            self.stream
                .set_nonblocking(nonblocking)
                .map_err(Stalled::Failed)
        };
        set(true)?;
        let read = match self.stream.read(self.decoder.read_buf()) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(0),
            read => read.map_err(Stalled::Failed),
        };
        self.stream
            .set_nonblocking(false)
            .map_err(Stalled::Failed)?;
        read
    }
}

/// Sorts a read or write error: a timeout is a tick, not a failure.
fn stalled(error: io::Error) -> Stalled {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
            Stalled::Tick
        }
        _ => Stalled::Failed(error),
    }
}

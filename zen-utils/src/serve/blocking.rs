//! One blocking conversation with one client, from accept to close: the
//! protocol's [`Conversation`], driven by a thread that blocks.
//!
//! srv-single calls it for one client after another; srv-threaded calls it
//! on many threads at once; and every server calls it under inetd's
//! `nowait`, where inetd is the concurrency model (a process per
//! connection) and the process has exactly one conversation to hold.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::protocol::conversation::{Conversation, Needed};
use crate::serve::shutdown::TICK;
use crate::{serve::listener, Config, End, Shutdown, Stall, Stats};
use peers::ask_peers;

mod peers;

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
    let mut blocking = Blocking {
        stream,
        conversation: Conversation::new(config, Instant::now()),
        read_timeout: Duration::ZERO,
    };
    let end = blocking.run(config, shutdown, stats);
    end.record(peer, blocking.conversation.leftover(), stats);
}

/// The driver: the socket, the conversation, and how it waits. All of it
/// lives on the serving thread's stack.
struct Blocking {
    stream: TcpStream,
    conversation: Conversation,
    /// The socket's read timeout as last set (zero: not set yet).
    read_timeout: Duration,
}

/// How a blocked read or write came back without moving any byte.
enum Stalled {
    /// The tick passed; check deadlines and try again.
    Tick,
    /// The connection failed.
    Failed(io::Error),
}

impl Blocking {
    fn run(&mut self, config: &Config, shutdown: &Shutdown, stats: &Stats) -> End {
        if let Err(error) = self.setup() {
            return End::Failed(error);
        }
        loop {
            // Answer every complete question received so far, each after
            // its work, then send all the answers at once: a pipelining
            // client costs one read and one write per batch.
            let mut work = self.conversation.answer(Instant::now(), config, stats);
            while let Some(needed) = work {
                // Answers already made go out before the work begins, so a
                // pipelining client gets each one as soon as it is ready.
                if let Err(end) = self.flush(shutdown) {
                    return end;
                }
                work = match needed {
                    // The thread sleeps (or spins) through the work, looking
                    // up every tick: the end of the shutdown grace cuts it
                    // short, as it does in every model, so no wait outlives
                    // the grace.
                    Needed::Work(work) => {
                        if !work.run_within(shutdown) {
                            return self.conversation.grace_over();
                        }
                        self.conversation.worked(Instant::now(), config, stats)
                    }
                    // The thread blocks on the peers too, each for at most
                    // --peer-timeout: srv-single serves nobody else
                    // meanwhile (two srv-singles asking each other wait on
                    // each other until the timeout breaks it), a thread of
                    // srv-threaded only its own client. The end of the
                    // shutdown grace ends this wait as it ends a work's.
                    Needed::Peers(forward) => {
                        let Ok(reply) = ask_peers(forward, config.peers.timeout, shutdown) else {
                            return self.conversation.grace_over();
                        };
                        self.conversation
                            .forwarded(reply, Instant::now(), config, stats)
                    }
                };
            }
            if let Err(end) = self.flush(shutdown) {
                return end;
            }
            // Questions held back by the output bound are answered before
            // the thread blocks in a read.
            if self.conversation.has_questions() {
                continue;
            }
            if let Some(end) = self.conversation.check_idle(Instant::now()) {
                return end;
            }
            if let Some(word) = self.conversation.last_word() {
                // Best effort: the connection closes next whatever happens,
                // so a failure to send it changes nothing.
                let _ = self.stream.write_all(word);
            }
            if let Some(end) = self.conversation.end() {
                return end;
            }
            let read = if shutdown.is_triggered() {
                self.conversation.shutdown();
                // A client that never stops sending would otherwise keep
                // the reads of what "has already arrived" going for ever:
                // past the grace, the conversation ends with what it has
                // answered.
                if shutdown.grace_over(Instant::now()) {
                    return self.conversation.grace_over();
                }
                // Shutting down: take only what has already arrived.
                match self.read_arrived() {
                    Ok(0) => {
                        self.conversation.drained();
                        continue;
                    }
                    read => read,
                }
            } else {
                self.read_tick()
            };
            match read {
                Ok(n) => self.conversation.received(n),
                Err(Stalled::Tick) => {}
                Err(Stalled::Failed(error)) => return self.conversation.read_failed(error),
            }
        }
    }

    fn setup(&self) -> io::Result<()> {
        listener::prepare_accepted(&self.stream)?;
        self.stream.set_write_timeout(Some(TICK))
    }

    /// Writes every answer made. A client that does not read makes this
    /// block, which is the backpressure: no more is read from it meanwhile.
    /// Gives up when the client has not read for the idle timeout, or when
    /// the shutdown grace has passed.
    fn flush(&mut self, shutdown: &Shutdown) -> Result<(), End> {
        while !self.conversation.output().is_empty() {
            match self.stream.write(self.conversation.output()) {
                Ok(0) => return Err(End::Failed(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.conversation.wrote(n),
                Err(error) => match stalled(error) {
                    Stalled::Tick => {
                        let now = Instant::now();
                        if shutdown.grace_over(now) {
                            return Err(End::Unread(Stall::Shutdown));
                        }
                        if let Some(end) = self.conversation.check_idle(now) {
                            return Err(end);
                        }
                    }
                    Stalled::Failed(error) => return Err(End::Failed(error)),
                },
            }
        }
        Ok(())
    }

    /// Blocks until bytes arrive, for at most a tick or until the idle
    /// deadline, whichever is sooner.
    fn read_tick(&mut self) -> Result<usize, Stalled> {
        let mut wait = TICK;
        if let Some(deadline) = self.conversation.idle_deadline() {
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
        self.stream
            .read(self.conversation.read_buf())
            .map_err(stalled)
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
        let read = match self.stream.read(self.conversation.read_buf()) {
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
    if is_tick(&error) {
        Stalled::Tick
    } else {
        Stalled::Failed(error)
    }
}

/// A read or write that came back because its tick passed (or a signal
/// came), not because it failed.
fn is_tick(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

//! One connection, from accept to close, as one async task: the driver of
//! the protocol's conversation (zen-utils' `Conversation`) in a task that
//! awaits.

use std::future::{pending, Future};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant, Sleep};
use zen_utils::protocol::conversation::{Conversation, Needed};
use zen_utils::{serve::listener, End, Stall, WorkKind};

use crate::peers;
use crate::small_task::boxed;
use crate::{precise_sleep, Shared, Stop};

/// How long a final error answer (`request too long`, `idle timeout`) may
/// take to send. It is best effort: the connection closes next whatever
/// happens, so a client that does not read cannot hold it open longer.
const LAST_WORD_PATIENCE: Duration = Duration::from_millis(100);

/// Serves one client until it leaves, breaks a limit, or the server shuts
/// down; counts what happened in `shared`'s stats and logs it at `-v`.
///
/// Every wait is an `.await`, so the thread serves other connections
/// meanwhile, except during `--work cpu|block`, which hold the thread.
pub async fn handle_connection(stream: TcpStream, peer: SocketAddr, shared: &Shared, stop: &Stop) {
    tracing::debug!("accepted connection from {peer}");
    let mut connection = Connection::new(stream, shared, stop);
    let end = connection.run().await;
    end.record(peer, connection.conversation.leftover(), &shared.stats);
}

/// The driver of one conversation: the socket, the protocol's
/// conversation, and how the task waits. All of it lives in the task's
/// future.
struct Connection<'a> {
    stream: TcpStream,
    /// The protocol: what was received, the answers not yet written, the
    /// question being worked on, the idle deadline, the last word.
    conversation: Conversation,
    shared: &'a Shared,
    /// Fires at or before the conversation's idle deadline; `None` when the
    /// timeout is off. One timer for the connection's life, moved lazily:
    /// each answer pushes the deadline on, but the timer stays where it is
    /// until it fires, and only then, if the deadline has moved, is reset
    /// to it. Resetting it per answer would touch tokio's timer wheel once
    /// per answer; this touches it once per idle timeout.
    idle: Option<Pin<Box<Sleep>>>,
    /// The timer of `--work wait`, made at the first wait and re-armed for
    /// each one after; boxed, so a connection that never waits carries
    /// only a pointer.
    work_timer: Option<Box<precise_sleep::AsyncTimerfd>>,
    shutdown: ShutdownWatch<'a>,
}

/// How a connection learns of the shutdown, and its deadline once it has.
struct ShutdownWatch<'a> {
    stop: &'a Stop,
    /// Resolves when the shutdown begins. Made once per connection, so the
    /// task stays registered with the `Notify` instead of registering anew
    /// on every read; never polled again once it has resolved.
    begins: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
    /// When the connection must be done, once the shutdown was seen. From
    /// then on it reads only bytes that already arrived.
    grace: Option<Instant>,
}

/// Why an await was abandoned.
enum GaveUp {
    /// The shutdown grace ran out.
    Grace,
    /// The client did not read its answers for the idle timeout.
    Idle,
}

/// Why the work of an answer was not done.
enum WorkCut {
    /// The shutdown grace ran out.
    Grace,
    /// The client reset the connection while its work waited (the error
    /// says how): the work was cancelled.
    Reset(io::Error),
}

impl<'a> Connection<'a> {
    fn new(stream: TcpStream, shared: &'a Shared, stop: &'a Stop) -> Self {
        let now = std::time::Instant::now();
        let conversation = Conversation::new(&shared.config, now);
        let idle = conversation
            .idle_deadline()
            .map(|at| Box::pin(sleep_until(Instant::from_std(at))));
        Self {
            stream,
            conversation,
            shared,
            idle,
            work_timer: None,
            shutdown: ShutdownWatch {
                stop,
                begins: Box::pin(stop.stopped()),
                grace: None,
            },
        }
    }

    async fn run(&mut self) -> End {
        // TCP_NODELAY: answers are tiny and must leave at once.
        if let Err(error) = listener::prepare_accepted(&self.stream) {
            return End::Failed(error);
        }
        loop {
            // Answer every complete question received so far, each after
            // its work, then send all the answers with one write: a
            // pipelining client costs one read and one write per batch.
            // Boxed: what an answer needs (a work, a question for the
            // peers) is kept across the awaits below, and inline it would
            // enlarge every connection's task (see `small_task`).
            let mut owed = self.answer().map(Box::new);
            while let Some(needed) = owed {
                // Answers already made go out before the work begins, so a
                // pipelining client gets each one as soon as it is ready.
                if let Err(end) = self.flush().await {
                    return end;
                }
                let now = std::time::Instant::now;
                owed = match *needed {
                    // Boxed: the work's future is large (see `small_task`).
                    Needed::Work(_) => {
                        match boxed(self.work()).await {
                            Ok(()) => {}
                            // The client reset while its work waited for
                            // a helper: the work was cancelled with it.
                            Err(WorkCut::Reset(error)) => {
                                return self.conversation.read_failed(error);
                            }
                            // The grace ran out during the work: this
                            // question and the ones behind it are dropped,
                            // as in every model.
                            Err(WorkCut::Grace) => return self.conversation.grace_over(),
                        }
                        let (config, stats) = (&self.shared.config, &self.shared.stats);
                        self.conversation.worked(now(), config, stats).map(Box::new)
                    }
                    // The task awaits the peers; the thread serves the
                    // other connections meanwhile.
                    Needed::Peers(forward) => {
                        let timeout = self.shared.config.peers.timeout;
                        let asked = guarded(
                            boxed(peers::ask(forward, timeout)),
                            &mut self.shutdown,
                            None,
                        );
                        let Ok(reply) = asked.await else {
                            return self.conversation.grace_over();
                        };
                        let (config, stats) = (&self.shared.config, &self.shared.stats);
                        self.conversation
                            .forwarded(reply, now(), config, stats)
                            .map(Box::new)
                    }
                };
            }
            if let Err(end) = self.flush().await {
                return end;
            }
            // Questions held back by the output bound are answered before
            // the task waits for more.
            if self.conversation.has_questions() {
                continue;
            }
            if let Some(word) = self.conversation.last_word() {
                // Boxed, like the work: it runs once, and is large.
                boxed(self.say_last(word)).await;
            }
            if let Some(end) = self.conversation.end() {
                return end;
            }
            if let Some(grace) = self.shutdown.grace {
                // Shutting down: take only what has already arrived, and
                // stop when nothing more has or the grace is over.
                self.conversation.shutdown();
                if Instant::now() >= grace {
                    return self.conversation.grace_over();
                }
                match self.read_arrived() {
                    Ok(n) => self.conversation.received(n),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        self.conversation.drained();
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return self.conversation.read_failed(error),
                }
                continue;
            }
            // Wait for whichever comes first: bytes, the shutdown, the idle
            // deadline. The read is cancel-safe: when another branch wins,
            // no byte has been taken from the socket.
            tokio::select! {
                biased;
                read = read_some(&mut self.stream, &mut self.conversation) => match read {
                    Ok(n) => self.conversation.received(n),
                    Err(error) if is_retry(&error) => {}
                    Err(error) => return self.conversation.read_failed(error),
                },
                () = self.shutdown.begins() => {}
                () = expired(self.idle.as_mut().map(Pin::as_mut)) => {
                    if let Some(end) = self.conversation.check_idle(std::time::Instant::now()) {
                        return end;
                    }
                    self.follow_idle_deadline();
                }
            }
        }
    }

    /// Answers the questions received, as far as the conversation can;
    /// returns the work it now owes, if any.
    fn answer(&mut self) -> Option<Needed> {
        let (config, stats) = (&self.shared.config, &self.shared.stats);
        self.conversation
            .answer(std::time::Instant::now(), config, stats)
    }

    /// The idle timer fired: moves it to the conversation's deadline as it
    /// stands now, if that moved since it was set. The write deadline is
    /// the idle deadline whether work is owed or not, so that a write to a
    /// slow reader has its full timeout.
    fn follow_idle_deadline(&mut self) {
        if let (Some(idle), Some(at)) = (&mut self.idle, self.conversation.write_deadline()) {
            let at = Instant::from_std(at);
            if idle.deadline() != at {
                idle.as_mut().reset(at);
            }
        }
    }

    /// Does the simulated work of one answer (`--work`, which the
    /// conversation asked for); `Err` when the shutdown grace ran out first,
    /// or when the client reset while a helper's work was under way for it.
    async fn work(&mut self) -> Result<(), WorkCut> {
        let Some(work) = self.shared.config.work else {
            return Ok(());
        };
        if let (Some(helpers), WorkKind::Cpu | WorkKind::Block) = (&self.shared.helpers, work.kind)
        {
            // `--offload`: a helper thread does it, `spawn_blocking`'s way,
            // and the task awaits the result; the runtime's thread serves
            // the other connections meanwhile. Waiting for room in the
            // helpers' queue is the backpressure: this connection is not
            // read from until its work is done. It is watched, though: a
            // client that resets takes its work with it. Dropping the
            // helpers' future cancels the work, and a helper skips it
            // rather than sleep for nobody (srv-poll's loop does the same
            // when the socket reports the reset). The reset wins a tie, so
            // that no answer is made for a client that is gone.
            let shutdown = self.shared.shutdown.clone();
            let done = guarded(helpers.run(work, shutdown), &mut self.shutdown, None);
            return tokio::select! {
                biased;
                error = reset_by_client(&self.stream) => Err(WorkCut::Reset(error)),
                done = done => match done {
                    Ok(true) => Ok(()),
                    Ok(false) | Err(_) => Err(WorkCut::Grace),
                },
            };
        }
        match work.kind {
            // The async way to wait: the task sleeps on a timer and the
            // thread serves other connections meanwhile. The timer is a
            // precise one: tokio's own rounds up to whole milliseconds.
            WorkKind::Wait => guarded(
                precise_sleep::sleep(&mut self.work_timer, work.duration),
                &mut self.shutdown,
                None,
            )
            .await
            .map_err(|_| WorkCut::Grace),
            // Without helpers, both hold the runtime's thread: no other
            // task of this runtime runs until they finish. Kept inline on
            // purpose, to measure what blocking an event loop costs. The end of the shutdown
            // grace cuts the computation short; the sleep of `block`
            // cannot be (that is its lesson).
            WorkKind::Cpu => {
                if work.run_within(&self.shared.shutdown) {
                    Ok(())
                } else {
                    Err(WorkCut::Grace)
                }
            }
            WorkKind::Block => {
                std::thread::sleep(work.duration);
                Ok(())
            }
        }
    }

    /// Writes every unsent answer. Gives up when the client has not read for
    /// the idle timeout, or when the shutdown grace has passed.
    async fn flush(&mut self) -> Result<(), End> {
        // Most answers fit in the socket's buffer at once: written without
        // an await. Only a client that does not keep up makes the task wait,
        // and that rare wait is boxed (see `small_task`).
        while !self.conversation.output().is_empty() {
            match self.stream.try_write(self.conversation.output()) {
                Ok(0) => return Err(End::Failed(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.conversation.wrote(n),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return boxed(self.flush_when_writable()).await;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(End::Failed(error)),
            }
        }
        Ok(())
    }

    /// [`flush`](Self::flush), for a client that is not reading: waits for
    /// room, until the idle deadline or the end of the shutdown grace.
    async fn flush_when_writable(&mut self) -> Result<(), End> {
        while !self.conversation.output().is_empty() {
            // One write at a time, each cancel-safe: when a timer
            // interrupts it, what was written is known.
            let output = self.conversation.output();
            let idle = self.idle.as_mut().map(Pin::as_mut);
            match guarded(self.stream.write(output), &mut self.shutdown, idle).await {
                Ok(Ok(0)) => return Err(End::Failed(io::ErrorKind::WriteZero.into())),
                Ok(Ok(n)) => self.conversation.wrote(n),
                Ok(Err(error)) if is_retry(&error) => {}
                Ok(Err(error)) => return Err(End::Failed(error)),
                Err(GaveUp::Grace) => return Err(End::Unread(Stall::Shutdown)),
                Err(GaveUp::Idle) => {
                    let now = std::time::Instant::now();
                    if let Some(end) = self.conversation.check_idle(now) {
                        return Err(end);
                    }
                    // The timer was early: answers moved the deadline on.
                    self.follow_idle_deadline();
                }
            }
        }
        Ok(())
    }

    /// Sends a final error answer, best effort (it was counted when the
    /// conversation gave it).
    async fn say_last(&mut self, error: &'static [u8]) {
        let _ = tokio::time::timeout(LAST_WORD_PATIENCE, self.stream.write_all(error)).await;
    }

    /// One non-blocking read straight on the socket: whatever has arrived,
    /// or `WouldBlock`. It bypasses tokio on purpose: tokio's `try_read`
    /// trusts the readiness the I/O driver last reported, and would miss
    /// bytes that arrived after it.
    fn read_arrived(&mut self) -> io::Result<usize> {
        let socket = SockRef::from(&self.stream);
        (&*socket).read(self.conversation.read_buf())
    }
}

impl ShutdownWatch<'_> {
    /// Resolves when the shutdown begins, and records the grace deadline.
    /// Never resolves again after that.
    async fn begins(&mut self) {
        if self.grace.is_some() {
            return pending().await;
        }
        self.begins.as_mut().await;
        self.grace = Some(self.stop.grace_deadline());
    }

    /// Resolves when the shutdown has begun and its grace has run out.
    async fn grace_over(&mut self) {
        let grace = match self.grace {
            Some(grace) => grace,
            None => {
                self.begins.as_mut().await;
                *self.grace.insert(self.stop.grace_deadline())
            }
        };
        sleep_until(grace).await;
    }
}

/// Awaits `future` unless the connection must give up first: the shutdown
/// grace ran out or, if `idle` is given, the idle deadline passed. A
/// shutdown alone does not interrupt it (in-flight answers are still
/// delivered); it only starts the grace clock.
async fn guarded<T>(
    future: impl Future<Output = T>,
    shutdown: &mut ShutdownWatch<'_>,
    idle: Option<Pin<&mut Sleep>>,
) -> Result<T, GaveUp> {
    tokio::select! {
        // The work itself first: a write that can finish at once never
        // touches the timers.
        biased;
        output = future => Ok(output),
        () = shutdown.grace_over() => Err(GaveUp::Grace),
        () = expired(idle) => Err(GaveUp::Idle),
    }
}

/// Resolves when the client has reset the connection, with the error a
/// read would now fail with. Only a reset (or another socket error) counts:
/// more questions, or a half-close after the last one, are a client still
/// waiting for its answers, and leave this pending. It takes no byte from
/// the socket.
async fn reset_by_client(stream: &TcpStream) -> io::Error {
    loop {
        match stream.ready(Interest::ERROR).await {
            Ok(ready) if ready.is_error() => {
                return match stream.take_error() {
                    Ok(Some(error)) | Err(error) => error,
                    Ok(None) => io::ErrorKind::ConnectionReset.into(),
                };
            }
            Ok(_) => {}
            // The runtime is going away; the shutdown ends the work.
            Err(_) => return pending().await,
        }
    }
}

/// Reads what has arrived into the conversation, waiting for it if need be.
async fn read_some(stream: &mut TcpStream, conversation: &mut Conversation) -> io::Result<usize> {
    if conversation.buffer_capacity() == 0 {
        // Until the first bytes come, wait for them without a buffer:
        // `read_buf` allocates the decoder's buffer, and an idle connection
        // should not pay for one. Peeking at one byte waits for epoll and
        // takes nothing; `readable()` would not wait, because tokio assumes
        // a just-accepted socket readable so as to try its first read at once.
        stream.peek(&mut [0; 1]).await?;
    }
    // `read` (not `try_read`) also tells tokio that a short read drained
    // the socket, so the next read waits for epoll instead of trying a
    // read that would fail with `WouldBlock`: one syscall less per batch.
    stream.read(conversation.read_buf()).await
}

/// Resolves when the idle timer fires; never, when there is none.
async fn expired(idle: Option<Pin<&mut Sleep>>) {
    match idle {
        Some(timer) => timer.await,
        None => pending().await,
    }
}

/// Whether a read error only means "try again".
fn is_retry(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use zen_utils::{Config, Shutdown};

    /// What a task per connection costs while the connection is idle: its
    /// future, which the runtime keeps for the connection's whole life (the
    /// README's memory figure per idle connection is mostly this and the
    /// kernel's socket).
    const TASK_BUDGET: usize = 768;

    #[test]
    fn a_connection_task_stays_small() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let _client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (stream, peer) = listener.accept().await.unwrap();
            let shutdown = Shutdown::new();
            let shared = Shared::new(Config::default(), shutdown.clone()).unwrap();
            let stop = Stop::new(&shutdown);
            let task = handle_connection(stream, peer, &shared, &stop);
            let size = size_of_val(&task);
            assert!(size <= TASK_BUDGET, "{size} bytes");
        });
    }
}

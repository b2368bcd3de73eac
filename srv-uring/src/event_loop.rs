//! The completion loop: submit and wait, reap every completion, hand each
//! to whoever owns its operation, run the due timers, repeat. This file is
//! the loop's bookkeeping (the ring, the pool, the slab, the listener, the
//! timers, shutdown); what a connection does with its completions is in
//! `connection.rs`, and the peers' operations in `peer_call.rs`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{opcode, types};
use slab::Slab;
use zen_utils::serve::listener::{AcceptErrors, AcceptFailure, ACCEPT_BACKOFF};
use zen_utils::serve::raw_loop::admitted::Admitter;
use zen_utils::serve::raw_loop::deadline::{next_turn, schedule_idle_scan, Deadline, Turn};
use zen_utils::serve::raw_loop::ids::ConnId;
use zen_utils::serve::raw_loop::timers::Timers;
use zen_utils::serve::raw_loop::waker::{wake_on_shutdown, EventfdWaker};
use zen_utils::{Config, End, Shutdown, Stats, Summary};

use crate::alarm::Alarm;
use crate::buf_ring::BufRing;
use crate::connection::{Connection, Context, Wake};
use crate::peer_call::{CallContext, Decided, PeerCalls};
use crate::ring::{Completion, Op, Ring};
use crate::Accept;

/// How long the loop waits, at the very end, for the kernel to hand back
/// the memory of operations it cancelled. Cancelled socket operations
/// complete at once; this only bounds a kernel that misbehaves.
const DRAIN_PATIENCE: Duration = Duration::from_secs(2);

/// What a connection works with, lent from the loop's own fields: a
/// macro rather than a method, so that the loop can lend them while it
/// holds the connection itself and a buffer of its pool (the borrows are
/// of other fields).
macro_rules! connection_context {
    ($loop:ident) => {
        Context {
            ring: &mut $loop.ring,
            config: &$loop.config,
            stats: &$loop.stats,
            shutdown: &$loop.shutdown,
            timers: &mut $loop.timers,
            peer_calls: &mut $loop.peer_calls,
        }
    };
}

/// The loop and everything it owns. Only its one thread ever touches it.
///
/// Field order is drop order: the ring goes first, so that the kernel has
/// let go of every buffer before the pool and the connections are freed.
pub(crate) struct EventLoop {
    ring: Ring,
    /// The receive buffers every connection shares.
    pool: BufRing,
    /// Another thread's way to wake the wait: the shutdown trigger writes
    /// to this eventfd, and a read of it is always in flight. Blocking
    /// mode on purpose: the ring does the waiting (see
    /// [`EventfdWaker::blocking`]).
    waker: Arc<EventfdWaker>,
    /// What that read writes into: the kernel's until it completes.
    waker_buf: Box<u64>,
    waker_armed: bool,
    /// A Timeout for the earliest timer: it ends the wait when one is due.
    alarm: Alarm,
    /// `None` once the shutdown began.
    listener: Option<TcpListener>,
    accept: Accept,
    /// Whether the accept is in flight.
    accept_armed: bool,
    /// Out of descriptors: accepting resumes when the backoff timer is due.
    accept_paused: bool,
    connections: Slab<Connection>,
    /// `--max-conns` (each connection holds a permit until it closes, not
    /// until it is freed) and the generations that tell a reused slab key
    /// apart. One thread accepts, so a plain count would do; zen-utils'
    /// `Admission` is the same rule every model uses, srv-poll's loop
    /// included.
    admitter: Admitter,
    timers: Timers<Deadline>,
    /// Questions connections need their peers to answer, as their turns
    /// asked for them: the loop starts their calls after the turn.
    peer_calls: Vec<(ConnId, zen_utils::protocol::peers::Forward)>,
    calls: PeerCalls,
    completions: Vec<Completion>,
    config: Config,
    stats: Stats,
    accept_errors: AcceptErrors,
    shutdown: Shutdown,
    shutting_down: bool,
}

impl EventLoop {
    /// Sets up the ring and the pool, and submits the accept and the
    /// waker's read.
    pub(crate) fn new(
        listener: TcpListener,
        config: Config,
        shutdown: Shutdown,
        accept: Accept,
    ) -> io::Result<Self> {
        let ring = Ring::new()?;
        let pool = BufRing::new(&ring)?;
        let waker = Arc::new(EventfdWaker::blocking()?);
        wake_on_shutdown(&shutdown, &waker, EventfdWaker::wake);
        let mut timers = Timers::new();
        schedule_idle_scan(&mut timers, &config, Instant::now());
        let mut event_loop = Self {
            ring,
            pool,
            waker,
            waker_buf: Box::new(0),
            waker_armed: false,
            alarm: Alarm::new(),
            listener: Some(listener),
            accept,
            accept_armed: false,
            accept_paused: false,
            connections: Slab::new(),
            timers,
            peer_calls: Vec::new(),
            calls: PeerCalls::new(config.peers.timeout),
            completions: Vec::with_capacity(1024),
            admitter: Admitter::new(config.max_conns),
            config,
            stats: Stats::new(),
            accept_errors: AcceptErrors::new(),
            shutdown,
            shutting_down: false,
        };
        event_loop.arm_waker()?;
        event_loop.arm_accept()?;
        Ok(event_loop)
    }

    /// Runs until the shutdown is over; returns the summary.
    pub(crate) fn run(mut self) -> io::Result<Summary> {
        let mut completions = std::mem::take(&mut self.completions);
        loop {
            if self.shutdown.is_triggered() && !self.shutting_down {
                self.begin_shutdown();
            }
            let next_due = match next_turn(&self.shutdown, self.admitter.open(), &self.timers) {
                Turn::WaitUntil(due) => due,
                Turn::Over => break,
            };
            // The one place the loop waits (`--work block` aside, on
            // purpose): one system call submits every operation written
            // this turn and waits for a completion, or the next timer.
            self.alarm.arm(&mut self.ring, next_due)?;
            self.pool.publish();
            self.ring.submit_and_wait(None)?;
            self.ring.reap(&mut completions);
            for completion in completions.drain(..) {
                self.dispatch(completion);
            }
            self.run_due_timers(Instant::now());
        }
        self.close_remaining();
        self.drain_in_flight(&mut completions);
        Ok(self.stats.summary())
    }

    /// Hands a completion to whoever owns its operation.
    fn dispatch(&mut self, completion: Completion) {
        match completion.op {
            Op::Accept => self.accepted(completion),
            Op::Waker => self.waker_armed = false, // The loop's top sees the trigger.
            Op::Recv(key) => self.received(key, completion),
            Op::Send(key) => {
                let result =
                    self.with_connection(key, |conn, ctx| conn.sent(completion.result, ctx));
                self.after(key, result);
            }
            Op::Peer(key) => {
                let mut ctx = CallContext {
                    ring: &mut self.ring,
                    timers: &mut self.timers,
                };
                if let Some(decided) = self.calls.completed(key, completion.result, &mut ctx) {
                    self.peers_answered(decided);
                }
            }
            Op::Alarm => self.alarm.completed(), // The timers run after the reap.
            Op::Cancel => {}
        }
    }

    /// A receive completed: the bytes (if any) are in a provided buffer,
    /// which is the loop's now. The connection copies them into its
    /// decoder, and the buffer goes back to the pool at once.
    fn received(&mut self, key: usize, completion: Completion) {
        let buffer = completion.buffer();
        let len = completion.result.max(0) as usize;
        let Some(conn) = self.connections.get_mut(key) else {
            // Cannot be: a connection is freed only after its last
            // completion. Still, never lose a buffer.
            if let Some(id) = buffer {
                self.pool.recycle(id);
            }
            return;
        };
        let bytes = match buffer {
            Some(id) => self.pool.bytes(id, len),
            None => &[],
        };
        let mut ctx = connection_context!(self);
        let result = conn.received(completion.result, completion.more(), bytes, &mut ctx);
        if let Some(id) = buffer {
            self.pool.recycle(id);
        }
        self.after(key, result);
    }

    /// Runs `step` on connection `key` with the context it needs.
    fn with_connection(
        &mut self,
        key: usize,
        step: impl FnOnce(&mut Connection, &mut Context<'_>) -> Result<(), End>,
    ) -> Result<(), End> {
        let Some(conn) = self.connections.get_mut(key) else {
            return Ok(());
        };
        let mut ctx = connection_context!(self);
        step(conn, &mut ctx)
    }

    /// After a connection's step: closes it if it ended, frees it if it
    /// was closed and its last operation completed, and starts the peer
    /// calls its step asked for.
    fn after(&mut self, key: usize, result: Result<(), End>) {
        self.close_if_ended(key, result);
        self.start_peer_calls();
    }

    /// Closes connection `key` if its step ended it, and frees it if it
    /// is closed and its last operation completed.
    fn close_if_ended(&mut self, key: usize, result: Result<(), End>) {
        if let Err(end) = result {
            self.close(key, end);
        }
        if self
            .connections
            .get(key)
            .is_some_and(|conn| conn.closed && !conn.in_flight())
        {
            // The kernel is done with its memory: now it can go, and its
            // socket close.
            self.connections.remove(key);
        }
    }

    /// Tells connection `id` (unless it closed) what happened.
    fn wake(&mut self, id: ConnId, wake: Wake) {
        if self.slot_of(id).is_some() {
            let result = self.with_connection(id.key, |conn, ctx| conn.wake(wake, ctx));
            self.after(id.key, result);
        }
    }

    /// Starts asking the peers the questions connections need them for. A
    /// call decided at once is answered here, and the turn that answer
    /// gives may ask for more: a loop, not a recursion.
    fn start_peer_calls(&mut self) {
        while !self.peer_calls.is_empty() {
            for (client, forward) in std::mem::take(&mut self.peer_calls) {
                if self.slot_of(client).is_none() {
                    continue; // It closed in the same turn.
                }
                let mut ctx = CallContext {
                    ring: &mut self.ring,
                    timers: &mut self.timers,
                };
                match self.calls.start(client, forward, &mut ctx) {
                    Ok(call) => {
                        if let Some(conn) = self.slot_of(client) {
                            conn.call = Some(call);
                        }
                    }
                    Err(answer) => {
                        let result = self.with_connection(client.key, |conn, ctx| {
                            conn.wake(Wake::PeersAnswered(answer), ctx)
                        });
                        self.close_if_ended(client.key, result);
                    }
                }
            }
        }
    }

    /// A peer call decided its answer: the client that owes it gives it.
    fn peers_answered(&mut self, (client, answer): Decided) {
        if let Some(conn) = self.slot_of(client) {
            conn.call = None;
            self.wake(client, Wake::PeersAnswered(answer));
        }
    }

    /// The connection `id` names, unless it closed (even if its key was
    /// reused since: the generation tells).
    fn slot_of(&mut self, id: ConnId) -> Option<&mut Connection> {
        self.connections
            .get_mut(id.key)
            .filter(|conn| conn.id == id && !conn.closed)
    }

    /// The multishot accept completed: a new connection (its descriptor),
    /// or an error.
    fn accepted(&mut self, completion: Completion) {
        if !completion.more() {
            self.accept_armed = false;
        }
        match completion.error() {
            None => {
                // SAFETY: a successful accept's result is a new descriptor
                // that nothing else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(completion.result) };
                self.admit(TcpStream::from(fd));
            }
            Some(error) if error.raw_os_error() == Some(libc::ECANCELED) => {}
            Some(error) => {
                if self.accept_errors.on_error(&error) == AcceptFailure::OutOfResources {
                    self.pause_accepting();
                }
            }
        }
        if !self.accept_armed && !self.accept_paused {
            if let Err(error) = self.arm_accept() {
                tracing::warn!("warning: cannot accept: {error}");
            }
        }
    }

    /// Out of descriptors: a multishot accept would fail again at once for
    /// every connection in the backlog, so accepting stops (the accept is
    /// cancelled) for [`ACCEPT_BACKOFF`], and the loop goes on serving.
    fn pause_accepting(&mut self) {
        self.accept_paused = true;
        if self.accept_armed {
            let _ = self.ring.cancel(Op::Accept);
        }
        self.timers
            .add(Instant::now() + ACCEPT_BACKOFF, Deadline::ResumeAccepting);
    }

    /// Submits the multishot accept, unless one is in flight or the
    /// listener is closed: one submission, a completion per connection.
    fn arm_accept(&mut self) -> io::Result<()> {
        let Some(listener) = &self.listener else {
            return Ok(());
        };
        if self.accept_armed {
            return Ok(());
        }
        let fd = types::Fd(listener.as_raw_fd());
        let entry = match self.accept {
            Accept::Multishot => opcode::AcceptMulti::new(fd)
                .flags(libc::SOCK_CLOEXEC)
                .build(),
            Accept::OneAtATime => {
                opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
            }
        }
        .user_data(Op::Accept.user_data());
        // SAFETY: the accept names no memory (no address buffer), only the
        // listener, which the kernel holds a reference to.
        unsafe { self.ring.push(entry)? };
        self.accept_armed = true;
        Ok(())
    }

    /// Submits the read of the shutdown eventfd.
    fn arm_waker(&mut self) -> io::Result<()> {
        let buf: *mut u64 = &mut *self.waker_buf;
        let fd = types::Fd(self.waker.fd().as_raw_fd());
        let entry = opcode::Read::new(fd, buf.cast(), 8)
            .build()
            .user_data(Op::Waker.user_data());
        // SAFETY: `waker_buf` is boxed, never touched by the loop, and
        // outlives the ring (which is dropped first); the eventfd lives as
        // long as the loop holds its `Arc`.
        unsafe { self.ring.push(entry)? };
        self.waker_armed = true;
        Ok(())
    }

    /// Takes in a new connection, or turns it away at `--max-conns`.
    fn admit(&mut self, stream: TcpStream) {
        self.stats.connection();
        // Multishot accept gives no address: one getpeername, for the logs
        // and the summary line's accounting of who closed.
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        if self.shutting_down {
            // Accepted in the same turn as the shutdown began.
            self.stats.closed();
            return;
        }
        let key = self.connections.vacant_key();
        let admitted =
            self.admitter
                .admit(stream, peer, key, &self.config, &self.stats, |_| Ok(()));
        let Some(admitted) = admitted else {
            return;
        };
        let id = admitted.id;
        self.connections
            .insert(Connection::new(admitted, &self.config));
        tracing::debug!("accepted connection from {peer}");
        let result = self.with_connection(id.key, |conn, ctx| conn.start(ctx));
        self.after(id.key, result);
    }

    fn run_due_timers(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Deadline::Answer(id) => self.wake(id, Wake::AnswerDue),
                Deadline::IdleScan => self.scan_for_timeouts(now),
                Deadline::ResumeAccepting => {
                    self.accept_paused = false;
                    if let Err(error) = self.arm_accept() {
                        tracing::warn!("warning: cannot accept: {error}");
                    }
                }
                Deadline::PeerAttempt(id) => {
                    let mut ctx = CallContext {
                        ring: &mut self.ring,
                        timers: &mut self.timers,
                    };
                    if let Some(decided) = self.calls.deadline(id, &mut ctx) {
                        self.peers_answered(decided);
                    }
                }
            }
        }
    }

    /// Closes every connection whose idle deadline passed, and schedules
    /// the next scan.
    fn scan_for_timeouts(&mut self, now: Instant) {
        let expired: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, conn)| conn.idle_expired(now))
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            if let Some(conn) = self.connections.get_mut(key) {
                let end = conn.idle_end(now);
                self.after(key, Err(end));
            }
        }
        schedule_idle_scan(&mut self.timers, &self.config, now);
    }

    /// Stops accepting, and tells every connection: each takes what has
    /// arrived, finishes what it owes and ends; idle ones end at once.
    fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        // The accept holds its own reference to the listening socket:
        // closing our descriptor would not stop it. Cancelled, and closed.
        if self.accept_armed {
            let _ = self.ring.cancel(Op::Accept);
        }
        self.listener = None;
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.connections.get(key) {
                self.wake(conn.id, Wake::Shutdown);
            }
        }
    }

    /// The shutdown grace is over: whatever is left closes now.
    fn close_remaining(&mut self) {
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.connections.get_mut(key).filter(|conn| !conn.closed) {
                let end = conn.grace_over();
                self.close(key, end);
            }
        }
        self.calls.cancel_all(&mut self.ring);
    }

    /// Records a connection's end and cancels what it has in flight. It is
    /// freed (`after`) once the kernel has completed every operation of
    /// it: until then the kernel may still read its send buffer.
    fn close(&mut self, key: usize, end: End) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if conn.closed {
            return;
        }
        conn.cancel_all(&mut self.ring);
        // Its place under `--max-conns` is free from now.
        conn.permit = None;
        if let Some(call) = conn.call.take() {
            self.calls.cancel(call, &mut self.ring);
        }
        let left = conn.leftover();
        end.record(conn.peer, left, &self.stats);
    }

    /// At the very end: cancels the loop's own operations and reaps until
    /// the kernel has completed every operation whose memory is ours, so
    /// that nothing is freed while the kernel could still write into it.
    fn drain_in_flight(&mut self, completions: &mut Vec<Completion>) {
        if self.accept_armed {
            let _ = self.ring.cancel(Op::Accept);
        }
        if self.waker_armed {
            let _ = self.ring.cancel(Op::Waker);
        }
        self.alarm.cancel(&mut self.ring);
        let patience = Instant::now() + DRAIN_PATIENCE;
        while (self.accept_armed
            || self.waker_armed
            || self.alarm.in_flight()
            || self.calls.in_flight()
            || !self.connections.is_empty())
            && Instant::now() < patience
        {
            self.pool.publish();
            if self
                .ring
                .submit_and_wait(Some(Duration::from_millis(50)))
                .is_err()
            {
                break;
            }
            self.ring.reap(completions);
            for completion in completions.drain(..) {
                match completion.op {
                    Op::Accept => {
                        self.accept_armed = completion.more();
                        if completion.result >= 0 {
                            // SAFETY: a new descriptor nobody owns: closed.
                            drop(unsafe { OwnedFd::from_raw_fd(completion.result) });
                        }
                    }
                    _ => self.dispatch(completion),
                }
            }
            // A connection with nothing in flight left is freed in
            // `after`; one that never had a completion since it closed
            // is freed here.
            let done: Vec<usize> = self
                .connections
                .iter()
                .filter(|(_, conn)| !conn.in_flight())
                .map(|(key, _)| key)
                .collect();
            for key in done {
                self.connections.remove(key);
            }
        }
    }
}

//! The readiness loop: wait for events or the next timer, dispatch them,
//! repeat. This file is the loop's bookkeeping (the poller, the slab, the
//! listener, the timers, shutdown); what a connection does when told it is
//! ready is in `connection.rs`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use slab::Slab;
use zen_utils::serve::listener::{AcceptErrors, AcceptFailure, ACCEPT_BACKOFF};
use zen_utils::serve::raw_loop::admitted::Admitter;
use zen_utils::serve::raw_loop::deadline::{next_turn, schedule_idle_scan, Deadline, Turn};
use zen_utils::serve::raw_loop::epoll::{Interest, Ready};
use zen_utils::serve::raw_loop::ids::{AttemptId, ConnId};
use zen_utils::serve::raw_loop::timers::Timers;
use zen_utils::serve::raw_loop::waker::wake_on_shutdown;
use zen_utils::{Config, End, Shutdown, Stats, Summary};

use crate::connection::{Connection, Context, Next, Wake};
use crate::offload::Offload;
use crate::peer_call::{attempt_of_poll_key, CallContext, PeerCall};
use crate::poll_mode::{self, PollMode};
use crate::poller::{Poller, PollerKind, PollerWaker, WAKER};
use crate::registered::RegisteredInterest;

/// The listener's poll key. Connections are keyed by their slab key,
/// which counts up from 0, so the top of the range is free for the
/// listener and the poller's own keys (its waker's, [`WAKER`], and those
/// above it); peer calls' keys have bit 62 set and bit 63 clear (see
/// `peer_call.rs`), which none of these has.
const SERVER: u64 = u64::MAX - 3;

/// What a peer call advances with, lent from the loop's own fields: a
/// macro rather than a method, so that the loop can lend them while it
/// holds an entry of its slab of calls (the borrows are of other fields).
macro_rules! call_context {
    ($loop:ident) => {
        CallContext {
            poller: &$loop.poller,
            mode: $loop.mode,
            timers: &mut $loop.timers,
            timeout: $loop.config.peers.timeout,
            next_generation: &mut $loop.next_attempt,
        }
    };
}

/// A connection the loop watches: the connection, and the loop's own
/// bookkeeping about it, which only the loop writes.
struct Watched {
    conn: Connection,
    registered: RegisteredInterest,
    /// Listed in `unfinished`, waiting for its next turn.
    queued: bool,
    /// The key of its peer call in flight, if the peers are being asked
    /// its question: cancelled if the connection closes first.
    call: Option<usize>,
}

/// The loop and everything it owns. Only its one thread ever touches it.
pub(crate) struct EventLoop {
    /// `--poller`: the one part of the loop that differs between the two
    /// (poller.rs). It wakes at the earliest of the timer queue and the
    /// shutdown's grace deadline, and when its waker is used.
    poller: Poller,
    mode: PollMode,
    /// `None` once the shutdown began: it is closed, so new clients are
    /// refused by the kernel.
    listener: Option<TcpListener>,
    connections: Slab<Watched>,
    timers: Timers<Deadline>,
    /// Connections that used their whole turn with more to read, in the
    /// order they did: advanced again after the next wait, which does not
    /// block while any are listed.
    unfinished: Vec<ConnId>,
    /// Questions connections need their peers to answer, as their turns
    /// asked for them: the loop starts their calls after the turn.
    peer_calls: Vec<(ConnId, zen_utils::protocol::peers::Forward)>,
    /// The peer calls in flight: outgoing connections, one per question
    /// being forwarded, driven by this loop beside the clients.
    calls: Slab<PeerCall>,
    /// Counts peer call attempts, to tell an attempt that is over (its
    /// deadline, its socket's events) from the one in progress.
    next_attempt: u64,
    /// `--offload`: the helpers that do `--work cpu|block`, and the works
    /// connections asked them for in their turn, submitted after it.
    offload: Option<Offload>,
    offloaded: Vec<(ConnId, zen_utils::Work)>,
    config: Config,
    stats: Stats,
    /// `--max-conns` (each connection holds a permit) and the generations
    /// that tell a reused slab key apart.
    admitter: Admitter,
    /// Logs failed accepts, running out of descriptors at most once a second.
    accept_errors: AcceptErrors,
    shutdown: Shutdown,
    /// Whether the loop has begun its shutdown: connections left when the
    /// shutdown's grace ends are closed whatever they still owe.
    shutting_down: bool,
}

impl EventLoop {
    /// Registers the listener, and the shutdown with the poller's waker.
    pub(crate) fn new(
        listener: TcpListener,
        config: Config,
        shutdown: Shutdown,
        kind: PollerKind,
        mode: PollMode,
    ) -> io::Result<Self> {
        let poller = Poller::new(kind, mode)?;
        listener.set_nonblocking(true)?;
        poller.add(&listener, SERVER, Interest::READ)?;
        // The shutdown may come from any thread (a signal handler's, a
        // test's): the waker wakes the loop out of `wait` at once. (A
        // helper still running `--work block` when `serve` returns keeps
        // the waker's descriptors until its sleep ends: with `polling`,
        // its whole poller.)
        let waker = poller.waker();
        wake_on_shutdown(&shutdown, &waker, PollerWaker::wake);
        // The helpers' completions wake the loop through the same waker.
        let offload = match config.offload {
            0 => None,
            helpers => Some(Offload::start(
                helpers,
                Arc::clone(&waker),
                shutdown.clone(),
            )?),
        };
        let mut timers = Timers::new();
        schedule_idle_scan(&mut timers, &config, Instant::now());
        Ok(Self {
            poller,
            mode,
            listener: Some(listener),
            connections: Slab::new(),
            timers,
            unfinished: Vec::new(),
            peer_calls: Vec::new(),
            calls: Slab::new(),
            next_attempt: 0,
            offload,
            offloaded: Vec::new(),
            admitter: Admitter::new(config.max_conns),
            config,
            stats: Stats::new(),
            accept_errors: AcceptErrors::new(),
            shutdown,
            shutting_down: false,
        })
    }

    /// Runs until the shutdown is over; returns the summary.
    pub(crate) fn run(mut self) -> io::Result<Summary> {
        loop {
            if self.shutdown.is_triggered() && !self.shutting_down {
                self.begin_shutdown();
            }
            let next_due = match next_turn(&self.shutdown, self.connections.len(), &self.timers) {
                Turn::WaitUntil(due) => due,
                Turn::Over => break,
            };
            // The one place the loop waits (`--work block` aside, on
            // purpose): until a socket is ready, the timer fires, or the
            // waker wakes it for the shutdown. Unfinished connections are
            // ready now: then it only looks for events.
            self.poller.wait(next_due, !self.unfinished.is_empty())?;
            for i in 0..self.poller.len() {
                let event = self.poller.event(i);
                match event.key {
                    SERVER => self.accept_all(),
                    WAKER => self.finish_offloaded(),
                    key => match attempt_of_poll_key(key) {
                        Some(call) => self.on_peer_ready(call),
                        None => self.on_ready(key as usize, event),
                    },
                }
            }
            self.run_due_timers(Instant::now());
            self.advance_unfinished();
        }
        self.close_remaining();
        Ok(self.stats.summary())
    }

    fn on_ready(&mut self, key: usize, event: Ready) {
        // A connection closed earlier in this batch left its events behind.
        let Some(watched) = self.connections.get_mut(key) else {
            return;
        };
        let asked = watched.registered.interest();
        watched.registered.delivered(self.mode);
        let ready = Interest::new(
            event.readable && asked.readable,
            event.writable && asked.writable,
        );
        let unasked = (event.readable && !asked.readable) || (event.writable && !asked.writable);
        self.advance(key, Wake::Ready { ready, unasked });
    }

    /// Tells a connection what happened, and does what it wants next:
    /// close it, or register its interest (and list it for another turn);
    /// then starts the peer calls its turn asked for.
    fn advance(&mut self, key: usize, wake: Wake) {
        self.advance_connection(key, wake);
        self.start_peer_calls();
        self.start_offloaded();
    }

    fn advance_connection(&mut self, key: usize, wake: Wake) {
        let Some(watched) = self.connections.get_mut(key) else {
            return;
        };
        let mut ctx = Context {
            config: &self.config,
            stats: &self.stats,
            shutdown: &self.shutdown,
            timers: &mut self.timers,
            peer_calls: &mut self.peer_calls,
            offloaded: self.offload.is_some().then_some(&mut self.offloaded),
            short_read_drains: poll_mode::short_read_drains(self.mode),
        };
        let interest = match watched.conn.advance(wake, &mut ctx) {
            Next::Close(end) => return self.close(key, end),
            Next::Wait(interest) => interest,
            Next::AnotherTurn(interest) => {
                if !watched.queued {
                    watched.queued = true;
                    self.unfinished.push(watched.conn.id);
                }
                interest
            }
        };
        let updated = watched.registered.update(
            &self.poller,
            &watched.conn.stream,
            key as u64,
            interest,
            self.mode,
            watched.conn.drained(),
        );
        if let Err(error) = updated {
            self.close(key, End::Failed(error));
        }
    }

    /// Starts asking the peers the questions connections need them for:
    /// each a [`PeerCall`], its first connect begun, without blocking. A
    /// call decided at once (no peer could even be dialled) is answered
    /// here, and the turn that answer gives may ask for more: a loop, not
    /// a recursion, however many questions a client pipelined.
    fn start_peer_calls(&mut self) {
        while !self.peer_calls.is_empty() {
            for (client, forward) in std::mem::take(&mut self.peer_calls) {
                if self.watched(client).is_none() {
                    continue; // It closed in the same turn.
                }
                let entry = self.calls.vacant_entry();
                let key = entry.key();
                let mut ctx = call_context!(self);
                match PeerCall::start(client, forward, key, &mut ctx) {
                    (call, None) => {
                        entry.insert(call);
                        if let Some(watched) = self.watched(client) {
                            watched.call = Some(key);
                        }
                    }
                    (_, Some(answer)) => {
                        self.advance_connection(client.key, Wake::PeersAnswered(answer));
                    }
                }
            }
        }
    }

    /// Hands the works connections asked for in their turn to the helpers
    /// (or parks them, if the helpers' queue is full).
    fn start_offloaded(&mut self) {
        let Some(offload) = &mut self.offload else {
            return;
        };
        for (conn, work) in self.offloaded.drain(..) {
            // It may have closed in the same turn (a failed write after
            // asking): no helper is spent on it.
            if is_open(&self.connections, conn) {
                offload.submit(conn, work);
            }
        }
    }

    /// The helpers finished works: each connection still open gets its
    /// answer and goes on with the questions behind it. A work cut short
    /// by the end of the grace gives no answer: the loop is closing
    /// everyone.
    fn finish_offloaded(&mut self) {
        let Some(offload) = &mut self.offload else {
            return;
        };
        let connections = &self.connections;
        let done = offload.take_done(|id| is_open(connections, id));
        for (id, finished) in done {
            if finished && self.watched(id).is_some() {
                self.advance(id.key, Wake::AnswerDue);
            }
        }
    }

    /// A peer call's socket is ready: its attempt goes on, and the call
    /// ends if that decided the answer.
    fn on_peer_ready(&mut self, id: AttemptId) {
        // A call cancelled earlier in this batch may have left an event
        // behind, and so may an attempt that is over: the generation in the
        // key tells, even if the slab key was reused.
        self.drive_call(id.key, |call, ctx| call.on_ready(id, ctx));
    }

    /// A peer call's attempt is due: if that attempt is still in progress,
    /// its peer failed, and the call asks the next peer or ends.
    fn peer_deadline(&mut self, id: AttemptId) {
        self.drive_call(id.key, |call, ctx| call.on_deadline(id, ctx));
    }

    /// Lets peer call `key` take in what happened (`step`), and ends it if
    /// that decided its answer.
    fn drive_call(
        &mut self,
        key: usize,
        step: impl FnOnce(&mut PeerCall, &mut CallContext<'_>) -> Option<&'static [u8]>,
    ) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        let mut ctx = call_context!(self);
        if let Some(answer) = step(call, &mut ctx) {
            self.end_call(key, answer);
        }
    }

    /// A peer call decided its answer: it ends (its last socket is closed
    /// already), and the client that owes the answer gives it.
    fn end_call(&mut self, key: usize, answer: &'static [u8]) {
        let call = self.calls.remove(key);
        if let Some(watched) = self.watched(call.client) {
            watched.call = None;
            self.advance(call.client.key, Wake::PeersAnswered(answer));
        }
    }

    /// Gives each connection that was cut off at the end of its turn the
    /// next one, after every other ready connection had its own.
    fn advance_unfinished(&mut self) {
        for id in std::mem::take(&mut self.unfinished) {
            if let Some(watched) = self.watched(id) {
                watched.queued = false;
                self.advance(id.key, Wake::NextTurn);
            }
        }
    }

    /// Connection `id`, unless it closed (even if its key was reused
    /// since: the generation tells).
    fn watched(&mut self, id: ConnId) -> Option<&mut Watched> {
        self.connections
            .get_mut(id.key)
            .filter(|watched| watched.conn.id == id)
    }

    /// Accepts every connection waiting in the backlog.
    fn accept_all(&mut self) {
        while let Some(listener) = &self.listener {
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                // The backlog is empty: the poller will say when it is not.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    if self.accept_errors.on_error(&error) == AcceptFailure::OutOfResources {
                        self.pause_accepting();
                        return;
                    }
                }
            }
        }
        if self.mode == PollMode::Oneshot {
            self.listen(true);
        }
    }

    /// Out of descriptors: the pending connection stays in the backlog, so
    /// the listener stays readable, and a level-triggered loop would spin on
    /// it. It stops listening for [`ACCEPT_BACKOFF`] (a timer turns it back
    /// on) and keeps serving the connections it has.
    fn pause_accepting(&mut self) {
        self.listen(false);
        self.timers
            .add(Instant::now() + ACCEPT_BACKOFF, Deadline::ResumeAccepting);
    }

    fn listen(&mut self, readable: bool) {
        if let Some(listener) = &self.listener {
            let interest = Interest::new(readable, false);
            if let Err(error) = self.poller.modify(listener, SERVER, interest) {
                tracing::warn!("warning: cannot change the listener's interest: {error}");
            }
        }
    }

    /// Takes in a new connection, or turns it away at `--max-conns`.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        self.stats.connection();
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        let poller = &self.poller;
        let register = |stream: &TcpStream| {
            stream.set_nonblocking(true)?;
            poller.add(stream, key as u64, Interest::READ)
        };
        let admitted = self
            .admitter
            .admit(stream, peer, key, &self.config, &self.stats, register);
        let Some(admitted) = admitted else {
            return;
        };
        entry.insert(Watched {
            conn: Connection::new(admitted, &self.config),
            registered: RegisteredInterest::new(Interest::READ),
            queued: false,
            call: None,
        });
        tracing::debug!("accepted connection from {peer}");
    }

    fn run_due_timers(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                // The generation check drops the timer of a connection
                // that closed while it waited, even if its key was reused.
                Deadline::Answer(id) => {
                    if self.watched(id).is_some() {
                        self.advance(id.key, Wake::AnswerDue);
                    }
                }
                Deadline::IdleScan => self.scan_for_timeouts(now),
                Deadline::ResumeAccepting => self.listen(true),
                Deadline::PeerAttempt(id) => self.peer_deadline(id),
            }
        }
    }

    /// Closes every connection whose idle deadline passed, and schedules
    /// the next scan.
    fn scan_for_timeouts(&mut self, now: Instant) {
        let expired: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, watched)| watched.conn.idle_expired(now))
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            let end = self.connections[key].conn.idle_end(now);
            self.close(key, end);
        }
        schedule_idle_scan(&mut self.timers, &self.config, now);
    }

    /// Stops accepting, and tells every connection: each takes a last read,
    /// finishes what it owes and ends; idle ones end at once.
    fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        // Deleted from the epoll set first: closing this descriptor does
        // not remove it while other processes hold the socket (systemd,
        // inetd, a supervisor's other workers), and a connection they
        // queue would be reported at every wait, for nobody to accept.
        if let Some(listener) = self.listener.take() {
            let _ = self.poller.delete(&listener);
        }
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.advance(key, Wake::Shutdown);
        }
    }

    /// The shutdown grace is over: whatever is left closes now. A client
    /// that had not read its answers failed; answers still being worked
    /// on (a `--work wait` timer not yet due, a peer call in flight) are
    /// dropped, as in every model, and so are the questions behind them.
    fn close_remaining(&mut self) {
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            let end = self.connections[key].conn.grace_over();
            self.close(key, end);
        }
        for mut call in self.calls.drain() {
            call.cancel(&self.poller);
        }
    }

    /// Closes a connection (deleted from the poller first, where the
    /// poller needs it), and counts and logs its end.
    fn close(&mut self, key: usize, end: End) {
        let mut watched = self.connections.remove(key);
        self.poller.closing(&watched.conn.stream);
        // Its peer call, if one is in flight, is cancelled: its socket
        // closes, and its deadline, when due, finds no call (or another).
        if let Some(call) = watched.call {
            self.calls.remove(call).cancel(&self.poller);
        }
        // So is its work for the helpers, queued or parked.
        if let Some(offload) = &mut self.offload {
            offload.forget(watched.conn.id);
        }
        end.record(watched.conn.peer, watched.conn.leftover(), &self.stats);
        // Dropped here, its permit gives its place under `--max-conns` back.
    }
}

/// Whether connection `id` is still open (not closed, even if its slab
/// key was reused since: the generation tells). A free function, so that
/// the loop can ask it while it lends out another of its fields.
fn is_open(connections: &Slab<Watched>, id: ConnId) -> bool {
    connections
        .get(id.key)
        .is_some_and(|watched| watched.conn.id == id)
}

//! The readiness loop: wait for events or the next timer, dispatch them,
//! repeat. This file is the loop's bookkeeping (the poller, the slab, the
//! listener, the timers, shutdown); what a connection does when told it is
//! ready is in `connection.rs`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use polling::{Event, Events, PollMode, Poller};
use slab::Slab;
use zen_utils::listener::{self, AcceptErrors, AcceptFailure, ACCEPT_BACKOFF};
use zen_utils::{Config, End, Shutdown, Stall, Stats, Summary};

use crate::connection::{ConnId, Connection, Context, Interest, Timer};
use crate::timers::Timers;

/// The poll key of the listener. Connections are keyed by their slab key,
/// which counts up from 0, and polling reserves `usize::MAX` for its own
/// `notify`, so the key just below it is free for the listener.
const SERVER: usize = usize::MAX - 1;

/// How many idle scans run per idle timeout. A connection is closed between
/// one and `1 + 1/IDLE_SCANS_PER_TIMEOUT` timeouts after its last question.
/// RawServer's way: one timer for all connections rather than one per
/// connection, so the timer queue does not grow with connections that come
/// and go, and a scan of even 10,000 connections costs well under a
/// millisecond.
const IDLE_SCANS_PER_TIMEOUT: u32 = 8;

/// The loop and everything it owns. Only its one thread ever touches it.
pub(crate) struct EventLoop {
    poller: Arc<Poller>,
    mode: PollMode,
    /// `None` once the shutdown began: it is deleted from the poller and
    /// closed, so new clients are refused by the kernel.
    listener: Option<TcpListener>,
    connections: Slab<Connection>,
    /// Counts accepted connections, to tell a reused slab key apart.
    next_generation: u64,
    timers: Timers<Timer>,
    /// Connections that used their whole turn with more to read, in the
    /// order they did: advanced again after the next wait, which does not
    /// block while any are listed.
    unfinished: Vec<ConnId>,
    config: Config,
    stats: Stats,
    /// Logs failed accepts, running out of descriptors at most once a second.
    accept_errors: AcceptErrors,
    shutdown: Shutdown,
    /// Whether the loop has begun its shutdown: connections left when the
    /// shutdown's grace ends are closed whatever they still owe.
    shutting_down: bool,
}

impl EventLoop {
    /// Registers the listener and the shutdown waker.
    pub(crate) fn new(
        listener: TcpListener,
        config: Config,
        shutdown: Shutdown,
        mode: PollMode,
    ) -> io::Result<Self> {
        let poller = Arc::new(Poller::new()?);
        let mode = supported(mode, &poller);
        listener.set_nonblocking(true)?;
        // SAFETY: the listener lives in `self.listener` until `stop_accepting`
        // or `Drop` deletes it from the poller, and only then is it dropped.
        unsafe { poller.add_with_mode(&listener, Event::readable(SERVER), mode)? };
        // The shutdown may come from any thread (a signal handler's, a
        // test's): `notify` wakes the loop out of `wait` at once. A weak
        // reference, so that the waker does not keep the poller open after
        // `serve` returns.
        let waker = Arc::downgrade(&poller);
        shutdown.on_trigger(move || {
            if let Some(poller) = waker.upgrade() {
                let _ = poller.notify();
            }
        });
        let mut timers = Timers::new();
        if let Some(period) = idle_scan_period(&config) {
            timers.add(Instant::now() + period, Timer::IdleScan);
        }
        Ok(Self {
            poller,
            mode,
            listener: Some(listener),
            connections: Slab::new(),
            next_generation: 0,
            timers,
            unfinished: Vec::new(),
            config,
            stats: Stats::new(),
            accept_errors: AcceptErrors::new(),
            shutdown,
            shutting_down: false,
        })
    }

    /// Runs until the shutdown is over; returns the summary.
    pub(crate) fn run(mut self) -> io::Result<Summary> {
        let mut events = Events::new();
        loop {
            if self.shutdown.is_triggered() && !self.shutting_down {
                self.begin_shutdown();
            }
            let grace_deadline = self.shutdown.grace_deadline();
            if let Some(deadline) = grace_deadline {
                if self.connections.is_empty() || Instant::now() >= deadline {
                    break;
                }
            }
            // The one place the loop waits (`--work block` aside, on
            // purpose): until a socket is ready, the next timer is due, or
            // `notify` wakes it for the shutdown.
            let now = Instant::now();
            let timeout = [
                // Unfinished connections are ready now: only look for events.
                (!self.unfinished.is_empty()).then_some(Duration::ZERO),
                self.timers.time_to_next(now),
                grace_deadline.map(|deadline| deadline.saturating_duration_since(now)),
            ]
            .into_iter()
            .flatten()
            .min();
            events.clear();
            self.poller.wait(&mut events, timeout)?;
            for event in events.iter() {
                self.on_event(event);
            }
            self.run_due_timers(Instant::now());
            self.advance_unfinished();
        }
        self.close_remaining();
        Ok(self.stats.summary())
    }

    fn on_event(&mut self, event: Event) {
        if event.key == SERVER {
            self.accept_all();
            return;
        }
        // A connection closed earlier in this batch left its events behind.
        let Some(conn) = self.connections.get_mut(event.key) else {
            return;
        };
        let asked = conn.registered;
        if self.mode == PollMode::Oneshot {
            // The kernel disabled the registration when it delivered this
            // event: `settle_interest` re-arms it, one more `epoll_ctl`.
            conn.registered = Interest::NONE;
        }
        let ready = Interest {
            readable: event.readable && asked.readable,
            writable: event.writable && asked.writable,
        };
        let unasked = (event.readable && !asked.readable) || (event.writable && !asked.writable);
        conn.on_ready(ready, unasked);
        self.advance(event.key);
    }

    /// Lets a connection do all it can, then closes it or updates its
    /// interest.
    fn advance(&mut self, key: usize) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        let mut ctx = Context {
            config: &self.config,
            stats: &self.stats,
            shutdown: &self.shutdown,
            timers: &mut self.timers,
            short_read_drains: self.mode != PollMode::Edge,
        };
        match conn.advance(&mut ctx) {
            Some(end) => self.close(key, end),
            None => {
                if conn.unfinished && !conn.queued {
                    conn.queued = true;
                    self.unfinished.push(conn.id);
                }
                self.settle_interest(key);
            }
        }
    }

    /// Gives each connection that was cut off at the end of its turn the
    /// next one, after every other ready connection had its own.
    fn advance_unfinished(&mut self) {
        for id in std::mem::take(&mut self.unfinished) {
            let Some(conn) = self.connections.get_mut(id.key).filter(|c| c.id == id) else {
                continue;
            };
            conn.queued = false;
            if conn.unfinished {
                self.advance(id.key);
            }
        }
    }

    /// Tells the poller what the connection wants now, if that changed:
    /// the one `epoll_ctl` that level-triggered mode needs, and only at
    /// backpressure, pending output or a wait.
    fn settle_interest(&mut self, key: usize) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        let wanted = conn.wanted_interest();
        if wanted == conn.registered {
            return;
        }
        let interest = Event::new(key, wanted.readable, wanted.writable);
        match self
            .poller
            .modify_with_mode(&conn.stream, interest, self.mode)
        {
            Ok(()) => conn.registered = wanted,
            Err(error) => self.close(key, End::Failed(error)),
        }
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
            .add(Instant::now() + ACCEPT_BACKOFF, Timer::ResumeAccepting);
    }

    fn listen(&mut self, readable: bool) {
        if let Some(listener) = &self.listener {
            let interest = Event::new(SERVER, readable, false);
            if let Err(error) = self.poller.modify_with_mode(listener, interest, self.mode) {
                tracing::warn!("warning: cannot change the listener's interest: {error}");
            }
        }
    }

    /// Takes in a new connection, or turns it away at `--max-conns`.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        self.stats.connection();
        if self.connections.len() >= self.config.max_conns {
            // Without blocking: the loop must not wait on a client it is
            // turning away.
            listener::turn_away(&stream, peer, &self.config, &self.stats);
            return;
        }
        let prepared =
            listener::prepare_accepted(&stream).and_then(|()| stream.set_nonblocking(true));
        if let Err(error) = prepared {
            self.stats.error(1);
            tracing::debug!("connection from {peer} closed: error: {error}");
            return;
        }
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        // SAFETY: the stream lives in the slab entry, and `close` (or
        // `Drop`) deletes it from the poller before the entry is dropped.
        let added = unsafe {
            self.poller
                .add_with_mode(&stream, Event::readable(key), self.mode)
        };
        if let Err(error) = added {
            self.stats.error(1);
            tracing::warn!("warning: cannot register connection from {peer}: {error}");
            return;
        }
        let id = ConnId {
            key,
            generation: self.next_generation,
        };
        self.next_generation += 1;
        entry.insert(Connection::new(stream, peer, id, &self.config));
        tracing::debug!("accepted connection from {peer}");
    }

    fn run_due_timers(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Answer(id) => {
                    // The generation check drops the timer of a connection
                    // that closed while it waited, even if its key was reused.
                    let Some(conn) = self.connections.get_mut(id.key).filter(|c| c.id == id) else {
                        continue;
                    };
                    conn.on_answer_ready();
                    self.advance(id.key);
                }
                Timer::IdleScan => self.scan_for_timeouts(now),
                Timer::ResumeAccepting => self.listen(true),
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
                let end = conn.idle_end(now, &self.stats);
                self.close(key, end);
            }
        }
        if let Some(period) = idle_scan_period(&self.config) {
            self.timers.add(now + period, Timer::IdleScan);
        }
    }

    /// Stops accepting, takes a last read of every connection, and lets
    /// each finish what it owes; idle ones close at once.
    fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        if let Some(listener) = self.listener.take() {
            let _ = self.poller.delete(&listener);
        }
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.connections.get_mut(key) {
                conn.last_read();
                self.advance(key);
            }
        }
    }

    /// The shutdown grace is over: whatever is left closes now. A client
    /// that had not read its answers failed; answers still being worked
    /// on (a `--work wait` timer not yet due) are dropped, as in every
    /// model, and so are the questions behind them.
    fn close_remaining(&mut self) {
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            let end = if self.connections[key].owes_output() {
                End::Unread(Stall::Shutdown)
            } else {
                End::Shutdown
            };
            self.close(key, end);
        }
    }

    /// Deletes a connection from the poller, then drops it (polling's
    /// safety rule: deleted before closed), and counts and logs its end.
    fn close(&mut self, key: usize, end: End) {
        let mut conn = self.connections.remove(key);
        let _ = self.poller.delete(&conn.stream);
        end.record(conn.peer, conn.leftover(), &self.stats);
    }
}

impl Drop for EventLoop {
    /// On an early return (a failed `wait`), every source still registered
    /// is deleted before its socket closes, as polling requires.
    fn drop(&mut self) {
        for conn in self.connections.drain() {
            let _ = self.poller.delete(&conn.stream);
        }
        if let Some(listener) = self.listener.take() {
            let _ = self.poller.delete(&listener);
        }
    }
}

/// The mode asked for, or oneshot where the OS does not support it.
fn supported(mode: PollMode, poller: &Poller) -> PollMode {
    match mode {
        PollMode::Level if !poller.supports_level() => PollMode::Oneshot,
        PollMode::Edge if !poller.supports_edge() => PollMode::Oneshot,
        mode => mode,
    }
}

fn idle_scan_period(config: &Config) -> Option<Duration> {
    config
        .idle_timeout
        .map(|timeout| (timeout / IDLE_SCANS_PER_TIMEOUT).max(Duration::from_millis(1)))
}

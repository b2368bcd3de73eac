//! The readiness loop: wait for events or the next timer, dispatch them,
//! repeat. This file is the loop's bookkeeping (the poller, the slab, the
//! listener, the timers, shutdown); what a connection does when told it is
//! ready is in `connection.rs`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;
use zen_utils::epoll::{self, Interest, Poller, Waker};
use zen_utils::listener::{self, AcceptErrors, AcceptFailure, ACCEPT_BACKOFF};
use zen_utils::{Config, End, Shutdown, Stats, Summary};

use crate::connection::{ConnId, Connection, Context, Next, Timer, Wake};
use crate::poll_mode::{self, PollMode, Registration};
use crate::timers::Timers;

/// The poll keys of the loop's own sources. Connections are keyed by their
/// slab key, which counts up from 0, so the top of the range is free.
const SERVER: u64 = u64::MAX;
const WAKER: u64 = u64::MAX - 1;
const TIMER: u64 = u64::MAX - 2;

/// At most this many events per wait; more wait for the next one.
const EVENTS_PER_WAIT: usize = 1024;

/// How many idle scans run per idle timeout. A connection is closed between
/// one and `1 + 1/IDLE_SCANS_PER_TIMEOUT` timeouts after its last question.
/// RawServer's way: one timer for all connections rather than one per
/// connection, so the timer queue does not grow with connections that come
/// and go, and a scan of even 10,000 connections costs well under a
/// millisecond.
const IDLE_SCANS_PER_TIMEOUT: u32 = 8;

/// A connection in the loop's slab, with the loop's own bookkeeping about
/// it, which only the loop writes.
struct Slot {
    conn: Connection,
    registration: Registration,
    /// Listed in `unfinished`, waiting for its next turn.
    queued: bool,
}

/// The loop and everything it owns. Only its one thread ever touches it.
pub(crate) struct EventLoop {
    poller: Poller,
    mode: PollMode,
    /// Another thread's way to wake the wait: the shutdown trigger.
    waker: Arc<Waker>,
    /// The one timerfd, armed for the earliest of the timer queue and the
    /// shutdown's grace deadline (`armed_for`).
    timer: epoll::Timer,
    armed_for: Option<Instant>,
    /// `None` once the shutdown began: it is closed, so new clients are
    /// refused by the kernel.
    listener: Option<TcpListener>,
    connections: Slab<Slot>,
    /// Counts accepted connections, to tell a reused slab key apart.
    next_generation: u64,
    timers: Timers<Timer>,
    /// Connections that used their whole turn with more to read, in the
    /// order they did: advanced again after the next wait, which does not
    /// block while any are listed.
    unfinished: Vec<ConnId>,
    /// Questions connections need their peers to answer, as their turns
    /// asked for them.
    peer_calls: Vec<(ConnId, zen_utils::peers::Forward)>,
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
    /// Registers the listener, the shutdown waker and the timer.
    pub(crate) fn new(
        listener: TcpListener,
        config: Config,
        shutdown: Shutdown,
        mode: PollMode,
    ) -> io::Result<Self> {
        let poller = Poller::new(EVENTS_PER_WAIT, mode)?;
        listener.set_nonblocking(true)?;
        poller.add(&listener, SERVER, Interest::READ)?;
        let timer = epoll::Timer::new()?;
        poller.watch(timer.fd(), TIMER)?;
        // The shutdown may come from any thread (a signal handler's, a
        // test's): the waker wakes the loop out of `wait` at once. A weak
        // reference, so that the trigger does not keep the eventfd open
        // after `serve` returns.
        let waker = Arc::new(Waker::new()?);
        poller.watch(waker.fd(), WAKER)?;
        let weak = Arc::downgrade(&waker);
        shutdown.on_trigger(move || {
            if let Some(waker) = weak.upgrade() {
                waker.wake();
            }
        });
        let mut timers = Timers::new();
        if let Some(period) = idle_scan_period(&config) {
            timers.add(Instant::now() + period, Timer::IdleScan);
        }
        Ok(Self {
            poller,
            mode,
            waker,
            timer,
            armed_for: None,
            listener: Some(listener),
            connections: Slab::new(),
            next_generation: 0,
            timers,
            unfinished: Vec::new(),
            peer_calls: Vec::new(),
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
            let grace_deadline = self.shutdown.grace_deadline();
            if let Some(deadline) = grace_deadline {
                if self.connections.is_empty() || Instant::now() >= deadline {
                    break;
                }
            }
            // The one place the loop waits (`--work block` aside, on
            // purpose): until a socket is ready, the timer fires, or the
            // waker wakes it for the shutdown. Unfinished connections are
            // ready now: then it only looks for events.
            let next_due = [self.timers.next_due(), grace_deadline]
                .into_iter()
                .flatten()
                .min();
            self.arm_timer(next_due)?;
            let deadline = (!self.unfinished.is_empty()).then_some(0);
            self.poller.wait(deadline)?;
            for i in 0..self.poller.len() {
                let event = self.poller.event(i);
                match event.key {
                    SERVER => self.accept_all(),
                    WAKER => self.waker.clear(),
                    TIMER => self.timer_fired(),
                    key => self.on_ready(key as usize, event),
                }
            }
            self.run_due_timers(Instant::now());
            self.advance_unfinished();
        }
        self.close_remaining();
        Ok(self.stats.summary())
    }

    /// Arms the timerfd for `next_due`, if it is not armed for it already:
    /// one `timerfd_settime` when the earliest timer changes, not per wait.
    fn arm_timer(&mut self, next_due: Option<Instant>) -> io::Result<()> {
        let Some(at) = next_due else {
            return Ok(()); // A stale expiry only wakes the loop once for nothing.
        };
        if self.armed_for == Some(at) {
            return Ok(());
        }
        // `Instant` reads the monotonic clock, as the timerfd does; the
        // clock is read after the instant, so the timer never fires early.
        let left = at.saturating_duration_since(Instant::now());
        self.timer.arm(epoll::now_ns() + epoll::nanos(left))?;
        self.armed_for = Some(at);
        Ok(())
    }

    fn timer_fired(&mut self) {
        self.timer.fired();
        self.armed_for = None;
    }

    fn on_ready(&mut self, key: usize, event: epoll::Ready) {
        // A connection closed earlier in this batch left its events behind.
        let Some(slot) = self.connections.get_mut(key) else {
            return;
        };
        let asked = slot.registration.interest();
        slot.registration.delivered(self.mode);
        let ready = Interest::new(
            event.readable && asked.readable,
            event.writable && asked.writable,
        );
        let unasked = (event.readable && !asked.readable) || (event.writable && !asked.writable);
        self.advance(key, Wake::Ready { ready, unasked });
    }

    /// Tells a connection what happened, and does what it wants next:
    /// close it, or register its interest (and list it for another turn).
    fn advance(&mut self, key: usize, wake: Wake) {
        let Some(slot) = self.connections.get_mut(key) else {
            return;
        };
        let mut ctx = Context {
            config: &self.config,
            stats: &self.stats,
            shutdown: &self.shutdown,
            timers: &mut self.timers,
            peer_calls: &mut self.peer_calls,
            short_read_drains: poll_mode::short_read_drains(self.mode),
        };
        let interest = match slot.conn.advance(wake, &mut ctx) {
            Next::Close(end) => return self.close(key, end),
            Next::Wait(interest) => interest,
            Next::AnotherTurn(interest) => {
                if !slot.queued {
                    slot.queued = true;
                    self.unfinished.push(slot.conn.id);
                }
                interest
            }
        };
        let updated =
            slot.registration
                .update(&self.poller, &slot.conn.stream, key as u64, interest);
        if let Err(error) = updated {
            self.close(key, End::Failed(error));
        }
        self.start_peer_calls();
    }

    /// Asks the peers the questions connections need them for.
    fn start_peer_calls(&mut self) {
        for (id, forward) in std::mem::take(&mut self.peer_calls) {
            let reply = zen_utils::blocking::ask_peers(forward, self.config.peers.timeout);
            if self.slot_of(id).is_some() {
                self.advance(id.key, Wake::PeersAnswered(reply));
            }
        }
    }

    /// Gives each connection that was cut off at the end of its turn the
    /// next one, after every other ready connection had its own.
    fn advance_unfinished(&mut self) {
        for id in std::mem::take(&mut self.unfinished) {
            if let Some(slot) = self.slot_of(id) {
                slot.queued = false;
                self.advance(id.key, Wake::NextTurn);
            }
        }
    }

    /// The slot of connection `id`, unless it closed (even if its key was
    /// reused since: the generation tells).
    fn slot_of(&mut self, id: ConnId) -> Option<&mut Slot> {
        self.connections
            .get_mut(id.key)
            .filter(|slot| slot.conn.id == id)
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
            let interest = Interest::new(readable, false);
            if let Err(error) = self.poller.modify(listener, SERVER, interest) {
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
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        let registered = listener::prepare_accepted(&stream)
            .and_then(|()| stream.set_nonblocking(true))
            .and_then(|()| self.poller.add(&stream, key as u64, Interest::READ));
        if let Err(error) = registered {
            self.stats.error(1);
            self.stats.closed();
            tracing::debug!("connection from {peer} closed: error: {error}");
            return;
        }
        let id = ConnId {
            key,
            generation: self.next_generation,
        };
        self.next_generation += 1;
        entry.insert(Slot {
            conn: Connection::new(stream, peer, id, &self.config),
            registration: Registration::new(Interest::READ),
            queued: false,
        });
        tracing::debug!("accepted connection from {peer}");
    }

    fn run_due_timers(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                // The generation check drops the timer of a connection
                // that closed while it waited, even if its key was reused.
                Timer::Answer(id) => {
                    if self.slot_of(id).is_some() {
                        self.advance(id.key, Wake::AnswerDue);
                    }
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
            .filter(|(_, slot)| slot.conn.idle_expired(now))
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            let end = self.connections[key].conn.idle_end(now, &self.stats);
            self.close(key, end);
        }
        if let Some(period) = idle_scan_period(&self.config) {
            self.timers.add(now + period, Timer::IdleScan);
        }
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
    /// on (a `--work wait` timer not yet due) are dropped, as in every
    /// model, and so are the questions behind them.
    fn close_remaining(&mut self) {
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            let end = self.connections[key].conn.grace_over();
            self.close(key, end);
        }
    }

    /// Closes a connection (closing its socket removes it from the epoll
    /// set), and counts and logs its end.
    fn close(&mut self, key: usize, end: End) {
        let mut slot = self.connections.remove(key);
        end.record(slot.conn.peer, slot.conn.leftover(), &self.stats);
    }
}

fn idle_scan_period(config: &Config) -> Option<Duration> {
    config
        .idle_timeout
        .map(|timeout| (timeout / IDLE_SCANS_PER_TIMEOUT).max(Duration::from_millis(1)))
}

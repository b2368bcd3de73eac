//! The loop's poller, `--poller`: the one place the two implementations
//! differ. The loop, the connections and the timer queue are the same.
//!
//! - **polling** (the default): the portable `polling` crate (epoll here;
//!   kqueue, event ports or IOCP elsewhere), used as its documentation
//!   intends: the loop's next timer is the wait's deadline, `notify` is
//!   the waker, and a source is deleted before it is closed. Its `wait`
//!   re-arms a timerfd and its notifier on every call: four system calls
//!   beside `epoll_wait` (docs/course/03-poll.md, "What the portable crate
//!   costs").
//! - **epoll** (Linux): zen-utils' `epoll`, written to avoid them: a wait
//!   is one `epoll_wait`, the timerfd is armed only when the next timer
//!   moves, and the eventfd costs nothing until it is used.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zen_utils::serve::raw_loop::epoll::{self, Interest, Ready};
use zen_utils::serve::raw_loop::waker::EventfdWaker;

use crate::poll_mode::PollMode;

/// Which poller the loop waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollerKind {
    /// The portable `polling` crate.
    #[default]
    Polling,
    /// Raw epoll, timerfd and eventfd, one system call per wait.
    Epoll,
}

/// The key of the event that says the [`PollerWaker`] was used. The keys above
/// it are the pollers' own: `u64::MAX` is `polling`'s, the one below it
/// the epoll timer's.
pub(crate) const WAKER: u64 = u64::MAX - 2;
const TIMER: u64 = u64::MAX - 1;

/// At most this many events per wait; more wait for the next one.
const EVENTS_PER_WAIT: usize = 1024;

/// Wakes the loop's wait from another thread (the shutdown, `--offload`'s
/// helpers); the loop then sees an event with key [`WAKER`].
pub(crate) enum PollerWaker {
    /// `polling`'s `notify`. A notification ends the wait without an
    /// event of its own, so `woken` says that it came: the loop then
    /// takes the helpers' completions, and only then.
    Notify {
        poller: Arc<polling::Poller>,
        woken: AtomicBool,
    },
    /// An eventfd registered with the epoll set under [`WAKER`].
    Eventfd(EventfdWaker),
}

impl PollerWaker {
    pub(crate) fn wake(&self) {
        match self {
            Self::Notify { poller, woken } => {
                woken.store(true, Ordering::Release);
                // Fails only if the notifier's own write does, and then
                // the next wait ends anyway: nothing to do about it here.
                let _ = poller.notify();
            }
            Self::Eventfd(waker) => waker.wake(),
        }
    }
}

/// A poller of either kind, and the events of its last wait.
pub(crate) struct Poller {
    backend: Backend,
    waker: Arc<PollerWaker>,
    ready: Vec<Ready>,
}

enum Backend {
    Polling {
        poller: Arc<polling::Poller>,
        mode: polling::PollMode,
        events: polling::Events,
    },
    Epoll {
        poller: epoll::Poller,
        timer: epoll::Timerfd,
        armed_for: Option<Instant>,
    },
}

impl Poller {
    /// A poller of `kind` registering sockets in `mode`; refuses a mode
    /// the system's poller cannot do.
    pub(crate) fn new(kind: PollerKind, mode: PollMode) -> io::Result<Self> {
        let (backend, waker) = match kind {
            PollerKind::Polling => {
                let poller = Arc::new(polling::Poller::new()?);
                let mode = match mode {
                    PollMode::Level if !poller.supports_level() => {
                        return Err(unsupported("level"))
                    }
                    PollMode::Edge if !poller.supports_edge() => return Err(unsupported("edge")),
                    PollMode::Level => polling::PollMode::Level,
                    PollMode::Edge => polling::PollMode::Edge,
                    PollMode::Oneshot => polling::PollMode::Oneshot,
                };
                let capacity = std::num::NonZeroUsize::new(EVENTS_PER_WAIT).expect("not zero");
                let events = polling::Events::with_capacity(capacity);
                let waker = PollerWaker::Notify {
                    poller: Arc::clone(&poller),
                    woken: AtomicBool::new(false),
                };
                (
                    Backend::Polling {
                        poller,
                        mode,
                        events,
                    },
                    waker,
                )
            }
            PollerKind::Epoll => {
                let poller = epoll::Poller::new(EVENTS_PER_WAIT, mode)?;
                let timer = epoll::Timerfd::new()?;
                poller.watch(timer.fd(), TIMER)?;
                let waker = EventfdWaker::new()?;
                poller.watch(waker.fd(), WAKER)?;
                let armed_for = None;
                (
                    Backend::Epoll {
                        poller,
                        timer,
                        armed_for,
                    },
                    PollerWaker::Eventfd(waker),
                )
            }
        };
        let ready = Vec::with_capacity(EVENTS_PER_WAIT);
        Ok(Self {
            backend,
            waker: Arc::new(waker),
            ready,
        })
    }

    /// The loop's waker, for other threads.
    pub(crate) fn waker(&self) -> Arc<PollerWaker> {
        Arc::clone(&self.waker)
    }

    /// Registers `source` under `key`.
    pub(crate) fn add(&self, source: impl AsFd, key: u64, interest: Interest) -> io::Result<()> {
        match &self.backend {
            // SAFETY: the loop deletes every source it adds before closing
            // it ([`closing`](Self::closing)); and on epoll, polling's
            // documentation says, the condition does not even apply.
            Backend::Polling { poller, mode, .. } => unsafe {
                poller.add_with_mode(source.as_fd().as_raw_fd(), event(key, interest), *mode)
            },
            Backend::Epoll { poller, .. } => poller.add(source, key, interest),
        }
    }

    /// Changes what `source` is watched for (and re-arms a oneshot one).
    pub(crate) fn modify(&self, source: impl AsFd, key: u64, interest: Interest) -> io::Result<()> {
        match &self.backend {
            Backend::Polling { poller, mode, .. } => {
                poller.modify_with_mode(source, event(key, interest), *mode)
            }
            Backend::Epoll { poller, .. } => poller.modify(source, key, interest),
        }
    }

    /// Removes `source`, which stays open.
    pub(crate) fn delete(&self, source: impl AsFd) -> io::Result<()> {
        match &self.backend {
            Backend::Polling { poller, .. } => poller.delete(source),
            Backend::Epoll { poller, .. } => poller.delete(source),
        }
    }

    /// `source` is about to be closed: polling must be told first (its
    /// portable contract); closing removes it from an epoll set by itself.
    pub(crate) fn closing(&self, source: impl AsFd) {
        if let Backend::Polling { poller, .. } = &self.backend {
            let _ = poller.delete(source);
        }
    }

    /// Waits until a source is ready, `due` (the next timer) passes, or the
    /// waker is used; `ready_now`: only looks, without blocking.
    pub(crate) fn wait(&mut self, due: Option<Instant>, ready_now: bool) -> io::Result<()> {
        self.ready.clear();
        match &mut self.backend {
            Backend::Polling { poller, events, .. } => {
                events.clear();
                match (ready_now, due) {
                    (true, _) => poller.wait(events, Some(Duration::ZERO))?,
                    (false, Some(due)) => poller.wait_deadline(events, due)?,
                    (false, None) => poller.wait(events, None)?,
                };
                let ready = events.iter().map(|e| Ready {
                    key: e.key as u64,
                    readable: e.readable,
                    writable: e.writable,
                });
                self.ready.extend(ready);
                if let PollerWaker::Notify { woken, .. } = &*self.waker {
                    if woken.swap(false, Ordering::Acquire) {
                        self.ready.push(Ready {
                            key: WAKER,
                            readable: true,
                            writable: false,
                        });
                    }
                }
            }
            Backend::Epoll {
                poller,
                timer,
                armed_for,
            } => {
                // One `timerfd_settime` when the earliest timer changes,
                // not per wait; a stale expiry only wakes the loop once.
                if let Some(due) = due.filter(|&due| *armed_for != Some(due)) {
                    // The clock is read after the instant: never early.
                    let left = due.saturating_duration_since(Instant::now());
                    timer.arm(epoll::now_ns() + epoll::nanos(left))?;
                    *armed_for = Some(due);
                }
                poller.wait(ready_now.then_some(0))?;
                for event in (0..poller.len()).map(|i| poller.event(i)) {
                    // The timer is this poller's business: acknowledged,
                    // not reported (the loop runs its due timers anyway).
                    if event.key == TIMER {
                        timer.fired();
                        *armed_for = None;
                        continue;
                    }
                    if let (WAKER, PollerWaker::Eventfd(waker)) = (event.key, &*self.waker) {
                        waker.clear();
                    }
                    self.ready.push(event);
                }
            }
        }
        Ok(())
    }

    /// How many events the last wait returned.
    pub(crate) fn len(&self) -> usize {
        self.ready.len()
    }

    /// The `i`th event of the last wait.
    pub(crate) fn event(&self, i: usize) -> Ready {
        self.ready[i]
    }
}

fn event(key: u64, interest: Interest) -> polling::Event {
    polling::Event::new(key as usize, interest.readable, interest.writable)
}

fn unsupported(mode: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("the polling crate cannot register sockets {mode}-triggered here: use --poll-mode oneshot or --poller epoll"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    const KINDS: [PollerKind; 2] = [PollerKind::Polling, PollerKind::Epoll];

    #[test]
    fn either_poller_reports_a_readable_socket_under_its_key() {
        for kind in KINDS {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            let mut poller = Poller::new(kind, PollMode::Level).unwrap();
            poller.add(&server, 7, Interest::READ).unwrap();
            client.write_all(b"?").unwrap();
            poller.wait(None, false).unwrap();
            assert_eq!(poller.len(), 1, "{kind:?}");
            let ready = poller.event(0);
            assert_eq!((ready.key, ready.readable), (7, true), "{kind:?}");
            poller.closing(&server);
        }
    }

    #[test]
    fn either_waker_ends_a_wait_for_ever_from_another_thread_once() {
        for kind in KINDS {
            let mut poller = Poller::new(kind, PollMode::Level).unwrap();
            let waker = poller.waker();
            let thread = std::thread::spawn(move || waker.wake());
            poller.wait(None, false).unwrap();
            thread.join().unwrap();
            assert_eq!(poller.len(), 1, "{kind:?}");
            assert_eq!(poller.event(0).key, WAKER, "{kind:?}");
            poller.wait(None, true).unwrap();
            assert_eq!(poller.len(), 0, "{kind:?}: the wake-up was acknowledged");
        }
    }

    #[test]
    fn either_poller_wakes_at_the_next_timer_not_before() {
        for kind in KINDS {
            let mut poller = Poller::new(kind, PollMode::Level).unwrap();
            let due = Instant::now() + Duration::from_millis(2);
            poller.wait(Some(due), false).unwrap();
            assert!(Instant::now() >= due, "{kind:?}");
            assert_eq!(poller.len(), 0, "{kind:?}: the timer is the poller's own");
        }
    }
}

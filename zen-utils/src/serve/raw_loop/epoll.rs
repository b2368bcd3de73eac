//! epoll as srv-poll's `--poller epoll` and the client's load generator
//! use it: a wait that is one system call, and a precise timer armed only
//! when its deadline changes. Its waker for other threads is
//! [`EventfdWaker`](super::waker::EventfdWaker).
//!
//! Why not the `polling` crate: its `wait` re-arms a timerfd and an eventfd
//! on every call, four system calls on top of `epoll_wait`. With one client
//! asking one question at a time, a readiness loop does one `read` and one
//! `write` per answer, so those four more than double its system calls:
//! 7 per answer instead of 3 (docs/targets.md). Here a wait costs one
//! `epoll_wait`, the timer one `timerfd_settime` when the next deadline
//! moves, and the waker nothing until it is used. The price is Linux only.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll;
use rustix::time::{
    clock_gettime, timerfd_create, timerfd_settime, ClockId, Itimerspec, TimerfdClockId,
    TimerfdFlags, TimerfdTimerFlags, Timespec,
};

/// Nanoseconds on the monotonic clock (the one `Instant` uses), read
/// through the vDSO: no system call. srv-uring's alarm reads it too.
pub fn now_ns() -> u64 {
    let now = clock_gettime(ClockId::Monotonic);
    // The monotonic clock starts at boot: never negative.
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Converts a duration to nanoseconds, saturating (584 years is as good
/// as forever).
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// How registrations report readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// At every wait while the socket is ready: no re-arm, and a short read
    /// may end the reading (the next wait says if more came).
    Level,
    /// Once per change: the reader must read until `WouldBlock`.
    Edge,
    /// Once, then the registration is disabled until `modify` re-arms it.
    Oneshot,
}

/// What a registered source wants to hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// Bytes to read, end of stream, an error, or a connection to accept.
    pub readable: bool,
    /// Room to write, or a connect that finished.
    pub writable: bool,
}

impl Interest {
    /// Nothing: errors and hang-ups are still reported.
    pub const NONE: Self = Self::new(false, false);
    /// Readable only.
    pub const READ: Self = Self::new(true, false);
    /// Readable and writable.
    pub const READ_WRITE: Self = Self::new(true, true);

    /// An interest from its two halves.
    pub const fn new(readable: bool, writable: bool) -> Self {
        Self { readable, writable }
    }
}

/// One readiness event: which key, and what it is ready for. An error or
/// a hang-up is reported as both readable and writable: the read or write
/// that follows is what tells which it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The key the source was registered under.
    pub key: u64,
    /// Readable (or failed).
    pub readable: bool,
    /// Writable (or failed).
    pub writable: bool,
}

/// An epoll instance whose registrations all use one [`Trigger`].
pub struct Poller {
    epoll: OwnedFd,
    events: Vec<epoll::Event>,
    trigger: Trigger,
}

impl Poller {
    /// A poller that reports at most `capacity` events per wait.
    pub fn new(capacity: usize, trigger: Trigger) -> io::Result<Self> {
        Ok(Self {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            events: Vec::with_capacity(capacity.max(1)),
            trigger,
        })
    }

    /// Registers `source` under `key`. Closing a source (its last
    /// descriptor) removes it from the epoll set by itself.
    pub fn add(&self, source: impl AsFd, key: u64, interest: Interest) -> io::Result<()> {
        let flags = self.flags(interest);
        epoll::add(&self.epoll, source, epoll::EventData::new_u64(key), flags)?;
        Ok(())
    }

    /// Registers a [`Timerfd`] or an
    /// [`EventfdWaker`](super::waker::EventfdWaker) under `key`: readable and
    /// level-triggered, whatever the poller's trigger, since they are read
    /// (acknowledged) whenever they fire.
    pub fn watch(&self, source: impl AsFd, key: u64) -> io::Result<()> {
        let data = epoll::EventData::new_u64(key);
        epoll::add(&self.epoll, source, data, epoll::EventFlags::IN)?;
        Ok(())
    }

    /// Changes what a registered `source` is watched for (and re-arms a
    /// oneshot registration).
    pub fn modify(&self, source: impl AsFd, key: u64, interest: Interest) -> io::Result<()> {
        let flags = self.flags(interest);
        epoll::modify(&self.epoll, source, epoll::EventData::new_u64(key), flags)?;
        Ok(())
    }

    /// Removes `source`, for a source that stays open.
    pub fn delete(&self, source: impl AsFd) -> io::Result<()> {
        epoll::delete(&self.epoll, source)?;
        Ok(())
    }

    /// Waits for events until `deadline` (monotonic nanoseconds; `None`
    /// waits for ever). epoll's timeout has millisecond resolution, rounded
    /// up, so this may return up to a millisecond late; a [`Timerfd`]
    /// registered here is the way to wake precisely. A signal's
    /// interruption returns no events.
    pub fn wait(&mut self, deadline: Option<u64>) -> io::Result<()> {
        self.events.clear();
        let timeout = deadline.map(|deadline| timespec(deadline.saturating_sub(now_ns())));
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut self.events),
            timeout.as_ref(),
        ) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// How many events the last wait returned.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the last wait returned no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The `i`th event of the last wait.
    pub fn event(&self, i: usize) -> Ready {
        let flags = self.events[i].flags;
        let failed = flags.intersects(epoll::EventFlags::ERR | epoll::EventFlags::HUP);
        Ready {
            key: self.events[i].data.u64(),
            readable: failed || flags.contains(epoll::EventFlags::IN),
            writable: failed || flags.contains(epoll::EventFlags::OUT),
        }
    }

    fn flags(&self, interest: Interest) -> epoll::EventFlags {
        let mut flags = match self.trigger {
            Trigger::Level => epoll::EventFlags::empty(),
            Trigger::Edge => epoll::EventFlags::ET,
            Trigger::Oneshot => epoll::EventFlags::ONESHOT,
        };
        if interest.readable {
            flags |= epoll::EventFlags::IN;
        }
        if interest.writable {
            flags |= epoll::EventFlags::OUT;
        }
        flags
    }
}

/// A timerfd: wakes a [`Poller`] at a nanosecond deadline, where epoll's
/// millisecond timeout would be up to a millisecond late.
pub struct Timerfd {
    fd: OwnedFd,
    armed: Option<u64>,
}

impl Timerfd {
    /// A disarmed timer.
    pub fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Self { fd, armed: None })
    }

    /// The descriptor to register with a poller, readable.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Makes the timer fire at `at` (monotonic nanoseconds). Costs a system
    /// call only when the deadline changes.
    pub fn arm(&mut self, at: u64) -> io::Result<()> {
        if self.armed == Some(at) {
            return Ok(());
        }
        // A zero it_value would disarm the timer; a deadline in the past
        // fires at once.
        let value = Itimerspec {
            it_interval: timespec(0),
            it_value: timespec(at.max(1)),
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::ABSTIME, &value)?;
        self.armed = Some(at);
        Ok(())
    }

    /// Acknowledges an expiry, so that a level-triggered poller stops
    /// reporting it.
    pub fn fired(&mut self) {
        let mut expirations = [0; 8];
        // Nothing to read (a stale event) is fine: either way it is clear.
        let _ = rustix::io::read(&self.fd, &mut expirations);
        self.armed = None;
    }
}

fn timespec(nanos: u64) -> Timespec {
    Timespec {
        tv_sec: (nanos / 1_000_000_000) as _,
        tv_nsec: (nanos % 1_000_000_000) as _,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_socket_with_bytes_is_readable_until_read_in_level_mode_and_once_in_oneshot() {
        for (trigger, second_wait) in [
            (Trigger::Level, 1),
            (Trigger::Oneshot, 0),
            (Trigger::Edge, 0),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            let mut poller = Poller::new(8, trigger).unwrap();
            poller.add(&server, 7, Interest::READ).unwrap();
            client.write_all(b"?").unwrap();
            poller.wait(None).unwrap();
            assert_eq!(poller.len(), 1, "{trigger:?}");
            let ready = poller.event(0);
            assert_eq!(
                (ready.key, ready.readable, ready.writable),
                (7, true, false)
            );
            poller.wait(Some(now_ns())).unwrap();
            assert_eq!(
                poller.len(),
                second_wait,
                "{trigger:?}: the bytes were not read"
            );
        }
    }

    #[test]
    fn a_timer_fires_at_its_deadline_not_before() {
        let mut poller = Poller::new(8, Trigger::Level).unwrap();
        let mut timer = Timerfd::new().unwrap();
        poller.watch(timer.fd(), 2).unwrap();
        let deadline = now_ns() + 2_000_000;
        timer.arm(deadline).unwrap();
        poller.wait(None).unwrap();
        assert!(now_ns() >= deadline);
        assert_eq!(poller.event(0).key, 2);
        timer.fired();
        poller.wait(Some(now_ns())).unwrap();
        assert!(poller.is_empty(), "acknowledged");
    }
}

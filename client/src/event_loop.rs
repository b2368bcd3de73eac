//! The client's event loop primitives: epoll, a precise timer, a monotonic
//! clock in nanoseconds, and non-blocking connects to many addresses at once.
//!
//! Why epoll through `rustix` rather than the `polling` crate the servers
//! use: `polling`'s `wait` re-arms a timerfd and an eventfd on every call,
//! four system calls on top of `epoll_wait`. A load generator with one
//! connection does one `write` and one `read` per request, so those four
//! would more than double its system calls and make the client, not the
//! server, the thing being measured. Here a wait is one `epoll_wait`, and
//! sockets are registered level-triggered, so no event ever needs re-arming.
//! The price is that the client runs on Linux only.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll;
use rustix::time::{
    clock_gettime, timerfd_create, timerfd_settime, ClockId, Itimerspec, TimerfdClockId,
    TimerfdFlags, TimerfdTimerFlags, Timespec,
};
use socket2::{Domain, Protocol, Socket, Type};

/// Nanoseconds on the monotonic clock (the one `Instant` uses), read
/// through the vDSO: no system call. All of the client's timestamps are
/// these plain numbers, so a ring of send times is a ring of `u64`.
pub(crate) fn now_ns() -> u64 {
    let now = clock_gettime(ClockId::Monotonic);
    // The monotonic clock starts at boot: never negative.
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Converts a duration to nanoseconds, saturating (a duration of 584
/// years is as good as forever).
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// What a registered socket wants to hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    /// Bytes to read, end of stream, or an error.
    Read,
    /// As `Read`, and room to write (a short write left bytes to send, or
    /// a connect is in progress).
    ReadWrite,
}

/// One readiness event: which key, and what it is ready for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ready {
    pub(crate) key: u64,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
}

/// An epoll instance whose registrations are all level-triggered.
pub(crate) struct Poller {
    epoll: OwnedFd,
    events: Vec<epoll::Event>,
}

impl Poller {
    /// A poller that reports at most `capacity` events per wait.
    pub(crate) fn new(capacity: usize) -> io::Result<Self> {
        Ok(Self {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            events: Vec::with_capacity(capacity.max(1)),
        })
    }

    /// Registers `source` under `key`. Closing the socket removes it from
    /// the epoll set by itself, so there is no `delete`.
    pub(crate) fn add(&self, source: impl AsFd, key: u64, interest: Interest) -> io::Result<()> {
        epoll::add(
            &self.epoll,
            source,
            epoll::EventData::new_u64(key),
            flags(interest),
        )?;
        Ok(())
    }

    /// Changes what a registered `source` is watched for.
    pub(crate) fn modify(&self, source: impl AsFd, key: u64, interest: Interest) -> io::Result<()> {
        epoll::modify(
            &self.epoll,
            source,
            epoll::EventData::new_u64(key),
            flags(interest),
        )?;
        Ok(())
    }

    /// Waits for events until `deadline` (monotonic nanoseconds; `None`
    /// waits for ever). epoll's timeout has millisecond resolution and is
    /// rounded up, so this may return up to a millisecond late; a [`Timer`]
    /// registered here is the way to wake precisely.
    pub(crate) fn wait(&mut self, deadline: Option<u64>) -> io::Result<()> {
        self.events.clear();
        let timeout = deadline.map(|deadline| {
            let left = deadline.saturating_sub(now_ns());
            Timespec {
                tv_sec: (left / 1_000_000_000) as _,
                tv_nsec: (left % 1_000_000_000) as _,
            }
        });
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
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// The `i`th event of the last wait.
    pub(crate) fn event(&self, i: usize) -> Ready {
        let event = self.events[i];
        let flags = event.flags;
        let failed = flags.intersects(epoll::EventFlags::ERR | epoll::EventFlags::HUP);
        Ready {
            key: event.data.u64(),
            // An error or a hang-up is reported as readable too: the read
            // that follows is what tells which it was.
            readable: failed || flags.contains(epoll::EventFlags::IN),
            writable: failed || flags.contains(epoll::EventFlags::OUT),
        }
    }
}

fn flags(interest: Interest) -> epoll::EventFlags {
    match interest {
        Interest::Read => epoll::EventFlags::IN,
        Interest::ReadWrite => epoll::EventFlags::IN | epoll::EventFlags::OUT,
    }
}

/// A timerfd: wakes a [`Poller`] at a nanosecond deadline, for the open
/// loop's send schedule, where epoll's millisecond timeout would send
/// requests up to a millisecond late.
pub(crate) struct Timer {
    fd: OwnedFd,
    armed: Option<u64>,
}

impl Timer {
    /// A disarmed timer.
    pub(crate) fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Self { fd, armed: None })
    }

    /// The descriptor to register with a poller.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Makes the timer fire at `at` (monotonic nanoseconds). Costs a system
    /// call only when the deadline changes.
    pub(crate) fn arm(&mut self, at: u64) -> io::Result<()> {
        if self.armed == Some(at) {
            return Ok(());
        }
        // A zero it_value would disarm the timer; a deadline in the past
        // fires at once.
        let at = at.max(1);
        let value = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: (at / 1_000_000_000) as _,
                tv_nsec: (at % 1_000_000_000) as _,
            },
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::ABSTIME, &value)?;
        self.armed = Some(at);
        Ok(())
    }

    /// Acknowledges an expiry, so that the level-triggered poller stops
    /// reporting it.
    pub(crate) fn fired(&mut self) {
        let mut expirations = [0; 8];
        // Nothing to read (a stale event) is fine: either way it is clear.
        let _ = rustix::io::read(&self.fd, &mut expirations);
        self.armed = None;
    }
}

/// A connection that connected: its stream (non-blocking, `TCP_NODELAY`)
/// and when the connect completed.
pub(crate) type Connected = (TcpStream, u64);

/// Connects to every address in `addrs` at once, without blocking: all
/// the connects are started, then one poller waits for them, for at most
/// `timeout` in all. Each result is a non-blocking stream with
/// `TCP_NODELAY`, or why it failed (`TimedOut` for a connect still
/// pending at the deadline).
pub(crate) fn connect_all(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> io::Result<Vec<io::Result<Connected>>> {
    let mut poller = Poller::new(1024)?;
    let mut results: Vec<io::Result<Connected>> = Vec::with_capacity(addrs.len());
    let mut pending: Vec<Option<TcpStream>> = Vec::with_capacity(addrs.len());
    let mut left = 0;
    for (key, addr) in addrs.iter().enumerate() {
        match start_connect(*addr) {
            Ok(Started::Done(stream)) => {
                results.push(Ok((stream, now_ns())));
                pending.push(None);
            }
            Ok(Started::InProgress(stream)) => {
                poller.add(&stream, key as u64, Interest::ReadWrite)?;
                results.push(Err(io::ErrorKind::TimedOut.into()));
                pending.push(Some(stream));
                left += 1;
            }
            Err(error) => {
                results.push(Err(error));
                pending.push(None);
            }
        }
    }
    let deadline = now_ns().saturating_add(nanos(timeout));
    while left > 0 && now_ns() < deadline {
        poller.wait(Some(deadline))?;
        for i in 0..poller.len() {
            let key = poller.event(i).key as usize;
            let Some(stream) = pending.get_mut(key).and_then(Option::take) else {
                continue;
            };
            left -= 1;
            results[key] = finish_connect(&stream).map(|()| (stream, now_ns()));
        }
    }
    Ok(results)
}

/// How a non-blocking connect began.
pub(crate) enum Started {
    /// Connected already (it happens on loopback).
    Done(TcpStream),
    /// In progress: the socket becomes writable when it has finished.
    InProgress(TcpStream),
}

/// Starts a non-blocking connect to `addr` from a socket with
/// `TCP_NODELAY` (questions are tiny and must leave at once).
pub(crate) fn start_connect(addr: SocketAddr) -> io::Result<Started> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => Ok(Started::Done(socket.into())),
        Err(error) if is_in_progress(&error) => Ok(Started::InProgress(socket.into())),
        Err(error) => Err(error),
    }
}

/// After a socket with a connect in progress became writable: whether the
/// connect succeeded.
pub(crate) fn finish_connect(stream: &TcpStream) -> io::Result<()> {
    match stream.take_error()? {
        Some(error) => Err(error),
        // Writable with no pending error: connected. `peer_addr` confirms
        // it (a spurious wake-up would say "not connected").
        None => stream.peer_addr().map(drop),
    }
}

fn is_in_progress(error: &io::Error) -> bool {
    error.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error())
        || error.kind() == io::ErrorKind::WouldBlock
}

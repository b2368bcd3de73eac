//! Another thread's way into a loop's one wait: an eventfd that the
//! shutdown trigger (or an `--offload` helper) writes to. srv-poll's
//! `--poller epoll` watches it readable (its default poller, the `polling`
//! crate, has a notifier of its own); srv-uring always has a read of it in
//! flight.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::event::{eventfd, EventfdFlags};

use crate::Shutdown;

/// An eventfd counter that wakes a loop's wait.
#[derive(Debug)]
pub struct EventfdWaker {
    fd: OwnedFd,
}

impl EventfdWaker {
    /// A non-blocking waker not yet woken, for a poller (register
    /// [`fd`](Self::fd) readable, level-triggered or not: it is read only
    /// when it fired).
    pub fn new() -> io::Result<Self> {
        Self::with_flags(EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)
    }

    /// A waker in blocking mode, for a completion ring that does the
    /// waiting: io_uring completes a read of a non-blocking eventfd at once
    /// with `EAGAIN` instead of when it is written to.
    pub fn blocking() -> io::Result<Self> {
        Self::with_flags(EventfdFlags::CLOEXEC)
    }

    fn with_flags(flags: EventfdFlags) -> io::Result<Self> {
        Ok(Self {
            fd: eventfd(0, flags)?,
        })
    }

    /// The descriptor to watch (or to read).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Wakes the loop's current or next wait. Safe from any thread. Only a
    /// counter at its maximum (2^64 - 2 wake-ups unread) refuses the write,
    /// or, in blocking mode, makes it wait: the loop reads long before.
    pub fn wake(&self) {
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Acknowledges the wake-ups so far (a non-blocking waker's).
    pub fn clear(&self) {
        let mut count = [0; 8];
        let _ = rustix::io::read(&self.fd, &mut count);
    }
}

/// Makes `shutdown`'s trigger call `wake` on `waker`, from whichever thread
/// triggers it (a signal handler's, a test's), so that the loop's wait
/// ends at once. A weak reference, so that the trigger does not keep the
/// waker's descriptors open after the loop is gone.
pub fn wake_on_shutdown<W>(shutdown: &Shutdown, waker: &Arc<W>, wake: fn(&W))
where
    W: Send + Sync + 'static,
{
    let weak = Arc::downgrade(waker);
    shutdown.on_trigger(move || {
        if let Some(waker) = weak.upgrade() {
            wake(&waker);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::raw_loop::epoll::{now_ns, Poller, Trigger};

    #[test]
    fn a_waker_wakes_a_wait_for_ever_from_another_thread_and_clears() {
        let mut poller = Poller::new(8, Trigger::Level).unwrap();
        let waker = Arc::new(EventfdWaker::new().unwrap());
        poller.watch(waker.fd(), 1).unwrap();
        let remote = Arc::clone(&waker);
        let thread = std::thread::spawn(move || remote.wake());
        poller.wait(None).unwrap();
        thread.join().unwrap();
        assert_eq!(poller.event(0).key, 1);
        waker.clear();
        poller.wait(Some(now_ns())).unwrap();
        assert!(poller.is_empty(), "cleared");
    }
}

//! The shutdown's way into the loop: an eventfd that another thread (the
//! signal thread, a test) writes to, and that the loop always has a read
//! of in flight. The read completes, and the loop's one wait returns.
//!
//! Blocking mode on purpose: the ring does the waiting. A non-blocking
//! eventfd could make the read complete at once with `EAGAIN`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd counter.
pub(crate) struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; its result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor, owned by nothing else.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Adds one to the counter: the loop's read of it completes. Never
    /// blocks (the counter would have to reach 2^64 - 1).
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64.
        let _ = unsafe { libc::write(self.fd(), std::ptr::from_ref(&one).cast(), 8) };
    }
}

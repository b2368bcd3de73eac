//! A server stuck, not dead: its serving thread stopped alone, the way a
//! debugger stops one thread, while its other threads (the ZooKeeper
//! session's heartbeat, the health probe) run on. From outside it is an
//! event loop blocked on one long call: the kernel still completes
//! handshakes and takes bytes, the session stays alive, nothing answers.
//!
//! It is done with `ptrace` (`PTRACE_SEIZE` and `PTRACE_INTERRUPT` on the
//! thread whose id is the process id: the main thread, where every server
//! serves; `PTRACE_DETACH` lets it go on). A ptrace tracer is a thread,
//! so the thread that stops a server must be the one that lets it go; a
//! tracer that exits lets it go too, so no server stays stopped after
//! whoever stopped it.

use std::io;

/// A server's main thread, stopped until this is dropped or
/// [`resume`](Self::resume)d, on the thread that stopped it.
pub struct StuckLoop {
    pid: libc::pid_t,
    resumed: bool,
}

impl StuckLoop {
    /// Stops the main thread of process `pid` (a child of this process,
    /// or any process this one may trace) and waits until it is stopped.
    pub fn stop(pid: u32) -> io::Result<Self> {
        let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
        let traced = |request, what: &str| {
            // SAFETY: ptrace with no addresses to read or write.
            let done = unsafe { libc::ptrace(request, pid, 0, 0) };
            if done == -1 {
                let error = io::Error::last_os_error();
                return Err(io::Error::new(error.kind(), format!("ptrace {what}: {error}")));
            }
            Ok(())
        };
        traced(libc::PTRACE_SEIZE, "seize")?;
        let stuck = Self {
            pid,
            resumed: false,
        };
        traced(libc::PTRACE_INTERRUPT, "interrupt")?;
        let mut status = 0;
        // SAFETY: waits for the one traced thread's stop; `__WALL` since
        // it is a thread of another process, not a child of this thread.
        let waited = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if waited == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(stuck)
    }

    /// Lets the thread go on.
    pub fn resume(mut self) -> io::Result<()> {
        self.detach()
    }

    fn detach(&mut self) -> io::Result<()> {
        if self.resumed {
            return Ok(());
        }
        self.resumed = true;
        // SAFETY: ptrace with no addresses; the thread is in a ptrace stop.
        if unsafe { libc::ptrace(libc::PTRACE_DETACH, self.pid, 0, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for StuckLoop {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}

//! A server stuck, not dead: every thread of it stopped but its registry's
//! (the ZooKeeper session's heartbeat, the health probe), the way a
//! debugger stops threads. From outside it is a server whose serving loop
//! is blocked on one long call: the kernel still completes handshakes and
//! takes bytes, the registry session stays alive, nothing answers.
//!
//! It is done with `ptrace` (`PTRACE_SEIZE` and `PTRACE_INTERRUPT` on each
//! thread; `PTRACE_DETACH` lets it go on). A ptrace tracer is a thread, so
//! the thread that stops a server must be the one that lets it go; a
//! tracer that exits lets its threads go too, so no server stays stopped
//! after whoever stopped it.

use std::io;

use crate::deploy::registry::REGISTRY_THREAD;

/// A server's threads but its registry's, stopped until this is dropped
/// or [`resume`](Self::resume)d, on the thread that stopped them.
pub struct StuckLoop {
    stopped: Vec<libc::pid_t>,
}

impl StuckLoop {
    /// Stops every thread of process `pid` (a child of this process, or
    /// any process this one may trace) whose name is not the registry's,
    /// and waits until each is stopped.
    pub fn stop(pid: u32) -> io::Result<Self> {
        let mut stuck = Self {
            stopped: Vec::new(),
        };
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let task = task?;
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == REGISTRY_THREAD {
                continue;
            }
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            stuck.stop_thread(tid)?;
        }
        Ok(stuck)
    }

    fn stop_thread(&mut self, tid: libc::pid_t) -> io::Result<()> {
        let traced = |request, what: &str| {
            // SAFETY: ptrace with no addresses to read or write.
            if unsafe { libc::ptrace(request, tid, 0, 0) } == -1 {
                let error = io::Error::last_os_error();
                return Err(io::Error::new(
                    error.kind(),
                    format!("ptrace {what} {tid}: {error}"),
                ));
            }
            Ok(())
        };
        traced(libc::PTRACE_SEIZE, "seize")?;
        self.stopped.push(tid);
        traced(libc::PTRACE_INTERRUPT, "interrupt")?;
        let mut status = 0;
        // SAFETY: waits for the traced thread's stop; `__WALL`, since a
        // thread other than a process's first is a "clone" child.
        if unsafe { libc::waitpid(tid, &mut status, libc::__WALL) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Lets every thread go on.
    pub fn resume(mut self) -> io::Result<()> {
        self.detach()
    }

    fn detach(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for tid in self.stopped.drain(..) {
            // SAFETY: ptrace with no addresses; the thread is in a ptrace stop.
            if unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) } == -1 {
                result = Err(io::Error::last_os_error());
            }
        }
        result
    }
}

impl Drop for StuckLoop {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}

//! `--processes N`: the pre-fork server (Apache's prefork, gunicorn). The
//! book's step from threads to processes.
//!
//! ```text
//!   supervisor: bind ─► listening on ─► start N workers ─► watch them ─┐
//!                                         ▲   restart one that died ◄──┘
//!   worker 1 (the same binary, the same flags): fd 3 = the listener, LISTEN_FDS=1
//!   worker 2 …                                   all accept on that one socket
//! ```
//!
//! The supervisor never serves: it binds (or inherits) the listener, hands
//! it down to each worker as fd 3 with `LISTEN_FDS=1` (socket activation,
//! the very path systemd uses), and restarts a worker that exits unless
//! the server is shutting down. The kernel gives each connection to one of
//! the workers blocked in `accept`, as it does among srv-threaded's
//! threads, but a worker that crashes takes only its own clients with it.
//!
//! A slot restarts its worker at most [`RESTARTS`] times in [`RESTART_WINDOW`];
//! then it waits [`RESTART_WINDOW`] before trying again, so a worker that
//! crashes at once does not make the supervisor a busy loop. On the
//! shutdown it passes SIGTERM to every worker, waits for them (their
//! grace, and a margin), and totals the summaries they report on their
//! stdout.
//!
//! Workers are started from the executable the supervisor is running, not
//! from the path it was started by: a rebuild or an upgrade that renames a
//! new file over that path must not leave the supervisor unable to restart
//! a worker (see `Executable`). When no worker can be started at all, the
//! supervisor says so once and exits with an error, rather than hold a
//! listener whose connections nobody would ever accept.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Read};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::serve::shutdown::SHUTDOWN_GRACE;
use crate::{Shutdown, Summary};

/// Set in a worker's environment: report the summary on stdout, and never
/// supervise (the worker has the same flags as its supervisor).
pub const WORKER_ENV: &str = "ZEN_WORKER";

/// Restarts a slot may make within [`RESTART_WINDOW`].
pub const RESTARTS: usize = 5;
/// The window of [`RESTARTS`], and how long a slot then waits.
pub const RESTART_WINDOW: Duration = Duration::from_secs(10);
/// How often the supervisor looks at its workers when nothing happens.
const WATCH_PERIOD: Duration = Duration::from_millis(50);
/// How long after their grace the workers may take to exit before they
/// are killed.
const EXIT_MARGIN: Duration = Duration::from_secs(2);

/// Whether this process is a worker of a supervisor.
pub fn is_worker() -> bool {
    std::env::var_os(WORKER_ENV).is_some()
}

/// One worker slot: the process in it now, and its recent restarts.
struct WorkerSlot {
    child: Option<Child>,
    restarts: VecDeque<Instant>,
    /// The slot used up its restarts: it starts a worker again then.
    resume_at: Option<Instant>,
    started_once: bool,
}

/// The executable this process is running, held open so that workers are
/// started from it whatever has become of its path.
///
/// `/proc/self/exe` opens the running file itself, even once its path was
/// deleted or had another file renamed over it; the descriptor keeps that
/// file alive. A worker is then started by executing `/proc/self/fd/N`:
/// `std::process::Command` execs a path, and in the forked child that path
/// names the child's copy of descriptor N, which is still open when
/// `execve` opens it (close-on-exec closes it only afterwards, which is
/// fine for a compiled binary; a script would need the descriptor after
/// exec, and that is why `fexecve` has the same limit). `fexecve` itself
/// would need a hand-written fork and exec in place of `Command`, with its
/// pipes and error reporting, for no gain.
struct Executable {
    /// What workers exec: `/proc/self/fd/N`.
    path: OsString,
    /// The held file (the number in `path`); `None` for a plain path.
    _file: Option<OwnedFd>,
}

impl Executable {
    /// The executable this process is running.
    fn running() -> io::Result<Self> {
        let file = std::fs::File::open("/proc/self/exe")?;
        // Never fds 0 to 3: a worker gets the listener put at fd 3 before
        // the exec, which would replace the executable's descriptor.
        // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor of an open one.
        let fd = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 4) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just made, and is ours alone.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            path: format!("/proc/self/fd/{fd}").into(),
            _file: Some(file),
        })
    }

    /// A program at `path`, for tests.
    #[cfg(test)]
    fn at(path: impl Into<OsString>) -> Self {
        Self {
            path: path.into(),
            _file: None,
        }
    }
}

/// Runs `processes` workers on `listener` until `shutdown`, restarting
/// those that die; returns the total of the summaries the workers
/// reported. Workers are this very executable (`Executable::running`).
pub fn supervise(
    name: &str,
    listener: TcpListener,
    processes: u16,
    shutdown: &Shutdown,
) -> io::Result<Summary> {
    supervise_with(name, &Executable::running()?, listener, processes, shutdown)
}

/// [`supervise`], with workers started from `executable`. Fails, once
/// every worker it had has exited, if none can be started.
fn supervise_with(
    name: &str,
    executable: &Executable,
    listener: TcpListener,
    processes: u16,
    shutdown: &Shutdown,
) -> io::Result<Summary> {
    let (wake, woken) = mpsc::channel();
    shutdown.on_trigger(move || {
        let _ = wake.send(());
    });
    let started = Instant::now();
    let mut total = Summary::default();
    let mut slots: Vec<WorkerSlot> = (0..processes)
        .map(|_| WorkerSlot {
            child: None,
            restarts: VecDeque::new(),
            resume_at: None,
            started_once: false,
        })
        .collect();
    while !shutdown.is_triggered() {
        let mut failed = Vec::new();
        for (i, slot) in slots.iter_mut().enumerate() {
            reap(name, i, slot, &mut total, false);
            if slot.child.is_none() {
                if let Err(error) = start(name, i, slot, executable, &listener) {
                    failed.push((i, error));
                }
            }
        }
        if let Some((_, error)) = failed.first() {
            if slots.iter().all(|slot| slot.child.is_none()) {
                // Nobody would ever accept the connections the listener
                // queues: better no listener at all.
                return Err(io::Error::new(
                    error.kind(),
                    format!("cannot start any worker: {error}"),
                ));
            }
        }
        for (i, error) in failed {
            // Counted as a restart: a worker that cannot start runs into
            // the budget like one that crashes.
            tracing::warn!("{name}: warning: cannot start worker {i}: {error}");
        }
        // Sleeps until the next look, or wakes at once for the shutdown.
        let _ = woken.recv_timeout(WATCH_PERIOD);
    }
    crate::deploy::started::notify_stopping();
    // Its copy of the listener closes with the workers' copies: until
    // then the kernel still queues connections, which the workers, already
    // stopping, do not accept.
    drop(listener);
    stop_all(name, &mut slots, &mut total);
    total.uptime = started.elapsed();
    Ok(total)
}

/// Collects a worker that exited: its summary joins the total; unless the
/// server is stopping (`stopping`), the exit is logged as a failure.
fn reap(name: &str, i: usize, slot: &mut WorkerSlot, total: &mut Summary, stopping: bool) {
    let Some(child) = &mut slot.child else {
        return;
    };
    let status = match child.try_wait() {
        Ok(Some(status)) => status,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!("{name}: warning: cannot wait for worker {i}: {error}");
            return;
        }
    };
    let pid = child.id();
    if let Some(summary) = reported_summary(child) {
        total.add(&summary);
    }
    slot.child = None;
    if !stopping {
        tracing::warn!(
            "{name}: worker {i} (pid {pid}) exited: {}; restarting it",
            describe(status)
        );
    }
}

/// Starts the worker of slot `i`, within the slot's restart budget;
/// fails if the process cannot be started.
fn start(
    name: &str,
    i: usize,
    slot: &mut WorkerSlot,
    executable: &Executable,
    listener: &TcpListener,
) -> io::Result<()> {
    let now = Instant::now();
    if slot.resume_at.is_some_and(|at| now < at) {
        return Ok(());
    }
    slot.resume_at = None;
    if slot.started_once {
        while slot
            .restarts
            .front()
            .is_some_and(|at| now.duration_since(*at) >= RESTART_WINDOW)
        {
            slot.restarts.pop_front();
        }
        if slot.restarts.len() >= RESTARTS {
            tracing::warn!(
                "{name}: worker {i} was restarted {RESTARTS} times in {}s: \
                 waiting {}s before the next start",
                RESTART_WINDOW.as_secs(),
                RESTART_WINDOW.as_secs()
            );
            slot.restarts.clear();
            slot.resume_at = Some(now + RESTART_WINDOW);
            return Ok(());
        }
        slot.restarts.push_back(now);
    }
    slot.started_once = true;
    let child = spawn_worker(executable, listener)?;
    tracing::debug!("{name}: worker {i} started (pid {})", child.id());
    slot.child = Some(child);
    Ok(())
}

/// Starts a worker: this very binary with the same flags (and the same
/// `argv[0]`), the listener at fd 3, `LISTEN_FDS=1`, and stdout a pipe for
/// its summary.
fn spawn_worker(executable: &Executable, listener: &TcpListener) -> io::Result<Child> {
    let fd = listener.as_raw_fd();
    // SAFETY: getpid has no preconditions.
    let supervisor = unsafe { libc::getpid() };
    let mut args = std::env::args_os();
    let mut command = Command::new(&executable.path);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    command
        .args(args)
        .env("LISTEN_FDS", "1")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        // Readiness is the supervisor's to tell, not each worker's.
        .env_remove("NOTIFY_SOCKET")
        .env(WORKER_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec: dup2,
    // fcntl, prctl.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                // dup2 onto itself would leave close-on-exec set.
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            // A worker never outlives its supervisor, even one killed
            // with SIGKILL: it is told to shut down.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            // The supervisor died before the line above: nobody would
            // tell this worker to stop.
            if libc::getppid() != supervisor {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Passes SIGTERM to every worker, waits for them within their grace and
/// a margin, then kills any left; totals what they reported.
fn stop_all(name: &str, slots: &mut [WorkerSlot], total: &mut Summary) {
    for slot in slots.iter() {
        if let Some(child) = &slot.child {
            // SAFETY: kill has no memory effects; the child is not reaped
            // yet, so its pid is still its own.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE + EXIT_MARGIN;
    while slots.iter().any(|slot| slot.child.is_some()) && Instant::now() < deadline {
        for (i, slot) in slots.iter_mut().enumerate() {
            reap(name, i, slot, total, true);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for (i, slot) in slots.iter_mut().enumerate() {
        if let Some(child) = &mut slot.child {
            tracing::warn!(
                "{name}: worker {i} (pid {}) did not stop: killed",
                child.id()
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The summary a worker printed on its stdout before it exited, if any
/// (a worker that was killed reports none).
fn reported_summary(child: &mut Child) -> Option<Summary> {
    let mut output = String::new();
    child.stdout.take()?.read_to_string(&mut output).ok()?;
    output.lines().rev().find_map(|line| line.parse().ok())
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker that cannot be started at all (its program is not
    /// executable) makes the supervisor fail, once, rather than hold a
    /// listener nobody serves.
    #[test]
    fn fails_when_no_worker_can_be_started() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let executable = Executable::at("/dev/null");
        let error = supervise_with("test", &executable, listener, 2, &Shutdown::new())
            .expect_err("no worker can start");
        assert!(
            error.to_string().starts_with("cannot start any worker: "),
            "{error}"
        );
    }

    /// The running executable is held at a descriptor above 3 (where a
    /// worker's listener goes), and what it names is this very program.
    #[test]
    fn holds_the_running_executable_above_fd_3() {
        let executable = Executable::running().unwrap();
        let fd: i32 = executable.path.to_str().unwrap()["/proc/self/fd/".len()..]
            .parse()
            .unwrap();
        assert!(fd > 3, "{fd}");
        let held = std::fs::read_link(&executable.path).unwrap();
        assert_eq!(held, std::fs::read_link("/proc/self/exe").unwrap());
    }
}

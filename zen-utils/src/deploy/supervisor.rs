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

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
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
struct Slot {
    child: Option<Child>,
    restarts: VecDeque<Instant>,
    /// The slot used up its restarts: it starts a worker again then.
    resume_at: Option<Instant>,
    started_once: bool,
}

/// Runs `processes` workers on `listener` until `shutdown`, restarting
/// those that die; returns the total of the summaries the workers
/// reported.
pub fn supervise(
    name: &str,
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
    let mut slots: Vec<Slot> = (0..processes)
        .map(|_| Slot {
            child: None,
            restarts: VecDeque::new(),
            resume_at: None,
            started_once: false,
        })
        .collect();
    while !shutdown.is_triggered() {
        for (i, slot) in slots.iter_mut().enumerate() {
            reap(name, i, slot, &mut total, false);
            if slot.child.is_none() {
                start(name, i, slot, &listener);
            }
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
fn reap(name: &str, i: usize, slot: &mut Slot, total: &mut Summary, stopping: bool) {
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

/// Starts the worker of slot `i`, within the slot's restart budget.
fn start(name: &str, i: usize, slot: &mut Slot, listener: &TcpListener) {
    let now = Instant::now();
    if slot.resume_at.is_some_and(|at| now < at) {
        return;
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
            return;
        }
        slot.restarts.push_back(now);
    }
    slot.started_once = true;
    match spawn_worker(listener) {
        Ok(child) => {
            tracing::debug!("{name}: worker {i} started (pid {})", child.id());
            slot.child = Some(child);
        }
        Err(error) => {
            // Counted as a restart: a worker that cannot start at all runs
            // into the budget like one that crashes.
            tracing::warn!("{name}: warning: cannot start worker {i}: {error}");
        }
    }
}

/// Starts a worker: this very binary with the same flags, the listener at
/// fd 3, `LISTEN_FDS=1`, and stdout a pipe for its summary.
fn spawn_worker(listener: &TcpListener) -> io::Result<Child> {
    let fd = listener.as_raw_fd();
    // SAFETY: getpid has no preconditions.
    let supervisor = unsafe { libc::getpid() };
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(std::env::args_os().skip(1))
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
fn stop_all(name: &str, slots: &mut [Slot], total: &mut Summary) {
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

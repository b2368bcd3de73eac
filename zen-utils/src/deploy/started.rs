//! Started by someone else: a listener handed down by systemd or by a
//! `--processes` supervisor (socket activation), a socket handed over by
//! inetd, and systemd's readiness notifications.
//!
//! All of it happens in the shared `main` ([`crate::deploy::server`]), so every
//! server gets it without a line of its own.

use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use listenfd::ListenFd;
use sd_notify::NotifyState;
use socket2::SockRef;

use crate::Shutdown;

/// The socket a server was given instead of binding one.
#[derive(Debug)]
pub enum Handed {
    /// A listening socket: from systemd or a supervisor (fd 3), or from
    /// inetd's `wait` (fd 0).
    Listener(TcpListener),
    /// One connection: inetd's `nowait` (fd 0).
    Connection(TcpStream),
}

/// The listener of socket activation, if `LISTEN_FDS` hands one down
/// (the first, fd 3) to this process (`LISTEN_PID`, when set, is its id).
/// Takes the `LISTEN_*` variables out of the environment, so call it first
/// in `main`, before any thread starts. A second socket and more are not
/// this server's to serve: they are closed with a warning, so that no
/// worker inherits them.
///
/// The listener's blocking mode is left as it came: it belongs to the
/// socket, which other processes share (systemd, a supervisor, sibling
/// workers); each model copes with either (see `srv_single::on_accept_error`).
pub fn activated_listener() -> io::Result<Option<TcpListener>> {
    let mut fds = ListenFd::from_env();
    // SAFETY: before any thread starts (the caller's promise).
    std::env::remove_var("LISTEN_FDNAMES");
    if fds.len() == 0 {
        return Ok(None);
    }
    let not_a_listener = |error: io::Error| {
        io::Error::new(
            error.kind(),
            format!("the first socket of LISTEN_FDS is not a listening TCP socket: {error}"),
        )
    };
    let listener = fds
        .take_tcp_listener(0)
        .map_err(not_a_listener)?
        .ok_or_else(|| not_a_listener(io::ErrorKind::NotFound.into()))?;
    if !is_listening(&listener)? {
        return Err(not_a_listener(io::ErrorKind::InvalidInput.into()));
    }
    for extra in 1..fds.len() {
        if let Ok(Some(fd)) = fds.take_raw_fd(extra) {
            // SAFETY: LISTEN_FDS handed this descriptor to this process,
            // and nothing else took it: closing it is ours to do.
            drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        }
        tracing::warn!(
            "warning: LISTEN_FDS: serving only the first socket; closed socket {}",
            extra + 1
        );
    }
    Ok(Some(listener))
}

/// The socket inetd handed over at fd 0: a listener (`wait`) or a
/// connection (`nowait`). Fds 0, 1 and 2 are pointed at `/dev/null`
/// afterwards, so that nothing the process prints, not even a panic's
/// message, can reach the client: the server keeps its own descriptor of
/// the socket.
pub fn inetd_socket() -> io::Result<Handed> {
    let stdin = io::stdin();
    let fd: OwnedFd = stdin.as_fd().try_clone_to_owned().map_err(|error| {
        io::Error::new(error.kind(), format!("--inetd: fd 0 is not open: {error}"))
    })?;
    let socket = SockRef::from(&fd);
    let is_tcp = socket
        .domain()
        .is_ok_and(|domain| domain == socket2::Domain::IPV4 || domain == socket2::Domain::IPV6)
        && socket
            .r#type()
            .is_ok_and(|kind| kind == socket2::Type::STREAM);
    if !is_tcp {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--inetd: fd 0 is not a TCP socket",
        ));
    }
    let handed = if is_listening(&fd)? {
        // Shared with inetd: its blocking mode is left as it came.
        Handed::Listener(TcpListener::from(fd))
    } else {
        let stream = TcpStream::from(fd);
        stream.set_nonblocking(false)?;
        Handed::Connection(stream)
    };
    silence_stdio(&[0, 1, 2])?;
    Ok(handed)
}

/// Points the standard descriptors `fds` at `/dev/null`. Under `--inetd`,
/// fds 1 and 2 are the client's socket: this is called before the flags
/// are even parsed, so that not even a usage error reaches the client.
pub fn silence_stdio(fds: &[i32]) -> io::Result<()> {
    let null = File::options().read(true).write(true).open("/dev/null")?;
    for &fd in fds {
        // SAFETY: dup2 onto a standard descriptor, which Rust's std keeps
        // open for the process's life; `null` stays valid meanwhile.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether `--inetd` is among this process's arguments (before they are
/// parsed: see [`silence_stdio`]).
pub fn inetd_requested() -> bool {
    std::env::args_os().skip(1).any(|arg| arg == "--inetd")
}

fn is_listening(socket: &impl AsFd) -> io::Result<bool> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let done = unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if done < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value != 0)
}

/// Tells systemd (`NOTIFY_SOCKET`, `Type=notify`) that the server is
/// ready: its listener listens. Without `NOTIFY_SOCKET`, nothing. A
/// notification that cannot be sent is logged, never fatal.
pub fn notify_ready() {
    notify(NotifyState::Ready);
}

/// Tells systemd that the shutdown has begun.
pub fn notify_stopping() {
    notify(NotifyState::Stopping);
}

fn notify(state: NotifyState<'_>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(error) = sd_notify::notify(false, &[state]) {
        tracing::warn!("warning: cannot notify NOTIFY_SOCKET: {error}");
    }
}

/// `--exit-idle`: triggers `shutdown` once no connection has been open
/// for `idle`, watching this process's connection counts from a thread of
/// its own (so it works alike under every model).
pub fn exit_when_idle(shutdown: &Shutdown, idle: Duration) {
    let shutdown = shutdown.clone();
    // Checked this often: the exit comes at most this late.
    let check = (idle / 10).clamp(Duration::from_millis(1), Duration::from_millis(100));
    let stopped = std::sync::Arc::new(AtomicBool::new(false));
    let waker = std::sync::Arc::clone(&stopped);
    shutdown.on_trigger(move || waker.store(true, Ordering::Relaxed));
    let spawned = thread::Builder::new()
        .name("exit-idle".to_owned())
        .spawn(move || {
            let mut seen = crate::serve::stats::process_connections().0;
            let mut idle_since = Instant::now();
            while !stopped.load(Ordering::Relaxed) {
                thread::sleep(check);
                let (accepted, open) = crate::serve::stats::process_connections();
                if accepted != seen || open > 0 {
                    seen = accepted;
                    idle_since = Instant::now();
                } else if idle_since.elapsed() >= idle {
                    tracing::info!("no connection for {idle:?}: exiting (--exit-idle)");
                    shutdown.trigger();
                    return;
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!("warning: --exit-idle is off: cannot start its thread: {error}");
    }
}

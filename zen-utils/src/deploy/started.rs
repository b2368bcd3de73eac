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
/// (the first, fd 3) to this process (`LISTEN_PID`, when set, is its id),
/// and the warnings to log once there is a log.
///
/// Takes the `LISTEN_*` variables out of the environment, so call it first
/// in `main`, before any thread starts; and before anything opens a file:
/// a file opened first could get the number of a descriptor that
/// `LISTEN_FDS` names but that was never handed down (`LISTEN_FDS=2` with
/// one socket: fd 4), and be closed here as an extra socket. A second
/// socket and more are not this server's to serve: they are closed, with
/// a warning, so that no worker inherits them.
///
/// The listener's blocking mode is left as it came: it belongs to the
/// socket, which other processes share (systemd, a supervisor, sibling
/// workers); each model copes with either (see `srv_single::on_accept_error`),
/// and one that must change it puts it back (see [`BlockingMode`]).
pub fn activated_listener() -> io::Result<(Option<TcpListener>, Vec<String>)> {
    let mut fds = ListenFd::from_env();
    // SAFETY: before any thread starts (the caller's promise).
    std::env::remove_var("LISTEN_FDNAMES");
    if fds.len() == 0 {
        return Ok((None, Vec::new()));
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
    // Every extra descriptor is dealt with, but said in at most two lines:
    // a LISTEN_FDS of 100000 must not write 100000 warnings.
    let (mut closed, mut left_alone) = (Vec::new(), Vec::new());
    for extra in 1..fds.len() {
        let Ok(Some(fd)) = fds.take_raw_fd(extra) else {
            continue;
        };
        // Only a socket is closed: a descriptor that is not open, or is
        // not a socket, was not handed down, whatever LISTEN_FDS says.
        if is_socket(fd) {
            // SAFETY: LISTEN_FDS handed this socket to this process, and
            // nothing else took it: closing it is ours to do.
            drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
            closed.push(extra + 1);
        } else {
            left_alone.push(fd);
        }
    }
    let mut warnings = Vec::new();
    if !closed.is_empty() {
        warnings.push(format!(
            "warning: LISTEN_FDS: serving only the first socket; closed socket{} {}",
            if closed.len() == 1 { "" } else { "s" },
            some_of(&closed)
        ));
    }
    if !left_alone.is_empty() {
        warnings.push(format!(
            "warning: LISTEN_FDS: serving only the first socket; fd{} {} not a socket: left alone",
            if left_alone.len() == 1 { "" } else { "s" },
            some_of(&left_alone)
        ));
    }
    Ok((Some(listener), warnings))
}

/// A list of numbers for a log line: all of them, or the first few and
/// how many more.
fn some_of<T: std::fmt::Display>(numbers: &[T]) -> String {
    const SHOWN: usize = 5;
    let shown: Vec<String> = numbers
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect();
    match numbers.len().checked_sub(SHOWN) {
        Some(more) if more > 0 => format!("{} and {more} more", shown.join(", ")),
        _ => shown.join(", "),
    }
}

/// Whether `fd` is an open socket.
fn is_socket(fd: std::os::fd::RawFd) -> bool {
    // SAFETY: fstat writes into `stat` only; a closed `fd` is an error.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut stat) == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFSOCK
    }
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
    notify("READY=1");
}

/// Tells systemd that the shutdown has begun; once, however often it is
/// called.
///
/// It is called from the shutdown's trigger, on the thread that triggers
/// it, and again once the server has stopped serving: the trigger sets
/// the flag the server watches before it runs its wakers, so the server
/// can stop and `main` return before the waker has sent anything. The
/// second call sends it then, or waits for the first to finish sending.
pub fn notify_stopping() {
    static SENT: std::sync::Once = std::sync::Once::new();
    SENT.call_once(|| notify("STOPPING=1"));
}

/// Sends `state` to `NOTIFY_SOCKET`, if set: a path, or a name in the
/// abstract namespace when it starts with `@` (as systemd sets it).
fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(error) = send_notification(&target, state) {
        tracing::warn!(
            "warning: cannot notify NOTIFY_SOCKET {}: {error}",
            target.to_string_lossy()
        );
    }
}

fn send_notification(target: &std::ffi::OsStr, state: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let address = match target.as_bytes() {
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name)?,
        _ => SocketAddr::from_pathname(target)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(format!("{state}\n").as_bytes(), &address)?;
    Ok(())
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

/// The blocking mode a listener was handed down with, to put back once the
/// server is done with it.
///
/// `O_NONBLOCK` belongs to the open socket, not to this process's
/// descriptor: systemd, inetd and a supervisor hold the same socket, so a
/// mode changed here is changed for them too. The event loops (srv-poll,
/// srv-async, srv-hybrid) must accept without blocking, and tokio takes
/// only non-blocking sockets, so they turn it on while they serve; it is
/// put back when they are done, which is enough because nobody else
/// accepts on the socket meanwhile: systemd and inetd `wait` watch it
/// again only once the server has exited, and a supervisor's workers are
/// its siblings, all of the same model (so a worker leaves it to its
/// supervisor, which puts it back once every worker has stopped). A
/// server killed outright cannot put it back; every model serves a
/// listener in either mode.
#[derive(Debug)]
pub struct BlockingMode {
    /// A second descriptor of the socket: the server's own may be closed
    /// by the time the mode is put back.
    socket: OwnedFd,
    nonblocking: bool,
}

impl BlockingMode {
    /// The mode `listener` has now.
    pub fn of(listener: &TcpListener) -> io::Result<Self> {
        let socket = listener.as_fd().try_clone_to_owned()?;
        let nonblocking = SockRef::from(&socket).nonblocking()?;
        Ok(Self {
            socket,
            nonblocking,
        })
    }

    /// Puts the mode back as it was.
    pub fn restore(self) -> io::Result<()> {
        SockRef::from(&self.socket).set_nonblocking(self.nonblocking)
    }
}

//! Servers started by someone else, as the tests start them: the way
//! systemd does (a listener at fd 3, `LISTEN_FDS`, `LISTEN_PID`, and
//! `READY=1` on a datagram socket of the test's own), the way inetd does
//! (the socket at fds 0, 1 and 2), and under a `--processes` supervisor.
//! [`started_suite!`](crate::started_suite) stamps out the tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use super::binary::wait_bounded;
pub use super::inherited::{
    a_wildcard_bound_server_asks_peers_as_it_advertises,
    an_absurd_listen_fds_is_said_in_a_line_or_two, an_extra_listen_fd_does_not_close_the_log_file,
    inetd_nowait_asks_its_peers_as_itself,
    leaves_a_handed_down_listener_s_blocking_mode_as_it_came,
    notifies_a_notify_socket_in_the_abstract_namespace,
    restarts_workers_after_the_binary_was_replaced_on_disk,
};
use super::{Client, PATIENCE};
use crate::protocol::{answer, APHORISMS, REQUEST_TOO_LONG};
use crate::{serve::listener, Config, Summary, Verbosity};

/// A server binary started as systemd starts one, for one test.
pub struct Activated {
    child: Child,
    addr: SocketAddr,
    stderr: Option<JoinHandle<String>>,
    notify: NotifySocket,
}

impl Activated {
    /// Binds `127.0.0.1:0`, starts `bin` with it at fd 3 (`LISTEN_FDS=1`,
    /// `LISTEN_PID` its pid, set by a shell that then `exec`s it, as
    /// systemd sets it between fork and exec) and `NOTIFY_SOCKET`, and
    /// waits for `READY=1`.
    ///
    /// # Panics
    /// If the server does not say `READY=1`, or its first line is not
    /// `listening on` the handed-down address.
    pub fn start(bin: &str, args: &[&str], config: &Config) -> Self {
        Self::start_with(bin, args, config, false)
    }

    /// [`start`](Self::start), with the listener handed down non-blocking
    /// if `nonblocking` (systemd's `NonBlocking=yes`).
    pub fn start_with(bin: &str, args: &[&str], config: &Config, nonblocking: bool) -> Self {
        let listener = listener::bind("127.0.0.1:0".parse().unwrap(), 1024, false).unwrap();
        listener.set_nonblocking(nonblocking).unwrap();
        let flags = config_flags(config);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Self::start_on(
            bin,
            &[&flags, args].concat(),
            listener,
            NotifySocket::new(),
            1,
        )
    }

    /// Starts `bin args` as systemd would: `listener` at fd 3,
    /// `LISTEN_FDS` set to `listen_fds` (which may say more sockets than
    /// the one handed down), `NOTIFY_SOCKET` naming `notify`; waits for
    /// `READY=1` and `listening on`.
    pub fn start_on(
        bin: &str,
        args: &[&str],
        listener: TcpListener,
        notify: NotifySocket,
        listen_fds: usize,
    ) -> Self {
        let addr = listener.local_addr().unwrap();
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#)
            .arg(bin)
            .args(args)
            .env("LISTEN_FDS", listen_fds.to_string())
            .env("NOTIFY_SOCKET", &notify.name);
        hand_down_at_fd_3(&mut command, &listener);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server binary");
        // The server has its own copy now.
        drop(listener);
        let stderr = drain(child.stderr.take().unwrap());
        let ready = notify.receive();
        let mut server = Self {
            child,
            addr,
            stderr: Some(stderr),
            notify,
        };
        assert!(ready.lines().any(|line| line == "READY=1"), "{ready:?}");
        let mut first = String::new();
        BufReader::new(server.child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(first, format!("listening on {addr}\n"));
        server.addr = addr;
        server
    }

    /// The handed-down listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends SIGTERM (the graceful shutdown) without waiting.
    pub fn terminate(&self) {
        sigterm(&self.child);
    }

    /// Shuts the server down and returns the summary it logged.
    ///
    /// # Panics
    /// If it does not exit 0 with one summary line, or did not tell
    /// systemd `STOPPING=1`.
    pub fn stop(&mut self) -> Summary {
        one_summary(&self.stop_for_stderr())
    }

    /// Shuts the server down and returns what it wrote on stderr.
    ///
    /// # Panics
    /// If it does not exit 0, or did not tell systemd `STOPPING=1`.
    pub fn stop_for_stderr(&mut self) -> String {
        sigterm(&self.child);
        let status = wait_bounded(&mut self.child);
        let stderr = self.stderr.take().unwrap().join().unwrap();
        assert!(status.success(), "{status}: {stderr}");
        // The server has exited: whatever it sent is there already.
        let stopping = self.notify.received();
        assert!(
            stopping
                .as_deref()
                .is_some_and(|said| said.lines().any(|line| line == "STOPPING=1")),
            "{stopping:?}; the server said: {stderr}"
        );
        stderr
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A datagram socket of the test's own, at a fresh path or a fresh name
/// in the abstract namespace, for `NOTIFY_SOCKET`.
pub struct NotifySocket {
    socket: UnixDatagram,
    /// What `NOTIFY_SOCKET` says: its path, or `@` and its abstract name.
    pub name: String,
    /// Its path, removed at the end (none in the abstract namespace).
    path: Option<PathBuf>,
}

impl NotifySocket {
    /// Binds a fresh one at a path.
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("{}.sock", Self::fresh_name()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        Self {
            socket,
            name: path.to_str().unwrap().to_owned(),
            path: Some(path),
        }
    }

    /// Binds a fresh one in the abstract namespace (as systemd does):
    /// `NOTIFY_SOCKET` is `@` and its name.
    pub fn abstract_namespace() -> Self {
        use std::os::linux::net::SocketAddrExt;
        let name = Self::fresh_name();
        let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let socket = UnixDatagram::bind_addr(&address).expect("bind the notify socket");
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        Self {
            socket,
            name: format!("@{name}"),
            path: None,
        }
    }

    fn fresh_name() -> String {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        format!(
            "zen-notify-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The next notification.
    ///
    /// # Panics
    /// If none comes within [`PATIENCE`].
    pub fn receive(&self) -> String {
        let mut buf = [0; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The next notification if one has come, without waiting.
    pub fn received(&self) -> Option<String> {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0; 4096];
        let received = self.socket.recv(&mut buf);
        self.socket.set_nonblocking(false).unwrap();
        Some(String::from_utf8_lossy(&buf[..received.ok()?]).into_owned())
    }
}

impl Default for NotifySocket {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The flags that give a server `config`. The summary is logged at the
/// default verbosity, so `-q` is never passed: the test reads it.
pub fn config_flags(config: &Config) -> Vec<String> {
    let mut flags = vec![
        "--max-conns".to_owned(),
        config.max_conns.to_string(),
        "--idle-timeout".to_owned(),
        config.idle_timeout.map_or("0".to_owned(), |timeout| {
            format!("{}us", timeout.as_micros())
        }),
        "--max-request".to_owned(),
        config.max_request.to_string(),
    ];
    if let Some(work) = config.work {
        flags.extend(["--work".to_owned(), work.to_string()]);
    }
    if config.verbosity == Verbosity::Verbose {
        flags.push("-v".to_owned());
    }
    flags
}

/// Makes `command`'s child find `listener` at fd 3.
pub(super) fn hand_down_at_fd_3(command: &mut Command, listener: &TcpListener) {
    let fd = listener.as_raw_fd();
    // SAFETY: only dup2 and fcntl between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let done = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if done < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
    }
}

/// Reads a pipe to its end on a thread, so that the child never blocks
/// on a full pipe.
pub(super) fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

pub(super) fn sigterm(child: &Child) {
    // SAFETY: kill() only sends a signal to a child we started and have
    // not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
}

/// The one summary line in a server's log.
///
/// # Panics
/// If there is not exactly one.
pub fn one_summary(log: &str) -> Summary {
    let summaries: Vec<Summary> = log
        .lines()
        .filter_map(|line| line.find("summary: ").map(|at| &line[at..]))
        .map(|line| line.parse().unwrap())
        .collect();
    assert_eq!(summaries.len(), 1, "one summary line in {log:?}");
    summaries[0]
}

/// A server binary run as inetd runs one: `socket` at fds 0, 1 and 2.
pub fn inetd(bin: &str, args: &[&str], socket: OwnedFd) -> Child {
    let stdin = socket.try_clone().unwrap();
    let stdout = socket.try_clone().unwrap();
    Command::new(bin)
        .arg("--inetd")
        .args(args)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(socket))
        .spawn()
        .expect("start the server binary")
}

/// A connection accepted by the test itself, as inetd's `nowait` accepts
/// it: (the client's end, the server's end).
pub(super) fn accepted_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    (client, server)
}

/// Everything the client reads until the server closes.
pub(super) fn read_to_close(client: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    client.read_to_end(&mut got).expect("the server closes");
    got
}

/// inetd `nowait`: the process holds one conversation on fd 0, answers it
/// exactly (pipelined, then a half-close), and exits 0. Under `-v`, not one
/// byte of log reaches the client: what it reads is the answers alone.
pub fn inetd_nowait_serves_one_conversation_and_exits(bin: &str, args: &[&str]) {
    let log = std::env::temp_dir().join(format!("zen-inetd-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let (mut client, server) = accepted_pair();
    let log_arg = log.to_str().unwrap();
    let mut child = inetd(
        bin,
        &[&["-v", "--log-file", log_arg], args].concat(),
        server.into(),
    );
    let mut questions = Vec::new();
    let mut expected = Vec::new();
    for (question, reply) in APHORISMS {
        questions.extend_from_slice(question);
        expected.extend_from_slice(reply);
    }
    client.write_all(&questions).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let got = read_to_close(&mut client);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected)
    );
    let status = wait_bounded(&mut child);
    assert!(status.success(), "{status}");
    let logged = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let summary = one_summary(&logged);
    assert_eq!(
        (summary.connections, summary.answered),
        (1, APHORISMS.len() as u64)
    );
    assert!(logged.contains("closed: client closed"), "{logged}");
}

/// inetd `nowait` with hostile input: a request too long gets exactly
/// `Error: request too long.` after the answers before it, then the
/// close; at `-v`, without `--log-file`, no log byte reaches the client.
pub fn inetd_nowait_answers_hostile_input_as_ever_and_logs_nothing_to_the_client(
    bin: &str,
    args: &[&str],
) {
    let (mut client, server) = accepted_pair();
    let mut child = inetd(
        bin,
        &[&["-v", "--max-request", "64"], args].concat(),
        server.into(),
    );
    client.write_all(b"Simple is better than?").unwrap();
    client.write_all(&[b'x'; 200]).unwrap();
    let got = read_to_close(&mut client);
    let mut want = answer(b"Simple is better than?").to_vec();
    want.extend_from_slice(REQUEST_TOO_LONG);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    assert!(wait_bounded(&mut child).success());
}

/// A bad flag under `--inetd`: the usage error must not reach the client
/// either. The process exits non-zero and the client reads nothing.
pub fn inetd_writes_not_even_a_usage_error_to_the_client(bin: &str, args: &[&str]) {
    let (mut client, server) = accepted_pair();
    let mut child = inetd(bin, &[&["--no-such-flag"], args].concat(), server.into());
    let status = wait_bounded(&mut child);
    assert!(!status.success());
    assert_eq!(read_to_close(&mut client), b"");
}

/// inetd `wait`: fd 0 is the listener. The server serves every client
/// with its model, and exits 0 once none has been open for `--exit-idle`.
pub fn inetd_wait_serves_the_listener_until_idle(bin: &str, args: &[&str]) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut child = inetd(
        bin,
        &[&["--exit-idle", "500ms", "-v"], args].concat(),
        listener.into(),
    );
    for _ in 0..3 {
        let mut client = Client::connect(addr);
        assert_eq!(
            client.ask(b"Flat is better than?"),
            answer(b"Flat is better than?")
        );
    }
    let status = wait_bounded(&mut child);
    assert!(status.success(), "{status}");
}

/// `--processes 2`: the supervisor prints `listening on`, its workers
/// serve, and SIGTERM ends it with exit 0 and one summary that totals the
/// workers'.
pub fn a_supervisor_serves_and_sums_its_workers(bin: &str, args: &[&str]) {
    let mut supervisor = Supervised::start(bin, &[&["--processes", "2"], args].concat());
    let workers = supervisor.workers(2);
    assert_eq!(workers.len(), 2, "{workers:?}");
    for _ in 0..3 {
        let mut client = Client::connect(supervisor.addr);
        assert_eq!(
            client.ask(b"Now is better than?"),
            answer(b"Now is better than?")
        );
    }
    let (status, log) = supervisor.terminate();
    assert!(status.success(), "{status}: {log}");
    let summary = one_summary(&log);
    assert_eq!((summary.connections, summary.answered), (3, 3), "{log}");
}

/// SIGKILL of one worker: its client is cut off, the other worker's client
/// loses nothing, and the supervisor starts a new worker that serves.
pub fn a_killed_worker_is_restarted_and_nobody_else_notices(bin: &str, args: &[&str]) {
    let supervisor = Supervised::start(bin, &[&["--processes", "2"], args].concat());
    let workers = supervisor.workers(2);
    // Clients until each worker holds one (the kernel picks the worker).
    let mut held: Vec<(u32, Client)> = Vec::new();
    for _ in 0..64 {
        let mut client = Client::connect(supervisor.addr);
        assert_eq!(
            client.ask(b"Flat is better than?"),
            answer(b"Flat is better than?")
        );
        let worker = worker_of(&client, supervisor.addr, &workers);
        held.push((worker, client));
        if workers.iter().all(|w| held.iter().any(|(h, _)| h == w)) {
            break;
        }
    }
    let victim = workers[0];
    assert!(held.iter().any(|(w, _)| *w == victim) && held.iter().any(|(w, _)| *w != victim));
    // SAFETY: kill() only signals a worker of the supervisor we started.
    unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
    for (worker, client) in &mut held {
        if *worker != victim {
            let reply = client.ask(b"Sparse is better than?");
            assert_eq!(
                reply,
                answer(b"Sparse is better than?"),
                "a survivor's client"
            );
        }
    }
    let after = supervisor.workers_except(victim, 2);
    assert_eq!(after.len(), 2, "a new worker replaced {victim}: {after:?}");
    // The new worker serves: the survivor's clients stay connected, so
    // srv-single's survivor is busy, and a new client's answer can only
    // come from the new worker there.
    held.retain(|(worker, _)| *worker != victim);
    let mut client = Client::connect(supervisor.addr);
    assert_eq!(
        client.ask(b"Now is better than?"),
        answer(b"Now is better than?")
    );
}

/// A worker that dies as soon as it starts (killed by the test each time)
/// is restarted at most 5 times in 10 s per slot: the supervisor then says
/// so and starts none for a while, rather than spin.
pub fn a_worker_that_keeps_dying_hits_the_restart_budget(bin: &str, args: &[&str]) {
    let mut supervisor = Supervised::start(bin, &[&["--processes", "2"], args].concat());
    let mut killed = Vec::new();
    let started = Instant::now();
    // Six deaths per slot within the window: the start after the sixth
    // is refused.
    while killed.len() < 12 {
        let workers = supervisor.workers_except_all(&killed, 1);
        let Some(&worker) = workers.first() else {
            break;
        };
        // SAFETY: kill() only signals a worker of the supervisor we started.
        unsafe { libc::kill(worker as libc::pid_t, libc::SIGKILL) };
        killed.push(worker);
    }
    assert!(
        started.elapsed() < crate::deploy::supervisor::RESTART_WINDOW,
        "too slow a machine"
    );
    assert_eq!(
        killed.len(),
        12,
        "five restarts per slot and no more: {killed:?}"
    );
    // No worker comes back within the quiet period: the slot waits.
    thread::sleep(Duration::from_millis(500));
    assert_eq!(supervisor.children(), Vec::<u32>::new());
    let cpu = supervisor.cpu_ticks();
    thread::sleep(Duration::from_millis(1000));
    let used = supervisor.cpu_ticks() - cpu;
    // A busy loop would use about 100 ticks in that second.
    assert!(
        used < 50,
        "the waiting supervisor used {used} ticks of CPU in 1 s"
    );
    let (status, log) = supervisor.terminate();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("was restarted 5 times in 10s"), "{log}");
}

/// The repository's deploy/ directory: its examples are tested as they are.
pub fn deploy_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy"))
}

/// A free port on 127.0.0.1 (bound, then let go: another process could
/// take it meanwhile, which would fail the test, not pass it).
pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The name of the user the tests run as, for inetd's user field.
fn user_name() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; it
    // is read at once, on this thread.
    unsafe {
        let entry = libc::getpwuid(libc::getuid());
        assert!(!entry.is_null(), "the test user has no name");
        std::ffi::CStr::from_ptr((*entry).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// A child process stopped at the end of a test, even a failed one, with
/// its own children first (inetd's servers).
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let pid = self.0.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            // SAFETY: kill() only signals a child of the inetd we started.
            unsafe { libc::kill(child, libc::SIGTERM) };
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connects to `port` once something listens there.
fn connect_when_listening(port: u16) -> TcpStream {
    let started = Instant::now();
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => {
                stream.set_read_timeout(Some(PATIENCE)).unwrap();
                return stream;
            }
            Err(error) if started.elapsed() > PATIENCE => {
                panic!("nothing listens on {port}: {error}")
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Asks the three questions of the book's client on `stream`, then
/// half-closes: the answers come back, exactly, and the server closes.
fn ask_three_and_close(mut stream: TcpStream) {
    let questions: &[&[u8]] = &[
        b"Beautiful is better than?",
        b"Explicit is better than?",
        b"Simple is better than?",
    ];
    stream.write_all(&questions.concat()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let want: Vec<u8> = questions.iter().flat_map(|q| answer(q).to_vec()).collect();
    assert_eq!(
        String::from_utf8_lossy(&read_to_close(&mut stream)),
        String::from_utf8_lossy(&want)
    );
}

/// The real openbsd-inetd (`inetd -d`, in the foreground) runs the server
/// with deploy/inetd/inetd.conf's two lines, their ports, path and user
/// made the test's own: `nowait.1000` (a process per connection) and
/// `wait` (the listener handed over).
pub fn runs_under_the_real_inetd_in_both_modes(bin: &str, args: &[&str]) {
    let inetd = ["/usr/sbin/inetd", "/usr/bin/inetd"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .expect("openbsd-inetd is not installed: scripts/test installs it");
    let example = std::fs::read_to_string(deploy_dir().join("inetd/inetd.conf")).unwrap();
    let (nowait_port, wait_port) = (free_port(), free_port());
    let name = std::path::Path::new(bin)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let extra = args.join(" ");
    let config: String = example
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let mut fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            let port = if fields[3].starts_with("nowait") {
                nowait_port
            } else {
                wait_port
            };
            fields[0] = format!("127.0.0.1:{port}");
            fields[4] = user_name();
            fields[5] = bin.to_owned();
            fields[6] = name.to_owned();
            let mut line = fields
                .join(" ")
                .replace("--exit-idle 10s", "--exit-idle 300ms");
            line.push(' ');
            line.push_str(&extra);
            line.trim_end().to_owned() + "\n"
        })
        .collect();
    assert!(
        config.contains("nowait.1000") && config.contains(" wait "),
        "{config}"
    );
    let path = std::env::temp_dir().join(format!(
        "zen-inetd-{}-{nowait_port}.conf",
        std::process::id()
    ));
    std::fs::write(&path, &config).unwrap();
    let _inetd = Stopped(
        Command::new(inetd)
            .arg("-d")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start inetd"),
    );
    for port in [nowait_port, wait_port] {
        // Twice each: nowait starts a process per connection; wait hands
        // the second connection to the process the first one started.
        ask_three_and_close(connect_when_listening(port));
        ask_three_and_close(connect_when_listening(port));
    }
    let _ = std::fs::remove_file(&path);
}

/// deploy/socket-activate.sh: systemd-socket-activate listens, and the
/// first connection starts the server on that listener; a real question
/// gets its answer, and SIGTERM ends the server with its summary.
pub fn systemd_socket_activate_starts_it_at_the_first_connection(bin: &str, args: &[&str]) {
    let port = free_port();
    let mut command = Command::new(deploy_dir().join("socket-activate.sh"));
    command.arg(port.to_string()).arg(bin).args(args);
    let mut server = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start systemd-socket-activate (in the systemd package)");
    let stderr = drain(server.stderr.take().unwrap());
    let mut server = Stopped(server);
    ask_three_and_close(connect_when_listening(port));
    let mut first = String::new();
    BufReader::new(server.0.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, format!("listening on 127.0.0.1:{port}\n"));
    sigterm(&server.0);
    let status = wait_bounded(&mut server.0);
    let log = stderr.join().unwrap();
    assert!(status.success(), "{status}: {log}");
    let summary = one_summary(&log);
    assert_eq!((summary.connections, summary.answered), (1, 3), "{log}");
}

/// deploy/systemd's units pass `systemd-analyze verify` without a word,
/// with their ExecStart pointing at this server.
pub fn the_systemd_units_verify(bin: &str, _: &[&str]) {
    let dir =
        std::env::temp_dir().join(format!("zen-units-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    for unit in ["zen.socket", "zen.service"] {
        let text = std::fs::read_to_string(deploy_dir().join("systemd").join(unit)).unwrap();
        let text = text.replace("/usr/local/bin/srv-poll", bin);
        std::fs::write(dir.join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("zen.socket"))
        .arg(dir.join("zen.service"))
        .output()
        .expect("systemd-analyze (in the systemd package)");
    let _ = std::fs::remove_dir_all(&dir);
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{}: {said}",
        out.status
    );
}

/// `--register`: once listening, the server is an ephemeral znode under
/// the path, with the JSON of docs/protocol.md; SIGTERM deletes it before
/// the server stops accepting (the log says so in that order), and the
/// server still answers what it was asked.
pub fn registers_in_zookeeper_and_leaves_before_it_stops_accepting(bin: &str, args: &[&str]) {
    let zookeeper = super::components::ZooKeeper::start();
    let url = zookeeper.url("/zen/servers");
    let mut server = Supervised::start(bin, &[&["--register", url.as_str(), "-v"], args].concat());
    let children = zookeeper.wait_for_children("/zen/servers", 1);
    assert!(children[0].starts_with("server-"), "{children:?}");
    let name = std::path::Path::new(bin)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let data = zookeeper.children_data("/zen/servers");
    assert_eq!(
        data,
        [format!(
            r#"{{"host":"127.0.0.1","port":{},"model":"{name}"}}"#,
            server.addr.port()
        )]
    );
    let mut client = Client::connect(server.addr);
    assert_eq!(
        client.ask(b"Now is better than?"),
        answer(b"Now is better than?")
    );
    drop(client);
    let (status, log) = server.terminate();
    assert!(status.success(), "{status}: {log}");
    let left = log
        .find("left the registry")
        .unwrap_or_else(|| panic!("{log}"));
    let stopping = log
        .find("stopping: no new connections")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(left < stopping, "the znode went first: {log}");
    assert_eq!(zookeeper.children("/zen/servers"), Vec::<String>::new());
}

/// A ZooKeeper that is not there when the server starts stops nothing:
/// the server serves, warns once, and registers once ZooKeeper is up.
pub fn serves_while_zookeeper_is_down_and_registers_once_it_is_up(bin: &str, args: &[&str]) {
    let port = super::components::free_port();
    let url = format!("zk://127.0.0.1:{port}/zen");
    let mut server = Supervised::start(bin, &[&["--register", url.as_str()], args].concat());
    for _ in 0..3 {
        let mut client = Client::connect(server.addr);
        assert_eq!(
            client.ask(b"Flat is better than?"),
            answer(b"Flat is better than?")
        );
        thread::sleep(Duration::from_millis(400));
    }
    let zookeeper = super::components::ZooKeeper::start_on(port);
    zookeeper.wait_for_children("/zen", 1);
    let (status, log) = server.terminate();
    assert!(status.success(), "{status}: {log}");
    let warnings = log.matches("cannot register in").count();
    assert_eq!(warnings, 1, "warned once: {log}");
    assert!(log.contains("registered in"), "{log}");
}

/// A listener handed down non-blocking (systemd's `NonBlocking=yes`) is
/// served as any other, by blocking models too, and its mode is left
/// alone: other processes share it.
pub fn serves_a_listener_handed_down_non_blocking(bin: &str, args: &[&str]) {
    let mut server = Activated::start_with(bin, args, &Config::default(), true);
    for _ in 0..3 {
        let mut client = Client::connect(server.addr());
        assert_eq!(
            client.ask(b"Flat is better than?"),
            answer(b"Flat is better than?")
        );
    }
    assert_eq!(server.stop().answered, 3);
}

/// A `--log-file` that cannot be opened is one clear line on stderr, and
/// exit code 1; and `--processes` cannot go with `--inetd` (the workers
/// would have no fd 0 to serve): exit code 2.
pub fn refuses_a_bad_log_file_and_processes_under_inetd_in_one_line(bin: &str, args: &[&str]) {
    let out = Command::new(bin)
        .args(["-p", "0", "--log-file", "/nonexistent/zen/log"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(": error: --log-file /nonexistent/zen/log: "),
        "{stderr}"
    );
    let out = Command::new(bin)
        .args(["--inetd", "--processes", "2"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // Refused by the flag parser; its message is not written (under
    // --inetd, fd 2 is the client's socket).
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// A supervisor binary started with `-p 0`.
pub struct Supervised {
    child: Child,
    /// The address it printed.
    pub addr: SocketAddr,
    stderr: Option<JoinHandle<String>>,
}

impl Supervised {
    /// Starts `bin -p 0 args`, reads `listening on`.
    pub fn start(bin: &str, args: &[&str]) -> Self {
        Self::start_exactly(bin, &[&["-p", "0"], args].concat())
    }

    /// Starts `bin args` (which name the port), reads `listening on`.
    pub fn start_exactly(bin: &str, args: &[&str]) -> Self {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server binary");
        let stderr = drain(child.stderr.take().unwrap());
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|rest| rest.trim_end().parse().ok())
            .unwrap_or_else(|| panic!("bad first line {first:?}"));
        Self {
            child,
            addr,
            stderr: Some(stderr),
        }
    }

    /// Its worker processes now.
    pub fn children(&self) -> Vec<u32> {
        let pid = self.child.id();
        let path = format!("/proc/{pid}/task/{pid}/children");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect()
    }

    /// Waits until it has `n` workers that are listening (each has said
    /// `listening on` to the supervisor, so it accepts), and returns them.
    pub fn workers(&self, n: usize) -> Vec<u32> {
        self.workers_except_all(&[], n)
    }

    /// [`workers`](Self::workers), none of them `gone`.
    pub fn workers_except(&self, gone: u32, n: usize) -> Vec<u32> {
        self.workers_except_all(&[gone], n)
    }

    /// [`workers`](Self::workers), none of them in `gone`; fewer if they do
    /// not come within [`PATIENCE`].
    pub fn workers_except_all(&self, gone: &[u32], n: usize) -> Vec<u32> {
        let started = Instant::now();
        loop {
            let workers: Vec<u32> = self
                .children()
                .into_iter()
                .filter(|pid| !gone.contains(pid) && listens(*pid))
                .collect();
            if workers.len() >= n || started.elapsed() > PATIENCE {
                return workers;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// User and system CPU time it has used, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // The fields after the command's closing parenthesis; utime and
        // stime are the 12th and 13th of them.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// SIGTERM; waits for the exit; returns the status and the log.
    pub fn terminate(&mut self) -> (ExitStatus, String) {
        sigterm(&self.child);
        let status = wait_bounded(&mut self.child);
        (status, self.stderr.take().unwrap().join().unwrap())
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // The workers follow a killed supervisor (PR_SET_PDEATHSIG).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether process `pid` holds a socket at fd 3: it is a worker (the
/// listener is put there between fork and exec).
fn listens(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/fd/3"))
        .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
}

/// The worker (of `workers`) holding the server end of `client`'s
/// connection to `addr`, found through the socket's inode.
fn worker_of(client: &Client, addr: SocketAddr, workers: &[u32]) -> u32 {
    let local = client.try_clone_stream().local_addr().unwrap();
    let inode = server_inode(addr, local).expect("the server's end of the connection");
    let target = format!("socket:[{inode}]");
    workers
        .iter()
        .copied()
        .find(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == target)
                })
        })
        .expect("a worker holds the connection")
}

/// The inode of the established socket from `server` to `client`, from
/// /proc/net/tcp.
fn server_inode(server: SocketAddr, client: SocketAddr) -> Option<u64> {
    let hex = |addr: SocketAddr| match addr {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => String::new(),
    };
    let (local, remote) = (hex(server), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()))
            .then(|| fields.get(9)?.parse().ok())
            .flatten()
    })
}

/// Stamps out the tests of starting a server binary the ways of
/// docs/protocol.md's "Started by someone else": the conformance suite on
/// a socket-activated server (its `@shared` cases: the in-process ones
/// stay in-process), inetd's two modes, and the `--processes` supervisor.
#[macro_export]
macro_rules! started_suite {
    (bin: $bin:expr, model: $model:expr $(, args: [$($arg:expr),* $(,)?])? $(, requires: $requires:expr)? $(,)?) => {
        mod activated {
            use super::*;
            fn start(config: $crate::Config) -> $crate::testkit::TestServer {
                $crate::testkit::TestServer::activated($bin, &[$($($arg),*)?], &config)
            }
            $crate::conformance_suite!(@shared $model, [$($requires)?]);
        }
        $crate::started_suite!(@cases $bin, &[$($($arg),*)?], [$($requires)?];
            inetd_nowait_serves_one_conversation_and_exits,
            inetd_nowait_answers_hostile_input_as_ever_and_logs_nothing_to_the_client,
            inetd_writes_not_even_a_usage_error_to_the_client,
            inetd_wait_serves_the_listener_until_idle,
            a_supervisor_serves_and_sums_its_workers,
            a_killed_worker_is_restarted_and_nobody_else_notices,
            a_worker_that_keeps_dying_hits_the_restart_budget,
            runs_under_the_real_inetd_in_both_modes,
            systemd_socket_activate_starts_it_at_the_first_connection,
            the_systemd_units_verify,
            registers_in_zookeeper_and_leaves_before_it_stops_accepting,
            serves_while_zookeeper_is_down_and_registers_once_it_is_up,
            serves_a_listener_handed_down_non_blocking,
            refuses_a_bad_log_file_and_processes_under_inetd_in_one_line,
            leaves_a_handed_down_listener_s_blocking_mode_as_it_came,
            an_extra_listen_fd_does_not_close_the_log_file,
            an_absurd_listen_fds_is_said_in_a_line_or_two,
            notifies_a_notify_socket_in_the_abstract_namespace,
            inetd_nowait_asks_its_peers_as_itself,
            a_wildcard_bound_server_asks_peers_as_it_advertises,
            restarts_workers_after_the_binary_was_replaced_on_disk,
        );
    };
    (@cases $bin:expr, $args:expr, $requires:tt; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if $crate::skip_unmet!(stringify!($case), $requires) {
                    return;
                }
                $crate::testkit::started::$case($bin, $args);
            }
        )*
    };
}

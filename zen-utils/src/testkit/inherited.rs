//! The started suite's cases of what a server inherits from whoever
//! started it, and must take as it is: a listener's blocking mode, the
//! descriptors `LISTEN_FDS` names, `NOTIFY_SOCKET` in the abstract
//! namespace, its own address (inetd's connection, `--advertise`), and the
//! executable it runs, whatever has become of its path.
//! [`started_suite!`](crate::started_suite) stamps them out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::started::{
    accepted_pair, free_port, inetd, one_summary, read_to_close, wait_bounded, Activated,
    NotifySocket, Supervised,
};
use super::{Client, PATIENCE};
use crate::protocol::answer;
use crate::{serve::listener, Config};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether `O_NONBLOCK` is set on the socket (the open file, shared by
/// every descriptor of it).
fn is_nonblocking(socket: &TcpListener) -> std::io::Result<bool> {
    socket2::SockRef::from(socket).nonblocking()
}

fn bind() -> TcpListener {
    listener::bind("127.0.0.1:0".parse().unwrap(), 1024, false).unwrap()
}

/// A listener's `O_NONBLOCK` belongs to the socket, which whoever handed it
/// down shares: after the server has exited it is as it came, blocking or
/// not, whether socket-activated, under inetd `wait`, or shared by the
/// workers of a supervisor that was handed it. The test holds a second
/// descriptor of the socket to look.
pub fn leaves_a_handed_down_listener_s_blocking_mode_as_it_came(bin: &str, args: &[&str]) {
    for (nonblocking, processes) in [(false, "1"), (true, "1"), (false, "2")] {
        let listener = bind();
        listener.set_nonblocking(nonblocking).unwrap();
        let held = listener.try_clone().unwrap();
        let flags = [&["--processes", processes], args].concat();
        let mut server = Activated::start_on(bin, &flags, listener, NotifySocket::new(), 1);
        let mut client = Client::connect(server.addr());
        assert_eq!(text(&client.ask(b"Flat is better than?")), "nested.");
        drop(client);
        server.stop();
        assert_eq!(
            is_nonblocking(&held).unwrap(),
            nonblocking,
            "socket-activated, handed down with O_NONBLOCK {nonblocking}, --processes {processes}"
        );
    }
    let listener = bind();
    let addr = listener.local_addr().unwrap();
    let held = listener.try_clone().unwrap();
    let mut child = inetd(
        bin,
        &[&["--exit-idle", "300ms"], args].concat(),
        listener.into(),
    );
    let mut client = Client::connect(addr);
    assert_eq!(text(&client.ask(b"Flat is better than?")), "nested.");
    drop(client);
    assert!(wait_bounded(&mut child).success());
    assert!(
        !is_nonblocking(&held).unwrap(),
        "inetd wait: O_NONBLOCK left on"
    );
}

/// Starts `bin` socket-activated with one socket and `LISTEN_FDS=fds`,
/// logging to a file named `log_name`, asks it one question and stops it:
/// what it logged, and its stderr.
fn one_answer_with_listen_fds(
    bin: &str,
    args: &[&str],
    log_name: &str,
    fds: usize,
) -> (String, String) {
    let log = temp_path(log_name);
    let _ = std::fs::remove_file(&log);
    let flags = [&["--log-file", log.to_str().unwrap()], args].concat();
    let mut server = Activated::start_on(bin, &flags, bind(), NotifySocket::new(), fds);
    let mut client = Client::connect(server.addr());
    assert_eq!(text(&client.ask(b"Now is better than?")), "never.");
    drop(client);
    let stderr = server.stop_for_stderr();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    (logged, stderr)
}

/// `LISTEN_FDS=2` with one socket handed down and `--log-file`: the log is
/// not taken for the second socket and closed. It holds the warning about
/// the second socket, and the summary.
pub fn an_extra_listen_fd_does_not_close_the_log_file(bin: &str, args: &[&str]) {
    let (logged, stderr) = one_answer_with_listen_fds(bin, args, "listen-fds.log", 2);
    assert!(
        logged.contains("LISTEN_FDS: serving only the first socket"),
        "log {logged:?}, stderr {stderr:?}"
    );
    assert_eq!(one_summary(&logged).answered, 1, "{logged}");
}

/// `LISTEN_FDS=1000` with one socket handed down: the server serves it,
/// and says what it did with the other 999 descriptors in at most two log
/// lines, not one each.
pub fn an_absurd_listen_fds_is_said_in_a_line_or_two(bin: &str, args: &[&str]) {
    let (logged, stderr) = one_answer_with_listen_fds(bin, args, "listen-fds-absurd.log", 1000);
    let warnings = logged
        .matches("LISTEN_FDS: serving only the first socket")
        .count();
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} warnings: log {logged:?}, stderr {stderr:?}"
    );
    assert_eq!(one_summary(&logged).answered, 1, "{logged}");
}

/// `NOTIFY_SOCKET=@name`, a datagram socket in the abstract namespace (as
/// systemd names it), gets `READY=1` and, at the shutdown, `STOPPING=1`.
pub fn notifies_a_notify_socket_in_the_abstract_namespace(bin: &str, args: &[&str]) {
    let flags: Vec<String> = super::started::config_flags(&Config::default());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let notify = NotifySocket::abstract_namespace();
    let mut server = Activated::start_on(bin, &[&flags, args].concat(), bind(), notify, 1);
    let mut client = Client::connect(server.addr());
    assert_eq!(text(&client.ask(b"Now is better than?")), "never.");
    drop(client);
    assert_eq!(server.stop().answered, 1);
}

/// Under inetd `nowait`, a server with `--peer` forwards a question it
/// does not know with its own address in the history: the connection's
/// local address (inetd's listening address), and relays the answer.
pub fn inetd_nowait_asks_its_peers_as_itself(bin: &str, args: &[&str]) {
    let (mut client, server) = accepted_pair();
    let own = server.local_addr().unwrap();
    let (peer, asked) = fake_peer();
    let peer = peer.to_string();
    let flags = [&["--table-part", "1/2", "--peer", &peer][..], args].concat();
    let mut child = inetd(bin, &flags, server.into());
    client.write_all(b"Explicit is better than?").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(text(&read_to_close(&mut client)), "implicit.");
    assert!(wait_bounded(&mut child).success());
    assert_eq!(
        asked.join().unwrap().as_deref(),
        Some(format!("[{own}]Explicit is better than?").as_str())
    );
}

/// A server bound to the wildcard address asks its peers with
/// `--advertise` (no `--register` needed) as its address in the history;
/// without `--advertise` it refuses to start, in one line, and so it does
/// when asked to register an address no client would dial.
pub fn a_wildcard_bound_server_asks_peers_as_it_advertises(bin: &str, args: &[&str]) {
    let (peer, asked) = fake_peer();
    let peer = peer.to_string();
    let port = free_port();
    let advertised = SocketAddr::from(([127, 0, 0, 1], port));
    let mut server = Supervised::start_exactly(
        bin,
        &[
            &["0.0.0.0", "-p", &port.to_string(), "--table-part", "1/2"][..],
            &["--peer", &peer, "--advertise", &advertised.to_string()],
            args,
        ]
        .concat(),
    );
    let mut client = Client::connect(advertised);
    assert_eq!(text(&client.ask(b"Explicit is better than?")), "implicit.");
    drop(client);
    let (status, log) = server.terminate();
    assert!(status.success(), "{status}: {log}");
    assert_eq!(
        asked.join().unwrap().as_deref(),
        Some(format!("[{advertised}]Explicit is better than?").as_str())
    );
    let out = std::process::Command::new(bin)
        .args(["0.0.0.0", "-p", "0", "--peer", &peer])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("give --advertise IP:PORT"), "{stderr}");
    // An advertised address that names nobody is refused, in IPv6
    // clothes too (::ffff:0.0.0.0 is 0.0.0.0).
    for nobody in ["0.0.0.0:7", "[::ffff:0.0.0.0]:7", "127.0.0.1:0"] {
        let out = std::process::Command::new(bin)
            .args(["0.0.0.0", "-p", "0", "--peer", &peer, "--advertise", nobody])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{nobody}: {stderr}");
        assert!(
            stderr.contains("not an address others can reach"),
            "{nobody}: {stderr}"
        );
    }
    // Nor is one registered: the server judges its entry as the clients
    // would, and refuses it before it reaches for the registry.
    for nobody in [
        "0.0.0.0:7",
        "[::ffff:0.0.0.0]:7",
        "224.0.0.1:7",
        "127.0.0.1:0",
    ] {
        // Bounded: a server that registered it instead would serve on.
        let mut child = std::process::Command::new(bin)
            .args(["-p", "0", "--register", "zk://127.0.0.1:1/zen"])
            .args(["--advertise", nobody])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_bounded(&mut child);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(1), "{nobody}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{nobody}: {stderr}");
        assert!(
            stderr.contains("give --advertise IP:PORT"),
            "{nobody}: {stderr}"
        );
    }
}

/// `--processes`: the binary's path gets another file renamed over it (a
/// rebuild, an upgrade), then is deleted; each time every worker is
/// killed, and new workers, started from the executable the supervisor
/// runs, serve.
pub fn restarts_workers_after_the_binary_was_replaced_on_disk(bin: &str, args: &[&str]) {
    let dir = temp_path("replaced");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(Path::new(bin).file_name().unwrap());
    std::fs::copy(bin, &copy).unwrap();
    let mut supervisor = Supervised::start(
        copy.to_str().unwrap(),
        &[&["--processes", "2"], args].concat(),
    );
    let mut gone = supervisor.workers(2);
    let replacement = dir.join("replacement");
    std::fs::write(&replacement, "#!/bin/sh\nexit 3\n").unwrap();
    let change_path: [&dyn Fn(); 2] = [&|| std::fs::rename(&replacement, &copy).unwrap(), &|| {
        std::fs::remove_file(&copy).unwrap()
    }];
    for change in change_path {
        change();
        for &worker in &gone {
            // SAFETY: kill() only signals a worker of the supervisor we started.
            unsafe { libc::kill(worker as libc::pid_t, libc::SIGKILL) };
        }
        let new = supervisor.workers_except_all(&gone, 2);
        assert_eq!(
            new.len(),
            2,
            "new workers after {gone:?} were killed: {new:?}"
        );
        let mut client = Client::connect(supervisor.addr);
        assert_eq!(text(&client.ask(b"Now is better than?")), "never.");
        gone.extend(new);
    }
    let (status, log) = supervisor.terminate();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains("cannot start"), "{log}");
}

/// A fresh path in the temporary directory, for this process and test.
fn temp_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("zen-{what}-{}-{}", std::process::id(), free_port()))
}

/// A peer played by the test: it takes one connection (waiting at most
/// [`PATIENCE`]), reads one forwarded question, answers it from the table
/// and says what it was asked.
fn fake_peer() -> (SocketAddr, JoinHandle<Option<String>>) {
    {
        let listener = bind();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let asked = thread::spawn(move || {
            let started = Instant::now();
            let mut stream = loop {
                match listener.accept() {
                    Ok((stream, _)) => break stream,
                    Err(_) if started.elapsed() < PATIENCE => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => return None,
                }
            };
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut request = Vec::new();
            let mut byte = [0];
            while !request.ends_with(b"?") {
                match stream.read(&mut byte) {
                    Ok(1) => request.push(byte[0]),
                    _ => return None,
                }
            }
            let question = &request[request.iter().rposition(|&b| b == b']')? + 1..];
            stream.write_all(answer(question)).ok()?;
            Some(text(&request))
        });
        (addr, asked)
    }
}

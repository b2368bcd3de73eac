//! Tests of a server binary's command-line contract, run on the real
//! executable: [`binary_suite!`](crate::binary_suite) stamps them out.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Client, PATIENCE};

/// A server binary started with `-p 0`, with the address it printed.
pub struct Running {
    child: Child,
    /// The address from its `listening on IP:PORT` line.
    pub addr: SocketAddr,
}

impl Running {
    /// Starts `bin` with `-p 0` and `args`, and reads its first stdout line.
    ///
    /// # Panics
    /// If that line is not exactly `listening on 127.0.0.1:PORT`.
    pub fn start(bin: &str, args: &[&str]) -> Self {
        let mut child = Command::new(bin)
            .args(["-p", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server binary");
        let mut first_line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first_line)
            .unwrap();
        let addr = first_line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.strip_suffix('\n'))
            .and_then(|addr| addr.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("bad first line {first_line:?}"));
        assert!(
            addr.ip().is_loopback() && addr.port() != 0,
            "{first_line:?}"
        );
        Self { child, addr }
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns the status
    /// and everything the server wrote to stderr.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill() only sends a signal to the child we started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = wait_bounded(&mut self.child);
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a child to exit; kills it and panics after [`PATIENCE`].
fn wait_bounded(child: &mut Child) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("the server did not exit within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `bin` with `args` to its end; returns status, stdout and stderr.
fn run(bin: &str, args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server binary");
    let status = wait_bounded(&mut child);
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stdout, stderr)
}

/// `-p 0`: the first stdout line is `listening on 127.0.0.1:PORT`, and the
/// server answers there.
pub fn prints_listening_on_the_bound_address_first(bin: &str, args: &[&str]) {
    let server = Running::start(bin, args);
    let mut client = Client::connect(server.addr);
    assert_eq!(client.ask(b"Beautiful is better than?"), b"ugly.");
}

/// A second server on a port in use fails with one clear line on stderr
/// and a non-zero exit, and the first goes on serving.
pub fn fails_in_one_line_on_a_busy_port(bin: &str, args: &[&str]) {
    let first = Running::start(bin, args);
    let port = first.addr.port().to_string();
    let mut second_args = vec!["-p", &port];
    second_args.extend_from_slice(args);
    let (status, stdout, stderr) = run(bin, &second_args);
    assert!(!status.success());
    assert_eq!(
        stdout, "",
        "nothing on stdout, so no tool mistakes it for a server"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.contains(&format!("cannot listen on {}", first.addr)) && stderr.contains("in use"),
        "{stderr:?}"
    );
    let mut client = Client::connect(first.addr);
    assert_eq!(client.ask(b"Now is better than?"), b"never.");
}

/// A bad flag is an error message and a non-zero exit, not a server.
pub fn fails_in_one_line_on_a_bad_flag(bin: &str, args: &[&str]) {
    for bad in [
        ["--max-conns", "0"],
        ["--idle-timeout", "60"],
        ["--work", "nap:1s"],
    ] {
        let mut all = args.to_vec();
        all.extend_from_slice(&bad);
        let (status, stdout, stderr) = run(bin, &all);
        assert!(!status.success(), "{bad:?}");
        assert_eq!(stdout, "");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: invalid value"),
            "{bad:?}: {stderr:?}"
        );
    }
}

/// `--help` explains every flag of the shared contract.
pub fn explains_every_flag_in_help(bin: &str, _: &[&str]) {
    let (status, stdout, _) = run(bin, &["--help"]);
    assert!(status.success());
    for flag in [
        "[HOST]",
        "--port",
        "--max-conns",
        "--idle-timeout",
        "--max-request",
        "--work",
        "--backlog",
        "--verbose",
        "--quiet",
    ] {
        assert!(
            stdout.contains(flag),
            "--help does not mention {flag}:\n{stdout}"
        );
    }
}

/// SIGTERM: the server finishes, prints its summary line and exits 0, even
/// with a client still connected.
pub fn exits_cleanly_with_a_summary_on_sigterm(bin: &str, args: &[&str]) {
    let server = Running::start(bin, args);
    let mut client = Client::connect(server.addr);
    assert_eq!(client.ask(b"Flat is better than?"), b"nested.");
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status:?}: {stderr}");
    let summary = stderr
        .lines()
        .find(|line| line.contains("summary: "))
        .unwrap_or_default();
    assert!(
        summary.contains("summary: 1 connections, 1 questions answered, 0 errors"),
        "{stderr:?}"
    );
    assert_eq!(client.read_to_close(), b"");
}

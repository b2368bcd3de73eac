//! Tests of a server binary's command-line contract, run on the real
//! executable: [`binary_suite!`](crate::binary_suite) stamps them out.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{Client, PATIENCE};
use crate::serve::listener::ACCEPT_WARNING_INTERVAL;

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
        Self::spawn(Command::new(bin).args(["-p", "0"]).args(args))
    }

    /// Starts `bin` as [`start`](Self::start) does, limited to `max_fds`
    /// file descriptors. Both the soft and the hard limit are set: a
    /// server raises its soft limit to the hard one at start.
    pub fn start_with_fd_limit(bin: &str, args: &[&str], max_fds: u64) -> Self {
        let mut command = Command::new(bin);
        command.args(["-p", "0"]).args(args);
        let limit = libc::rlimit {
            rlim_cur: max_fds,
            rlim_max: max_fds,
        };
        // SAFETY: setrlimit is async-signal-safe, and the closure touches
        // nothing else between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Self::spawn(&mut command)
    }

    /// Starts `bin` as [`start`](Self::start) does, then closes the read
    /// end of its stderr pipe, as `server 2>&1 | head -3` does once `head`
    /// has its lines: every log line the server writes after that fails.
    pub fn start_with_stderr_gone(bin: &str, args: &[&str]) -> Self {
        let mut server = Self::start(bin, args);
        drop(server.child.stderr.take());
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn spawn(command: &mut Command) -> Self {
        let mut child = command
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
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr).unwrap();
        }
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
pub fn wait_bounded(child: &mut Child) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("the server did not exit within {PATIENCE:?}");
        }
        thread::sleep(Duration::from_millis(20));
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
pub fn refuses_a_bad_flag_with_clap_s_message(bin: &str, args: &[&str]) {
    for bad in [
        ["--max-conns", "0"],
        ["--idle-timeout", "60"],
        ["--work", "nap:1s"],
        // Longer than any deadline the clock can hold: refused, not a
        // panic at the first question.
        ["--work", "wait:10000000000000000000s"],
        ["--idle-timeout", "100000000000000000000s"],
        // A limit no buffer can be made for: refused, not a crash at the
        // first question.
        ["--max-request", "18446744073709551615"],
        ["--max-request", "99999999999"],
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

/// The largest `--max-request` serves as any other: the buffer grows with
/// the question, it is not allocated at its maximum up front.
pub fn serves_with_the_largest_max_request(bin: &str, args: &[&str]) {
    let max = crate::config::MAX_MAX_REQUEST.to_string();
    let mut all = args.to_vec();
    all.extend(["--max-request", &max]);
    let server = Running::start(bin, &all);
    // One client after another: srv-single serves them so too.
    for _ in 0..20 {
        let mut client = Client::connect(server.addr);
        assert_eq!(client.ask(b"Sparse is better than?"), b"dense.");
    }
    let long = [vec![b'x'; 100_000], b"?".to_vec()].concat();
    let mut client = Client::connect(server.addr);
    assert_eq!(client.ask(&long), b"Error: unknown aphorism.");
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status:?}: {stderr}");
}

/// Logging never stops a server: with stderr a pipe whose reader has gone,
/// a server logging every connection (`-v`) serves one client after
/// another, and at the default verbosity its summary line, unwritable,
/// does not keep it from exiting 0 on SIGTERM.
pub fn survives_a_log_reader_that_has_gone(bin: &str, args: &[&str]) {
    let mut verbose = args.to_vec();
    verbose.push("-v");
    for args in [&verbose[..], args] {
        let server = Running::start_with_stderr_gone(bin, args);
        for (question, answer) in crate::protocol::APHORISMS.iter().take(3) {
            let mut client = Client::connect(server.addr);
            assert_eq!(client.ask(question), *answer, "{args:?}");
        }
        let (status, _) = server.terminate();
        assert!(status.success(), "{args:?}: {status:?}");
    }
}

/// A SIGTERM sent the moment `listening on` is read is a graceful shutdown
/// (summary, exit 0), not a death by the signal: the handlers are in place
/// before the line is printed. Tried several times, as the window is short.
pub fn a_signal_right_after_listening_is_a_clean_shutdown(bin: &str, args: &[&str]) {
    for _ in 0..10 {
        let server = Running::start(bin, args);
        let (status, stderr) = server.terminate();
        assert!(status.success(), "{status:?}: {stderr}");
        assert!(stderr.contains("summary: 0 connections"), "{stderr:?}");
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

/// Out of file descriptors: a server limited to 64 descriptors, against 200
/// clients that all connect at once, keeps serving the connections it has,
/// does not spin while `accept` fails (it uses well under a CPU-second per
/// second of waiting: a bound on spinning, not a measure of speed), serves
/// the others as clients leave, never exits for it, and warns at most once
/// per [`ACCEPT_WARNING_INTERVAL`]. srv-single, one client at a time, never
/// runs out, and serves them all in turn.
pub fn survives_running_out_of_file_descriptors(bin: &str, args: &[&str]) {
    const FD_LIMIT: u64 = 64;
    const CLIENTS: usize = 200;
    /// No new answer for this long: the server serves all it can.
    const SETTLED: Duration = Duration::from_millis(500);
    /// CPU time the waiting server may use per second. Spinning on a failed
    /// `accept` would use a whole CPU-second; sleeping workers, idle scans
    /// and backoffs use a few milliseconds.
    const SPIN_BOUND: Duration = Duration::from_millis(300);
    let started = Instant::now();
    let server = Running::start_with_fd_limit(bin, args, FD_LIMIT);
    // Clients wait here, once answered, until the test lets them leave.
    let leave = Arc::new((Mutex::new(false), Condvar::new()));
    let (answered, first_answers) = mpsc::channel();
    let (left, gone) = mpsc::channel();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            // Connected here, in order: the kernel queues what the server
            // cannot accept.
            let mut client = Client::connect(server.addr);
            let (answered, left, leave) = (answered.clone(), left.clone(), Arc::clone(&leave));
            thread::spawn(move || {
                assert_eq!(client.ask(b"Now is better than?"), b"never.");
                answered.send(()).unwrap();
                let (may_leave, wake) = &*leave;
                let mut may_leave = may_leave.lock().unwrap();
                while !*may_leave {
                    may_leave = wake.wait(may_leave).unwrap();
                }
                drop(may_leave);
                assert_eq!(client.ask(b"Flat is better than?"), b"nested.");
                drop(client);
                left.send(()).unwrap();
            })
        })
        .collect();
    first_answers
        .recv_timeout(PATIENCE)
        .expect("no client was served");
    let mut served = 1;
    while first_answers.recv_timeout(SETTLED).is_ok() {
        served += 1;
    }
    assert!(
        served < CLIENTS,
        "{served} clients served at once with {FD_LIMIT} descriptors"
    );
    let before = cpu_time(server.pid());
    thread::sleep(Duration::from_secs(1));
    let waiting = cpu_time(server.pid()) - before;
    assert!(
        waiting < SPIN_BOUND,
        "the server used {waiting:?} of CPU in a second of waiting for descriptors"
    );
    // The served clients ask again (the server still serves them), then
    // leave; the descriptors they free let the others in.
    *leave.0.lock().unwrap() = true;
    leave.1.notify_all();
    for _ in 0..CLIENTS {
        gone.recv_timeout(PATIENCE)
            .expect("a client was not served after others left");
    }
    for client in clients {
        client.join().unwrap();
    }
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(
        stderr.contains("summary: 200 connections, 400 questions answered, 0 errors"),
        "{stderr:?}"
    );
    let warnings = stderr.matches("accept failed").count();
    let allowed =
        2 + (started.elapsed().as_secs_f64() / ACCEPT_WARNING_INTERVAL.as_secs_f64()) as usize;
    assert!(
        warnings <= allowed,
        "{warnings} warnings about accept in {:?}: {stderr}",
        started.elapsed()
    );
}

/// The CPU time (user and system) a process has used so far, from
/// `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The fields after the command name, which is in parentheses and may
    // hold spaces: state is the first, utime and stime the 12th and 13th.
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

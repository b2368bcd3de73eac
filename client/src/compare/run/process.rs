//! A server under test as a child process: started on port 0, found by its
//! `listening on IP:PORT` line, watched through /proc, stopped with
//! SIGTERM, and checked to have exited 0 with its summary.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use rustix::process::{kill_process, Pid, Signal};

use crate::compare::model::{Exit, ServerSummary, SERVER_NICE};

/// How long a server may take to print `listening on` (or, for redis, to
/// accept a connection): a cold start under a busy machine, with margin.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM. docs/protocol.md promises "a
/// few seconds" (zen-utils' shutdown grace is 2 s); more than this is a
/// server that did not stop, and it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many of the server's last log lines to keep for the report of a
/// server that did not exit cleanly.
const LOG_TAIL: usize = 20;

/// A running server.
pub(crate) struct Server {
    child: Child,
    pid: Pid,
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    readers: Vec<JoinHandle<()>>,
    /// Whether it prints zen's summary line when it stops.
    zen: bool,
}

/// What a server logged: the summary line, and the last lines.
#[derive(Default)]
struct Log {
    summary: Option<String>,
    tail: Vec<String>,
}

/// A reading of a process's CPU time and memory from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Usage {
    /// User plus system CPU time of all its threads, in seconds.
    pub(crate) cpu_seconds: f64,
    /// At the same moment: user plus system CPU time of every process on
    /// the machine, and of this client process, in seconds. What is left
    /// once the server and the client are taken out is someone else's
    /// load, which skews the figures.
    pub(crate) machine_cpu_seconds: f64,
    pub(crate) client_cpu_seconds: f64,
    /// Resident memory now (`VmRSS`), KiB.
    pub(crate) rss_kib: u64,
    /// The most resident memory it ever had (`VmHWM`), KiB.
    pub(crate) peak_rss_kib: u64,
}

/// Spawns a server at [`SERVER_NICE`] with no stdin and its stdout and
/// stderr piped to us, set to get SIGTERM from the kernel when we end.
///
/// However this process ends (a second Ctrl-C, which exits at once; SIGKILL;
/// a crash), its servers are stopped: `Drop` stops them only when it gets to
/// run, and a server left behind would run for ever under PID 1, holding its
/// port and a core. So each child asks the kernel for a SIGTERM when its
/// parent goes (`PR_SET_PDEATHSIG`). The kernel sends it when the *thread*
/// that forked the child ends, not the process: `client compare` starts
/// every server from its main thread (`run::everything` calls `run_one`
/// inline, on the thread that runs `main`), which ends only with the
/// process.
fn spawn_piped(
    command: &mut Command,
    bin: &Path,
) -> anyhow::Result<(Child, ChildStdout, ChildStderr)> {
    // Taken before the fork, to tell in the child whether we are still its
    // parent.
    let parent = rustix::process::getpid();
    // SAFETY: runs in the forked child before exec, and only makes system
    // calls that are async-signal-safe (`nice`, `sigaction` through
    // `signal`, `prctl`, `getppid`); it touches no lock or allocation of
    // the parent's (an `io::Error` made from an errno allocates nothing).
    unsafe {
        command.pre_exec(move || {
            // If this fails, the server runs at the load generator's
            // priority, which only makes the figures pessimistic.
            let _ = rustix::process::nice(SERVER_NICE);
            // Until exec the child has our handlers for SIGINT and SIGTERM
            // (`compare::stop_flag`), which would only set a flag in its
            // copy of our memory: the parent-death SIGTERM would be lost
            // if it came before exec. With the default action it ends the
            // child instead; exec keeps the default.
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            rustix::process::set_parent_process_death_signal(Some(Signal::TERM))?;
            // The parent may have gone between the fork and the `prctl`,
            // and then no signal will come: the child has been handed to
            // another process already. It gives up (spawn's error goes to
            // nobody).
            if rustix::process::getppid() != Some(parent) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    Ok((child, stdout, stderr))
}

impl Server {
    /// Starts a zen server binary on 127.0.0.1 port 0 and waits for its
    /// `listening on IP:PORT` line.
    pub(crate) fn start_zen(bin: &Path, args: &[String]) -> anyhow::Result<Self> {
        Self::start_zen_on(bin, 0, args)
    }

    /// [`start_zen`](Self::start_zen) on a given port (a server killed and
    /// started again where its clients and balancer expect it).
    pub(crate) fn start_zen_on(bin: &Path, port: u16, args: &[String]) -> anyhow::Result<Self> {
        let (child, stdout, stderr) = spawn_piped(
            Command::new(bin)
                .args(["127.0.0.1", "-p", &port.to_string()])
                .args(args),
            bin,
        )?;
        let log = Arc::new(Mutex::new(Log::default()));
        let mut readers = vec![read_log(stderr, Arc::clone(&log))];
        // The first line tells the port; the rest (there should be none)
        // is read and dropped, so that the server never blocks on a full
        // pipe.
        let (line_tx, line_rx) = mpsc::channel();
        readers.push(thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            let _ = line_tx.send(stdout.read_line(&mut line).map(|_| line));
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        }));
        let pid = pid_of(&child)?;
        let mut server = Self {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            readers,
            zen: true,
        };
        let line = match line_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(error)) => return Err(server.failed_to_start(&error.to_string())),
            Err(_) => return Err(server.failed_to_start("no `listening on` line")),
        };
        server.addr = match line
            .trim_end()
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok())
        {
            Some(addr) => addr,
            None => return Err(server.failed_to_start(&format!("printed {:?}", line.trim_end()))),
        };
        Ok(server)
    }

    /// Starts `redis-server` on a free port of 127.0.0.1, without saving
    /// anything to disk, and waits until it accepts connections.
    pub(crate) fn start_redis(bin: &Path) -> anyhow::Result<Self> {
        // A port the OS just handed out and took back: free unless
        // something grabs it in between, which would show as a failed start.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let (child, stdout, stderr) = spawn_piped(
            Command::new(bin)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"]),
            bin,
        )?;
        let log = Arc::new(Mutex::new(Log::default()));
        let readers = vec![
            read_log(stdout, Arc::clone(&log)),
            read_log(stderr, Arc::clone(&log)),
        ];
        let pid = pid_of(&child)?;
        let mut server = Self {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            readers,
            zen: false,
        };
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&server.addr, Duration::from_secs(1)).is_ok() {
                return Ok(server);
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(server.failed_to_start("it never accepted a connection"));
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(server.failed_to_start(&format!("it exited ({status})")));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its CPU time and memory so far.
    pub(crate) fn usage(&self) -> anyhow::Result<Usage> {
        let pid = self.pid.as_raw_nonzero().get();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let ticks = cpu_ticks(&stat).ok_or_else(|| anyhow!("cannot read /proc/{pid}/stat"))?;
        let client = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| cpu_ticks(&stat))
            .unwrap_or(0);
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| machine_ticks(&stat))
            .unwrap_or(0);
        let seconds = |ticks: u64| ticks as f64 / rustix::param::clock_ticks_per_second() as f64;
        Ok(Usage {
            cpu_seconds: seconds(ticks),
            machine_cpu_seconds: seconds(machine),
            client_cpu_seconds: seconds(client),
            rss_kib: status_number(&status, "VmRSS:").unwrap_or(0),
            peak_rss_kib: status_number(&status, "VmHWM:").unwrap_or(0),
        })
    }

    /// Context switches of its live threads so far, voluntary (it waited:
    /// a read with nothing to read, a lock, `epoll_wait`) plus involuntary
    /// (the kernel took its core), summed over /proc/PID/task/*/status: a
    /// file per thread, so read only at the window's edges. A thread that
    /// has ended takes its counts with it, so a window in which threads
    /// come and go (a thread per short connection) counts only those alive
    /// at its end.
    pub(crate) fn context_switches(&self) -> u64 {
        context_switches(self.pid.as_raw_nonzero().get())
    }

    /// How many file descriptors it has open: a listener, a few of its
    /// own, and one per connection it accepted.
    pub(crate) fn open_fds(&self) -> usize {
        let pid = self.pid.as_raw_nonzero().get();
        std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid.as_raw_nonzero().get().unsigned_abs()
    }

    /// Freezes it (SIGSTOP): every thread stops, the kernel still takes
    /// connections and bytes for it.
    pub(crate) fn freeze(&self) {
        let _ = kill_process(self.pid, Signal::STOP);
    }

    /// Lets a frozen server go on (SIGCONT).
    pub(crate) fn thaw(&self) {
        let _ = kill_process(self.pid, Signal::CONT);
    }

    /// Kills it with SIGKILL: no shutdown, no summary, its connections cut.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Stops it with SIGTERM and says how it ended. A server still running
    /// after [`STOP_TIMEOUT`] is killed and reported.
    pub(crate) fn stop(mut self) -> Exit {
        let _ = kill_process(self.pid, Signal::TERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => break None,
            }
        };
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The pipes close with the process: the readers finish.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.exit(status)
    }

    fn exit(&self, status: Option<ExitStatus>) -> Exit {
        let log = self.log.lock().unwrap_or_else(|poison| poison.into_inner());
        let summary = log.summary.as_deref().and_then(parse_summary);
        let problem = match status {
            None => Some(format!(
                "did not exit within {}s of SIGTERM (killed)",
                STOP_TIMEOUT.as_secs()
            )),
            Some(status) if !status.success() => Some(format!("exited with {status}")),
            Some(_) if self.zen && summary.is_none() => Some("printed no summary".to_owned()),
            Some(_) => None,
        };
        Exit {
            clean: problem.is_none(),
            code: status.and_then(|status| status.code()),
            problem: problem.map(|problem| {
                let tail = log.tail.join(" | ");
                if tail.is_empty() {
                    problem
                } else {
                    format!("{problem}; last log lines: {tail}")
                }
            }),
            summary,
        }
    }

    fn failed_to_start(&mut self, why: &str) -> anyhow::Error {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let log = self.log.lock().unwrap_or_else(|poison| poison.into_inner());
        anyhow!(
            "the server did not start: {why}; it said: {}",
            log.tail.join(" | ")
        )
    }
}

impl Drop for Server {
    /// A server is never left running: if the comparison stops half way
    /// (an error, a panic), its server goes with it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn pid_of(child: &Child) -> anyhow::Result<Pid> {
    i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| anyhow!("bad process id {}", child.id()))
}

/// Reads a server's log as it comes (so that it never blocks on a full
/// pipe), keeping the summary line and the last lines.
fn read_log(pipe: impl Read + Send + 'static, log: Arc<Mutex<Log>>) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut log = log.lock().unwrap_or_else(|poison| poison.into_inner());
            if line.contains("summary: ") {
                log.summary = Some(line.clone());
            }
            if log.tail.len() == LOG_TAIL {
                log.tail.remove(0);
            }
            log.tail.push(line);
        }
    })
}

/// The fields of a `/proc/PID/stat` line after the name (which may hold
/// spaces and parentheses, so it ends at the last `)`): state (field 3)
/// first.
fn fields_after_name(stat: &str) -> Option<Vec<&str>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().collect())
}

/// User plus system time, in clock ticks, from a `/proc/PID/stat` line.
/// The command name (field 2) is in parentheses and may contain spaces,
/// so the fields are counted from after its closing parenthesis.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let fields = fields_after_name(stat)?;
    // After the name come state (field 3) ... utime (14) and stime (15).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// User, nice and system time of all CPUs, in clock ticks, from the first
/// line of `/proc/stat`: the same kinds of time as a process's utime and
/// stime. Interrupt time is left out, as it is from every process's.
fn machine_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user, nice, system, idle, iowait, irq, softirq, steal, ...
    Some(fields.first()? + fields.get(1)? + fields.get(2)?)
}

/// The number of a `Key:   1234 kB` (in KiB) or `Key:   1234` line of
/// `/proc/PID/status`.
fn status_number(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Voluntary plus involuntary context switches of every thread of
/// process `pid` (0 if it has gone). A thread may end between listing
/// the tasks and reading its status: it is skipped.
fn context_switches(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|task| {
            let status = std::fs::read_to_string(task.ok()?.path().join("status")).ok()?;
            Some(switches_in(&status))
        })
        .sum()
}

/// The `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` lines
/// of one `/proc/PID/task/TID/status`, added.
fn switches_in(status: &str) -> u64 {
    let count = |key| status_number(status, key).unwrap_or(0);
    count("voluntary_ctxt_switches:") + count("nonvoluntary_ctxt_switches:")
}

/// The numbers of `...summary: 3 connections, 120 questions answered, 0
/// errors, 0 questions dropped, uptime 1.2s` (zen-utils'
/// `Summary` display).
fn parse_summary(line: &str) -> Option<ServerSummary> {
    let (_, rest) = line.split_once("summary: ")?;
    let mut numbers = rest
        .split(", ")
        .map(|part| part.split(' ').next().and_then(|n| n.parse::<u64>().ok()));
    Some(ServerSummary {
        connections: numbers.next()??,
        answered: numbers.next()??,
        errors: numbers.next()??,
        dropped: numbers.next()??,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use super::*;

    /// The nice value (field 19) of a `/proc/PID/stat` line.
    fn nice_of(stat: &str) -> i32 {
        fields_after_name(stat).unwrap()[16].parse().unwrap()
    }

    #[test]
    fn servers_run_below_the_load_generator() {
        let sh = Path::new("/bin/sh");
        let (mut child, mut stdout, _stderr) =
            spawn_piped(Command::new(sh).args(["-c", "cat /proc/self/stat"]), sh).unwrap();
        let mut theirs = String::new();
        stdout.read_to_string(&mut theirs).unwrap();
        assert!(child.wait().unwrap().success());
        let ours = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert_eq!(nice_of(&theirs), (nice_of(&ours) + SERVER_NICE).min(19));
    }

    #[test]
    fn servers_get_sigterm_when_their_parent_goes() {
        // The kernel counts the thread that forked as the parent: a thread
        // that starts a child and ends is the parent going.
        let sleep = Path::new("sleep");
        let mut child =
            thread::spawn(move || spawn_piped(Command::new(sleep).arg("60"), sleep).unwrap().0)
                .join()
                .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the child outlived the thread that started it");
            }
            thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
    }

    #[test]
    fn reads_cpu_ticks_past_a_name_with_spaces() {
        let stat = "4242 (srv poll) S 1 4242 4242 0 -1 4194304 100 0 0 0 \
                    250 30 0 0 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(280));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn reads_the_machine_cpu_line() {
        let stat = "cpu  100 5 50 9000 10 1 20 0 0 0\ncpu0 50 2 25 4500 5 0 10 0 0 0\n";
        assert_eq!(machine_ticks(stat), Some(155));
        assert_eq!(machine_ticks("intr 1 2 3"), None);
    }

    #[test]
    fn reads_memory_lines_in_kib() {
        let status = "Name:\tsrv-poll\nVmHWM:\t    5120 kB\nVmRSS:\t    4096 kB\n";
        assert_eq!(status_number(status, "VmRSS:"), Some(4096));
        assert_eq!(status_number(status, "VmHWM:"), Some(5120));
        assert_eq!(status_number(status, "VmSwap:"), None);
    }

    #[test]
    fn adds_both_kinds_of_context_switch() {
        let status = "Name:\tsrv-poll\nvoluntary_ctxt_switches:\t120\n\
                      nonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(switches_in(status), 127);
        assert_eq!(switches_in("Name:\tx\n"), 0);
    }

    #[test]
    fn counts_a_processs_context_switches() {
        // A shell that waits for five `sleep`s in turn gives up its core
        // at least once for each; then it becomes the last `sleep` (the
        // same task, its counts kept), so that killing it leaves nothing.
        let mut shell = Command::new("sh")
            .args([
                "-c",
                "for i in 1 2 3 4 5; do sleep 0.01; done; exec sleep 5",
            ])
            .spawn()
            .unwrap();
        let pid = pid_of(&shell).unwrap().as_raw_nonzero().get();
        thread::sleep(Duration::from_millis(500));
        let switches = context_switches(pid);
        let _ = shell.kill();
        let _ = shell.wait();
        assert!(switches >= 5, "{switches}");
        assert_eq!(context_switches(pid), 0, "the process has gone");
    }

    #[test]
    fn parses_zen_utils_summary_line() {
        let summary = zen_utils::Summary {
            connections: 3,
            answered: 120,
            errors: 1,
            dropped: 2,
            uptime: Duration::from_millis(1200),
        };
        let line = format!("srv-poll: {summary}");
        assert_eq!(
            parse_summary(&line),
            Some(ServerSummary {
                connections: 3,
                answered: 120,
                errors: 1,
                dropped: 2
            })
        );
        assert_eq!(parse_summary("srv-poll: serving on 127.0.0.1:1"), None);
    }
}

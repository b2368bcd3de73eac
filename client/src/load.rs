//! `client load`: a load generator worth trusting, because every comparison
//! in zen rests on it.
//!
//! ```text
//!  main thread: connect all ─► spawn ─► progress line, stall check ─► merge ─► report
//!                                 │
//!        ┌────────────────────────┴─────────────────────────┐
//!   load thread 0                                      load thread T-1
//!   epoll loop over its share of every server's        (the same)
//!   connections
//!   read answers ─► check ─► record ─► write as many     (the same)
//!   its own histograms and counters                     its own
//! ```
//!
//! - **Threads:** `--threads` event loops (default: half the cores, see
//!   [`default_threads`]), the connections dealt out among them so that
//!   each has a share of every server ([`thread_of`]), plus the main
//!   thread, which only draws the progress line.
//! - **The hot path** ([`worker`]): one `read` per batch of answers, each
//!   checked against the exact bytes expected without copying; one `write`
//!   of the next questions, sliced from bytes built before the run. No
//!   allocation and no lock per request: send times live in a fixed ring
//!   per connection, latencies in an HDR histogram per thread, merged at
//!   the end.
//! - **Closed loop** (default): each connection keeps `--pipeline`
//!   questions in flight; each time k answers arrive, it asks k more.
//! - **Open loop** (`--rate`): questions are due at a constant total rate
//!   whether or not the server keeps up, and latency runs from when each
//!   question was *due*, not from when it could be sent (wrk2's correction
//!   for coordinated omission). Both latencies are reported, side by side.
//! - **`-n`:** one budget of questions for the whole run, shared by the
//!   threads ([`budget`]): a thread whose servers are slow or dead keeps
//!   none of it.
//! - **Failures:** a connection that fails is counted by kind and
//!   reconnected with back-off (10 ms doubling to 1 s); its unanswered
//!   questions are asked again (questions are idempotent), so a restarted
//!   server loses no answer: on the new connection with `-d`, by any
//!   connection with `-n`. A server that answers when nothing was asked,
//!   or floods the client, breaks the protocol: that connection is closed
//!   at once, and no loop reads more than a few buffers from one
//!   connection before it looks at the others and at the clock.
//! - **The window:** answers, errors and reconnects are counted only in
//!   the measured window, after `--warmup`: every figure of the report
//!   covers the same time.
//! - **The end:** after `-d`, or once `-n` questions are answered, every
//!   connection shuts its sending side and reads until the server closes,
//!   so that the server sees clean closes, not resets.

mod budget;
mod conn;
mod tally;
mod worker;
mod workload;

use std::io::IsTerminal as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zen_utils::config::parse_duration;

use crate::event_loop::{connect_all, nanos, now_ns};
use crate::flags::{positive, positive_duration, positive_rate, positive_u64};
use crate::report::{ErrorCounts, Fairness, LoadReport, TargetReport};
use crate::target::Target;
use budget::Budget;
use conn::Conn;
use tally::{percentiles, Failure, Tally};
use worker::{Outcome, Progress, Shared, Worker};
use workload::Workload;

/// redis-benchmark's default, and the "many clients" of zen's experiments.
const DEFAULT_CONNECTIONS: usize = 50;
/// Long enough for a steady state, short enough to run often.
const DEFAULT_DURATION: &str = "5s";
/// As long as `client ask` waits for an answer.
const DEFAULT_TIMEOUT: &str = "10s";
/// No warmup unless asked: then `-n N` asks exactly N questions and `-d D`
/// loads the server for exactly D. Connections are open before the clock
/// starts, so the first requests pay no handshake; `compare` passes
/// `--warmup 1s` for a steady state.
const DEFAULT_WARMUP: &str = "0s";
/// A deeper pipeline than this is not a client any more; it also bounds
/// the memory of each connection's ring of send times.
const MAX_PIPELINE: usize = 65_536;
/// The most questions in flight in all (`-c` × `--pipeline`): each costs
/// 16 bytes of send times, so this bounds those rings to 256 MiB.
const MAX_IN_FLIGHT: u64 = 1 << 24;
/// Descriptors the client needs besides its connections: standard
/// streams, an epoll and a timer per thread, and some to spare.
const SPARE_DESCRIPTORS: u64 = 64;
/// How often the progress line is redrawn and the stall check made.
const TICK: Duration = Duration::from_millis(250);

#[derive(Args, Debug)]
pub(crate) struct LoadArgs {
    #[command(flatten)]
    target: Target,

    /// Connections to keep busy
    #[arg(short = 'c', long = "connections", value_name = "CONNS",
          default_value_t = DEFAULT_CONNECTIONS, value_parser = positive)]
    connections: usize,

    /// How long to measure, after the warmup (e.g. 500ms, 10s)
    #[arg(short = 'd', long = "duration", value_name = "DUR",
          default_value = DEFAULT_DURATION, value_parser = positive_duration)]
    duration: Duration,

    /// Ask exactly this many questions (all answered) instead of running
    /// for a duration
    #[arg(short = 'n', long = "requests", value_name = "REQUESTS",
          conflicts_with = "duration", value_parser = positive_u64)]
    requests: Option<u64>,

    /// Questions in flight per connection
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = pipeline_depth)]
    pipeline: usize,

    /// Open loop: ask at this constant total rate (requests per second),
    /// and measure latency from when each question was due
    #[arg(long, value_name = "RPS", value_parser = positive_rate)]
    rate: Option<f64>,

    /// Ask only this question of the table (default: the whole table, in
    /// turn)
    #[arg(long, value_name = "Q")]
    question: Option<String>,

    /// Load any request/reply server: send these bytes as each request
    /// (escapes: \r \n \\)
    #[arg(
        long,
        value_name = "BYTES",
        requires = "expect",
        conflicts_with = "question"
    )]
    send: Option<String>,

    /// ... and expect exactly these bytes as each reply
    #[arg(long, value_name = "BYTES", requires = "send")]
    expect: Option<String>,

    /// A server to load, HOST:PORT; repeat it to spread the connections
    /// across several servers, round robin (replaces HOST and -p)
    #[arg(long = "server", value_name = "HOST:PORT", conflicts_with_all = ["host", "port"])]
    servers: Vec<String>,

    /// Load the server this long before measuring (e.g. 1s); answers
    /// received during the warmup (with -n: to questions asked during it)
    /// are not counted
    #[arg(long, value_name = "DUR", default_value = DEFAULT_WARMUP, value_parser = parse_duration)]
    warmup: Duration,

    /// A connect or a question unanswered this long is a timeout: the
    /// connection is closed and reconnected (with -n, the run also stops
    /// when no answer at all comes for this long)
    #[arg(long, value_name = "DUR", default_value = DEFAULT_TIMEOUT,
          value_parser = positive_duration)]
    timeout: Duration,

    /// Event-loop threads (default: half the cores, leaving the rest to a
    /// server on the same machine; at most one per connection)
    #[arg(long, value_name = "N", value_parser = positive)]
    threads: Option<usize>,

    /// Print the report as one JSON object
    #[arg(long)]
    json: bool,
}

/// Runs the load and prints the report. The exit code is 0 when the run
/// completed with no error; with errors, when it stopped early, or when no
/// answer at all arrived in the measured window (not a measurement: the
/// server answers another protocol, say, or is stuck), the report is
/// printed all the same and the exit code is 1.
pub(crate) fn run(args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let interrupted = interrupt_flag();
    let report = measure(
        args,
        &mut Watch {
            interrupted: &interrupted,
            progress_line: true,
            on_window: &mut |_| {},
        },
    )?;
    crate::report::print(&report, args.json)?;
    let clean = report.errors == 0 && report.stopped_early.is_none();
    let unanswered = clean && report.requests == 0;
    if unanswered {
        zen_utils::log_line!(
            "client load: no answer arrived in {:.1} s: is the server stuck, or does it \
             answer another protocol (then give its request and reply with --send and \
             --expect)?",
            report.seconds
        );
    }
    Ok(if clean && !unanswered {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What the caller of [`measure`] sees of a run while it goes on, and how
/// it can end it.
pub(crate) struct Watch<'a> {
    /// Set (by a signal handler, see [`interrupt_flag`]) to end the run
    /// early; the report is made all the same.
    pub(crate) interrupted: &'a AtomicBool,
    /// Draw the progress line on stderr, when stderr is a terminal.
    pub(crate) progress_line: bool,
    /// Called as the measured window opens and as it closes, within a
    /// fraction of a millisecond: `client compare` reads the server's CPU
    /// time there, so that the warmup is not charged to the answers.
    pub(crate) on_window: &'a mut dyn FnMut(Window),
}

/// An edge of the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    /// The warmup is over: answers count from now.
    Open,
    /// The window is over (at `-d`, or when the run ended).
    Close,
}

/// A flag that the first Ctrl-C sets, to end a run with its report; a
/// second Ctrl-C exits at once (status 130). Register it once per process.
pub(crate) fn interrupt_flag() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    // Registered in this order, the shutdown sees the flag still unset on
    // the first signal and set on the second.
    let sigint = signal_hook::consts::SIGINT;
    let _ = signal_hook::flag::register_conditional_shutdown(sigint, 130, Arc::clone(&interrupted));
    let _ = signal_hook::flag::register(sigint, Arc::clone(&interrupted));
    interrupted
}

/// Runs the load described by `args` and returns its report: `client
/// load` without the printing, for `client compare` to call in-process.
/// An error means the run could not be made at all (no connection could
/// be opened); what went wrong during the run is in the report.
pub(crate) fn measure(args: &LoadArgs, watching: &mut Watch<'_>) -> anyhow::Result<LoadReport> {
    let workload = args.workload()?;
    let servers = args.servers()?;
    check_in_flight(args.connections, args.pipeline)?;
    check_descriptors(args.connections)?;

    let addrs: Vec<SocketAddr> = (0..args.connections)
        .map(|slot| servers[slot % servers.len()])
        .collect();
    // A connect that fails before the run is counted only if the window
    // opens at once: what happens during a warmup is not counted.
    let mut initial_errors = Tally::new(servers.len());
    let mut conns = Vec::with_capacity(addrs.len());
    let mut first_failure = None;
    let connected = connect_all(&addrs, args.timeout).context("cannot start connecting")?;
    for (slot, result) in connected.into_iter().enumerate() {
        let mut conn = Conn::new(slot, addrs[slot], slot % servers.len(), args.pipeline);
        match result {
            Ok((stream, _)) => conn.stream = Some(stream),
            Err(error) => {
                if args.warmup.is_zero() {
                    initial_errors.error(Failure::of(&error));
                }
                first_failure.get_or_insert((addrs[slot], error));
            }
        }
        conns.push(conn);
    }
    if conns.iter().all(|conn| conn.stream.is_none()) {
        let (addr, error) = first_failure.expect("at least one connection");
        return Err(anyhow!("cannot connect to {addr}: {error}"));
    }

    let threads = args
        .threads
        .unwrap_or_else(default_threads)
        .min(args.connections);
    // The clock starts once the connections are open: connecting (up to
    // --timeout) is no part of the run, nor of the open loop's schedule.
    let start = now_ns();
    let measure_start = start + nanos(args.warmup);
    let shared = Arc::new(Shared {
        workload,
        pipeline: args.pipeline,
        timeout: nanos(args.timeout),
        rate: args.rate,
        connections: args.connections,
        start,
        measure_start,
        end: match args.requests {
            Some(_) => None,
            None => Some(measure_start + nanos(args.duration)),
        },
        budget: args.requests.map(Budget::new),
        stop: AtomicBool::new(false),
    });

    let mut shares: Vec<Vec<Conn>> = (0..threads).map(|_| Vec::new()).collect();
    for conn in conns {
        shares[thread_of(conn.slot, args.connections, servers.len(), threads)].push(conn);
    }
    let (done_tx, done_rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(threads);
    let mut progress = Vec::with_capacity(threads);
    for (t, share) in shares.into_iter().enumerate() {
        let answers = Arc::new(Progress::default());
        progress.push(Arc::clone(&answers));
        let shared = Arc::clone(&shared);
        let done = done_tx.clone();
        let targets = servers.len();
        let handle = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || {
                let outcome = Worker::new(shared, share, targets, answers).and_then(Worker::run);
                let _ = done.send(());
                outcome
            })
            .context("cannot start a load thread")?;
        handles.push(handle);
    }
    drop(done_tx);

    let stopped_early = watch(args, watching, &shared, &progress, &done_rx, threads);

    let mut tally = initial_errors;
    let mut answers_per_conn = vec![0; args.connections];
    for handle in handles {
        let outcome: Outcome = handle
            .join()
            .map_err(|_| anyhow!("a load thread panicked"))?
            .context("a load thread failed")?;
        tally.merge(&outcome.tally);
        for (slot, answers) in outcome.answers_per_conn {
            answers_per_conn[slot] = answers;
        }
    }
    let stopped_at = now_ns();
    Ok(args.report(
        &shared,
        &tally,
        &answers_per_conn,
        &servers,
        threads,
        {
            let ended = match (shared.end, &stopped_early) {
                (Some(end), None) => end,
                (Some(end), Some(_)) => stopped_at.min(end),
                (None, _) if tally.last_answer > 0 => tally.last_answer,
                (None, _) => stopped_at,
            };
            ended.saturating_sub(measure_start)
        },
        stopped_early,
    ))
}

/// Which thread serves connection `slot`, of `connections` against
/// `servers` servers on `threads` threads. Connection `slot` goes to
/// server `slot % servers`. Lined up server by server, the connections are
/// dealt to the threads in turn: so the threads' loads differ by one
/// connection at most, and each thread has a share of every server (when
/// every server has a connection per thread). Dealing by `slot % threads`
/// alone gave a thread all of one server whenever the two counts matched,
/// and a slow server then held that whole thread.
fn thread_of(slot: usize, connections: usize, servers: usize, threads: usize) -> usize {
    let (server, nth) = (slot % servers, slot / servers);
    // Servers before this one have `connections / servers` connections
    // each, and the first `connections % servers` of them one more.
    let before = server * (connections / servers) + server.min(connections % servers);
    (before + nth) % threads
}

/// Refuses more questions in flight than the client can keep the send
/// times of.
fn check_in_flight(connections: usize, pipeline: usize) -> anyhow::Result<()> {
    let in_flight = (connections as u64).saturating_mul(pipeline as u64);
    anyhow::ensure!(
        in_flight <= MAX_IN_FLIGHT,
        "{connections} connections × --pipeline {pipeline} is {in_flight} questions in \
         flight: at most {MAX_IN_FLIGHT} are allowed"
    );
    Ok(())
}

/// Refuses more connections than this process may open descriptors for,
/// after raising its soft limit as far as the hard limit allows: they
/// would fail one by one, or not even fit in memory.
pub(crate) fn check_descriptors(connections: usize) -> anyhow::Result<()> {
    let limit = zen_utils::listener::raise_fd_limit()
        .or_else(|_| rlimit::Resource::NOFILE.get().map(|(soft, _)| soft))
        .unwrap_or(u64::MAX);
    let room = limit.saturating_sub(SPARE_DESCRIPTORS);
    anyhow::ensure!(
        connections as u64 <= room,
        "cannot open {connections} connections: this process may open {limit} files \
         (ulimit -n), so at most {room} connections"
    );
    Ok(())
}

/// Half the cores, at least one: zen's servers are loaded over loopback,
/// so the server needs the other half. One load thread does about the
/// same work per request as a one-thread server (a `read`, a `write`, a
/// share of an `epoll_wait`), so it keeps one busy. On a 2-core machine a
/// second load thread only competes with a one-thread server for the CPU
/// (measured against srv-async: 257k answers/s with one load thread, 234k
/// with two; against srv-poll the rate is the same but p99 goes from
/// 0.5 ms to 3 ms, the client's own threads being preempted). A server
/// that uses every core (srv-hybrid: 196k with one, 229k with two) or a
/// server on another machine wants `--threads` set to more.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (usize::from(cores) / 2).max(1))
}

/// The main thread's job during the run: draw the progress line on a
/// terminal, stop the run when interrupted, and with `-n` stop it when no
/// answer has come for `--timeout` (a server gone for good would otherwise
/// keep it reconnecting for ever); call `on_window` at the edges of the
/// measured window. Returns why the run stopped early, if it did.
fn watch(
    args: &LoadArgs,
    watching: &mut Watch<'_>,
    shared: &Shared,
    progress: &[Arc<Progress>],
    done: &mpsc::Receiver<()>,
    threads: usize,
) -> Option<String> {
    let bar = (watching.progress_line && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    });
    // With -n, no answer for --timeout is a stall; in a slow open loop, a
    // connection's questions may be that far apart, so the wait is longer
    // by the time between two of them.
    let stall_after = args
        .timeout
        .saturating_add(args.rate.map_or(Duration::ZERO, |rate| {
            Duration::try_from_secs_f64(args.connections as f64 / rate).unwrap_or(Duration::MAX)
        }));
    let mut window = WindowEdges::new(shared);
    let started = Instant::now();
    let (mut last_total, mut last_time) = (0, started);
    let (mut last_heard, mut last_progress) = (0, started);
    let mut finished = 0;
    let mut stopped = None;
    while finished < threads {
        let wait = window.next().map_or(TICK, |at| {
            TICK.min(Duration::from_nanos(at.saturating_sub(now_ns())))
        });
        let received = done.recv_timeout(wait);
        window.pass(now_ns(), watching.on_window);
        match received {
            Ok(()) => {
                finished += 1;
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let total: u64 = progress
            .iter()
            .map(|p| p.right.load(Ordering::Relaxed))
            .sum();
        let heard: u64 = progress
            .iter()
            .map(|p| p.heard.load(Ordering::Relaxed))
            .sum();
        let now = Instant::now();
        if let Some(bar) = &bar {
            let rate = total.saturating_sub(last_total) as f64 / (now - last_time).as_secs_f64();
            bar.set_message(format!(
                "{:.1}s  {total} answers  {rate:.0}/s",
                started.elapsed().as_secs_f64()
            ));
            bar.tick();
        }
        (last_total, last_time) = (total, now);
        if heard != last_heard {
            (last_heard, last_progress) = (heard, now);
        }
        if stopped.is_none() {
            if watching.interrupted.load(Ordering::Relaxed) {
                stopped = Some("interrupted".to_owned());
            } else if args.requests.is_some() && now - last_progress > stall_after {
                stopped = Some(format!(
                    "no answer for {}",
                    zen_utils::config::format_duration(args.timeout)
                ));
            }
            if stopped.is_some() {
                shared.stop.store(true, Ordering::Relaxed);
            }
        }
    }
    window.finish(watching.on_window);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    stopped
}

/// The edges of the measured window, and how many have been passed.
struct WindowEdges {
    open_at: u64,
    /// With `-n` the close has no time: it comes when the run ends.
    close_at: Option<u64>,
    passed: u8,
}

impl WindowEdges {
    fn new(shared: &Shared) -> Self {
        Self {
            open_at: shared.measure_start,
            close_at: shared.end,
            passed: 0,
        }
    }

    /// When the next edge is due, if its time is known.
    fn next(&self) -> Option<u64> {
        match self.passed {
            0 => Some(self.open_at),
            1 => self.close_at,
            _ => None,
        }
    }

    /// Reports every edge due by `now`, in order.
    fn pass(&mut self, now: u64, on_window: &mut dyn FnMut(Window)) {
        if self.passed == 0 && now >= self.open_at {
            self.passed = 1;
            on_window(Window::Open);
        }
        if self.passed == 1 && self.close_at.is_some_and(|close| now >= close) {
            self.passed = 2;
            on_window(Window::Close);
        }
    }

    /// The run is over: reports the edges it did not reach.
    fn finish(&mut self, on_window: &mut dyn FnMut(Window)) {
        if self.passed == 0 {
            on_window(Window::Open);
        }
        if self.passed < 2 {
            on_window(Window::Close);
        }
        self.passed = 2;
    }
}

impl LoadArgs {
    fn workload(&self) -> anyhow::Result<Workload> {
        match (&self.question, &self.send, &self.expect) {
            (_, Some(send), Some(expect)) => Workload::fixed(send, expect, self.pipeline),
            (Some(question), _, _) => Workload::question(question, self.pipeline),
            _ => Ok(Workload::table(self.pipeline)),
        }
    }

    /// The servers: every `--server`, or else `HOST:PORT`.
    fn servers(&self) -> anyhow::Result<Vec<SocketAddr>> {
        if self.servers.is_empty() {
            return Ok(vec![self.target.addrs()?[0]]);
        }
        self.servers
            .iter()
            .map(|server| {
                server
                    .to_socket_addrs()
                    .with_context(|| format!("cannot resolve --server {server}"))?
                    .next()
                    .ok_or_else(|| anyhow!("cannot resolve --server {server}: no address"))
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)] // One call site; the parts of one report.
    fn report(
        &self,
        shared: &Shared,
        tally: &Tally,
        answers_per_conn: &[u64],
        servers: &[SocketAddr],
        threads: usize,
        window: u64,
        stopped_early: Option<String>,
    ) -> LoadReport {
        let seconds = window as f64 / 1e9;
        let errors: ErrorCounts = tally.errors;
        let rate = shared.rate;
        LoadReport {
            connections: self.connections,
            requests: tally.answers,
            seconds,
            rps: if seconds > 0.0 {
                tally.answers as f64 / seconds
            } else {
                0.0
            },
            errors: errors.total(),
            served_conns: answers_per_conn.iter().filter(|&&n| n > 0).count(),
            latency_us: percentiles(if rate.is_some() {
                &tally.corrected
            } else {
                &tally.latency
            }),
            uncorrected_latency_us: rate.map(|_| percentiles(&tally.latency)),
            errors_by_kind: errors,
            fairness: Fairness::of(answers_per_conn),
            reconnects: tally.reconnects,
            pipeline: self.pipeline,
            threads,
            rate,
            warmup_seconds: self.warmup.as_secs_f64(),
            workload: shared.workload.description().to_owned(),
            targets: servers.iter().map(SocketAddr::to_string).collect(),
            stopped_early,
            per_target: match tally.per_target.as_slice() {
                [] => vec![TargetReport {
                    target: servers[0].to_string(),
                    requests: tally.answers,
                    latency_us: percentiles(if rate.is_some() {
                        &tally.corrected
                    } else {
                        &tally.latency
                    }),
                }],
                shares => servers
                    .iter()
                    .zip(shares)
                    .map(|(server, share)| TargetReport {
                        target: server.to_string(),
                        requests: share.answers,
                        latency_us: percentiles(&share.latency),
                    })
                    .collect(),
            },
        }
    }
}

fn pipeline_depth(text: &str) -> Result<usize, String> {
    match positive(text)? {
        n if n > MAX_PIPELINE => Err(format!("must be at most {MAX_PIPELINE}")),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_gets_an_even_share_of_every_server() {
        for (connections, servers, threads) in
            [(4, 2, 2), (5, 2, 4), (10, 2, 8), (50, 3, 2), (7, 7, 1)]
        {
            // (thread, server) -> connections
            let mut dealt = vec![vec![0; servers]; threads];
            for slot in 0..connections {
                dealt[thread_of(slot, connections, servers, threads)][slot % servers] += 1;
            }
            let loads: Vec<usize> = dealt.iter().map(|shares| shares.iter().sum()).collect();
            let (least, most) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
            assert!(
                most - least <= 1,
                "{connections}/{servers}/{threads}: {loads:?}"
            );
            if connections >= servers * threads {
                assert!(
                    dealt.iter().flatten().all(|&n| n > 0),
                    "{connections}/{servers}/{threads}: {dealt:?}"
                );
            }
        }
    }
}

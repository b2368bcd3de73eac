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
//!   each has a share of every server (`thread_of`), plus the main
//!   thread, which only draws the progress line.
//! - **The hot path** (`load/worker.rs`): one `read` per batch of
//!   answers, each checked against the exact bytes expected without
//!   copying; one `write` of the next questions, sliced from bytes built
//!   before the run. No allocation and no lock per request: send times
//!   live in a fixed ring per connection, latencies in an HDR histogram
//!   per thread, merged at the end.
//! - **Closed loop** (default): each connection keeps `--pipeline`
//!   questions in flight; each time k answers arrive, it asks k more.
//! - **Open loop** (`--rate`): questions are due at a constant total rate
//!   whether or not the server keeps up, and latency runs from when each
//!   question was *due*, not from when it could be sent (wrk2's correction
//!   for coordinated omission). Both latencies are reported, side by side.
//! - **`-n`:** one budget of questions for the whole run, shared by the
//!   threads (`load/budget.rs`): a thread whose servers are slow or dead
//!   keeps none of it.
//! - **Servers** (`servers.rs`): a fixed list (`--server`, `HOST -p`),
//!   dealt round robin to the first connections, or the servers a
//!   registry lists (`--registry`), picked as each connection opens.
//! - **Failures:** a connection that fails (refused, reset, closed by the
//!   server, or a question unanswered for `--timeout`) is counted by kind
//!   and reconnected with back-off (10 ms doubling to 1 s), to another
//!   server when there is one; its unanswered questions are asked again
//!   (questions are idempotent), so a server killed mid-run loses no
//!   answer: on the new connection with `-d`, by any connection with `-n`
//!   (the report counts them, `reasked`). A server that answers when
//!   nothing was asked, or floods the client, breaks the protocol: that
//!   connection is closed at once (what it answered stays wrong), and no
//!   loop reads more than a few buffers from one connection before it
//!   looks at the others and at the clock.
//! - **`--reconnect-every N`:** a connection asks at most N questions
//!   (`--pipeline` of them in flight at most), and once they are answered
//!   it closes and a new one opens at once in its place, to a server picked
//!   as any new connection's: no failure, no back-off, counted apart
//!   (`planned_reconnects`). A failure before its N answers is one as
//!   ever, and the new connection's N counts afresh. With `-n`, each
//!   connection takes its N questions from the budget as it opens (when
//!   N × connections ≤ n), so a run without failures opens exactly
//!   ⌈n / N⌉ connections.
//! - **The window:** answers, errors and reconnects are counted only in
//!   the measured window, after `--warmup`: every figure of the report
//!   covers the same time.
//! - **The end:** after `-d`, or once `-n` questions are answered, every
//!   connection shuts its sending side and reads until the server closes,
//!   so that the server sees clean closes, not resets.
//!
//! As a library, the engine is [`measure`]: it runs the load that an
//! [`Options`] describes (`client load`'s flags, without the command line)
//! and returns its [`LoadReport`]; a [`Watch`] is how the caller follows the
//! run and can end it. `client load` prints that report; `client compare`
//! and the criterion benches call [`measure`] in-process.

mod budget;
mod conn;
mod series;
mod tally;
mod worker;
mod workload;

pub use workload::Workload;

use std::io::IsTerminal as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zen_utils::duration::parse_duration;

use crate::event_loop::{connect_all, nanos, now_ns};
use crate::flags::{positive, positive_duration, positive_rate, positive_u64};
use crate::report::{ErrorCounts, Fairness, Interval, LoadReport, Percentiles, TargetReport};
use crate::servers::Picker;
use crate::target::Target;
use budget::Budget;
use conn::Conn;
use tally::{percentiles, Failure, Tally};
use worker::{Outcome, Progress, Shared, Worker};
use workload::{unescape, Script};
use zen_utils::deploy::registry::{RegistryAuth, RegistryUrl};

/// redis-benchmark's default, and the "many clients" of zen's experiments.
const DEFAULT_CONNECTIONS: usize = 50;
/// Long enough for a steady state, short enough to run often.
const DEFAULT_DURATION: Duration = Duration::from_secs(5);
/// [`DEFAULT_DURATION`] as `-d` writes it.
const DEFAULT_DURATION_FLAG: &str = "5s";
/// As long as `client ask` waits for an answer.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// [`DEFAULT_TIMEOUT`] as `--timeout` writes it.
const DEFAULT_TIMEOUT_FLAG: &str = "10s";
/// No warmup unless asked: then `-n N` asks exactly N questions and `-d D`
/// loads the server for exactly D. Connections are open before the clock
/// starts, so the first requests pay no handshake; `compare` passes
/// `--warmup 1s` for a steady state.
const DEFAULT_WARMUP: Duration = Duration::ZERO;
/// [`DEFAULT_WARMUP`] as `--warmup` writes it.
const DEFAULT_WARMUP_FLAG: &str = "0s";
/// A deeper pipeline than this is not a client any more; it also bounds
/// the memory of each connection's ring of send times.
const MAX_PIPELINE: usize = 65_536;
/// The most questions in flight in all (`-c` × `--pipeline`): each costs
/// 16 bytes of send times, so this bounds those rings to 256 MiB.
const MAX_IN_FLIGHT: u64 = 1 << 24;
/// Descriptors the client needs besides its connections: standard
/// streams, an epoll and a timer per thread, and some to spare.
const SPARE_DESCRIPTORS: u64 = 64;
/// The shortest `--every`: a line per 10 ms is already more than anyone
/// reads, and each interval costs the load threads a lock.
const MIN_EVERY: Duration = Duration::from_millis(10);
/// How long after an interval's end its line is printed: the load threads
/// count an answer a batch after it arrived.
const EVERY_LAG: Duration = Duration::from_millis(20);
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
          default_value = DEFAULT_DURATION_FLAG, value_parser = positive_duration)]
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
    /// across several servers, round robin (replaces HOST and -p; a
    /// connection that fails goes to another one)
    #[arg(long = "server", value_name = "HOST:PORT",
          conflicts_with_all = ["host", "port", "registry"])]
    servers: Vec<String>,

    /// Load the server this long before measuring (e.g. 1s); answers
    /// received during the warmup (with -n: to questions asked during it)
    /// are not counted
    #[arg(long, value_name = "DUR", default_value = DEFAULT_WARMUP_FLAG,
          value_parser = parse_duration)]
    warmup: Duration,

    /// A connect or a question unanswered this long is a timeout: the
    /// connection is closed, and its questions asked again on another
    /// (with -n, the run also stops when no answer at all comes for this
    /// long; with --registry, the longest wait for a first server)
    #[arg(long, value_name = "DUR", default_value = DEFAULT_TIMEOUT_FLAG,
          value_parser = positive_duration)]
    timeout: Duration,

    /// Event-loop threads (default: half the cores, leaving the rest to a
    /// server on the same machine; at most one per connection)
    #[arg(long, value_name = "N", value_parser = positive)]
    threads: Option<usize>,

    /// Close each connection once it has asked N questions and had their
    /// answers, and open a new one at once in its place, to a server picked
    /// as any new connection's (N=3 is the book's client: connect, three
    /// questions, close); counted apart from reconnects after a failure
    #[arg(long, value_name = "N", value_parser = positive_u64)]
    reconnect_every: Option<u64>,

    /// Print a line per this long of the run (e.g. 200ms) as it goes:
    /// answers, errors, questions asked again and p99, and each server's
    /// when there are several; with --json, on stderr, and the report
    /// carries them as its series
    #[arg(long, value_name = "DUR", value_parser = every)]
    every: Option<Duration>,

    /// Print the report as one JSON object
    #[arg(long)]
    json: bool,
}

/// A load to run: what `client load`'s flags say, without the command
/// line. [`Options::new`] has `client load`'s defaults; change the fields
/// that differ:
///
/// ```no_run
/// use client::load::{self, Length, Options, Watch};
///
/// # fn main() -> anyhow::Result<()> {
/// let options = Options {
///     connections: 4,
///     pipeline: 16,
///     length: Length::Requests(100_000),
///     ..Options::new("127.0.0.1:1060".parse()?)
/// };
/// let report = load::measure(&options, &mut Watch::default())?;
/// println!("{:.0} answers/s", report.rps);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The servers to load (`--server`, or `HOST -p PORT`): connection
    /// `i` first goes to server `i % servers.len()`, and after a failure to
    /// another one. At least one, unless `registry` is given.
    pub servers: Vec<SocketAddr>,
    /// Load the servers registered here instead (`--registry`; `servers`
    /// then empty): each connection picks one as it opens.
    pub registry: Option<RegistryUrl>,
    /// Credentials for the registry (`--registry-auth`): only the servers
    /// registered with them are loaded.
    pub registry_auth: Option<RegistryAuth>,
    /// Connections to keep busy (`-c`), at least 1.
    pub connections: usize,
    /// When the run ends (`-d` or `-n`).
    pub length: Length,
    /// Questions in flight per connection (`--pipeline`), 1 to 65,536.
    pub pipeline: usize,
    /// Open loop: the constant total rate, requests per second (`--rate`);
    /// `None` for the closed loop.
    pub rate: Option<f64>,
    /// What to ask, and what to expect back.
    pub workload: Workload,
    /// How long to load the server before measuring (`--warmup`).
    pub warmup: Duration,
    /// A connect or a question unanswered this long is a timeout
    /// (`--timeout`); with [`Length::Requests`], no answer at all for this
    /// long also ends the run.
    pub timeout: Duration,
    /// Event-loop threads (`--threads`); `None` for [`default_threads`].
    /// At most one per connection is used.
    pub threads: Option<usize>,
    /// `--every DUR`: count answers, errors, questions asked again and
    /// latencies per this long of the window, by target (the report's
    /// `series`; [`Watch::on_interval`] hears each interval as it ends);
    /// `None` counts none.
    pub every: Option<Duration>,
    /// `--reconnect-every N`: each connection closes (cleanly: no error, no
    /// back-off) once it has asked N questions and had their answers, and a
    /// new one opens at once in its place, to a server picked as any new
    /// connection's. `None` (the default): a connection lives until the end
    /// of the run or its failure. At least 1.
    pub reconnect_every: Option<u64>,
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Measure for this long, after the warmup (`-d`).
    Duration(Duration),
    /// Ask exactly this many questions after the warmup, all answered
    /// (`-n`): the report's `seconds` runs to the last answer.
    Requests(u64),
}

impl Options {
    /// `client load`'s defaults against `server`: 50 connections for 5
    /// seconds, one question in flight each, the aphorism table in turn,
    /// no warmup, a 10 s timeout, [`default_threads`] threads.
    pub fn new(server: SocketAddr) -> Self {
        Self {
            servers: vec![server],
            registry: None,
            registry_auth: None,
            connections: DEFAULT_CONNECTIONS,
            length: Length::Duration(DEFAULT_DURATION),
            pipeline: 1,
            rate: None,
            workload: Workload::Table,
            warmup: DEFAULT_WARMUP,
            timeout: DEFAULT_TIMEOUT,
            threads: None,
            every: None,
            reconnect_every: None,
        }
    }

    /// `-n`, if the run asks a number of questions.
    fn requests(&self) -> Option<u64> {
        match self.length {
            Length::Requests(requests) => Some(requests),
            Length::Duration(_) => None,
        }
    }

    /// Refuses what the command line's parsers refuse: a library caller
    /// gets no clap in front of [`measure`].
    fn check(&self) -> anyhow::Result<()> {
        ensure!(
            self.servers.is_empty() == self.registry.is_some(),
            "give either servers to load or a registry"
        );
        ensure!(self.connections > 0, "connections must be at least 1");
        ensure!(
            (1..=MAX_PIPELINE).contains(&self.pipeline),
            "the pipeline must be 1 to {MAX_PIPELINE} questions deep, not {}",
            self.pipeline
        );
        match self.length {
            Length::Duration(duration) => {
                ensure!(!duration.is_zero(), "the duration must be more than 0")
            }
            Length::Requests(requests) => ensure!(requests > 0, "requests must be at least 1"),
        }
        ensure!(!self.timeout.is_zero(), "the timeout must be more than 0");
        if let Some(rate) = self.rate {
            ensure!(
                rate.is_finite() && rate > 0.0,
                "the rate must be a positive number, not {rate}"
            );
        }
        ensure!(self.threads != Some(0), "threads must be at least 1");
        ensure!(
            self.every.is_none_or(|every| every >= MIN_EVERY),
            "every must be at least {}",
            zen_utils::duration::format_duration(MIN_EVERY)
        );
        ensure!(
            self.reconnect_every != Some(0),
            "reconnect-every must be at least 1"
        );
        Ok(())
    }
}

/// Runs the load and prints the report. The exit code is 0 when the run
/// completed with no error; with errors, when it stopped early, or when no
/// answer at all arrived in the measured window (not a measurement: the
/// server answers another protocol, say, or is stuck), the report is
/// printed all the same and the exit code is 1. With `--registry`, servers
/// come and go: a connection that failed, its questions asked again
/// elsewhere, is counted in the report but fails no run; a wrong answer
/// does.
pub(crate) fn run(args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let options = args.options()?;
    let interrupted = interrupt_flag();
    // The lines go to stdout before the report, or to stderr when stdout
    // is one JSON object.
    let json = args.json;
    let report = measure(
        &options,
        &mut Watch {
            interrupted: &interrupted,
            progress_line: options.every.is_none(),
            on_window: &mut |_| {},
            on_interval: &mut |interval| {
                if json {
                    zen_utils::log_line!("{interval}");
                } else {
                    use std::io::Write as _;
                    let _ = writeln!(std::io::stdout(), "{interval}");
                }
            },
        },
    )?;
    crate::report::print(&report, args.json)?;
    let errors = &report.errors_by_kind;
    let failing = match options.registry {
        Some(_) => errors.wrong_answer + errors.error_answer + errors.unasked_answer,
        None => report.errors,
    };
    let clean = failing == 0 && report.stopped_early.is_none();
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
/// it can end it. [`Watch::default`] watches nothing: no progress line,
/// never interrupted, nothing called at the window's edges.
pub struct Watch<'a> {
    /// Set (by a signal handler, see [`interrupt_flag`]) to end the run
    /// early; the report is made all the same.
    pub interrupted: &'a AtomicBool,
    /// Draw the progress line on stderr, when stderr is a terminal.
    pub progress_line: bool,
    /// Called as the measured window opens and as it closes, within a
    /// fraction of a millisecond: `client compare` reads the server's CPU
    /// time there, so that the warmup is not charged to the answers.
    pub on_window: &'a mut dyn FnMut(Window),
    /// With [`Options::every`]: called with each interval of the window
    /// shortly after it ends (the last ones as the run ends).
    pub on_interval: &'a mut dyn FnMut(&Interval),
}

impl Default for Watch<'_> {
    fn default() -> Self {
        static NEVER: AtomicBool = AtomicBool::new(false);
        Self {
            interrupted: &NEVER,
            progress_line: false,
            // A closure that captures nothing has no size: leaking its box
            // allocates nothing.
            on_window: Box::leak(Box::new(|_| {})),
            on_interval: Box::leak(Box::new(|_: &Interval| {})),
        }
    }
}

/// An edge of the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The warmup is over: answers count from now.
    Open,
    /// The window is over (at `-d`, or when the run ended).
    Close,
}

/// A flag that the first Ctrl-C sets, to end a run with its report; a
/// second Ctrl-C exits at once (status 130). Register it once per process.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    // Registered in this order, the shutdown sees the flag still unset on
    // the first signal and set on the second.
    let sigint = signal_hook::consts::SIGINT;
    let _ = signal_hook::flag::register_conditional_shutdown(sigint, 130, Arc::clone(&interrupted));
    let _ = signal_hook::flag::register(sigint, Arc::clone(&interrupted));
    interrupted
}

/// Runs the load described by `options` and returns its report: `client
/// load` without the printing, for `client compare` and the benches to
/// call in-process. The calling thread watches the run (see [`Watch`]);
/// the load runs on threads of its own, started and joined here.
///
/// # Errors
/// When the run could not be made at all: options out of range (as the
/// command line would refuse them), a workload that cannot be asked, more
/// connections than this process may open, or no connection opened. What
/// went wrong during the run is in the report.
pub fn measure(options: &Options, watching: &mut Watch<'_>) -> anyhow::Result<LoadReport> {
    options.check()?;
    let workload = Script::new(&options.workload, options.pipeline)?;
    check_in_flight(options.connections, options.pipeline)?;
    check_descriptors(options.connections)?;
    let picker = match &options.registry {
        Some(url) => Picker::registry(url, options.registry_auth.as_ref(), options.timeout)?,
        None => Picker::fixed(options.servers.clone()),
    };
    let fixed = options.servers.len();

    // A fixed list is dealt round robin; a registry's servers are picked
    // (the last of them may have left since it was read: then none is).
    let picked: Vec<(usize, SocketAddr)> = (0..options.connections)
        .map(|slot| match fixed {
            0 => picker.pick(None),
            _ => {
                picker.take(slot % fixed);
                Some((slot % fixed, options.servers[slot % fixed]))
            }
        })
        .collect::<Option<_>>()
        .ok_or_else(|| {
            let url = options.registry.as_ref().map(RegistryUrl::to_string);
            anyhow!(
                "no server registered in {} any more",
                url.unwrap_or_default()
            )
        })?;
    let addrs: Vec<SocketAddr> = picked.iter().map(|&(_, addr)| addr).collect();
    // Each target's figures are kept but with one fixed server, whose
    // figures are the run's.
    let by_target = fixed != 1;
    // A connect that fails before the run is counted only if the window
    // opens at once: what happens during a warmup is not counted.
    let mut initial_errors = Tally::new(by_target);
    let mut conns = Vec::with_capacity(addrs.len());
    let mut first_failure = None;
    let connected = connect_all(&addrs, options.timeout).context("cannot start connecting")?;
    for (slot, result) in connected.into_iter().enumerate() {
        let (target, addr) = picked[slot];
        let mut conn = Conn::new(slot, addr, target, options.pipeline);
        if fixed > 1 {
            conn.home = Some((target, addr));
        }
        match result {
            Ok((stream, _)) => conn.stream = Some(stream),
            Err(error) => {
                let failure = Failure::of(&error);
                if options.warmup.is_zero() {
                    initial_errors.error(failure, target, 0);
                }
                if matches!(failure, Failure::Refused | Failure::Timeout) {
                    picker.pass_over(target, options.timeout);
                }
                conn.avoid = Some(addr);
                first_failure.get_or_insert((addr, error));
            }
        }
        conns.push(conn);
    }
    if conns.iter().all(|conn| conn.stream.is_none()) {
        let (addr, error) = first_failure.expect("at least one connection");
        return Err(anyhow!("cannot connect to {addr}: {error}"));
    }

    let threads = options
        .threads
        .unwrap_or_else(default_threads)
        .min(options.connections);
    // The clock starts once the connections are open: connecting (up to
    // --timeout) is no part of the run, nor of the open loop's schedule.
    let start = now_ns();
    let measure_start = start + nanos(options.warmup);
    let shared = Arc::new(Shared {
        workload,
        pipeline: options.pipeline,
        timeout: nanos(options.timeout),
        rate: options.rate,
        connections: options.connections,
        start,
        measure_start,
        end: match options.length {
            Length::Requests(_) => None,
            Length::Duration(duration) => Some(measure_start.saturating_add(nanos(duration))),
        },
        budget: options.requests().map(Budget::new),
        reconnect_every: options.reconnect_every,
        reserve: match (options.requests(), options.reconnect_every) {
            (Some(requests), Some(every)) => {
                every.saturating_mul(options.connections as u64) <= requests
            }
            _ => false,
        },
        picker,
        stop: AtomicBool::new(false),
    });
    let series: Vec<series::Shared> = match options.every {
        Some(every) => (0..threads)
            .map(|_| series::Series::shared(measure_start, nanos(every)))
            .collect(),
        None => Vec::new(),
    };

    let mut shares: Vec<Vec<Conn>> = (0..threads).map(|_| Vec::new()).collect();
    for conn in conns {
        shares[thread_of(conn.slot, options.connections, fixed.max(1), threads)].push(conn);
    }
    let (done_tx, done_rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(threads);
    let mut progress = Vec::with_capacity(threads);
    for (t, share) in shares.into_iter().enumerate() {
        let answers = Arc::new(Progress::default());
        progress.push(Arc::clone(&answers));
        let shared = Arc::clone(&shared);
        let done = done_tx.clone();
        let counting = series.get(t).cloned();
        let handle = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || {
                let outcome =
                    Worker::new(shared, share, by_target, answers, counting).and_then(Worker::run);
                let _ = done.send(());
                outcome
            })
            .context("cannot start a load thread")?;
        handles.push(handle);
    }
    drop(done_tx);

    let mut lines = Lines {
        series: &series,
        every: options.every.map(nanos),
        by_target,
        printed: 0,
    };
    let stopped_early = watch(
        options, watching, &shared, &progress, &done_rx, threads, &mut lines,
    );

    let mut tally = initial_errors;
    let mut answers_per_conn = vec![0; options.connections];
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
    let window = {
        let ended = match (shared.end, &stopped_early) {
            (Some(end), None) => end,
            (Some(end), Some(_)) => stopped_at.min(end),
            (None, _) if tally.last_answer > 0 => tally.last_answer,
            (None, _) => stopped_at,
        };
        ended.saturating_sub(measure_start)
    };
    // The intervals not printed yet, and the whole series for the report.
    let count = lines
        .every
        .map_or(0, |every| series::intervals(&series, every, window));
    let targets = shared.picker.known();
    let all: Vec<Interval> = (0..count)
        .map(|i| series::interval(&series, i, &targets, by_target))
        .collect();
    for interval in all.iter().skip(lines.printed) {
        (watching.on_interval)(interval);
    }
    let mut report = report(
        options,
        &shared,
        &tally,
        &answers_per_conn,
        threads,
        window,
        stopped_early,
    );
    report.every_seconds = options.every.map(|every| every.as_secs_f64());
    report.series = all;
    Ok(report)
}

/// The intervals printed while the run goes on.
struct Lines<'a> {
    series: &'a [series::Shared],
    /// `--every`, nanoseconds.
    every: Option<u64>,
    by_target: bool,
    /// Intervals already given to `on_interval`.
    printed: usize,
}

impl Lines<'_> {
    /// When the next interval to print ends, if intervals are kept.
    fn next_end(&self, shared: &Shared) -> Option<u64> {
        let every = self.every?;
        Some(shared.measure_start + every * (self.printed as u64 + 1))
    }

    /// When the next interval is due to be printed: `EVERY_LAG` after its
    /// end, so that every thread has handed it over.
    fn next_due(&self, shared: &Shared) -> Option<u64> {
        Some(self.next_end(shared)? + nanos(EVERY_LAG))
    }

    /// Gives `on_interval` every interval that ended by `now` (inside the
    /// window).
    fn pass(&mut self, now: u64, shared: &Shared, on_interval: &mut dyn FnMut(&Interval)) {
        while let Some(end) = self.next_end(shared) {
            let inside = shared.end.is_none_or(|window_end| end <= window_end);
            if now < end + nanos(EVERY_LAG) || !inside {
                return;
            }
            let targets = shared.picker.known();
            on_interval(&series::interval(
                self.series,
                self.printed,
                &targets,
                self.by_target,
            ));
            self.printed += 1;
        }
    }
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
    let limit = zen_utils::serve::listener::raise_fd_limit()
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

/// How many load threads a run gets unless told: half the cores, at least
/// one. zen's servers are loaded over loopback, so the server needs the
/// other half. One load thread does about the same work per request as a
/// one-thread server (a `read`, a `write`, a share of an `epoll_wait`), so
/// one load thread keeps a one-thread server busy. On a 2-core machine a
/// second load thread only competes with such a server for the CPU: the
/// answer rate stays the same or falls, and the tail latency grows, the
/// client's own threads being preempted. A server that uses every core
/// answers faster with a second load thread, and a server on another
/// machine leaves the client every core: both want [`Options::threads`]
/// (`--threads`) set to more.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (usize::from(cores) / 2).max(1))
}

/// The main thread's job during the run: draw the progress line on a
/// terminal, stop the run when interrupted, and with `-n` stop it when no
/// answer has come for `--timeout` (a server gone for good would otherwise
/// keep it reconnecting for ever); call `on_window` at the edges of the
/// measured window. Returns why the run stopped early, if it did.
fn watch(
    options: &Options,
    watching: &mut Watch<'_>,
    shared: &Shared,
    progress: &[Arc<Progress>],
    done: &mpsc::Receiver<()>,
    threads: usize,
    lines: &mut Lines<'_>,
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
    let stall_after = options
        .timeout
        .saturating_add(options.rate.map_or(Duration::ZERO, |rate| {
            Duration::try_from_secs_f64(options.connections as f64 / rate).unwrap_or(Duration::MAX)
        }));
    let mut window = WindowEdges::new(shared);
    let started = Instant::now();
    let (mut last_total, mut last_time) = (0, started);
    let (mut last_heard, mut last_progress) = (0, started);
    let mut finished = 0;
    let mut stopped = None;
    while finished < threads {
        let until = |at: u64| Duration::from_nanos(at.saturating_sub(now_ns()));
        let mut wait = window.next().map_or(TICK, |at| TICK.min(until(at)));
        if let Some(due) = lines.next_due(shared) {
            wait = wait.min(until(due));
        }
        let received = done.recv_timeout(wait);
        window.pass(now_ns(), watching.on_window);
        lines.pass(now_ns(), shared, watching.on_interval);
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
            } else if options.requests().is_some() && now - last_progress > stall_after {
                stopped = Some(format!(
                    "no answer for {}",
                    zen_utils::duration::format_duration(options.timeout)
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
    /// The flags as [`Options`]: the escapes of `--send` and `--expect`
    /// read, the servers resolved.
    pub(crate) fn options(&self) -> anyhow::Result<Options> {
        let workload = match (&self.question, &self.send, &self.expect) {
            (_, Some(send), Some(expect)) => Workload::Fixed {
                send: unescape(send)?,
                expect: unescape(expect)?,
            },
            (Some(question), _, _) => Workload::Question(question.clone()),
            _ => Workload::Table,
        };
        Ok(Options {
            servers: match self.target.registry {
                Some(_) => Vec::new(),
                None => self.servers()?,
            },
            registry: self.target.registry.clone(),
            registry_auth: self.target.registry_auth.clone(),
            connections: self.connections,
            length: match self.requests {
                Some(requests) => Length::Requests(requests),
                None => Length::Duration(self.duration),
            },
            pipeline: self.pipeline,
            rate: self.rate,
            workload,
            warmup: self.warmup,
            timeout: self.timeout,
            threads: self.threads,
            every: self.every,
            reconnect_every: self.reconnect_every,
        })
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
}

/// The report of a run, from its merged tally.
fn report(
    options: &Options,
    shared: &Shared,
    tally: &Tally,
    answers_per_conn: &[u64],
    threads: usize,
    window: u64,
    stopped_early: Option<String>,
) -> LoadReport {
    // Every server of a fixed list; every server a connection went to,
    // from a registry.
    let servers = shared.picker.known();
    let seconds = window as f64 / 1e9;
    let errors: ErrorCounts = tally.errors;
    let rate = shared.rate;
    let latency = percentiles(if rate.is_some() {
        &tally.corrected
    } else {
        &tally.latency
    });
    LoadReport {
        connections: options.connections,
        requests: tally.answers,
        seconds,
        rps: if seconds > 0.0 {
            tally.answers as f64 / seconds
        } else {
            0.0
        },
        errors: errors.total(),
        served_conns: answers_per_conn.iter().filter(|&&n| n > 0).count(),
        latency_us: latency,
        uncorrected_latency_us: rate.map(|_| percentiles(&tally.latency)),
        errors_by_kind: errors,
        fairness: Fairness::of(answers_per_conn),
        reconnects: tally.reconnects,
        planned_reconnects: tally.planned_reconnects,
        reconnect_every: options.reconnect_every,
        reasked: tally.reasked,
        pipeline: options.pipeline,
        threads,
        rate,
        warmup_seconds: options.warmup.as_secs_f64(),
        workload: shared.workload.description().to_owned(),
        targets: servers.iter().map(SocketAddr::to_string).collect(),
        registry: options.registry.as_ref().map(RegistryUrl::to_string),
        stopped_early,
        every_seconds: None,
        series: Vec::new(),
        per_target: if options.servers.len() == 1 {
            vec![TargetReport {
                target: servers[0].to_string(),
                requests: tally.answers,
                latency_us: latency,
            }]
        } else {
            servers
                .iter()
                .enumerate()
                .map(|(target, server)| {
                    let share = tally.per_target.get(target);
                    TargetReport {
                        target: server.to_string(),
                        requests: share.map_or(0, |share| share.answers),
                        latency_us: share
                            .map_or_else(Percentiles::default, |share| percentiles(&share.latency)),
                    }
                })
                .collect()
        },
    }
}

fn every(text: &str) -> Result<Duration, String> {
    let every = parse_duration(text).map_err(|error| error.to_string())?;
    if every < MIN_EVERY {
        return Err(format!(
            "must be at least {}",
            zen_utils::duration::format_duration(MIN_EVERY)
        ));
    }
    Ok(every)
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
    use clap::Parser;

    fn parse(flags: &[&str]) -> LoadArgs {
        #[derive(Parser)]
        struct Load {
            #[command(flatten)]
            args: LoadArgs,
        }
        let words = ["load"].iter().chain(flags);
        Load::try_parse_from(words).unwrap().args
    }

    #[test]
    fn options_default_as_the_flags_do() {
        let server: SocketAddr = "127.0.0.1:1060".parse().unwrap();
        assert_eq!(parse(&[]).options().unwrap(), Options::new(server));
        let options = parse(&[
            "--server",
            "127.0.0.1:1",
            "--server",
            "127.0.0.1:2",
            "-n",
            "7",
            "--send",
            r"A\r\n",
            "--expect",
            "B",
        ])
        .options()
        .unwrap();
        assert_eq!(options.servers.len(), 2);
        assert_eq!(options.length, Length::Requests(7));
        assert_eq!(options.reconnect_every, None);
        assert_eq!(
            options.workload,
            Workload::Fixed {
                send: b"A\r\n".to_vec(),
                expect: b"B".to_vec()
            }
        );
    }

    #[test]
    fn reconnect_every_is_at_least_one() {
        let options = parse(&["--reconnect-every", "3"]).options().unwrap();
        assert_eq!(options.reconnect_every, Some(3));
        let huge = parse(&["--reconnect-every", "18446744073709551615"]);
        assert_eq!(huge.reconnect_every, Some(u64::MAX));
        #[derive(Parser)]
        struct Load {
            #[command(flatten)]
            args: LoadArgs,
        }
        let zero = Load::try_parse_from(["load", "--reconnect-every", "0"])
            .err()
            .unwrap();
        assert!(zero.to_string().contains("must be at least 1"), "{zero}");
    }

    #[test]
    fn options_the_flags_would_refuse_are_refused() {
        let good = Options::new("127.0.0.1:1060".parse().unwrap());
        assert!(good.check().is_ok());
        for bad in [
            Options {
                servers: vec![],
                ..good.clone()
            },
            Options {
                connections: 0,
                ..good.clone()
            },
            Options {
                pipeline: 0,
                ..good.clone()
            },
            Options {
                pipeline: MAX_PIPELINE + 1,
                ..good.clone()
            },
            Options {
                length: Length::Requests(0),
                ..good.clone()
            },
            Options {
                length: Length::Duration(Duration::ZERO),
                ..good.clone()
            },
            Options {
                timeout: Duration::ZERO,
                ..good.clone()
            },
            Options {
                rate: Some(f64::NAN),
                ..good.clone()
            },
            Options {
                threads: Some(0),
                ..good.clone()
            },
            Options {
                reconnect_every: Some(0),
                ..good.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

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

//! `client compare`: every server through every experiment, side by side.
//!
//! ```text
//!  for each experiment (experiments.rs)          for each server (lineup.rs)
//!  ───────────────────────────────────────────────────────────────────────────
//!  start the binary with -p 0 ─► read `listening on IP:PORT`       process.rs
//!  [hold idle connections: `client hold`'s engine, on a thread]    hold.rs
//!  `client load`'s engine, in-process ─► /proc CPU time at the      load.rs
//!        edges of the measured window, RSS at the end
//!  SIGTERM ─► exit 0 and a `summary:` line, or flagged
//!  ───────────────────────────────────────────────────────────────────────────
//!  a table per experiment on stdout; results.json, report.md     tables.rs
//!  and SVG charts in --out                                        charts.rs
//! ```
//!
//! Each run gets a fresh server process, so that every table row starts
//! from the same place and the server's own summary counts that run only.
//! The load runs in this process (the same engine as `client load`, called
//! as a function), on half the cores by default, next to the server, which
//! runs at a lower priority so that its threads never preempt the load
//! (`process::SERVER_NICE`).

mod ask_peers;
mod charts;
mod checks;
mod dead_server;
mod experiments;
mod html;
mod lineup;
mod process;
mod results;
mod tables;

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Parser};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use signal_hook::consts::{SIGINT, SIGTERM};
use zen_utils::config::parse_duration;

use crate::flags::{positive, positive_duration};
use crate::hold::Holding;
use crate::load::{self, LoadArgs, Options, Watch, Window};
use crate::report::LoadReport;
use experiments::{Experiment, Sizes, Take};
use lineup::{Contender, Kind, DEFAULT_POOL_WORKERS, REDIS};
use process::{Server, Usage};
use results::{
    ExperimentResult, IdleMemory, Machine, Results, RunResult, ServerUsage, Settings, Status,
};

/// `client load --timeout` in every run: longer than any run, so that a
/// connection left waiting the whole run (srv-single's 63 others, the
/// pool's queue) is reported as not served, never as a timeout error.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the idle connections of C10K get to connect: thousands of
/// connects at once overflow the accept queue, and the kernel's SYN
/// retries take seconds to get them all in.
const HOLD_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server gets to accept every idle connection of C10K before
/// its memory is read anyway.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(20);
/// A server that accepted none of the idle connections still waiting for
/// this long is taken to have accepted all it will. Connects that overflowed
/// the accept queue come back with the kernel's SYN-ACK retries, after 1,
/// 2, then 4 s, so this outlasts two of them.
const ACCEPT_STALL: Duration = Duration::from_secs(5);
/// After the last accept, a moment for the server to set up what each
/// connection costs (a thread's stack, a task) before its memory is read.
const SETTLE: Duration = Duration::from_millis(300);
/// Idle connections are held this much longer than the load runs, so that
/// they outlast it.
const HOLD_MARGIN: Duration = Duration::from_millis(1500);

#[derive(Args, Debug)]
pub(crate) struct CompareArgs {
    /// Shorter runs (0.3 s each, 2,000 idle connections for C10K): about a
    /// minute in all on 2 cores. Without it, 2 s runs and 10,000 idle
    /// connections: about four and a half minutes
    #[arg(long)]
    quick: bool,

    /// Run only these experiments: one-client, many-clients, slow-backend,
    /// cpu-bound, blocking, pipelining, slow-clients, c10k, work-stealing,
    /// short-connections, dead-server, ask-peers
    #[arg(long, value_name = "EXP[,EXP]", value_delimiter = ',')]
    only: Vec<String>,

    /// Run only these servers: a binary (srv-single, srv-threaded,
    /// srv-poll, srv-async, srv-hybrid, redis-server) or one mode
    /// (srv-threaded-pool, srv-threaded-per-conn, srv-hybrid-ws,
    /// srv-hybrid-per-core) [default: all, and redis-server if it is on
    /// the PATH]
    #[arg(long, value_name = "NAME[,NAME]", value_delimiter = ',')]
    servers: Vec<String>,

    /// Write results.json, report.md and the SVG charts into this directory
    #[arg(long, value_name = "DIR", default_value = "zen-report")]
    out: PathBuf,

    /// Where the server binaries are [default: the directory of this
    /// client binary, where `cargo build --release` puts them all]
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,

    /// Measure each run for this long, instead of --quick's or the full
    /// run's
    #[arg(long, value_name = "DUR", value_parser = positive_duration)]
    duration: Option<Duration>,

    /// Load each server this long before measuring, instead of --quick's
    /// or the full run's
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    warmup: Option<Duration>,

    /// Threads in srv-threaded's pool: fewer than the 64 connections of
    /// the many-clients experiments, so that the pool's limit shows
    #[arg(long, value_name = "N", default_value_t = DEFAULT_POOL_WORKERS, value_parser = positive)]
    pool_workers: usize,

    /// Idle connections in the C10K experiment [default: 10000, or 2000
    /// with --quick]
    #[arg(long, value_name = "N", value_parser = positive)]
    c10k: Option<usize>,
}

/// Runs the comparison and writes the report. Exits 1 (after writing it)
/// when a run failed or a server did not exit cleanly.
pub(crate) fn run(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let base = if args.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    let sizes = Sizes {
        duration: args.duration.unwrap_or(base.duration),
        warmup: args.warmup.unwrap_or(base.warmup),
        c10k: args.c10k.unwrap_or(base.c10k),
        pool_workers: args.pool_workers,
    };
    // Experiments 11 and 12 run apart: their rows are ways to reach three
    // backends, and pairs of servers, not one server each.
    let wanted = |key: &str| args.only.is_empty() || args.only.iter().any(|name| name == key);
    let (dead_server_wanted, ask_peers_wanted) = (wanted(dead_server::KEY), wanted(ask_peers::KEY));
    let only: Vec<String> = args
        .only
        .iter()
        .filter(|name| *name != dead_server::KEY && *name != ask_peers::KEY)
        .cloned()
        .collect();
    let experiments = if !args.only.is_empty() && only.is_empty() {
        Vec::new()
    } else {
        select_experiments(experiments::all(&sizes), &only)?
    };
    let redis = match lineup::find_on_path(REDIS) {
        Some(path) => process::ensure_runs(&path).map(|()| path).ok(),
        None => None,
    };
    let contenders = lineup::select(
        lineup::everyone(sizes.pool_workers),
        &args.servers,
        redis.is_some(),
    )?;
    let bin_dir = lineup::bin_dir(args.bin_dir.as_deref())?;
    lineup::check_binaries(&contenders, &bin_dir)?;
    check_writable(&args.out)?;
    // 10,000 idle connections need 10,000 descriptors here too.
    let _ = zen_utils::listener::raise_fd_limit();

    // srv-uring needs io_uring, which a kernel or a container's seccomp
    // profile may refuse: tried once, and its rows then say why not.
    let uring_refused = contenders
        .iter()
        .find(|contender| contender.bin == "srv-uring" && !experiments.is_empty())
        .and_then(|contender| uring_refusal(&bin_dir.join(contender.bin)));

    let mut plan: Vec<(&Experiment, &Contender, Take)> = Vec::new();
    for experiment in &experiments {
        for contender in contenders
            .iter()
            .filter(|c| c.takes_part_in(experiment.key))
        {
            match (experiment.takes)(contender, &sizes) {
                Take::Absent => {}
                Take::Run if contender.bin == "srv-uring" && uring_refused.is_some() => {
                    plan.push((
                        experiment,
                        contender,
                        Take::Skip(uring_refused.unwrap_or_default()),
                    ));
                }
                take => plan.push((experiment, contender, take)),
            }
        }
    }
    let runs = plan.iter().filter(|(.., take)| *take == Take::Run).count();
    let progress = Progress::new(runs);
    let interrupted = stop_flag();
    let started = Instant::now();
    let mut results = Results {
        machine: Machine::now(),
        settings: Settings {
            quick: args.quick,
            duration_seconds: sizes.duration.as_secs_f64(),
            warmup_seconds: sizes.warmup.as_secs_f64(),
            pool_workers: sizes.pool_workers,
            c10k_connections: sizes.c10k,
            bin_dir: bin_dir.display().to_string(),
            load_threads: load::default_threads(),
            load_timeout_seconds: LOAD_TIMEOUT.as_secs_f64(),
        },
        experiments: Vec::new(),
        dead_server: None,
        ask_peers: None,
        interrupted: false,
    };
    progress.say(&format!(
        "client compare: {} experiments, {} servers, {runs} runs; servers from {}",
        experiments.len(),
        contenders.len(),
        bin_dir.display()
    ));
    for experiment in &experiments {
        let mut runs = Vec::new();
        for (_, contender, take) in plan.iter().filter(|(e, ..)| std::ptr::eq(*e, experiment)) {
            if interrupted.load(Ordering::Relaxed) {
                break;
            }
            let run = match take {
                Take::Skip(why) => skipped(experiment, contender, why),
                _ => {
                    progress.start(experiment, contender);
                    let program = match contender.kind {
                        Kind::Redis => redis.clone().unwrap_or_default(),
                        _ => bin_dir.join(contender.bin),
                    };
                    let run = run_one(&program, experiment, contender, &interrupted);
                    progress.finish(experiment, &run);
                    run
                }
            };
            runs.push(run);
        }
        // Only the servers that ran are judged: a check on one not run is
        // "not measured", never failed.
        let checks = experiment
            .checks
            .iter()
            .map(|check| check.evaluate(&runs, &results.experiments))
            .collect();
        let result = ExperimentResult {
            number: experiment.number,
            key: experiment.key.to_owned(),
            title: experiment.title.to_owned(),
            lesson: experiment.lesson.clone(),
            runs,
            checks,
        };
        progress.print(&tables::for_terminal(&result));
        results.experiments.push(result);
        if interrupted.load(Ordering::Relaxed) {
            results.interrupted = true;
            break;
        }
    }
    if dead_server_wanted && !interrupted.load(Ordering::Relaxed) {
        // The backends are one model: the first server named, srv-poll by
        // default.
        let model = contenders
            .iter()
            .find(|contender| contender.kind != Kind::Redis)
            .filter(|_| !args.servers.is_empty())
            .map_or("srv-poll", |contender| contender.bin);
        let duration = if args.quick {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(6)
        };
        progress.say(&format!(
            "client compare: {} with {model} backends, {:.0} s each way",
            dead_server::TITLE,
            duration.as_secs_f64()
        ));
        let result = dead_server::run(&bin_dir.join(model), duration, &interrupted);
        progress.print(&format!(
            "{}. {}\n{}{}",
            dead_server::NUMBER,
            dead_server::TITLE,
            dead_server::table(&result),
            checks::list(&result.checks)
        ));
        results.dead_server = Some(result);
    }
    if ask_peers_wanted && !interrupted.load(Ordering::Relaxed) {
        // Long enough for srv-single's deadlock to break several times.
        let duration = if args.quick {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(3)
        };
        progress.say(&format!(
            "client compare: {}, {:.0} s per model",
            ask_peers::TITLE,
            duration.as_secs_f64()
        ));
        let result = ask_peers::run(&bin_dir, &contenders, duration, &interrupted);
        progress.print(&format!(
            "{}. {}\n{}{}",
            ask_peers::NUMBER,
            ask_peers::TITLE,
            ask_peers::table(&result),
            checks::list(&result.checks)
        ));
        results.ask_peers = Some(result);
    }
    progress.done();

    write_report(&results, &args.out)?;
    zen_utils::log_line!(
        "client compare: done in {:.0}s; wrote {}",
        started.elapsed().as_secs_f64(),
        args.out.join("report.md").display()
    );
    let problems: Vec<String> = results
        .experiments
        .iter()
        .flat_map(|experiment| {
            experiment.runs.iter().filter_map(move |run| {
                let unclean = run.exit.as_ref().is_some_and(|exit| !exit.clean);
                (run.status == Status::Failed || unclean)
                    .then(|| format!("{} in {}", run.row_name(), experiment.key))
            })
        })
        .collect();
    if !problems.is_empty() {
        zen_utils::log_line!(
            "client compare: failed or not stopped cleanly (see the report): {}",
            problems.join(", ")
        );
    }
    Ok(if problems.is_empty() && !results.interrupted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A flag that the first SIGINT (Ctrl-C) or SIGTERM sets: no other run
/// starts, the load of the run in progress stops at once, its server is
/// stopped like any other, and the report of what was measured is
/// written. A second of either exits at once (status 130 or 143), with no
/// report; the kernel then stops the servers (see `process::spawn_piped`).
/// Register it once per process.
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered in this order, the shutdown sees the flag still unset
        // on the first signal and set on the second.
        let _ = signal_hook::flag::register_conditional_shutdown(
            signal,
            128 + signal,
            Arc::clone(&stop),
        );
        let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
    }
    stop
}

/// Creates `out` and makes sure a file can be written there, before any
/// server is started: the report is written at the end, and a comparison
/// takes minutes whose results would all be lost.
fn check_writable(out: &Path) -> anyhow::Result<()> {
    let cannot = || format!("cannot write the report in {}", out.display());
    std::fs::create_dir_all(out).with_context(cannot)?;
    let probe = out.join(format!(".client-compare-{}", std::process::id()));
    let written = std::fs::write(&probe, b"");
    let _ = std::fs::remove_file(&probe);
    written.with_context(cannot)
}

/// The experiments `--only` names, in their own order.
fn select_experiments(all: Vec<Experiment>, only: &[String]) -> anyhow::Result<Vec<Experiment>> {
    for name in only {
        if !all.iter().any(|experiment| experiment.key == name) {
            let keys: Vec<&str> = all.iter().map(|experiment| experiment.key).collect();
            bail!("no experiment called {name:?} (known: {})", keys.join(", "));
        }
    }
    Ok(all
        .into_iter()
        .filter(|experiment| only.is_empty() || only.iter().any(|name| name == experiment.key))
        .collect())
}

fn skipped(experiment: &Experiment, contender: &Contender, why: &str) -> RunResult {
    RunResult {
        server: contender.id.to_owned(),
        label: contender.label.clone(),
        status: Status::Skipped,
        note: Some(why.to_owned()),
        server_command: server_command(contender, experiment),
        load_command: load_command(experiment, contender),
        background_command: experiment
            .background
            .as_ref()
            .map(|plan| command_of(plan.flags())),
        load: None,
        background: None,
        hold: None,
        server_usage: None,
        exit: None,
    }
}

/// One server through one load: start it, hold, load, measure, stop.
fn run_one(
    program: &Path,
    experiment: &Experiment,
    contender: &Contender,
    interrupted: &AtomicBool,
) -> RunResult {
    let mut run = skipped(experiment, contender, "");
    run.note = None;
    let started = match contender.kind {
        Kind::Redis => Server::start_redis(program),
        _ => Server::start_zen(program, &server_args(contender, experiment)),
    };
    let server = match started {
        Ok(server) => server,
        Err(error) => {
            run.status = Status::Failed;
            run.note = Some(format!("{error:#}"));
            return run;
        }
    };
    let measured = measure(&server, experiment, contender, interrupted);
    run.exit = Some(server.stop());
    match measured {
        Ok((load, hold, usage, background)) => {
            // As `client load` exits 1 for it: a run with no answer at all
            // measured nothing (a server stuck, or answering another
            // protocol), and a row of zeros would pass for a slow server.
            // A run cut short by Ctrl-C may not have had the time, and
            // srv-single behind idle connections held first never gets to
            // the busy clients: that is the experiment's lesson, not a
            // fault.
            let starved_by_design = experiment.hold.is_some() && contender.bin == "srv-single";
            if load.requests == 0 && load.stopped_early.is_none() && !starved_by_design {
                run.status = Status::Failed;
                run.note = Some(format!(
                    "no answer arrived in the measured window ({:.1} s)",
                    load.seconds
                ));
            } else {
                run.status = Status::Ok;
            }
            run.load = Some(load);
            run.background = background;
            run.hold = hold;
            run.server_usage = Some(usage);
        }
        Err(error) => {
            run.status = Status::Failed;
            run.note = Some(format!("{error:#}"));
        }
    }
    run
}

type Measured = (
    LoadReport,
    Option<crate::report::HoldReport>,
    ServerUsage,
    Option<LoadReport>,
);

/// The measuring part of a run, on a started server.
fn measure(
    server: &Server,
    experiment: &Experiment,
    contender: &Contender,
    interrupted: &AtomicBool,
) -> anyhow::Result<Measured> {
    let load_options = parse_load(server.addr(), experiment, contender)?;
    let plan = &experiment.load;
    let mut idle = None;
    let holder = match &experiment.hold {
        Some(hold) => {
            let fds_before = server.open_fds();
            let before = server.usage()?;
            let connecting = Instant::now();
            let holding = Holding::connect(server.addr(), hold.connections, HOLD_CONNECT_TIMEOUT)
                .context("cannot open the idle connections")?;
            if hold.measure_memory {
                let (accepted, took) =
                    wait_for_accepts(server, fds_before, holding.connected(), connecting);
                let after = server.usage()?;
                idle = Some(IdleMemory {
                    accepted,
                    accept_seconds: took.as_secs_f64(),
                    rss_before_kib: before.rss_kib,
                    rss_after_kib: after.rss_kib,
                    bytes_per_connection: (accepted > 0).then(|| {
                        (after.rss_kib as f64 - before.rss_kib as f64) * 1024.0 / accepted as f64
                    }),
                });
            }
            let hold_for = plan.warmup + plan.duration + HOLD_MARGIN;
            Some(thread::spawn(move || holding.hold(hold_for)))
        }
        None => None,
    };
    let background = match &experiment.background {
        Some(plan) => {
            let options = parse_flags(server.addr(), plan.flags())?;
            let stop = Arc::new(AtomicBool::new(false));
            let stopping = Arc::clone(&stop);
            let running = thread::spawn(move || {
                load::measure(
                    &options,
                    &mut Watch {
                        interrupted: &stopping,
                        ..Watch::default()
                    },
                )
            });
            // Its connections first, so that the measured ones find them.
            thread::sleep(Duration::from_millis(100));
            Some((running, stop))
        }
        None => None,
    };
    let (mut opened, mut closed): (Option<Usage>, Option<Usage>) = (None, None);
    let report = load::measure(
        &load_options,
        &mut Watch {
            interrupted,
            progress_line: false,
            on_window: &mut |edge| {
                let usage = server.usage().ok();
                match edge {
                    Window::Open => opened = usage,
                    Window::Close => closed = usage,
                }
            },
        },
    );
    let hold = match holder {
        Some(holder) => Some(
            holder
                .join()
                .map_err(|_| anyhow::anyhow!("the idle connections' thread panicked"))??,
        ),
        None => None,
    };
    let background = match background {
        Some((running, stop)) => {
            if interrupted.load(Ordering::Relaxed) || report.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            Some(
                running
                    .join()
                    .map_err(|_| anyhow::anyhow!("the background load's thread panicked"))?
                    .context("the background load")?,
            )
        }
        None => None,
    };
    let report = report?;
    let end = server.usage()?;
    let (cpu_seconds, others_cpu_seconds) = match (opened, closed) {
        (Some(opened), Some(closed)) => {
            let server = (closed.cpu_seconds - opened.cpu_seconds).max(0.0);
            let client = closed.client_cpu_seconds - opened.client_cpu_seconds;
            let machine = closed.machine_cpu_seconds - opened.machine_cpu_seconds;
            (server, (machine - server - client).max(0.0))
        }
        _ => (0.0, 0.0),
    };
    let usage = ServerUsage {
        cpu_seconds,
        cpu_us_per_answer: (report.requests > 0)
            .then(|| cpu_seconds * 1e6 / report.requests as f64),
        peak_rss_kib: end.peak_rss_kib,
        rss_kib: end.rss_kib,
        idle,
        others_cores: others_cpu_seconds / report.seconds.max(1e-9),
    };
    Ok((report, hold, usage, background))
}

/// Waits until the server has accepted the `connected` idle connections
/// (one new descriptor each), or until no more come for [`ACCEPT_STALL`];
/// returns how many it accepted, and how long after `started` (the first
/// connect) the last of them came.
fn wait_for_accepts(
    server: &Server,
    fds_before: usize,
    connected: usize,
    started: Instant,
) -> (usize, Duration) {
    let waiting = Instant::now();
    let mut last = (server.open_fds(), waiting);
    while last.0 < fds_before + connected && waiting.elapsed() < ACCEPT_TIMEOUT {
        thread::sleep(Duration::from_millis(20));
        let fds = server.open_fds();
        if fds != last.0 {
            last = (fds, Instant::now());
        } else if last.1.elapsed() > ACCEPT_STALL {
            break;
        }
    }
    let took = last.1 - started;
    thread::sleep(SETTLE);
    let accepted = server.open_fds().saturating_sub(fds_before).min(connected);
    (accepted, took)
}

/// The server's flags: its mode's, then the experiment's.
fn server_args(contender: &Contender, experiment: &Experiment) -> Vec<String> {
    let mut args = contender.args.clone();
    args.extend(experiment.server_flags.iter().cloned());
    args
}

/// The server's command line as a reader would type it, with the
/// priority it runs at (see [`process::SERVER_NICE`]).
fn server_command(contender: &Contender, experiment: &Experiment) -> String {
    let nice = format!("nice -n {}", process::SERVER_NICE);
    match contender.kind {
        Kind::Redis => {
            format!("{nice} {REDIS} --port PORT --bind 127.0.0.1 --save '' --appendonly no")
        }
        _ => {
            let mut words = vec![
                nice,
                contender.bin.to_owned(),
                "-p".to_owned(),
                "0".to_owned(),
            ];
            words.extend(server_args(contender, experiment));
            words.join(" ")
        }
    }
}

/// `client load` flags for a contender: redis is asked `PING`.
fn load_flags(experiment: &Experiment, contender: &Contender) -> Vec<String> {
    let mut flags = experiment.load.flags();
    if contender.kind == Kind::Redis {
        flags.extend(["--send", "PING\\r\\n", "--expect", "+PONG\\r\\n"].map(str::to_owned));
    }
    flags
}

fn load_command(experiment: &Experiment, contender: &Contender) -> String {
    command_of(load_flags(experiment, contender))
}

/// `client load` with these flags, quoted as a shell needs.
fn command_of(flags: Vec<String>) -> String {
    let flags: Vec<String> = flags
        .into_iter()
        .map(|flag| {
            if flag.contains('\\') {
                format!("'{flag}'")
            } else {
                flag
            }
        })
        .collect();
    format!("client load {}", flags.join(" "))
}

/// The experiment's load as `client load` arguments, parsed by the same
/// parser as the command line (and made [`Options`] as `client load` makes
/// them), so that every run is one a reader can repeat by hand.
fn parse_load(
    addr: SocketAddr,
    experiment: &Experiment,
    contender: &Contender,
) -> anyhow::Result<Options> {
    parse_flags(addr, load_flags(experiment, contender))
}

/// `client load` flags against `addr`, parsed as the command line is.
fn parse_flags(addr: SocketAddr, flags: Vec<String>) -> anyhow::Result<Options> {
    #[derive(Parser)]
    struct Load {
        #[command(flatten)]
        args: LoadArgs,
    }
    let mut words = vec![
        "load".to_owned(),
        addr.ip().to_string(),
        "-p".to_owned(),
        addr.port().to_string(),
        "--timeout".to_owned(),
        zen_utils::config::format_duration(LOAD_TIMEOUT),
    ];
    words.extend(flags);
    Load::try_parse_from(words)
        .context("bad load flags (a bug in client compare)")?
        .args
        .options()
}

/// Writes results.json, report.md and the charts.
fn write_report(results: &Results, out: &Path) -> anyhow::Result<()> {
    let write = |name: &str, contents: String| {
        let path = out.join(name);
        std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))
    };
    write(
        "results.json",
        serde_json::to_string_pretty(results)? + "\n",
    )?;
    let charts = charts::draw(results);
    for (name, svg) in &charts {
        write(name, svg.clone())?;
    }
    let names: Vec<&str> = charts.iter().map(|(name, _)| name.as_str()).collect();
    let mut report = tables::report(results, &names);
    let mut dead_chart = None;
    if let Some(dead) = &results.dead_server {
        report += &format!(
            "\n## {}. {}\n\n{}\n\n{}",
            dead.number,
            dead.title,
            dead.lesson,
            dead_server::table(dead)
        );
        report += &checks::list(&dead.checks);
        match charts::dead_server(dead) {
            Ok(svg) => {
                write(dead_server::CHART, svg.clone())?;
                report += &format!("\n![answers per 100 ms]({})\n", dead_server::CHART);
                dead_chart = Some(svg);
            }
            Err(error) => zen_utils::log_line!(
                "client compare: warning: no {}: {error}",
                dead_server::CHART
            ),
        }
    }
    if let Some(peers) = &results.ask_peers {
        report += &format!(
            "\n## {}. {}\n\n{}\n\n{}",
            peers.number,
            peers.title,
            peers.lesson,
            ask_peers::table(peers)
        );
        report += &checks::list(&peers.checks);
    }
    write("report.md", report)?;
    write(
        "report.html",
        html::report(results, &charts, dead_chart.as_deref()),
    )?;
    Ok(())
}

/// Why srv-uring cannot serve here (it exits with one line when io_uring
/// is refused), as a row's note; `None` when it starts. Leaked: one short
/// string, once per comparison, where a row's note is `&'static str`.
fn uring_refusal(bin: &Path) -> Option<&'static str> {
    match Server::start_zen(bin, &["-q".to_owned()]) {
        Ok(server) => {
            server.kill();
            None
        }
        Err(error) => {
            let why = format!("not run: {error:#}");
            zen_utils::log_line!("client compare: srv-uring {why}");
            Some(Box::leak(why.into_boxed_str()))
        }
    }
}

/// The progress shown while it runs: on a terminal a spinner line for the
/// run in progress and a line per finished run above it; otherwise a
/// line per finished run.
struct Progress {
    bar: Option<ProgressBar>,
    runs: usize,
    done: std::cell::Cell<usize>,
}

impl Progress {
    fn new(runs: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(runs as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            runs,
            done: std::cell::Cell::new(0),
        }
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => zen_utils::log_line!("{line}"),
        }
    }

    fn start(&self, experiment: &Experiment, contender: &Contender) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}: {}", experiment.key, contender.label));
        }
    }

    fn finish(&self, experiment: &Experiment, run: &RunResult) {
        self.done.set(self.done.get() + 1);
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        let outcome = match (run.status, run.measured()) {
            (Status::Ok, Some(load)) => format!(
                "{} answers/s, p99 {}, served {}/{}",
                experiments::group_digits(load.rps),
                tables::micros(load.latency_us.p99),
                load.served_conns,
                load.connections
            ),
            _ => format!("failed: {}", run.note.as_deref().unwrap_or("unknown error")),
        };
        let unclean = match &run.exit {
            Some(exit) if !exit.clean => format!(
                " [server: {}]",
                exit.problem.as_deref().unwrap_or("not clean")
            ),
            _ => String::new(),
        };
        self.say(&format!(
            "[{}/{}] {}: {}: {outcome}{unclean}",
            self.done.get(),
            self.runs,
            experiment.key,
            run.row_name()
        ));
    }

    /// Prints a table on stdout, clear of the progress line. A table that
    /// cannot be written (stdout closed: `client compare | head -1`) is
    /// dropped rather than a panic: the report still has it.
    fn print(&self, table: &str) {
        let print = || {
            let _ = writeln!(std::io::stdout().lock(), "{table}");
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_experiment_load_parses_for_every_contender() {
        let addr: SocketAddr = "127.0.0.1:1060".parse().unwrap();
        for experiment in experiments::all(&Sizes::FULL) {
            for contender in lineup::everyone(16) {
                let load = parse_load(addr, &experiment, &contender);
                assert!(load.is_ok(), "{}: {load:?}", experiment.key);
            }
        }
    }

    #[test]
    fn only_names_known_experiments() {
        let all = experiments::all(&Sizes::QUICK);
        let chosen =
            select_experiments(all.clone(), &["c10k".to_owned(), "one-client".to_owned()]).unwrap();
        let keys: Vec<&str> = chosen.iter().map(|e| e.key).collect();
        assert_eq!(keys, ["one-client", "c10k"]);
        assert!(select_experiments(all, &["c100k".to_owned()]).is_err());
    }

    #[test]
    fn commands_read_as_typed() {
        let experiments = experiments::all(&Sizes::FULL);
        let pipelining = &experiments[5];
        let everyone = lineup::everyone(16);
        let redis = everyone.iter().find(|c| c.kind == Kind::Redis).unwrap();
        assert_eq!(
            load_command(pipelining, redis),
            "client load -c 64 --pipeline 16 -d 2s --warmup 500ms \
             --send 'PING\\r\\n' --expect '+PONG\\r\\n'"
        );
        let slow_backend = &experiments[2];
        let pool = &lineup::everyone(16)[1];
        assert_eq!(
            server_command(pool, slow_backend),
            "nice -n 10 srv-threaded -p 0 --workers 16 --work wait:10ms"
        );
    }
}

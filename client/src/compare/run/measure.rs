//! One server through one per-server experiment: started fresh,
//! [idle connections held], loaded by `client load`'s engine in-process,
//! its CPU time read from /proc at the edges of the measured window and
//! its memory at the end, stopped with SIGTERM. Every load is a
//! `client load` command line, parsed by the same parser, so that a reader
//! can repeat any run by hand; the row says which.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use super::process::{Server, Usage};
use crate::compare::model::{IdleMemory, RunResult, ServerUsage, Status, SERVER_NICE};
use crate::compare::plan::experiments::Experiment;
use crate::compare::plan::lineup::{Contender, Kind, REDIS};
use crate::hold::Holding;
use crate::load::{self, LoadArgs, Options, Watch, Window};
use crate::report::LoadReport;

/// `client load --timeout` in every run: longer than any run, so that a
/// connection left waiting the whole run (srv-single's 63 others, the
/// pool's queue) is reported as not served, never as a timeout error.
pub(crate) const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
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

pub(crate) fn skipped(experiment: &Experiment, contender: &Contender, why: &str) -> RunResult {
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
pub(crate) fn run_one(
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
    // The server's usage at the window's edges, with its context switches.
    type Edge = Option<(Usage, u64)>;
    let (mut opened, mut closed): (Edge, Edge) = (None, None);
    let report = load::measure(
        &load_options,
        &mut Watch {
            interrupted,
            progress_line: false,
            on_window: &mut |edge| {
                let usage = server
                    .usage()
                    .ok()
                    .map(|usage| (usage, server.context_switches()));
                match edge {
                    Window::Open => opened = usage,
                    Window::Close => closed = usage,
                }
            },
            on_interval: &mut |_| {},
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
    let (cpu_seconds, others_cpu_seconds, context_switches) = match (opened, closed) {
        (Some((opened, switches_opened)), Some((closed, switches_closed))) => {
            let server = (closed.cpu_seconds - opened.cpu_seconds).max(0.0);
            let client = closed.client_cpu_seconds - opened.client_cpu_seconds;
            let machine = closed.machine_cpu_seconds - opened.machine_cpu_seconds;
            let switches = switches_closed.saturating_sub(switches_opened);
            (server, (machine - server - client).max(0.0), switches)
        }
        _ => (0.0, 0.0, 0),
    };
    let usage = ServerUsage {
        cpu_seconds,
        cpu_us_per_answer: (report.requests > 0)
            .then(|| cpu_seconds * 1e6 / report.requests as f64),
        context_switches,
        switches_per_answer: (report.requests > 0)
            .then(|| context_switches as f64 / report.requests as f64),
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
/// priority it runs at (see [`SERVER_NICE`]).
fn server_command(contender: &Contender, experiment: &Experiment) -> String {
    let nice = format!("nice -n {}", SERVER_NICE);
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
        zen_utils::duration::format_duration(LOAD_TIMEOUT),
    ];
    words.extend(flags);
    Load::try_parse_from(words)
        .context("bad load flags (a bug in client compare)")?
        .args
        .options()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::plan::experiments::{self, Sizes};
    use crate::compare::plan::lineup;

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

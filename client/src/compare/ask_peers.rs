//! Experiment 12, "servers that ask servers": for each model, two servers
//! each know half the table (`--table-part 1/2` and `2/2`) and peer each
//! other. Half the clients ask server A the question only B knows, the
//! other half ask B the question only A knows, at once: every answer takes
//! a server asking its peer while its peer asks it.
//!
//! - srv-single blocks on its peer, which is blocked on it: both wait out
//!   `--peer-timeout` and answer `Error: no peer answered.`, at the
//!   timeout's pace.
//! - srv-threaded's pool of 4 threads, 8 clients a side: each client holds
//!   a thread, and each thread keeps a connection to the peer, which holds
//!   one of the peer's threads: the pool starves. Per connection, a thread
//!   per client and per peer connection: everything is answered.
//! - The event-driven servers answer everything: asking a peer is one more
//!   wait among many.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::Duration;

use serde::Serialize;
use zen_utils::components::free_port;

use super::checks::CheckResult;
use super::lineup::{Contender, Kind};
use super::process::Server;
use crate::load::{self, Length, Options, Watch, Workload};
use crate::report::LoadReport;

pub(crate) const KEY: &str = "servers-ask-servers";
pub(crate) const NUMBER: usize = 12;
pub(crate) const TITLE: &str = "Servers that ask servers";
pub(crate) const LESSON: &str = "Two servers each know half the table and ask each other \
    (--table-part 1/2 and 2/2); 8 clients ask A what only B knows while 8 ask B what only A \
    knows. srv-single blocks on its peer, which is blocked on it: both wait out --peer-timeout \
    and answer 'Error: no peer answered.'. A pool of 4 threads starves: its clients hold its \
    threads, and its threads' connections to the peer hold the peer's. A thread per \
    connection, and the event-driven servers, answer everything.";
/// Clients on each side.
const CLIENTS: usize = 8;
/// The servers' `--peer-timeout`: short, so that srv-single's deadlock
/// breaks several times a run.
const PEER_TIMEOUT: &str = "200ms";
/// The pool's threads here: fewer than the clients.
const POOL: &str = "4";

/// The experiment's table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AskPeersResult {
    pub(crate) number: usize,
    pub(crate) key: &'static str,
    pub(crate) title: &'static str,
    pub(crate) lesson: &'static str,
    pub(crate) seconds: f64,
    pub(crate) rows: Vec<Row>,
    /// What the lesson says the table shows, judged on it.
    pub(crate) checks: Vec<CheckResult>,
}

/// One model's pair.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) server: String,
    pub(crate) label: String,
    /// Why it did not run, if it did not.
    pub(crate) failed: Option<String>,
    /// Right answers per second, both sides together.
    pub(crate) rps: f64,
    /// `Error: no peer answered.` and other error answers, both sides.
    pub(crate) no_peer_answered: u64,
    /// Clients that got any right answer, of both sides'.
    pub(crate) served: usize,
    /// The worse side's latencies, µs.
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// What the row shows.
    pub(crate) note: &'static str,
    /// The model, for the checks.
    #[serde(skip)]
    pub(crate) kind: Kind,
}

/// Runs every zen contender's pair for `duration`.
pub(crate) fn run(
    bin_dir: &Path,
    contenders: &[Contender],
    duration: Duration,
    interrupted: &AtomicBool,
) -> AskPeersResult {
    let rows = contenders
        .iter()
        .filter(|contender| !matches!(contender.kind, Kind::Redis | Kind::Offload))
        .filter(|contender| contender.takes_part_in(KEY))
        .map(|contender| {
            if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
                return failed_row(contender, "not run: interrupted".to_owned());
            }
            run_pair(
                &bin_dir.join(contender.bin),
                contender,
                duration,
                interrupted,
            )
            .unwrap_or_else(|error| failed_row(contender, format!("failed: {error:#}")))
        })
        .collect::<Vec<_>>();
    let checks = checks(&rows);
    AskPeersResult {
        number: NUMBER,
        key: KEY,
        title: TITLE,
        lesson: LESSON,
        seconds: duration.as_secs_f64(),
        rows,
        checks,
    }
}

/// The lesson's checks: the one-at-a-time pair deadlocks, the small pool
/// starves, and every concurrent model answers everyone.
fn checks(rows: &[Row]) -> Vec<CheckResult> {
    let of = |kinds: &[Kind], verdict: &dyn Fn(&Row) -> (String, f64, bool)| {
        rows.iter()
            .filter(|row| row.failed.is_none() && kinds.contains(&row.kind))
            .map(verdict)
            .collect::<Vec<_>>()
    };
    vec![
        CheckResult::of(
            format!(
                "srv-single deadlocks: questions wait out --peer-timeout (no peer answered), \
                 and not all {} clients are served",
                2 * CLIENTS
            ),
            of(&[Kind::OneAtATime], &|row| {
                // Not from the first instant: until the other side's own
                // clients are in, it is free to answer.
                let held = row.no_peer_answered > 0 && row.served < 2 * CLIENTS;
                (format!("{} no peer answered", row.label), row.no_peer_answered as f64, held)
            }),
        ),
        CheckResult::of(
            format!("the pool of {POOL} starves: some of its {} clients got no answer, or no peer answered", 2 * CLIENTS),
            of(&[Kind::Pool], &|row| {
                let held = row.served < 2 * CLIENTS || row.no_peer_answered > 0;
                (format!("{} served", row.label), row.served as f64, held)
            }),
        ),
        CheckResult::of(
            format!("every concurrent model served all {} clients, and a peer always answered", 2 * CLIENTS),
            of(&[Kind::Concurrent, Kind::Hybrid], &|row| {
                let held = row.served == 2 * CLIENTS && row.no_peer_answered == 0;
                (format!("{} served", row.label), row.served as f64, held)
            }),
        ),
    ]
}

/// The row's name: the pool's is run with [`POOL`] threads here.
fn label(contender: &Contender) -> String {
    match contender.kind {
        Kind::Pool => format!("srv-threaded pool:{POOL}"),
        _ => contender.label.clone(),
    }
}

fn failed_row(contender: &Contender, why: String) -> Row {
    Row {
        server: contender.id.to_owned(),
        label: label(contender),
        failed: Some(why),
        rps: 0.0,
        no_peer_answered: 0,
        served: 0,
        p50_us: 0.0,
        p99_us: 0.0,
        note: note(contender),
        kind: contender.kind,
    }
}

fn note(contender: &Contender) -> &'static str {
    match contender.kind {
        Kind::OneAtATime => {
            "blocks on its peer, which is blocked on it: no peer answered, at the timeout's pace"
        }
        Kind::Pool => "4 threads for 8 clients and 8 kept peer connections: the pool starves",
        _ if contender.id == "srv-threaded-per-conn" => {
            "a thread per client and per peer connection: all answered"
        }
        _ => "asking a peer is one more wait among many: all answered",
    }
}

fn run_pair(
    bin: &Path,
    contender: &Contender,
    duration: Duration,
    interrupted: &AtomicBool,
) -> anyhow::Result<Row> {
    let (port_a, port_b) = (free_port(), free_port());
    let args = |part: &str, peer: u16| {
        let mut args = match contender.kind {
            Kind::Pool => vec!["--workers".to_owned(), POOL.to_owned()],
            _ => contender.args.clone(),
        };
        args.extend(
            [
                "--table-part",
                part,
                "--peer",
                &format!("127.0.0.1:{peer}"),
                "--peer-timeout",
                PEER_TIMEOUT,
            ]
            .map(str::to_owned),
        );
        args
    };
    let a = Server::start_zen_on(bin, port_a, &args("1/2", port_b))?;
    let b = Server::start_zen_on(bin, port_b, &args("2/2", port_a))?;
    // A knows Beautiful (1st), B knows Explicit (2nd): each side asks the
    // other's.
    let side = |server: &Server, question: &str| Options {
        connections: CLIENTS,
        length: Length::Duration(duration),
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(5),
        threads: Some(1),
        workload: Workload::Question(question.to_owned()),
        ..Options::new(server.addr())
    };
    let (to_a, to_b) = (
        side(&a, "Explicit is better than?"),
        side(&b, "Beautiful is better than?"),
    );
    let measure = |options: &Options| {
        let mut watch = Watch {
            interrupted,
            ..Watch::default()
        };
        load::measure(options, &mut watch)
    };
    let (report_a, report_b) = thread::scope(|scope| {
        let first = scope.spawn(|| measure(&to_a));
        let second = measure(&to_b);
        (
            first
                .join()
                .map_err(|_| anyhow::anyhow!("the load panicked")),
            second,
        )
    });
    let (report_a, report_b): (LoadReport, LoadReport) = (report_a??, report_b?);
    let _ = (a.stop(), b.stop());
    let worse = |f: fn(&LoadReport) -> f64| f(&report_a).max(f(&report_b));
    Ok(Row {
        server: contender.id.to_owned(),
        label: label(contender),
        failed: None,
        rps: report_a.rps + report_b.rps,
        no_peer_answered: report_a.errors_by_kind.error_answer
            + report_b.errors_by_kind.error_answer,
        served: report_a.served_conns + report_b.served_conns,
        p50_us: worse(|r| r.latency_us.p50),
        p99_us: worse(|r| r.latency_us.p99),
        note: note(contender),
        kind: contender.kind,
    })
}

/// The experiment's table, as Markdown.
pub(crate) fn table(result: &AskPeersResult) -> String {
    let mut out = format!(
        "| server ({} clients a side, {:.0} s) | answers/s | no peer answered | served | p50 | p99 | what it shows |\n|---|--:|--:|--:|--:|--:|---|\n",
        CLIENTS, result.seconds
    );
    for row in &result.rows {
        if let Some(why) = &row.failed {
            out += &format!("| {} | {why} | | | | | {} |\n", row.label, row.note);
            continue;
        }
        out += &format!(
            "| {} | {} | {} | {}/{} | {} | {} | {} |\n",
            row.label,
            super::experiments::group_digits(row.rps),
            row.no_peer_answered,
            row.served,
            2 * CLIENTS,
            super::tables::micros(row.p50_us),
            super::tables::micros(row.p99_us),
            row.note
        );
    }
    out
}

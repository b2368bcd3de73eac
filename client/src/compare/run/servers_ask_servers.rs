//! Runs experiment 12 (what it is: `plan/servers_ask_servers.rs`): for
//! each model, two servers that each know half the table, peering each
//! other, and a load on each asking what only the other knows.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::Duration;

use zen_utils::components::free_port;

use super::process::Server;
use crate::compare::model::{PairRow, ServersAskServersResult};
use crate::compare::plan::lineup::{Contender, Kind};
use crate::compare::plan::servers_ask_servers::{
    checks, label, note, CLIENTS, KEY, LESSON, NUMBER, PEER_TIMEOUT, POOL, TITLE,
};
use crate::load::{self, Length, Options, Watch, Workload};
use crate::report::LoadReport;

/// Runs a pair of each of `contenders` (the plan's pairs) for `duration`.
pub(crate) fn run<'a>(
    bin_dir: &Path,
    contenders: impl Iterator<Item = &'a Contender>,
    duration: Duration,
    interrupted: &AtomicBool,
) -> ServersAskServersResult {
    let rows = contenders
        .map(|contender| {
            if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
                return (
                    contender.kind,
                    failed_row(contender, "not run: interrupted".to_owned()),
                );
            }
            let row = run_pair(
                &bin_dir.join(contender.bin),
                contender,
                duration,
                interrupted,
            )
            .unwrap_or_else(|error| failed_row(contender, format!("failed: {error:#}")));
            (contender.kind, row)
        })
        .collect::<Vec<_>>();
    let checks = checks(&rows);
    let rows = rows.into_iter().map(|(_, row)| row).collect();
    ServersAskServersResult {
        number: NUMBER,
        key: KEY,
        title: TITLE,
        lesson: LESSON,
        seconds: duration.as_secs_f64(),
        rows,
        checks,
    }
}

fn failed_row(contender: &Contender, why: String) -> PairRow {
    PairRow {
        server: contender.id.to_owned(),
        label: label(contender),
        failed: Some(why),
        rps: 0.0,
        no_peer_answered: 0,
        served: 0,
        p50_us: 0.0,
        p99_us: 0.0,
        note: note(contender),
    }
}

fn run_pair(
    bin: &Path,
    contender: &Contender,
    duration: Duration,
    interrupted: &AtomicBool,
) -> anyhow::Result<PairRow> {
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
    Ok(PairRow {
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
    })
}

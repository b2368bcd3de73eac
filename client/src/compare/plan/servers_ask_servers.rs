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
//!   a thread, and a thread that asks the peer waits for one of the
//!   peer's threads, all held by the peer's own clients: the pool starves.
//!   Per connection, a thread per client and per question asked of it:
//!   everything is answered.
//! - The event-driven servers answer everything: asking a peer is one more
//!   wait among many.
//!
//! This file is what the experiment is (its name, its lesson, its sizes,
//! its rows' names and notes, and its checks); `run/servers_ask_servers.rs`
//! is how it runs.

use std::time::Duration;

use super::lineup::{Contender, Kind};
use crate::compare::model::{CheckResult, PairRow};

pub(crate) const KEY: &str = "servers-ask-servers";
pub(crate) const NUMBER: usize = 12;
pub(crate) const TITLE: &str = "Servers that ask servers";
pub(crate) const LESSON: &str = "Two servers each know half the table and ask each other \
    (--table-part 1/2 and 2/2); 8 clients ask A what only B knows while 8 ask B what only A \
    knows. srv-single blocks on its peer, which is blocked on it: both wait out --peer-timeout \
    and answer 'Error: no peer answered.'. A pool of 4 threads starves: its clients hold its \
    threads, and its threads' questions to the peer wait for the peer's, held by its own \
    clients. A thread per connection, and the event-driven servers, answer everything. A \
    question in no part of the table (x?) is unknown at once everywhere: it once went round \
    every peer, 65 connections across 5 servers that each peer all the others; now 1, the \
    client's.";
/// Clients on each side.
pub(crate) const CLIENTS: usize = 8;
/// The servers' `--peer-timeout`: short, so that srv-single's deadlock
/// breaks several times a run.
pub(crate) const PEER_TIMEOUT: &str = "200ms";
/// The pool's threads here: fewer than the clients.
pub(crate) const POOL: &str = "4";

/// Whether a contender takes part: every zen model, each as one pair (the
/// `--offload` rows are the same models, and redis asks no peer).
pub(crate) fn takes_part(contender: &Contender) -> bool {
    !matches!(contender.kind, Kind::Redis | Kind::Offload) && contender.takes_part_in(KEY)
}

/// How long each pair runs: long enough for srv-single's deadlock to break
/// several times.
pub(crate) fn duration(quick: bool) -> Duration {
    if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    }
}

/// The lesson's checks: the one-at-a-time pair deadlocks, the small pool
/// starves, and every concurrent model answers everyone. Each row comes
/// with its model's kind.
pub(crate) fn checks(rows: &[(Kind, PairRow)]) -> Vec<CheckResult> {
    let of = |kinds: &[Kind], verdict: &dyn Fn(&PairRow) -> (String, f64, bool)| {
        rows.iter()
            .filter(|(kind, row)| row.failed.is_none() && kinds.contains(kind))
            .map(|(_, row)| verdict(row))
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
pub(crate) fn label(contender: &Contender) -> String {
    match contender.kind {
        Kind::Pool => format!("srv-threaded pool:{POOL}"),
        _ => contender.label.clone(),
    }
}

/// What the row shows.
pub(crate) fn note(contender: &Contender) -> &'static str {
    match contender.kind {
        Kind::OneAtATime => {
            "blocks on its peer, which is blocked on it: no peer answered, at the timeout's pace"
        }
        Kind::Pool => {
            "4 threads for 8 clients: a thread's question waits for the peer's threads, \
             held by the peer's own clients: the pool starves"
        }
        _ if contender.id == "srv-threaded-per-conn" => {
            "a thread per client and per question asked of it: all answered"
        }
        _ => "asking a peer is one more wait among many: all answered",
    }
}

//! Experiment 11, "three ways to survive a dead server": three backends of
//! one model, one `client load` for the whole run, backend 2 killed
//! (SIGKILL) at a third of the run and started again at two thirds. The
//! client reaches the backends three ways:
//!
//! - **servers**: it is given all three (`--server` ×3) and spreads its
//!   connections over them; a broken one is asked again elsewhere.
//! - **haproxy**: it knows one address, a real HAProxy's (deploy/haproxy's
//!   configuration), whose health check takes the dead backend out.
//! - **registry**: it finds them in a real ZooKeeper (`--registry`), where
//!   each registered itself (`--register`); the killed one's znode stays
//!   until its session expires, so the client is refused and picks again.
//!
//! Each way reports its answers, the answers lost (none should be), the
//! errors it saw and the questions it asked again, how long the rate took
//! to come back after the kill, how long the restarted backend took to get
//! traffic again, and each backend's answers; the chart draws answers per
//! 100 ms over the run, with the kill and the restart marked.
//!
//! This file is what the experiment is (its name, its lesson, its sizes
//! and its checks); `run/dead_server.rs` is how it runs.

use std::time::Duration;

use crate::compare::model::{CheckResult, WayResult};

/// Answers are counted per this long for the chart.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);
/// Connections of the one load: four per backend.
pub(crate) const CONNECTIONS: usize = 12;
/// Each backend's answer waits this long (`--work wait`), as a backend
/// that asks a database would: the rate is then the connections' and the
/// backends', not the CPU's, and a dead backend shows as a dip instead of
/// freeing a core for the others.
pub(crate) const BACKEND_WORK: &str = "wait:1ms";
/// Answers per connection before it is remade.
pub(crate) const RECONNECT_EVERY: u64 = 200;
/// The ways, each a run.
pub(crate) const WAYS: usize = crate::compare::model::Way::ALL.len();
/// The experiment's key for `--only`.
pub(crate) const KEY: &str = "dead-server";
/// Its number in the README's list.
pub(crate) const NUMBER: usize = 11;
pub(crate) const TITLE: &str = "Three ways to survive a dead server";
pub(crate) const LESSON: &str = "Backend 2 of three is killed at a third of the run and \
    started again at two thirds. Given every address, the client notices the death itself \
    and asks again elsewhere; behind HAProxy it knows one address, and HAProxy's health check \
    takes the dead backend out within half a second; through a ZooKeeper registry it picks \
    from the registered servers, and the killed one stays registered until its session \
    expires (4 s), so the client is refused and picks again. No way loses an answer; they \
    differ in how long the rate dips and who must know what.";

/// How long each way runs: a third before the kill, a third with backend 2
/// dead, a third after its restart.
pub(crate) fn duration(quick: bool) -> Duration {
    if quick {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(6)
    }
}

/// The lesson's checks: no way loses an answer, every way's rate comes
/// back after the kill, and the restarted backend is found again.
pub(crate) fn checks(ways: &[WayResult]) -> Vec<CheckResult> {
    let ran: Vec<&WayResult> = ways.iter().filter(|way| way.not_run.is_none()).collect();
    let each = |figure: &str, value: &dyn Fn(&WayResult) -> Option<(f64, bool)>| {
        ran.iter()
            .filter_map(|way| {
                let (value, held) = value(way)?;
                Some((format!("{} {figure}", way.way.label()), value, held))
            })
            .collect::<Vec<_>>()
    };
    vec![
        CheckResult::of(
            "no way lost an answer: every question got its right answer",
            each("lost", &|way| Some((way.lost as f64, way.lost == 0))),
        ),
        CheckResult::of(
            "every way's rate came back to 90% of what it was after the kill",
            each("rate back after ms (-1: not in the run)", &|way| {
                Some(
                    way.recovered_after_ms
                        .map_or((-1.0, false), |ms| (ms, true)),
                )
            }),
        ),
        CheckResult::of(
            "every way found the restarted backend: it answered again",
            each("restarted one back after ms (-1: not in the run)", &|way| {
                Some(way.back_after_ms.map_or((-1.0, false), |ms| (ms, true)))
            }),
        ),
    ]
}

//! Experiment 11, "three ways to survive a failed server": three backends
//! of one model, one `client load` per run, backend 2 failing at a third
//! of the run and recovering later. It fails three ways (the kinds):
//!
//! - **dead**: SIGKILL; its kernel resets every connection at once, and
//!   it is started again to recover;
//! - **frozen**: SIGSTOP, then SIGCONT: the kernel still completes
//!   handshakes and takes bytes, nobody answers, and its registry session
//!   starves (it expires if the freeze outlasts it);
//! - **stuck**: every thread stopped but its registry's (ptrace, as a
//!   debugger stops threads): alive and heartbeating, answering nothing,
//!   as an event loop blocked on one long call is.
//!
//! The client reaches the backends three ways:
//!
//! - **servers**: it is given all three (`--server` ×3) and notices by its
//!   own `--timeout` (and a reset or a refused connect), asking again
//!   elsewhere;
//! - **haproxy**: it knows one address, a real HAProxy's (deploy/haproxy's
//!   configuration), whose `tcp-check` asks each backend a question every
//!   `inter` and takes it out after `fall` failures;
//! - **registry**: it finds them in a real ZooKeeper (`--registry`), where
//!   each registered itself (`--register`): a server leaves when its
//!   session expires, or when its own health probe (`--health-interval`,
//!   `--health-fails`) misses its answers. The stuck pair also runs once
//!   with the probe off, to show that a session is not a health check.
//!
//! Each pair reports its answers, the answers lost (none should be), the
//! errors it saw and the questions it asked again, how long the rate took
//! to come back after the failure, how long the failed backend took to
//! serve again after its recovery, and each backend's answers; the chart
//! draws answers per 100 ms, a panel per kind.
//!
//! This file is what the experiment is (its name, its lesson, its sizes
//! and its checks); `run/dead_server.rs` is how it runs.

use std::time::Duration;

use crate::compare::model::{CheckResult, FailoverRun, FailoverSettings, Kind, Way};

/// Answers are counted per this long, for the chart and the figures.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);
/// Connections of the one load: four per backend.
pub(crate) const CONNECTIONS: usize = 12;
/// Each backend's answer waits this long (`--work wait`), as a backend
/// that asks a database would: the rate is then the connections' and the
/// backends', not the CPU's, and a failed backend shows as a dip instead of
/// freeing a core for the others.
pub(crate) const BACKEND_WORK: &str = "wait:1ms";
/// Answers per connection before it is remade: a balancer and a registry
/// choose a server per connection, so without new connections a backend
/// that comes back would get none.
pub(crate) const RECONNECT_EVERY: u64 = 200;
/// The client's `--timeout`: a question unanswered this long moves to
/// another backend.
pub(crate) const TIMEOUT: Duration = Duration::from_millis(300);
/// HAProxy's check interval and failures before a backend is down.
pub(crate) const HAPROXY_INTER: Duration = Duration::from_millis(100);
pub(crate) const HAPROXY_FALL: u64 = 2;
/// The servers' health probe.
pub(crate) const HEALTH_INTERVAL: Duration = Duration::from_millis(200);
pub(crate) const HEALTH_FAILS: u64 = 2;
/// The experiment's key for `--only`.
pub(crate) const KEY: &str = "dead-server";
/// Its number in the README's list.
pub(crate) const NUMBER: usize = 11;
pub(crate) const TITLE: &str = "Three ways to survive a failed server";
pub(crate) const LESSON: &str = "Backend 2 of three fails at a third of each run, one of \
    three kinds: dead (SIGKILL: its connections reset at once), frozen (SIGSTOP, later \
    SIGCONT: handshakes complete, nothing answers) or stuck (every thread stopped but its \
    registry's: its ZooKeeper session heartbeats, nothing answers, as an event loop blocked on \
    one long call). The client meets it three ways. Given every address, it notices by its own \
    --timeout (300 ms) and asks again elsewhere. Behind HAProxy, the tcp-check asks a question \
    every 100 ms and takes a backend out after 2 failures (about 200 ms). Through a ZooKeeper \
    registry, a server leaves when its session expires (4 s: a short freeze never gets there) \
    or when its own health probe misses 2 answers of 200 ms; without the probe, a stuck server \
    stays registered for as long as it is stuck: a session is not a health check. Dead is \
    noticed fastest everywhere; no way loses an answer, since the client asks again what a \
    broken or timed-out connection owed.";

/// The figures' settings, as results.json records them.
pub(crate) fn settings() -> FailoverSettings {
    let ms = |d: Duration| d.as_millis() as u64;
    FailoverSettings {
        timeout_ms: ms(TIMEOUT),
        haproxy_inter_ms: ms(HAPROXY_INTER),
        haproxy_fall: HAPROXY_FALL,
        session_timeout_ms: ms(zen_utils::deploy::registry::SESSION_TIMEOUT),
        health_interval_ms: ms(HEALTH_INTERVAL),
        health_fails: HEALTH_FAILS,
    }
}

/// A run's length, and when backend 2 fails and recovers in it. The full
/// run freezes longer than a ZooKeeper session lasts, so that the registry
/// notices the freeze; the quick one does not.
pub(crate) fn timing(quick: bool) -> Timing {
    if quick {
        Timing {
            seconds: Duration::from_millis(2300),
            fail_at: Duration::from_millis(500),
            recover_at: Duration::from_millis(1500),
        }
    } else {
        Timing {
            seconds: Duration::from_secs(7),
            fail_at: Duration::from_secs(1),
            recover_at: Duration::from_millis(5500),
        }
    }
}

/// When things happen in one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) seconds: Duration,
    pub(crate) fail_at: Duration,
    pub(crate) recover_at: Duration,
}

/// The pairs, in the order they run (and the table's): each way with each
/// kind, the registry's stuck pair once more with the probe off.
pub(crate) fn pairs() -> Vec<(Kind, Way, bool)> {
    let mut pairs = Vec::new();
    for way in Way::ALL {
        for kind in Kind::ALL {
            pairs.push((kind, way, true));
        }
    }
    pairs.push((Kind::Stuck, Way::Registry, false));
    pairs
}

/// "About" a figure the settings predict, in ms: no sooner than half of
/// it, no later than twice it and two intervals of the chart (what the
/// 100 ms counting adds, a check's or a probe's phase, a busy machine).
fn about(measured: f64, predicted: Duration) -> bool {
    let predicted = predicted.as_secs_f64() * 1000.0;
    let interval = INTERVAL.as_secs_f64() * 1000.0;
    measured >= predicted / 2.0 && measured <= 2.0 * predicted + 2.0 * interval
}

/// The lesson's checks, their figures in whole milliseconds.
pub(crate) fn checks(pairs: &[FailoverRun], timing: Timing) -> Vec<CheckResult> {
    let ran: Vec<&FailoverRun> = pairs.iter().filter(|p| p.not_run.is_none()).collect();
    let find = |kind: Kind, way: Way, probe: bool| {
        ran.iter()
            .find(|p| p.kind == kind && p.way == way && p.health_probe == probe)
            .copied()
    };
    let name =
        |p: &FailoverRun, figure: &str| format!("{} {}: {figure}", p.kind.label(), p.label());
    let ms = |v: f64| v.round();
    let mut checks = vec![CheckResult::of(
        "nothing lost anywhere: every question got its right answer",
        ran.iter()
            .map(|p| (name(p, "lost"), p.lost as f64, p.lost == 0))
            .collect(),
    )];

    let noticed = |kind, way| find(kind, way, true).and_then(|p| p.noticed_after_ms);
    let mut fastest = Vec::new();
    for way in Way::ALL {
        let (Some(dead), Some(frozen), Some(stuck)) = (
            noticed(Kind::Dead, way),
            noticed(Kind::Frozen, way),
            noticed(Kind::Stuck, way),
        ) else {
            continue;
        };
        let held = dead <= frozen.min(stuck);
        let label = way.label();
        fastest.push((format!("{label} dead: ms to notice"), ms(dead), held));
        fastest.push((format!("{label} frozen"), ms(frozen), held));
        fastest.push((format!("{label} stuck"), ms(stuck), held));
    }
    checks.push(CheckResult::of(
        "dead is noticed fastest by every way: its connections reset at once",
        fastest,
    ));

    let inter_fall = HAPROXY_INTER * HAPROXY_FALL as u32;
    let mut frozen = Vec::new();
    if let Some(at) = noticed(Kind::Frozen, Way::Servers) {
        let label = "--server ×3 frozen: ms to notice".to_owned();
        frozen.push((label, ms(at), about(at, TIMEOUT)));
    }
    if let Some(at) = noticed(Kind::Frozen, Way::Haproxy) {
        let label = "HAProxy frozen: ms to notice".to_owned();
        frozen.push((label, ms(at), about(at, inter_fall)));
    }
    checks.push(CheckResult::of(
        format!(
            "a frozen backend costs the client list about --timeout ({} ms) and HAProxy about \
             inter × fall ({} ms)",
            TIMEOUT.as_millis(),
            inter_fall.as_millis()
        ),
        frozen,
    ));

    // How long a stuck backend stayed registered while it was stuck.
    let failing_ms = (timing.recover_at - timing.fail_at).as_secs_f64() * 1000.0;
    let registered = |p: &FailoverRun| {
        p.left_registry_after_ms
            .unwrap_or(failing_ms)
            .min(failing_ms)
    };
    let probe_window = HEALTH_INTERVAL * HEALTH_FAILS as u32;
    let mut stuck = Vec::new();
    if let Some(p) = find(Kind::Stuck, Way::Registry, false) {
        let stayed = p.left_registry_after_ms.is_none();
        stuck.push((
            "probe off: ms registered while stuck".to_owned(),
            ms(registered(p)),
            stayed,
        ));
    }
    if let Some(p) = find(Kind::Stuck, Way::Registry, true) {
        let left = p
            .left_registry_after_ms
            .is_some_and(|at| about(at, probe_window));
        stuck.push((
            "probe on: ms registered while stuck".to_owned(),
            ms(registered(p)),
            left,
        ));
    }
    if !stuck.is_empty() {
        stuck.push(("ms stuck in all".to_owned(), ms(failing_ms), true));
    }
    checks.push(CheckResult::of(
        format!(
            "without the health probe a stuck backend stays in the registry; with it, the \
             registry drops it within about interval × fails ({} ms)",
            probe_window.as_millis()
        ),
        stuck,
    ));
    checks
}

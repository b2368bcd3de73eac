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

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use zen_utils::components::{free_port, haproxy_config, HaProxy, ZooKeeper, ZK_SERVER};

use super::format::group_digits;
use super::model::{CheckResult, DeadServerResult, Way, WayResult};
use super::process::Server;
use crate::load::{self, Length, Options, Watch};
use crate::report::LoadReport;

/// Answers are counted per this long for the chart.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);
/// Connections of the one load: four per backend.
const CONNECTIONS: usize = 12;
/// Each backend's answer waits this long (`--work wait`), as a backend
/// that asks a database would: the rate is then the connections' and the
/// backends', not the CPU's, and a dead backend shows as a dip instead of
/// freeing a core for the others.
const BACKEND_WORK: &str = "wait:1ms";
/// Answers per connection before it is remade.
const RECONNECT_EVERY: u64 = 200;
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

/// Runs every way for `duration` with backends of `bin`.
pub(crate) fn run(bin: &Path, duration: Duration, interrupted: &AtomicBool) -> DeadServerResult {
    let ways = Way::ALL
        .iter()
        .map(|way| {
            if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
                return WayResult::not_run(*way, "not run: interrupted".to_owned());
            }
            match missing(*way) {
                Some(why) => WayResult::not_run(*way, why),
                None => run_way(*way, bin, duration, interrupted)
                    .unwrap_or_else(|error| WayResult::not_run(*way, format!("failed: {error:#}"))),
            }
        })
        .collect::<Vec<_>>();
    let checks = checks(&ways);
    DeadServerResult {
        number: NUMBER,
        key: KEY,
        title: TITLE,
        lesson: LESSON,
        model: bin
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        seconds: duration.as_secs_f64(),
        kill_at_seconds: duration.as_secs_f64() / 3.0,
        restart_at_seconds: duration.as_secs_f64() * 2.0 / 3.0,
        interval_ms: INTERVAL.as_millis() as u64,
        ways,
        checks,
    }
}

/// The lesson's checks: no way loses an answer, every way's rate comes
/// back after the kill, and the restarted backend is found again.
fn checks(ways: &[WayResult]) -> Vec<CheckResult> {
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

/// Why a way cannot run on this machine, if it cannot.
fn missing(way: Way) -> Option<String> {
    match way {
        Way::Servers => None,
        Way::Haproxy => (!on_path("haproxy")).then(|| "not run: install haproxy".to_owned()),
        Way::Registry => {
            (!Path::new(ZK_SERVER).exists()).then(|| "not run: install zookeeper".to_owned())
        }
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        || Path::new("/usr/sbin").join(program).is_file()
}

/// What a way needs beside its backends, kept alive for its run.
enum Front {
    Servers,
    Haproxy(HaProxy, SocketAddr),
    /// The ZooKeeper is held only to keep it running.
    Registry {
        _zookeeper: ZooKeeper,
        url: String,
    },
}

fn run_way(
    way: Way,
    bin: &Path,
    duration: Duration,
    interrupted: &AtomicBool,
) -> anyhow::Result<WayResult> {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let zookeeper = match way {
        Way::Registry => Some(ZooKeeper::try_start_on(free_port())?),
        _ => None,
    };
    let mut flags = vec!["--work".to_owned(), BACKEND_WORK.to_owned()];
    if let Some(zk) = &zookeeper {
        flags.extend(["--register".to_owned(), zk.url("/zen/dead-server")]);
    }
    let start = |port: u16| Server::start_zen_on(bin, port, &flags);
    let mut backends: Vec<Option<Server>> = Vec::new();
    for port in &ports {
        backends.push(Some(start(*port)?));
    }
    let front = match (way, zookeeper) {
        (Way::Servers, _) => Front::Servers,
        (Way::Haproxy, _) => {
            let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let haproxy = HaProxy::try_start(&haproxy_config(listen.port(), &ports), listen)?;
            wait_until(|| {
                haproxy
                    .statuses("zen_servers")
                    .iter()
                    .all(|(_, s)| s.starts_with("UP"))
            })?;
            Front::Haproxy(haproxy, listen)
        }
        (Way::Registry, Some(zookeeper)) => {
            let path = "/zen/dead-server";
            wait_until(|| zookeeper.children(path).len() == 3)?;
            let url = zookeeper.url(path);
            Front::Registry {
                _zookeeper: zookeeper,
                url,
            }
        }
        (Way::Registry, None) => unreachable!("started above"),
    };
    let addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let mut options = match &front {
        Front::Servers => Options {
            servers: addrs.clone(),
            ..Options::new(addrs[0])
        },
        Front::Haproxy(_, listen) => Options::new(*listen),
        Front::Registry { url, .. } => Options {
            servers: Vec::new(),
            registry: Some(url.parse().map_err(anyhow::Error::msg)?),
            ..Options::new(addrs[0])
        },
    };
    options.connections = CONNECTIONS;
    options.length = Length::Duration(duration);
    options.warmup = Duration::ZERO;
    // Also how long a client passes over a server that refused it.
    options.timeout = Duration::from_secs(1);
    options.threads = Some(1);
    options.timeline = Some(INTERVAL);
    // Connections are remade now and then (each is about a second old at
    // most): a balancer and a registry choose a server per connection, so
    // without new connections a backend that comes back would get none.
    options.reconnect_every = Some(RECONNECT_EVERY);

    let started = Instant::now();
    let load = thread::scope(|scope| -> anyhow::Result<(LoadReport, Option<f64>)> {
        let measuring = scope.spawn(|| {
            let mut watch = Watch {
                interrupted,
                ..Watch::default()
            };
            load::measure(&options, &mut watch)
        });
        sleep_until(started + duration / 3);
        if let Some(victim) = backends[1].take() {
            victim.kill();
        }
        sleep_until(started + duration * 2 / 3);
        let restarted_at = Instant::now();
        backends[1] = Some(start(ports[1])?);
        // Behind HAProxy the client cannot tell its backends apart: the
        // restarted one's first session is read from HAProxy's counters.
        let back = match &front {
            Front::Haproxy(haproxy, _) => {
                let before = haproxy_sessions(haproxy, "zen2");
                let deadline = started + duration;
                let mut back = None;
                while Instant::now() < deadline {
                    if haproxy_sessions(haproxy, "zen2") > before {
                        back = Some(restarted_at.elapsed().as_secs_f64() * 1000.0);
                        break;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                back
            }
            _ => None,
        };
        let report = measuring
            .join()
            .map_err(|_| anyhow::anyhow!("the load panicked"))??;
        Ok((report, back))
    });
    let (report, haproxy_back) = load?;
    let per_backend = backends
        .into_iter()
        .map(|backend| {
            backend
                .and_then(|server| server.stop().summary)
                .map(|s| s.answered)
        })
        .collect();
    let timeline = total_timeline(&report);
    let kill_at = duration.as_secs_f64() / 3.0;
    let restart_at = duration.as_secs_f64() * 2.0 / 3.0;
    let back_after_ms = match way {
        Way::Haproxy => haproxy_back,
        _ => first_answer_after(&report, addrs[1], restart_at).map(|at| (at - restart_at) * 1000.0),
    };
    let errors = report.errors_by_kind;
    Ok(WayResult {
        way,
        not_run: None,
        answers: report.requests,
        lost: errors.wrong_answer + errors.error_answer + errors.unasked_answer,
        errors: report.errors,
        reasked: report.reasked,
        recovered_after_ms: recovered_after(&timeline, kill_at).map(|at| (at - kill_at) * 1000.0),
        back_after_ms,
        per_backend,
        timeline,
    })
}

fn haproxy_sessions(haproxy: &HaProxy, server: &str) -> u64 {
    haproxy.counter("zen_servers", server, "stot").unwrap_or(0)
}

fn sleep_until(at: Instant) {
    thread::sleep(at.saturating_duration_since(Instant::now()));
}

/// Waits (at most 20 s) until `ready`.
fn wait_until(mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while !ready() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(20),
            "the backends never came up"
        );
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Every target's answers per interval, added up.
fn total_timeline(report: &LoadReport) -> Vec<u64> {
    let mut total: Vec<u64> = Vec::new();
    for target in &report.per_target {
        if total.len() < target.timeline.len() {
            total.resize(target.timeline.len(), 0);
        }
        for (sum, n) in total.iter_mut().zip(&target.timeline) {
            *sum += n;
        }
    }
    total
}

/// When (seconds into the run) the rate was first back to 90% of its
/// median before `kill_at`, after `kill_at`.
fn recovered_after(timeline: &[u64], kill_at: f64) -> Option<f64> {
    let interval = INTERVAL.as_secs_f64();
    let kill = (kill_at / interval) as usize;
    let mut before: Vec<u64> = timeline.get(1..kill)?.to_vec();
    if before.is_empty() {
        return None;
    }
    before.sort_unstable();
    let normal = before[before.len() / 2] as f64;
    timeline
        .iter()
        .enumerate()
        .skip(kill + 1)
        .find(|(_, n)| **n as f64 >= 0.9 * normal)
        .map(|(i, _)| i as f64 * interval)
}

/// When (seconds into the run) `backend` first answered after `after`.
fn first_answer_after(report: &LoadReport, backend: SocketAddr, after: f64) -> Option<f64> {
    let interval = INTERVAL.as_secs_f64();
    let target = report
        .per_target
        .iter()
        .find(|t| t.target == backend.to_string())?;
    target
        .timeline
        .iter()
        .enumerate()
        .skip((after / interval) as usize)
        .find(|(_, n)| **n > 0)
        .map(|(i, _)| i as f64 * interval)
}

/// The experiment's table, as Markdown.
pub(crate) fn table(result: &DeadServerResult) -> String {
    let mut out = format!(
        "| way ({} ×3, {:.0} s, killed at {:.1} s, back at {:.1} s) | answers | lost | errors seen | re-asked | rate back after | restarted one back after | answers per backend |\n|---|---|---|---|---|---|---|---|\n",
        result.model, result.seconds, result.kill_at_seconds, result.restart_at_seconds
    );
    for way in &result.ways {
        if let Some(why) = &way.not_run {
            out += &format!("| {} | {why} | | | | | | |\n", way.way.label());
            continue;
        }
        let ms = |v: Option<f64>| v.map_or("–".to_owned(), |ms| format!("{ms:.0} ms"));
        let backends: Vec<String> = way
            .per_backend
            .iter()
            .map(|n| n.map_or("?".to_owned(), |n| group_digits(n as f64)))
            .collect();
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            way.way.label(),
            group_digits(way.answers as f64),
            way.lost,
            way.errors,
            way.reasked,
            ms(way.recovered_after_ms),
            ms(way.back_after_ms),
            backends.join(" / ")
        );
    }
    out
}

/// Where the chart goes in the report directory.
pub(crate) const CHART: &str = "dead-server.svg";

//! Runs experiment 11 (what it is: `plan/dead_server.rs`): for each way,
//! three backends, one load, backend 2 killed at a third of the run and
//! started again at two thirds.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use zen_utils::components::{free_port, haproxy_config, HaProxy, ZooKeeper, ZK_SERVER};

use super::process::Server;
use crate::compare::model::{DeadServerResult, Way, WayResult};
use crate::compare::plan::dead_server::{
    checks, BACKEND_WORK, CONNECTIONS, INTERVAL, KEY, LESSON, NUMBER, RECONNECT_EVERY, TITLE,
};
use crate::load::{self, Length, Options, Watch};
use crate::report::LoadReport;

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

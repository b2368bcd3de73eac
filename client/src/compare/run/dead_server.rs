//! Runs experiment 11 (what it is: `plan/dead_server.rs`): for each way
//! and each failure kind, three backends, one load, backend 2 failing at
//! `fail_at` and recovering at `recover_at`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use zen_utils::components::stuck::StuckLoop;
use zen_utils::components::{free_port, haproxy_config, HaProxy, ZooKeeper, ZK_SERVER};

use super::process::Server;
use crate::compare::model::{DeadServerResult, FailoverRun, Kind, Way};
use crate::compare::plan::dead_server::{
    checks, pairs, settings, Timing, BACKEND_WORK, CONNECTIONS, HAPROXY_FALL, HAPROXY_INTER,
    HEALTH_FAILS, HEALTH_INTERVAL, INTERVAL, KEY, LESSON, NUMBER, RECONNECT_EVERY, TIMEOUT, TITLE,
};
use crate::load::{self, Length, Options, Watch, Window};
use crate::report::{Interval, LoadReport};

/// Runs every pair with backends of `bin`.
pub(crate) fn run(bin: &Path, timing: Timing, interrupted: &AtomicBool) -> DeadServerResult {
    // One ZooKeeper for every registry pair, each under a path of its own.
    let mut zookeeper: Option<Result<ZooKeeper, String>> = None;
    let mut runs = Vec::new();
    for (n, (kind, way, probe)) in pairs().into_iter().enumerate() {
        if interrupted.load(Ordering::Relaxed) {
            runs.push(FailoverRun::not_run(
                kind,
                way,
                probe,
                "not run: interrupted".to_owned(),
            ));
            continue;
        }
        if let Some(why) = missing(way) {
            runs.push(FailoverRun::not_run(kind, way, probe, why));
            continue;
        }
        let zk = match way {
            Way::Registry => {
                let started = zookeeper.get_or_insert_with(|| {
                    ZooKeeper::try_start_on(free_port()).map_err(|e| format!("failed: {e}"))
                });
                match started {
                    Ok(zk) => Some(&*zk),
                    Err(why) => {
                        runs.push(FailoverRun::not_run(kind, way, probe, why.clone()));
                        continue;
                    }
                }
            }
            _ => None,
        };
        let pair = Pair {
            kind,
            way,
            probe,
            path: format!("/zen/failover-{n}"),
        };
        runs.push(
            run_pair(&pair, bin, timing, zk, interrupted).unwrap_or_else(|error| {
                FailoverRun::not_run(kind, way, probe, format!("failed: {error:#}"))
            }),
        );
    }
    let checks = checks(&runs, timing);
    DeadServerResult {
        number: NUMBER,
        key: KEY,
        title: TITLE,
        lesson: LESSON,
        model: bin
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        seconds: timing.seconds.as_secs_f64(),
        fail_at_seconds: timing.fail_at.as_secs_f64(),
        recover_at_seconds: timing.recover_at.as_secs_f64(),
        interval_ms: INTERVAL.as_millis() as u64,
        settings: settings(),
        pairs: runs,
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

/// One pair to run.
struct Pair {
    kind: Kind,
    way: Way,
    /// The servers' health probe is on.
    probe: bool,
    /// The registry path of its servers.
    path: String,
}

/// What a way needs beside its backends, kept alive for its run.
enum Front<'a> {
    Servers,
    Haproxy(HaProxy, SocketAddr),
    Registry(&'a ZooKeeper, String),
}

/// Backend 2 failed, until it is undone (on the thread that failed it:
/// a stuck server's tracer is that thread).
enum Failed {
    Dead,
    Frozen,
    Stuck(StuckLoop),
}

/// The experiment's HAProxy: deploy/haproxy's, checking every
/// [`HAPROXY_INTER`].
fn haproxy(front: u16, backends: &[u16]) -> String {
    haproxy_config(front, backends).replace(
        "inter 200ms fall 2",
        &format!("inter {}ms fall {HAPROXY_FALL}", HAPROXY_INTER.as_millis()),
    )
}

fn run_pair(
    pair: &Pair,
    bin: &Path,
    timing: Timing,
    zookeeper: Option<&ZooKeeper>,
    interrupted: &AtomicBool,
) -> anyhow::Result<FailoverRun> {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut flags = vec!["--work".to_owned(), BACKEND_WORK.to_owned()];
    if let Some(zk) = zookeeper {
        flags.extend(["--register".to_owned(), zk.url(&pair.path)]);
        let interval = if pair.probe {
            format!("{}ms", HEALTH_INTERVAL.as_millis())
        } else {
            "0".to_owned()
        };
        flags.extend([
            "--health-interval".to_owned(),
            interval,
            "--health-fails".to_owned(),
            HEALTH_FAILS.to_string(),
        ]);
    }
    let start = |port: u16| Server::start_zen_on(bin, port, &flags);
    let mut backends: Vec<Option<Server>> = Vec::new();
    for port in &ports {
        backends.push(Some(start(*port)?));
    }
    let front = match (pair.way, zookeeper) {
        (Way::Servers, _) => Front::Servers,
        (Way::Haproxy, _) => {
            let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let haproxy = HaProxy::try_start(&haproxy(listen.port(), &ports), listen)?;
            wait_until(|| {
                haproxy
                    .statuses("zen_servers")
                    .iter()
                    .all(|(_, s)| s.starts_with("UP"))
            })?;
            Front::Haproxy(haproxy, listen)
        }
        (Way::Registry, Some(zookeeper)) => {
            wait_until(|| zookeeper.children(&pair.path).len() == 3)?;
            Front::Registry(zookeeper, zookeeper.url(&pair.path))
        }
        (Way::Registry, None) => anyhow::bail!("no ZooKeeper"),
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
        Front::Registry(_, url) => Options {
            servers: Vec::new(),
            registry: Some(url.parse().map_err(anyhow::Error::msg)?),
            ..Options::new(addrs[0])
        },
    };
    options.connections = CONNECTIONS;
    options.length = Length::Duration(timing.seconds);
    options.warmup = Duration::ZERO;
    // Also how long a client passes over a server that refused it.
    options.timeout = TIMEOUT;
    options.threads = Some(1);
    options.every = Some(INTERVAL);
    options.reconnect_every = Some(RECONNECT_EVERY);

    let mut left_registry = None;
    let mut haproxy_back = None;
    // The run's times count from the load's window, as its series does.
    let opened = std::sync::OnceLock::new();
    let load = thread::scope(|scope| -> anyhow::Result<LoadReport> {
        let measuring = scope.spawn(|| {
            let mut watch = Watch {
                interrupted,
                on_window: &mut |edge| {
                    if edge == Window::Open {
                        let _ = opened.set(Instant::now());
                    }
                },
                ..Watch::default()
            };
            let report = load::measure(&options, &mut watch);
            let _ = opened.set(Instant::now());
            report
        });
        let started = loop {
            if let Some(at) = opened.get() {
                break *at;
            }
            thread::sleep(Duration::from_millis(1));
        };
        sleep_until(started + timing.fail_at);
        let failed_at = Instant::now();
        let failed = match pair.kind {
            Kind::Dead => {
                if let Some(victim) = backends[1].take() {
                    victim.kill();
                }
                Ok(Failed::Dead)
            }
            Kind::Frozen => {
                if let Some(victim) = &backends[1] {
                    victim.freeze();
                }
                Ok(Failed::Frozen)
            }
            Kind::Stuck => match &backends[1] {
                Some(victim) => StuckLoop::stop(victim.pid()).map(Failed::Stuck),
                None => Ok(Failed::Dead),
            },
        };
        // While it fails: when (if) the registry lets it go.
        let recover_at = started + timing.recover_at;
        if let Front::Registry(zookeeper, _) = &front {
            while Instant::now() < recover_at {
                if zookeeper.children(&pair.path).len() < 3 {
                    left_registry = Some(failed_at.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        sleep_until(recover_at);
        let recovered_at = Instant::now();
        let undone = match failed {
            Ok(Failed::Dead) => start(ports[1]).map(|server| backends[1] = Some(server)),
            Ok(Failed::Frozen) => {
                if let Some(victim) = &backends[1] {
                    victim.thaw();
                }
                Ok(())
            }
            Ok(Failed::Stuck(stuck)) => stuck.resume().map_err(anyhow::Error::from),
            Err(error) => Err(anyhow::Error::from(error)),
        };
        // Behind HAProxy the client cannot tell its backends apart: the
        // failed one's first bytes out again are read from HAProxy's
        // counters.
        if let Front::Haproxy(haproxy, _) = &front {
            let before = haproxy_bytes_out(haproxy, "zen2");
            let deadline = started + timing.seconds;
            while Instant::now() < deadline {
                if haproxy_bytes_out(haproxy, "zen2") > before {
                    haproxy_back = Some(recovered_at.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        let report = measuring
            .join()
            .map_err(|_| anyhow::anyhow!("the load panicked"))??;
        undone?;
        Ok(report)
    });
    // A backend left frozen by a run that failed midway would hold its
    // SIGTERM until a SIGCONT: each is sent one first.
    let per_backend = backends
        .into_iter()
        .map(|backend| {
            backend
                .and_then(|server| {
                    server.thaw();
                    server.stop().summary
                })
                .map(|s| s.answered)
        })
        .collect();
    let report = load?;
    let series: Vec<u64> = report.series.iter().map(|i| i.answers).collect();
    let fail_at = timing.fail_at.as_secs_f64();
    let recover_at = timing.recover_at.as_secs_f64();
    let back_after_ms = match pair.way {
        Way::Haproxy => haproxy_back,
        _ => {
            let backend = addrs[1].to_string();
            let answered = |i: &Interval| {
                i.per_target
                    .iter()
                    .any(|share| share.target == backend && share.answers > 0)
            };
            first_interval_after(&report.series, recover_at, answered)
                .map(|at| (at - recover_at) * 1000.0)
        }
    };
    let errors = report.errors_by_kind;
    Ok(FailoverRun {
        kind: pair.kind,
        way: pair.way,
        health_probe: pair.probe,
        not_run: None,
        answers: report.requests,
        lost: errors.wrong_answer + errors.error_answer + errors.unasked_answer,
        errors: report.errors,
        reasked: report.reasked,
        noticed_after_ms: first_interval_after(&report.series, fail_at, |i| i.errors > 0)
            .map(|at| (at - fail_at) * 1000.0),
        recovered_after_ms: recovered_after(&series, fail_at).map(|at| (at - fail_at) * 1000.0),
        back_after_ms,
        left_registry_after_ms: left_registry,
        per_backend,
        series,
    })
}

/// Bytes HAProxy passed from `server` to its clients: they grow only when
/// it answers.
fn haproxy_bytes_out(haproxy: &HaProxy, server: &str) -> u64 {
    haproxy.counter("zen_servers", server, "bout").unwrap_or(0)
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

/// When (seconds into the run) the rate was back to 90% of its median
/// before `fail_at`: the end of the first interval after the one the
/// failure fell in that had as many answers.
fn recovered_after(series: &[u64], fail_at: f64) -> Option<f64> {
    let interval = INTERVAL.as_secs_f64();
    let failed = (fail_at / interval) as usize;
    // The first interval is left out: connections are still starting.
    let mut before: Vec<u64> = series.get(1..failed)?.to_vec();
    if before.is_empty() {
        return None;
    }
    before.sort_unstable();
    let normal = before[before.len() / 2] as f64;
    series
        .iter()
        .enumerate()
        .skip(failed + 1)
        .find(|(_, n)| **n as f64 >= 0.9 * normal)
        .map(|(i, _)| (i + 1) as f64 * interval)
}

/// The end (seconds into the run) of the first interval from the one
/// `after` falls in where `found` holds: when the first error after the
/// failure was seen, when the failed backend first answered again.
fn first_interval_after(
    series: &[Interval],
    after: f64,
    found: impl Fn(&Interval) -> bool,
) -> Option<f64> {
    let interval = INTERVAL.as_secs_f64();
    series
        .iter()
        .enumerate()
        .skip((after / interval) as usize)
        .find(|(_, i)| found(i))
        .map(|(i, _)| (i + 1) as f64 * interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_checks_at_the_experiments_pace() {
        // The pace is set by rewriting deploy/haproxy's check line: if
        // that line changes, this says so, rather than the experiment
        // running at another pace than results.json records.
        let config = haproxy(1060, &[1061, 1062, 1063]);
        let line = format!("inter {}ms fall {HAPROXY_FALL}", HAPROXY_INTER.as_millis());
        assert_eq!(config.matches(&line).count(), 1, "{config}");
        assert!(!config.contains("inter 200ms"), "{config}");
    }
}

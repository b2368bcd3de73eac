//! `client compare` end to end: a small comparison of two real server
//! binaries, checked through its JSON; how it ends (signals, a closed
//! stdout), and what it makes of a server that never answers. No test
//! asserts how fast anything is.

mod common;

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{client, fake_server, num};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;

/// How long anything in these tests may take before it is called hung:
/// far beyond what it needs, so that a hang fails the test instead of
/// stalling the suite.
const HUNG: Duration = Duration::from_secs(60);

/// The servers this test compares.
const SERVERS: [&str; 2] = ["srv-single", "srv-poll"];
/// Their rows in the first two experiments: srv-poll on each poller.
const FIRST_ROWS: [&str; 3] = ["srv-single", "srv-poll", "srv-poll-epoll"];

/// The directory with the server binaries this file starts.
fn server_binaries() -> PathBuf {
    common::server_binaries(&SERVERS)
}

#[test]
fn compares_two_servers_with_numbers_from_real_runs() {
    let bin_dir = server_binaries();
    let out = std::env::temp_dir().join(format!("zen-compare-test-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["compare", "--servers", &SERVERS.join(",")])
        .args(["--only", "one-client,many-clients"])
        // No warmup: then every answer the servers sent is either counted
        // by the client or was in flight at the end.
        .args(["--duration", "300ms", "--warmup", "0s"])
        .arg("--out")
        .arg(&out)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .output()
        .expect("run client compare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1. One client"), "{stdout}");
    assert!(stdout.contains("2. Many clients"), "{stdout}");
    // A line of progress per run.
    assert_eq!(stderr.matches("answers/s").count(), 6, "{stderr}");

    let json = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let results: Value = serde_json::from_str(&json).expect("valid JSON");
    assert!(num(&results, "machine.cores") >= 1.0);
    assert!(results["machine"]["date"]
        .as_str()
        .unwrap()
        .ends_with("UTC"));
    assert!(!results["machine"]["kernel"].as_str().unwrap().is_empty());
    assert_eq!(num(&results, "settings.duration_seconds"), 0.3);
    assert_eq!(results["interrupted"], false);

    let experiments = results["experiments"].as_array().unwrap();
    let keys: Vec<&str> = experiments
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["one-client", "many-clients"]);
    for experiment in experiments {
        let key = experiment["key"].as_str().unwrap();
        assert!(!experiment["lesson"].as_str().unwrap().is_empty());
        let runs = experiment["runs"].as_array().unwrap();
        let servers: Vec<&str> = runs.iter().map(|r| r["server"].as_str().unwrap()).collect();
        assert_eq!(servers, FIRST_ROWS, "{key}");
        for run in runs {
            let what = format!("{key} on {}", run["server"]);
            assert_eq!(run["status"], "ok", "{what}: {run}");
            let load = &run["load"];
            let requests = num(load, "requests");
            assert!(requests > 0.0, "{what}: {load}");
            assert!(num(load, "rps") > 0.0);
            assert_eq!(num(load, "errors"), 0.0, "{what}: {load}");
            let latency = &load["latency_us"];
            assert!(num(latency, "p50") > 0.0);
            assert!(num(latency, "p50") <= num(latency, "p99"));
            assert!(num(latency, "p99") <= num(latency, "max"));

            // The server's own summary: every answer the client counted,
            // plus at most the questions in flight when the run ended.
            let exit = &run["exit"];
            assert_eq!(exit["clean"], true, "{what}: {exit}");
            assert_eq!(exit["code"], 0);
            let answered = num(exit, "summary.answered");
            let in_flight = num(load, "connections") * num(load, "pipeline");
            assert!(
                requests <= answered && answered <= requests + in_flight,
                "{what}: client counted {requests}, server answered {answered}"
            );
            assert_eq!(num(exit, "summary.errors"), 0.0, "{what}");

            // Real readings from /proc.
            let usage = &run["server_usage"];
            assert!(num(usage, "cpu_seconds") >= 0.0);
            assert!(num(usage, "peak_rss_kib") > 0.0, "{what}: {usage}");
            assert!(num(usage, "rss_kib") > 0.0);
            // Every answer costs the server at least a wake-up now and
            // then: a server that answered switched.
            assert!(num(usage, "context_switches") > 0.0, "{what}: {usage}");
            let switches = num(usage, "switches_per_answer");
            assert!(switches > 0.0 && switches.is_finite(), "{what}: {usage}");
        }
        let served = |server: &str| {
            let run = runs.iter().find(|r| r["server"] == server).unwrap();
            num(&run["load"], "served_conns")
        };
        if key == "many-clients" {
            // The lesson of the experiment: one at a time, or all at once.
            assert_eq!(served("srv-single"), 1.0);
            assert_eq!(served("srv-poll"), 64.0);
            assert_eq!(served("srv-poll-epoll"), 64.0);
            let poll = runs.iter().find(|r| r["server"] == "srv-poll").unwrap();
            assert_eq!(num(&poll["exit"], "summary.connections"), 64.0);
        } else {
            assert_eq!(served("srv-single"), 1.0);
            assert_eq!(served("srv-poll"), 1.0);
            assert_eq!(served("srv-poll-epoll"), 1.0);
        }
    }

    // Each experiment's checks, evaluated: no test asserts how fast
    // anything is, so only those about who was served must hold; one on a
    // server not run (the pool) is not measured.
    let checks = |key: &str| -> Vec<(String, Value)> {
        let experiment = experiments.iter().find(|e| e["key"] == key).unwrap();
        experiment["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|check| {
                assert!(check["figures"].is_object(), "{check}");
                (
                    check["text"].as_str().unwrap().to_owned(),
                    check["held"].clone(),
                )
            })
            .collect()
    };
    let texts = |key: &str| -> Vec<String> { checks(key).into_iter().map(|(t, _)| t).collect() };
    assert_eq!(
        texts("one-client"),
        ["every server answers at least half as fast as the fastest"]
    );
    assert_eq!(
        texts("many-clients"),
        [
            "srv-single served 1 of 64",
            "the pool served 16 of 64",
            "thread-per-connection and the event-driven servers served all 64",
            "srv-poll ≥ 2 × srv-single at 64 clients",
        ]
    );
    let many = checks("many-clients");
    assert_eq!(many[0].1, true, "{many:?}");
    assert_eq!(many[1].1, Value::Null, "the pool did not run: {many:?}");
    assert_eq!(many[2].1, true, "{many:?}");
    assert!(many[3].1.is_boolean(), "{many:?}");
    let served = &experiments[1]["checks"][0]["figures"];
    assert_eq!(num(served, "srv-single served"), 1.0, "{served}");

    // One client's round trip, from experiment 1 (srv-single's row), and
    // the prediction it makes for srv-single among 64 clients.
    let rtt = num(&results, "round_trip.us");
    assert!(rtt > 0.0, "{results}");
    assert_eq!(results["round_trip"]["server"], "srv-single");
    assert_eq!(experiments[0]["predictions"], serde_json::json!([]));
    let predictions = experiments[1]["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 1, "{predictions:?}");
    let single = &predictions[0];
    assert_eq!(single["server"], "srv-single");
    assert_eq!(single["formula"], "1 ÷ round trip");
    // The round trip is worked out to the nanosecond: a tenth of a
    // percent covers that rounding of a round trip of a microsecond or more.
    let one_client = 1e6 / rtt;
    assert!(
        (num(single, "predicted_rps") - one_client).abs() < 1e-3 * one_client,
        "{single} against 1 ÷ {rtt} µs"
    );
    assert!(num(single, "measured_rps") > 0.0, "{single}");

    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("## 1. One client"), "{report}");
    assert!(report.contains("One client's round trip on this machine: "));
    let first_table = report.find("| server").unwrap();
    assert!(
        report.find("One client's round trip").unwrap() < first_table,
        "the round trip comes first: {report}"
    );
    assert!(report.contains("| switches/answer |"), "{report}");
    assert!(
        report.contains("- srv-single: 1 ÷ round trip: predicted "),
        "{report}"
    );
    assert!(stdout.contains("Predicted by the cost model, and measured:"));
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.contains("switches/answer"));
    assert!(html.contains("srv-single: 1 ÷ round trip: predicted "));
    assert!(
        report.contains("- ✓ srv-single served 1 of 64 (srv-single served 1)"),
        "{report}"
    );
    assert!(
        report.contains("- – the pool served 16 of 64: not measured"),
        "{report}"
    );
    assert!(report.contains("srv-poll ≥ 2 × srv-single at 64 clients"));
    assert!(
        report.contains("does not change the exit\n  status"),
        "{report}"
    );
    assert!(stdout.contains("- ✓ srv-single served 1 of 64"), "{stdout}");
    assert!(report.contains("## 2. Many clients"));
    assert!(report.contains("| srv-single "));
    for chart in ["throughput.svg", "latency.svg"] {
        let svg = std::fs::read_to_string(out.join(chart)).expect(chart);
        assert!(svg.starts_with("<svg"), "{chart}");
        assert!(svg.contains("srv-poll"), "{chart}: a legend");
        assert!(report.contains(&format!("]({chart})")));
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn report_html_is_one_page_with_the_charts_inline() {
    let out = scratch("html");
    let output = compare_one(
        &SERVERS.join(","),
        "one-client",
        "300ms",
        &out,
        &server_binaries(),
    )
    .output()
    .expect("run client compare");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("<style>"));
    assert!(html.contains("1. One client"), "the experiment's title");
    assert!(html.contains("<td>srv-poll</td>"), "its table");
    assert!(html.contains("<code>client load -c 1"), "its load command");
    // The charts are in the page, not beside it.
    assert_eq!(html.matches("<svg").count(), 2, "throughput and latency");
    assert!(!html.contains("<?xml"));
    // Nothing is loaded from elsewhere, and nothing runs.
    for external in [
        "src=",
        "href=\"http",
        "href='http",
        "<script",
        "<link",
        "@import",
    ] {
        assert!(!html.contains(external), "{external}");
    }
    // Each check, with its mark.
    let json = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let results: Value = serde_json::from_str(&json).expect("valid JSON");
    let checks = results["experiments"][0]["checks"]
        .as_array()
        .expect("checks");
    assert!(!checks.is_empty());
    for check in checks {
        let text = check["text"].as_str().unwrap();
        let escaped = text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(html.contains(&escaped), "{text}");
    }
    assert!(["✓", "✗", "–"].iter().any(|mark| html.contains(mark)));
    // Every `&` starts an entity: text is escaped.
    for (at, _) in html.match_indices('&') {
        let entity = &html[at..html.len().min(at + 8)];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                .iter()
                .any(|known| entity.starts_with(known)),
            "a raw & at {at}: {entity}"
        );
    }
    assert!(!html.contains("& "));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_missing_server_binary_is_one_clear_line() {
    let empty = std::env::temp_dir().join(format!("zen-compare-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["compare", "--servers", "srv-poll", "--only", "one-client"])
        .arg("--bin-dir")
        .arg(&empty)
        .arg("--out")
        .arg(empty.join("out"))
        .output()
        .expect("run client compare");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("srv-poll not found"), "{stderr}");
    assert!(stderr.contains("cargo build --release"), "{stderr}");
    assert!(!empty.join("out").exists(), "nothing written");
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn unknown_names_are_refused() {
    for args in [["--only", "c100k"], ["--servers", "srv-nope"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_client"))
            .arg("compare")
            .args(args)
            .output()
            .expect("run client compare");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(stderr.contains("known:"), "{stderr}");
    }
}

/// `client compare` of `server` alone in experiment `only`, each run
/// lasting `duration` with no warmup, writing into `out`, its servers
/// from `bin_dir`; no stdin.
fn compare_one(server: &str, only: &str, duration: &str, out: &Path, bin_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_client"));
    command
        .args(["compare", "--servers", server, "--only", only])
        .args(["--duration", duration, "--warmup", "0s"])
        .arg("--out")
        .arg(out)
        .arg("--bin-dir")
        .arg(bin_dir)
        .stdin(Stdio::null());
    command
}

/// The first run of the first experiment in `out`'s results.json.
fn first_run(out: &Path) -> Value {
    let json = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let results: Value = serde_json::from_str(&json).expect("valid JSON");
    results["experiments"][0]["runs"][0].clone()
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zen-compare-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes an executable shell script.
fn script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// What `/proc/PID/stat` says of a process: its name, state, parent and
/// start time (which tells it from a later process given the same pid).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    name: String,
    state: char,
    ppid: i32,
    start: u64,
}

/// `None` once the process is gone (and reaped).
fn stat(pid: i32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces and parentheses.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    Some(Stat {
        name: stat[open + 1..close].to_owned(),
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        // Field 22, counted from the state, field 3.
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The processes whose parent is `parent`, with their start times.
fn children_of(parent: i32) -> Vec<(i32, Stat)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .filter(|(_, stat)| stat.ppid == parent)
        .collect()
}

/// Whether the process `pid` that started at `start` still runs: not when
/// it is gone, nor a zombie left to whoever adopted it.
fn running(pid: i32, start: u64) -> bool {
    stat(pid).is_some_and(|stat| stat.start == start && !matches!(stat.state, 'Z' | 'X'))
}

/// A `client compare` under test and every process it was seen to start.
/// Dropped, it kills whatever of them still runs, so that nothing outlives
/// the test, even one that fails.
struct Watched {
    compare: Child,
    started: Vec<(i32, Stat)>,
}

impl Watched {
    fn pid(&self) -> i32 {
        self.compare.id() as i32
    }

    /// Notes the children compare has now. A child seen between its fork
    /// and its exec still bears compare's name: seen again, its entry takes
    /// the name it has now.
    fn look(&mut self) {
        for (pid, stat) in children_of(self.pid()) {
            match self
                .started
                .iter_mut()
                .find(|(p, s)| *p == pid && s.start == stat.start)
            {
                Some((_, seen)) => *seen = stat,
                None => self.started.push((pid, stat)),
            }
        }
    }

    /// Waits until compare has started `name` (exec'd it).
    fn wait_for_child(&mut self, name: &str) {
        let waiting = Instant::now();
        while !self.started.iter().any(|(_, stat)| stat.name == name) {
            if let Ok(Some(status)) = self.compare.try_wait() {
                panic!("compare ended ({status}) before starting {name}");
            }
            assert!(waiting.elapsed() < HUNG, "compare never started {name}");
            thread::sleep(Duration::from_millis(10));
            self.look();
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.pid()).unwrap();
        kill_process(pid, signal).unwrap();
    }

    /// Waits until `signal` sent to compare is no longer pending, that is
    /// until its handler has run or is running: a second of the same signal
    /// sent before that would merge with it.
    fn wait_delivered(&self, signal: Signal) {
        let bit = 1u64 << (signal.as_raw() - 1);
        let pending = |status: &str, key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .is_some_and(|mask| mask & bit != 0)
        };
        let waiting = Instant::now();
        loop {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid())) else {
                return;
            };
            if !pending(&status, "ShdPnd:") && !pending(&status, "SigPnd:") {
                return;
            }
            assert!(waiting.elapsed() < HUNG, "{signal:?} never delivered");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for compare to end, noting any child it starts meanwhile.
    fn wait(&mut self) -> ExitStatus {
        let waiting = Instant::now();
        loop {
            self.look();
            if let Some(status) = self.compare.try_wait().unwrap() {
                return status;
            }
            assert!(
                waiting.elapsed() < HUNG,
                "compare still running after {HUNG:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asserts that every process compare started stops, within [`HUNG`].
    fn assert_all_stopped(&self) {
        assert!(!self.started.is_empty(), "compare started nothing");
        let waiting = Instant::now();
        for (pid, stat) in &self.started {
            while running(*pid, stat.start) {
                assert!(
                    waiting.elapsed() < HUNG,
                    "{} (pid {pid}) still runs after compare ended: {:?}",
                    stat.name,
                    self::stat(*pid)
                );
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.compare.kill();
        let _ = self.compare.wait();
        self.look();
        for (pid, stat) in &self.started {
            if running(*pid, stat.start) {
                if let Some(pid) = Pid::from_raw(*pid) {
                    let _ = kill_process(pid, Signal::KILL);
                }
            }
        }
    }
}

/// Starts a comparison whose one run lasts a minute (srv-poll, slow
/// backend), waits until its server runs, sends compare `signals` (each
/// once the one before was delivered), and checks that the server stops.
/// Returns how compare ended, and its --out directory.
fn stop_compare_with(name: &str, signals: &[Signal]) -> (ExitStatus, PathBuf) {
    let bin_dir = server_binaries();
    let dir = scratch(name);
    let out = dir.join("out");
    let compare = compare_one("srv-poll", "slow-backend", "60s", &out, &bin_dir)
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("stderr")).unwrap())
        .spawn()
        .expect("run client compare");
    let mut watched = Watched {
        compare,
        started: Vec::new(),
    };
    watched.wait_for_child("srv-poll");
    for (i, &signal) in signals.iter().enumerate() {
        if i > 0 {
            watched.wait_delivered(signals[i - 1]);
        }
        watched.signal(signal);
    }
    let status = watched.wait();
    watched.assert_all_stopped();
    let mut stderr = String::new();
    if let Ok(mut file) = File::open(dir.join("stderr")) {
        let _ = file.read_to_string(&mut stderr);
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    (status, out)
}

#[test]
fn sigterm_stops_compare_with_its_report_and_its_servers() {
    let (status, out) = stop_compare_with("sigterm", &[Signal::TERM]);
    // As the first Ctrl-C: an exit, not a death by the signal, after the
    // report of what was measured.
    assert_eq!(status.code(), Some(1), "{status}");
    let json = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let results: Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(results["interrupted"], true);
    let runs = results["experiments"][0]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{results}");
    assert_eq!(runs[0]["load"]["stopped_early"], "interrupted", "{results}");
    assert!(out.join("report.md").is_file());
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
}

#[test]
fn a_second_sigint_ends_compare_and_its_servers() {
    let (status, out) = stop_compare_with("sigint-twice", &[Signal::INT, Signal::INT]);
    assert_eq!(status.code(), Some(130), "{status}");
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
}

#[test]
fn sigint_then_sigterm_ends_compare_and_its_servers() {
    let (status, out) = stop_compare_with("sigint-sigterm", &[Signal::INT, Signal::TERM]);
    assert_eq!(status.code(), Some(143), "{status}");
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
}

#[test]
fn killing_compare_stops_its_servers() {
    let (status, out) = stop_compare_with("sigkill", &[Signal::KILL]);
    assert_eq!(status.signal(), Some(Signal::KILL.as_raw()), "{status}");
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
}

#[test]
fn an_unwritable_out_is_refused_before_any_server_starts() {
    let dir = scratch("unwritable");
    let started = dir.join("started");
    // A "server" that only says it was started.
    script(
        &dir.join("srv-poll"),
        &format!("#!/bin/sh\ntouch '{}'\n", started.display()),
    );
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let bin_dir = dir.to_str().unwrap();
    for out in [PathBuf::from("/sys/kernel"), file.join("out")] {
        let out = out.to_str().unwrap();
        let output = client(&[
            "compare",
            "--servers",
            "srv-poll",
            "--only",
            "one-client",
            "--duration",
            "100ms",
            "--bin-dir",
            bin_dir,
            "--out",
            out,
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{out}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("client: cannot write the report in {out}: ")),
            "{stderr}"
        );
        assert!(!started.exists(), "{out}: a server was started");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_server_that_never_answers_fails_its_run() {
    // The listener is this test's: it accepts and reads, and never
    // answers. The "server" is a script that gives its address, and stops
    // cleanly on SIGTERM with a summary.
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepted);
    let addr = fake_server(move |mut stream, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        let _ = std::io::copy(&mut stream, &mut std::io::sink());
    });
    let dir = scratch("never-answers");
    let summary = zen_utils::Summary {
        connections: 1,
        answered: 0,
        errors: 0,
        dropped: 0,
        uptime: Duration::from_secs(1),
    }
    .to_string();
    assert!(!summary.contains('\''), "{summary}");
    script(
        &dir.join("srv-poll"),
        &format!(
            "#!/bin/sh\n\
             trap 'echo \"srv-poll: {summary}\" >&2; exit 0' TERM\n\
             echo 'listening on {addr}'\n\
             while :; do sleep 0.05; done\n"
        ),
    );
    let out = dir.join("out");
    let output = client(&[
        "compare",
        "--servers",
        "srv-poll",
        "--only",
        "one-client",
        "--duration",
        "300ms",
        "--warmup",
        "0s",
        "--bin-dir",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        accepted.load(Ordering::SeqCst) > 0,
        "never connected: {stderr}"
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no answer arrived"), "{stderr}");

    let run = first_run(&out);
    assert_eq!(run["status"], "failed", "{run}");
    let note = run["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("no answer arrived in the measured window"),
        "{run}"
    );
    assert_eq!(num(&run["load"], "requests"), 0.0, "{run}");
    // The failure is the run's, not the server's exit.
    assert_eq!(run["exit"]["clean"], true, "{run}");
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("no answer arrived"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_closed_stdout_loses_the_tables_not_the_report() {
    let bin_dir = server_binaries();
    let dir = scratch("closed-stdout");
    let out = dir.join("out");
    let mut compare = compare_one("srv-poll", "one-client", "100ms", &out, &bin_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run client compare");
    // `client compare 2>&1 | head -1` once head has gone.
    drop(compare.stdout.take());
    drop(compare.stderr.take());
    let mut watched = Watched {
        compare,
        started: Vec::new(),
    };
    let status = watched.wait();
    assert_eq!(status.code(), Some(0), "{status}");
    let run = first_run(&out);
    assert_eq!(run["status"], "ok", "{run}");
    assert!(out.join("report.md").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// With idle connections held first, srv-single answering no busy client
/// is the lesson of the experiment, not a broken server: the run is a row
/// of zeros, not a failure, and compare exits 0.
#[test]
fn starvation_by_idle_clients_is_a_figure_not_a_failure() {
    let bin_dir = server_binaries();
    let dir = scratch("starved");
    let out = dir.join("out");
    let output = compare_one("srv-single", "slow-clients", "300ms", &out, &bin_dir)
        .output()
        .expect("run client compare");
    assert!(output.status.success(), "{output:?}");
    let run = first_run(&out);
    assert_eq!(run["status"], "ok", "{run}");
    assert_eq!(num(&run["load"], "requests"), 0.0, "{run}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Experiment 10 for two servers: every connection closes after three
/// answers (the load's command line says so), srv-single serves them all
/// in turn, and the checks that compare with experiment 2, which did not
/// run, are not measured.
#[test]
fn short_connections_reconnect_every_three_questions() {
    let bin_dir = server_binaries();
    let dir = scratch("short");
    let out = dir.join("out");
    let output = compare_one(
        &SERVERS.join(","),
        "short-connections",
        "300ms",
        &out,
        &bin_dir,
    )
    .output()
    .expect("run client compare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("10. Short connections"), "{stdout}");
    let json = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let results: Value = serde_json::from_str(&json).expect("valid JSON");
    let experiment = &results["experiments"][0];
    assert_eq!(experiment["key"], "short-connections");
    assert_eq!(experiment["number"], 10);
    let runs = experiment["runs"].as_array().unwrap();
    let servers: Vec<&str> = runs.iter().map(|r| r["server"].as_str().unwrap()).collect();
    assert_eq!(servers, SERVERS);
    for run in runs {
        assert_eq!(run["status"], "ok", "{run}");
        let command = run["load_command"].as_str().unwrap();
        assert!(command.starts_with("client load -c 64 "), "{command}");
        assert!(command.contains("--reconnect-every 3"), "{command}");
        let load = &run["load"];
        assert_eq!(num(load, "reconnect_every"), 3.0, "{load}");
        assert!(num(load, "planned_reconnects") > 0.0, "{load}");
        assert_eq!(num(load, "errors"), 0.0, "{load}");
    }
    let single = &runs[0]["load"];
    assert_eq!(num(single, "served_conns"), 64.0, "{single}");
    let checks = experiment["checks"].as_array().unwrap();
    let held: Vec<(&str, &Value)> = checks
        .iter()
        .map(|c| (c["text"].as_str().unwrap(), &c["held"]))
        .collect();
    assert_eq!(held.len(), 3, "{held:?}");
    assert_eq!(
        *held[0].1,
        Value::Null,
        "many-clients did not run: {held:?}"
    );
    assert_eq!(*held[1].1, Value::Null, "per-conn did not run: {held:?}");
    assert_eq!(
        held[2],
        (
            "srv-single served all 64, one after another",
            &Value::Bool(true)
        )
    );
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("## 10. Short connections"), "{report}");
    assert!(report.contains("--reconnect-every 3"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Experiment 11 on its own: three srv-poll backends, one load per failure
/// kind and way, backend 2 killed, frozen or stuck mid-run and recovered.
/// Every pair ran (this machine has HAProxy and ZooKeeper), lost no
/// answer, and saw the failure (an error or a question asked again); its
/// series adds up to its answers; the table and the chart are written.
#[test]
fn survives_a_failed_server_three_kinds_three_ways_losing_nothing() {
    let bin_dir = common::server_binaries(&["srv-poll"]);
    let out = std::env::temp_dir().join(format!("zen-compare-dead-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_client"))
        .args([
            "compare",
            "--quick",
            "--only",
            "dead-server",
            "--servers",
            "srv-poll",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .output()
        .expect("run client compare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("11. Three ways to survive a failed server"),
        "{stdout}"
    );
    // Counted before it runs: one experiment, its backends' one model, a
    // run per failure kind and way, and the registry's stuck one again
    // without the health probe.
    assert!(
        stderr.contains("client compare: 1 experiment, 1 server, 10 runs;"),
        "{stderr}"
    );
    let json = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let results: Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(results["experiments"].as_array().unwrap().len(), 0);
    let dead = &results["dead_server"];
    assert_eq!(dead["model"], "srv-poll");
    let pairs = dead["pairs"].as_array().unwrap();
    let names: Vec<String> = pairs
        .iter()
        .map(|p| format!("{} {} {}", p["kind"], p["way"], p["health_probe"]))
        .collect();
    let mut expected = Vec::new();
    for way in ["servers", "haproxy", "registry"] {
        for kind in ["dead", "frozen", "stuck"] {
            expected.push(format!("\"{kind}\" \"{way}\" true"));
        }
    }
    expected.push("\"stuck\" \"registry\" false".to_owned());
    assert_eq!(names, expected);
    for pair in pairs {
        assert!(pair["not_run"].is_null(), "{pair}");
        assert!(num(pair, "answers") > 0.0, "{pair}");
        assert_eq!(num(pair, "lost"), 0.0, "{pair}");
        assert!(
            num(pair, "errors") + num(pair, "reasked") > 0.0,
            "the failure was seen: {pair}"
        );
        let series = pair["series"].as_array().unwrap();
        let total: f64 = series.iter().map(|n| n.as_f64().unwrap()).sum();
        assert_eq!(
            total,
            num(pair, "answers"),
            "the chart adds up to the answers: {pair}"
        );
        assert_eq!(pair["per_backend"].as_array().unwrap().len(), 3, "{pair}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| frozen | HAProxy in front |"), "{report}");
    assert!(
        report.contains("| stuck | ZooKeeper registry, --health-interval 0 |"),
        "{report}"
    );
    let chart = std::fs::read_to_string(out.join("dead-server.svg")).unwrap();
    for panel in [
        "killed (SIGKILL)",
        "frozen (SIGSTOP)",
        "stuck (serving threads stopped)",
    ] {
        assert!(chart.contains(panel), "{panel}");
    }
    assert!(chart.contains("ZooKeeper registry"));
    let _ = std::fs::remove_dir_all(&out);
}

/// Experiment 12 on its own, for srv-single and srv-async: two srv-singles
/// asking each other deadlock until the peer timeout (no right answer, and
/// `Error: no peer answered.` counted); two srv-asyncs answer every client.
#[test]
fn servers_that_ask_servers_deadlock_one_at_a_time_and_not_async() {
    let bin_dir = common::server_binaries(&["srv-single", "srv-async"]);
    let out = std::env::temp_dir().join(format!("zen-compare-peers-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_client"))
        .args([
            "compare",
            "--quick",
            "--only",
            "servers-ask-servers",
            "--servers",
            "srv-single,srv-async",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .output()
        .expect("run client compare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("client compare: 1 experiment, 2 servers, 2 runs;"),
        "{stderr}"
    );
    let json = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let results: Value = serde_json::from_str(&json).expect("valid JSON");
    let rows = results["ask_peers"]["rows"].as_array().unwrap();
    let row = |id: &str| {
        rows.iter()
            .find(|r| r["server"] == id)
            .unwrap_or_else(|| panic!("{id}: {rows:?}"))
    };
    let single = row("srv-single");
    assert!(single["failed"].is_null(), "{single}");
    // Deadlocked, but not from the first instant: until the other side's
    // own clients are in, it is free to answer (on a busy machine, dozens
    // of questions in a 1 s run). Some clients are never served, and some
    // questions wait out the timeout.
    assert!(num(single, "no_peer_answered") > 0.0, "{single}");
    assert!(num(single, "served") < 16.0, "{single}");
    let async_row = row("srv-async");
    assert_eq!(num(async_row, "no_peer_answered"), 0.0, "{async_row}");
    assert_eq!(num(async_row, "served"), 16.0, "{async_row}");
    assert!(num(async_row, "rps") > 0.0, "{async_row}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("## 12. Servers that ask servers"),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

//! `client compare` end to end: a small comparison of two real server
//! binaries, checked through its JSON. No test asserts how fast anything is.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The servers this test compares.
const SERVERS: [&str; 2] = ["srv-single", "srv-poll"];

/// The directory with the server binaries: the client's own, where cargo
/// puts every binary of the workspace. `cargo nextest run --workspace` and
/// `cargo test --workspace` build them all (each server crate has
/// integration tests, and cargo builds a package's binaries for those);
/// when this package is tested alone they may be missing, and are built
/// here with the same cargo, profile and target directory.
fn server_binaries() -> PathBuf {
    let client = Path::new(env!("CARGO_BIN_EXE_client"));
    let dir = client.parent().expect("the client is in a directory");
    let missing = |dir: &Path| SERVERS.iter().any(|bin| !dir.join(bin).is_file());
    if missing(dir) {
        let profile = dir
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("debug");
        let target_dir = dir
            .parent()
            .expect("a profile directory is in a target directory");
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--bins", "--profile"]);
        // The `debug` directory is the `dev` profile's.
        cargo.arg(if profile == "debug" { "dev" } else { profile });
        for bin in SERVERS {
            cargo.args(["-p", bin]);
        }
        let status = cargo
            .env("CARGO_TARGET_DIR", target_dir)
            .status()
            .expect("run cargo build for the servers");
        assert!(status.success(), "cargo build of {SERVERS:?} failed");
    }
    assert!(!missing(dir), "{SERVERS:?} not found in {}", dir.display());
    dir.to_owned()
}

fn num(value: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(value, |value, key| &value[key])
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {value}"))
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
    assert_eq!(stderr.matches("answers/s").count(), 4, "{stderr}");

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
        assert_eq!(servers, SERVERS, "{key}");
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
        }
        let served = |server: &str| {
            let run = runs.iter().find(|r| r["server"] == server).unwrap();
            num(&run["load"], "served_conns")
        };
        if key == "many-clients" {
            // The lesson of the experiment: one at a time, or all at once.
            assert_eq!(served("srv-single"), 1.0);
            assert_eq!(served("srv-poll"), 64.0);
            let poll = runs.iter().find(|r| r["server"] == "srv-poll").unwrap();
            assert_eq!(num(&poll["exit"], "summary.connections"), 64.0);
        } else {
            assert_eq!(served("srv-single"), 1.0);
            assert_eq!(served("srv-poll"), 1.0);
        }
    }

    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("## 1. One client"), "{report}");
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

//! `client load` against real servers over real sockets: srv-single, and
//! small fake servers that answer wrong, close, restart or stay silent.
//! No test asserts how fast anything is.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{answer_questions, client, fake_server, json, num, target, zen_server};
use serde_json::Value;
use zen_utils::protocol::{answer, APHORISMS, SERVER_BUSY};
use zen_utils::testkit::TestServer;
use zen_utils::{serve::listener, Config};

fn srv_single() -> TestServer {
    TestServer::start(srv_single::serve, Config::default())
}

fn load(addr: SocketAddr, args: &[&str]) -> (Value, std::process::Output) {
    json("load", addr, args)
}

/// The error kinds that are not zero.
fn error_kinds(report: &Value) -> Vec<String> {
    report["errors_by_kind"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, count)| count.as_u64() != Some(0))
        .map(|(kind, _)| kind.clone())
        .collect()
}

#[test]
fn n_asks_exactly_n_questions_with_no_errors() {
    let server = srv_single();
    let (report, output) = load(server.addr(), &["-c", "4", "-n", "500"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(num(&report, "requests"), 500.0);
    assert_eq!(num(&report, "errors"), 0.0);
    assert_eq!(num(&report, "connections"), 4.0);
    // srv-single serves one connection at a time, but each gets its turn
    // once the one before it is done and closes.
    assert_eq!(num(&report, "served_conns"), 4.0);
    let summary = server.stop();
    assert_eq!((summary.answered, summary.errors), (500, 0));
}

#[test]
fn json_has_the_spec_keys_and_consistent_numbers() {
    let server = srv_single();
    let (report, output) = load(server.addr(), &["-c", "3", "-d", "300ms"]);
    assert!(output.status.success(), "{output:?}");
    for key in [
        "connections",
        "requests",
        "seconds",
        "rps",
        "errors",
        "served_conns",
        "latency_us",
        "errors_by_kind",
        "fairness",
        "reconnects",
        "pipeline",
        "threads",
        "targets",
    ] {
        assert!(!report[key].is_null(), "{key} missing in {report}");
    }
    let requests = num(&report, "requests");
    let seconds = num(&report, "seconds");
    assert!(requests > 0.0, "{report}");
    assert!(seconds > 0.0, "{report}");
    let rps = num(&report, "rps");
    assert!((rps - requests / seconds).abs() <= 1e-6 * rps, "{report}");
    let percentiles: Vec<f64> = ["p50", "p90", "p99", "p999", "max"]
        .iter()
        .map(|p| num(&report, &format!("latency_us.{p}")))
        .collect();
    assert!(percentiles[0] > 0.0, "{report}");
    assert!(percentiles.windows(2).all(|w| w[0] <= w[1]), "{report}");
    assert!(report["uncorrected_latency_us"].is_null());
    let kinds: f64 = report["errors_by_kind"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert_eq!(kinds, num(&report, "errors"));
    // srv-single serves the first connection for the whole run.
    assert_eq!(num(&report, "served_conns"), 1.0);
    assert_eq!(num(&report, "fairness.min"), 0.0);
    assert_eq!(num(&report, "fairness.max"), requests);
    let jain = num(&report, "fairness.jain");
    assert!((jain - 1.0 / 3.0).abs() < 1e-9, "{report}");
    assert_eq!(
        report["targets"],
        serde_json::json!([server.addr().to_string()])
    );
    assert!(output.stderr.is_empty(), "no progress line off a terminal");
}

#[test]
fn prints_a_readable_report_without_json() {
    let addr = zen_server();
    let mut args = vec!["load".to_owned()];
    args.extend(target(addr));
    args.extend(["-c", "2", "-n", "100"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = client(&args);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    for line in [
        "target ",
        "connections   2 on ",
        "requests      100 in ",
        "errors        0\n",
        "reconnects    0\n",
        "served conns  2 of 2;",
        "latency (us)",
        "p99.9",
    ] {
        assert!(stdout.contains(line), "{line:?} not in:\n{stdout}");
    }
    assert!(!stdout.contains("corrected"), "{stdout}");
}

/// A fake zen server that answers right and records every question asked.
fn recording_server() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&asked);
    let addr = fake_server(move |stream, _| {
        let record = Arc::clone(&record);
        answer_questions(
            stream,
            move |question| {
                record.lock().unwrap().push(question.to_vec());
                answer(question)
            },
            None,
        );
    });
    (addr, asked)
}

#[test]
fn asks_the_whole_table_in_turn_by_default() {
    let (addr, asked) = recording_server();
    let (report, output) = load(addr, &["-c", "1", "-n", "70", "--pipeline", "3"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(num(&report, "requests"), 70.0);
    let asked = asked.lock().unwrap();
    assert_eq!(asked.len(), 70);
    for (question, _) in APHORISMS {
        assert_eq!(asked.iter().filter(|q| *q == question).count(), 10);
    }
}

#[test]
fn question_asks_only_that_question() {
    let (addr, asked) = recording_server();
    let (report, output) = load(
        addr,
        &["-c", "2", "-n", "50", "--question", "Now is better than?"],
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(num(&report, "requests"), 50.0);
    let asked = asked.lock().unwrap();
    assert_eq!(asked.len(), 50);
    assert!(asked.iter().all(|q| q == b"Now is better than?"));
}

#[test]
fn pipeline_keeps_many_questions_in_flight() {
    let server = srv_single();
    let (report, output) = load(
        server.addr(),
        &["-c", "1", "-n", "1000", "--pipeline", "16"],
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(num(&report, "requests"), 1000.0);
    assert_eq!(num(&report, "pipeline"), 16.0);
    assert_eq!(num(&report, "errors"), 0.0);
    assert_eq!(server.stop().answered, 1000);
}

#[test]
fn wrong_answers_are_counted_and_fail_the_run_after_the_report() {
    let addr = fake_server(|stream, _| answer_questions(stream, |_| b"wrong.", None));
    let (report, output) = load(addr, &["-c", "2", "-n", "40"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    // Only right answers are requests: garbage does not make a rate.
    assert_eq!(num(&report, "requests"), 0.0);
    assert_eq!(num(&report, "served_conns"), 0.0);
    assert_eq!(num(&report, "errors"), 40.0);
    assert_eq!(num(&report, "errors_by_kind.wrong_answer"), 40.0);
    assert_eq!(error_kinds(&report), ["wrong_answer"]);
}

#[test]
fn error_answers_are_counted_as_their_own_kind() {
    let addr = fake_server(|stream, _| {
        answer_questions(stream, |_| b"Error: unknown aphorism.", None);
    });
    let (report, output) = load(addr, &["-c", "1", "-n", "10"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(num(&report, "errors_by_kind.error_answer"), 10.0);
    assert_eq!(error_kinds(&report), ["error_answer"]);
}

#[test]
fn connections_turned_away_as_busy_are_errors_not_served() {
    // The first connection is served; every later one is told the server
    // is busy and closed, as a server at its --max-conns does.
    let addr = fake_server(|mut stream, n| {
        if n == 0 {
            answer_questions(stream, answer, None);
        } else {
            let _ = stream.write_all(SERVER_BUSY);
        }
    });
    let (report, output) = load(addr, &["-c", "3", "-d", "300ms"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(num(&report, "requests") > 0.0);
    assert_eq!(num(&report, "served_conns"), 1.0, "{report}");
    assert!(
        num(&report, "errors_by_kind.error_answer") >= 2.0,
        "{report}"
    );
}

#[test]
fn a_server_that_closes_is_reconnected_and_no_answer_is_lost() {
    // Every connection is answered 7 times, then closed with questions
    // still unanswered: they must be asked again on a new connection.
    let addr = fake_server(|stream, _| answer_questions(stream, answer, Some(7)));
    let (report, output) = load(addr, &["-c", "3", "-n", "300", "--pipeline", "4"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(num(&report, "requests"), 300.0);
    assert_eq!(num(&report, "errors_by_kind.wrong_answer"), 0.0);
    assert!(num(&report, "errors_by_kind.closed") > 0.0, "{report}");
    assert!(num(&report, "reconnects") > 0.0, "{report}");
    assert!(report["stopped_early"].is_null(), "{report}");
}

#[test]
fn a_server_restarted_under_server_loses_no_answer() {
    let steady = srv_single();
    let first = srv_single();
    let restarted_addr = first.addr();
    let steady_addr = steady.addr().to_string();
    let restarted = restarted_addr.to_string();
    let run = thread::spawn(move || {
        let output = client(&[
            "load",
            "--server",
            &steady_addr,
            "--server",
            &restarted,
            "-c",
            "2",
            "--rate",
            "1000",
            "-n",
            "2500",
            "--json",
        ]);
        let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        (report, output)
    });
    thread::sleep(Duration::from_millis(700));
    let before = first.stop();
    let listener = listener::bind(restarted_addr, 128, false).expect("rebind the port");
    let second = TestServer::start_on(listener, srv_single::serve, Config::default());
    let (report, output) = run.join().unwrap();
    assert_eq!(num(&report, "requests"), 2500.0, "{output:?}");
    assert_eq!(num(&report, "errors_by_kind.wrong_answer"), 0.0);
    assert!(num(&report, "reconnects") >= 1.0, "{report}");
    let after = second.stop();
    assert!(
        before.answered > 0 && after.answered > 0,
        "{before:?} {after:?}"
    );
    assert!(before.answered + after.answered + steady.stop().answered >= 2500);
}

#[test]
fn send_and_expect_load_a_fixed_reply_server() {
    // A redis-like server: every "PING\r\n" gets "+PONG\r\n".
    let addr = fake_server(|mut stream, _| {
        stream.set_nodelay(true).unwrap();
        let mut buf = [0; 4096];
        let mut partial = 0;
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            partial += n;
            let replies = b"+PONG\r\n".repeat(partial / 6);
            partial %= 6;
            if stream.write_all(&replies).is_err() {
                return;
            }
        }
    });
    let ping = ["--send", r"PING\r\n", "--expect", r"+PONG\r\n"];
    let mut args = vec!["-c", "2", "-n", "200", "--pipeline", "8"];
    args.extend(ping);
    let (report, output) = load(addr, &args);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(num(&report, "requests"), 200.0);
    assert_eq!(num(&report, "errors"), 0.0);

    let (report, output) = load(
        addr,
        &[
            "-c",
            "1",
            "-n",
            "4",
            "--send",
            r"PING\r\n",
            "--expect",
            r"+PANG\r\n",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(num(&report, "errors_by_kind.wrong_answer"), 4.0);
}

#[test]
fn rate_reports_corrected_and_uncorrected_latency() {
    let addr = zen_server();
    let (report, output) = load(addr, &["-c", "2", "-d", "500ms", "--rate", "400"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(num(&report, "rate"), 400.0);
    assert!(num(&report, "requests") > 0.0);
    for latency in ["latency_us", "uncorrected_latency_us"] {
        let percentiles: Vec<f64> = ["p50", "p90", "p99", "p999", "max"]
            .iter()
            .map(|p| num(&report, &format!("{latency}.{p}")))
            .collect();
        assert!(percentiles.windows(2).all(|w| w[0] <= w[1]), "{report}");
    }

    let mut args = vec!["load".to_owned()];
    args.extend(target(addr));
    args.extend(["-c", "1", "-n", "50", "--rate", "500"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = client(&args);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("open loop at 500 requests/s"), "{stdout}");
    assert!(stdout.contains("\n  corrected "), "{stdout}");
    assert!(stdout.contains("\n  uncorrected "), "{stdout}");
}

#[test]
fn warmup_questions_are_not_counted() {
    let server = srv_single();
    let (report, output) = load(
        server.addr(),
        &["-c", "1", "-n", "100", "--warmup", "100ms"],
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(num(&report, "requests"), 100.0);
    assert_eq!(num(&report, "warmup_seconds"), 0.1);
    assert!(server.stop().answered > 100);
}

#[test]
fn a_silent_server_times_out_and_n_stops_early() {
    // Connections complete in the kernel's backlog; nobody ever answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (report, output) = load(
        listener.local_addr().unwrap(),
        &["-c", "2", "-n", "10", "--timeout", "200ms"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(num(&report, "requests"), 0.0);
    assert!(num(&report, "errors_by_kind.timeout") >= 1.0, "{report}");
    assert_eq!(report["stopped_early"], "no answer for 200ms");
}

#[test]
fn a_run_with_no_answer_at_all_says_so_and_fails() {
    // Reads every question and never answers, as a server of another
    // protocol that waits for more would.
    let addr = fake_server(|mut stream, _| {
        let mut buf = [0; 4096];
        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
    });
    let (report, output) = load(addr, &["-c", "2", "-d", "300ms"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(num(&report, "requests"), 0.0);
    assert_eq!(num(&report, "errors"), 0.0);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("client load: no answer arrived in 0.3 s: is the server stuck"),
        "{stderr}"
    );
}

#[test]
fn threads_are_at_most_one_per_connection() {
    let addr = zen_server();
    let (report, _) = load(addr, &["-c", "3", "-n", "30", "--threads", "1"]);
    assert_eq!(num(&report, "threads"), 1.0);
    let (report, _) = load(addr, &["-c", "2", "-n", "30", "--threads", "8"]);
    assert_eq!(num(&report, "threads"), 2.0);
    assert_eq!(num(&report, "requests"), 30.0);
}

#[test]
fn nothing_to_connect_to_is_one_line_and_a_failure() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut args = vec!["load".to_owned()];
    args.extend(target(addr));
    args.extend(["-c", "3", "-d", "1s", "--json"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = client(&args);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("client: cannot connect to {addr}: ")),
        "{stderr}"
    );
}

#[test]
fn one_server_down_of_two_is_counted_not_fatal() {
    // The connections dealt to the server that is down are refused, and
    // go to the other one: every connection is served, by the one that is
    // up, and the refusals are counted (they fail a run of fixed servers).
    let up = zen_server();
    let down = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let output = client(&[
        "load",
        "--server",
        &up.to_string(),
        "--server",
        &down.to_string(),
        "-c",
        "4",
        "-d",
        "300ms",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(num(&report, "served_conns"), 4.0, "{report}");
    assert!(num(&report, "errors_by_kind.refused") >= 2.0, "{report}");
    assert_eq!(report["targets"].as_array().unwrap().len(), 2);
    assert_eq!(report["per_target"][1]["target"], down.to_string());
    assert_eq!(report["per_target"][1]["requests"], 0, "{report}");
}

#[test]
fn bad_flags_fail_without_a_panic() {
    let addr = zen_server().to_string();
    for args in [
        &["-c", "0"][..],
        &["--pipeline", "0"],
        &["--rate", "0"],
        &["--rate", "nan"],
        &["-n", "0"],
        &["-d", "0"],
        &["-d", "1s", "-n", "5"],
        &["--send", "x"],
        &["--expect", "x"],
        &["--send", "x", "--expect", "y", "--question", "Why?"],
        &["--send", r"\q", "--expect", "y"],
        &["--send", "", "--expect", "y"],
        &["--question", "no question mark"],
        &["--question", "Why?"],
        &["-c", "10000000000"],
        &["-c", "5000", "--pipeline", "65536"],
        &["--timeout", "0"],
        &["--server", "no-port"],
        &["-p", "1", "--server", "127.0.0.1:1"],
    ] {
        let mut all = vec!["load", "--server", &addr];
        if args.contains(&"-p") {
            all = vec!["load"];
        }
        all.extend(args);
        let output = client(&all);
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(output.stdout.is_empty(), "{args:?}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `--every`: the series' answers add up to the run's, and to what each
/// server says it answered; a line per interval goes to stderr beside the
/// JSON, with each server's share when there are two.
#[test]
fn every_series_adds_up_to_each_servers_own_count() {
    let (one, two) = (srv_single(), srv_single());
    let (a, b) = (one.addr().to_string(), two.addr().to_string());
    let output = client(&[
        "load", "--server", &a, "--server", &b, "-c", "2", "-n", "3000", "--every", "10ms",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    assert_eq!(num(&report, "requests"), 3000.0);
    assert_eq!(report["every_seconds"], 0.01);
    let series = report["series"].as_array().unwrap();
    let sum = |key: &str| -> f64 { series.iter().map(|i| num(i, key)).sum() };
    assert_eq!(sum("answers"), 3000.0, "{report}");
    assert_eq!((sum("errors"), sum("reasked")), (0.0, 0.0), "{report}");
    let share_of = |target: &str| -> f64 {
        series
            .iter()
            .flat_map(|i| i["per_target"].as_array().unwrap())
            .filter(|share| share["target"] == target)
            .map(|share| num(share, "answers"))
            .sum()
    };
    let (answered_a, answered_b) = (one.stop().answered, two.stop().answered);
    assert_eq!(answered_a + answered_b, 3000);
    assert_eq!(share_of(&a), answered_a as f64);
    assert_eq!(share_of(&b), answered_b as f64);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("answers ")).collect();
    assert_eq!(lines.len(), series.len(), "{stderr}");
    assert!(lines[0].contains(&format!("| {a}: ")), "{stderr}");
}

/// Without `--json` the lines come on stdout, before the report.
#[test]
fn every_prints_its_lines_before_the_report() {
    let server = srv_single();
    let mut args = vec!["load".to_owned()];
    args.extend(target(server.addr()));
    args.extend(["-c", "1", "-n", "500", "--every", "10ms"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = client(&args);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first_line = stdout.lines().next().unwrap_or_default();
    assert!(
        first_line.contains("answers ") && first_line.contains("p99"),
        "{stdout}"
    );
    let answered: u64 = stdout
        .lines()
        .filter_map(|l| {
            l.split("answers ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(answered, 500, "{stdout}");
    assert_eq!(server.stop().answered, 500);
}

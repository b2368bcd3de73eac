//! Found through a registry: `client ask`, `load` and `hold` with
//! `--registry`, against a real private ZooKeeper and real server binaries
//! that register themselves (`--register`), and `client load` asking again
//! what a killed server left unanswered, with a registry or without.
//!
//! Every process a test starts is stopped when the test ends, failed or
//! not: ZooKeeper, the servers and the client are held by guards that kill
//! them on drop. No test asserts how long anything takes; events mid-run
//! are triggered by the progress a counting server sees, not by sleeps.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;
use zen_utils::components::stuck::StuckLoop;
use zen_utils::protocol::answer;
use zen_utils::testkit::binary::Running;
use zen_utils::testkit::components::{free_port, zk, ZooKeeper};
use zen_utils::testkit::PATIENCE;
use zen_utils::Decoder;

/// A server binary registered in `url`, killed (SIGKILL) when dropped.
fn registered(url: &str, args: &[&str]) -> Running {
    let bin = bin_dir().join("srv-poll");
    let mut all = vec!["--register", url];
    all.extend(args);
    Running::start(bin.to_str().unwrap(), &all)
}

fn bin_dir() -> PathBuf {
    common::server_binaries(&["srv-poll"])
}

/// A registry entry, as a server writes it.
fn entry(addr: SocketAddr) -> Vec<u8> {
    format!(
        r#"{{"host":"{}","port":{},"model":"probe"}}"#,
        addr.ip(),
        addr.port()
    )
    .into_bytes()
}

/// An in-test server that answers right after `delay` per question and
/// counts its answers: the test's view of a run's progress. `hang_up`
/// makes every connection open at that moment close once it has answered
/// what it has read (connections opened later are kept).
struct Probe {
    addr: SocketAddr,
    answers: Arc<AtomicU64>,
    generation: Arc<AtomicU64>,
}

impl Probe {
    fn start(delay: Duration) -> Self {
        let answers = Arc::new(AtomicU64::new(0));
        let generation = Arc::new(AtomicU64::new(0));
        let (counted, now) = (Arc::clone(&answers), Arc::clone(&generation));
        let addr = common::fake_server(move |mut stream, _| {
            let born = now.load(Ordering::SeqCst);
            stream.set_nodelay(true).unwrap();
            let mut decoder = Decoder::new(1024);
            loop {
                let n = match stream.read(decoder.read_buf()) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                decoder.filled(n);
                let mut out = Vec::new();
                while let Ok(Some(question)) = decoder.next_question() {
                    thread::sleep(delay);
                    out.extend_from_slice(answer(question));
                }
                if stream.write_all(&out).is_err() {
                    return;
                }
                counted.fetch_add(
                    out.iter().filter(|&&b| b == b'.').count() as u64,
                    Ordering::SeqCst,
                );
                if now.load(Ordering::SeqCst) != born {
                    return;
                }
            }
        });
        Self {
            addr,
            answers,
            generation,
        }
    }

    /// Waits until it has answered `more` questions beyond what it had.
    fn wait_for(&self, more: u64) {
        let target = self.answers.load(Ordering::SeqCst) + more;
        let started = Instant::now();
        while self.answers.load(Ordering::SeqCst) < target {
            assert!(started.elapsed() < PATIENCE, "the run made no progress");
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn hang_up(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// What a pipe brought, read on a thread of its own.
type Reading = JoinHandle<Vec<u8>>;

/// A client run in the background, killed if the test ends before it.
struct Background {
    child: Child,
    /// Its stdout and its stderr.
    out: Option<(Reading, Reading)>,
}

impl Background {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_client"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the client");
        let read_all = |mut pipe: Box<dyn Read + Send>| {
            thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = read_all(Box::new(child.stdout.take().unwrap()));
        let stderr = read_all(Box::new(child.stderr.take().unwrap()));
        Self {
            child,
            out: Some((stdout, stderr)),
        }
    }

    /// Waits for the end (a run still going after a minute fails the test).
    fn finish(mut self) -> Output {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the client hung"
            );
            thread::sleep(Duration::from_millis(10));
        };
        let (stdout, stderr) = self.out.take().unwrap();
        Output {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `--json` report of a run, with its output for messages.
fn report(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {output:?}"));
    eprintln!("{report}");
    report
}

fn n(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {report}"))
}

/// Right answers from `addr`, from the per-target report (0 if absent).
fn answers_from(report: &Value, addr: SocketAddr) -> u64 {
    report["per_target"]
        .as_array()
        .unwrap()
        .iter()
        .find(|share| share["target"] == addr.to_string())
        .map_or(0, |share| share["requests"].as_u64().unwrap())
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn two_registered_servers_share_a_load_and_every_answer_counts() {
    let zk = ZooKeeper::start();
    let url = zk.url("/zen");
    let servers = [registered(&url, &[]), registered(&url, &[])];
    zk.wait_for_children("/zen", 2);
    let output = common::client(&[
        "load",
        "--registry",
        &url,
        "-n",
        "2000",
        "-c",
        "4",
        "--json",
    ]);
    let report = report(&output);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(n(&report, "requests"), 2000);
    assert_eq!(n(&report, "errors"), 0);
    assert_eq!(report["registry"], url);
    let shares: Vec<u64> = servers
        .iter()
        .map(|server| answers_from(&report, server.addr))
        .collect();
    assert!(shares.iter().all(|&share| share > 0), "{report}");
    assert_eq!(shares.iter().sum::<u64>(), 2000);
}

#[test]
fn a_killed_server_and_one_that_joins_lose_no_answer() {
    let zk = ZooKeeper::start();
    let url = zk.url("/zen");
    // Slow servers (2 ms a question) make the run last over the events.
    let slow = ["--work", "wait:2ms"];
    let killed = registered(&url, &slow);
    let killed_addr = killed.addr;
    let _steady = registered(&url, &slow);
    let probe = Probe::start(Duration::from_millis(2));
    zk.create("/zen/probe", &entry(probe.addr));
    zk.wait_for_children("/zen", 3);

    let run = Background::start(&[
        "load",
        "--registry",
        &url,
        "-n",
        "10000",
        "-c",
        "4",
        "--json",
    ]);
    probe.wait_for(300);
    let joined = registered(&url, &slow);
    zk.wait_for_children("/zen", 4);
    // Time for the client's watch to hear of it, as the run goes on.
    probe.wait_for(200);
    // SIGKILL: its znode stays until its session expires (4 s). Its
    // connections break; they go to other servers, the joined one first
    // (it has the fewest connections), and ask again what it left.
    drop(killed);
    probe.wait_for(200);
    // On purpose: the probe's connections close, and the server with the
    // fewest connections is now the killed one, still registered: their
    // connects are refused, and they go elsewhere.
    probe.hang_up();
    let output = run.finish();

    let report = report(&output);
    assert_eq!(n(&report, "requests"), 10_000, "{report}");
    assert!(report["stopped_early"].is_null(), "{report}");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let errors = &report["errors_by_kind"];
    for kind in ["wrong_answer", "error_answer", "unasked_answer"] {
        assert_eq!(errors[kind], 0, "{report}");
    }
    assert!(n(errors, "refused") >= 1, "{report}");
    assert!(answers_from(&report, killed_addr) > 0, "{report}");
    assert!(answers_from(&report, joined.addr) > 0, "{report}");
    let total: u64 = report["per_target"]
        .as_array()
        .unwrap()
        .iter()
        .map(|share| share["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 10_000);
}

#[test]
fn a_server_killed_under_fixed_servers_loses_no_answer() {
    // No registry: --server A --server B, A killed mid-run. What A had in
    // flight is asked again of B; its connections go to B, and back to A
    // to be refused, counted, until the run ends.
    let killed = Running::start(
        bin_dir().join("srv-poll").to_str().unwrap(),
        &["--work", "wait:2ms"],
    );
    let killed_addr = killed.addr;
    let probe = Probe::start(Duration::from_millis(2));
    let run = Background::start(&[
        "load",
        "--server",
        &killed_addr.to_string(),
        "--server",
        &probe.addr.to_string(),
        "-n",
        "5000",
        "-c",
        "4",
        "--pipeline",
        "4",
        "--json",
    ]);
    probe.wait_for(300);
    drop(killed);
    let output = run.finish();

    let report = report(&output);
    assert_eq!(n(&report, "requests"), 5000, "{report}");
    assert!(report["stopped_early"].is_null(), "{report}");
    // Its connections had questions in flight when it died (4 each).
    assert!(n(&report, "reasked") >= 1, "{report}");
    let errors = &report["errors_by_kind"];
    assert!(n(&report, "errors") >= 1, "{report}");
    for kind in ["wrong_answer", "error_answer", "unasked_answer"] {
        assert_eq!(errors[kind], 0, "{report}");
    }
    // With fixed servers, a failure fails the run, after the report.
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(answers_from(&report, killed_addr) > 0, "{report}");
    assert_eq!(
        answers_from(&report, killed_addr) + answers_from(&report, probe.addr),
        5000
    );
}

#[test]
fn bad_input_is_one_line_and_a_failure() {
    // A bad URL: clap's error, exit 2.
    let output = common::client(&["load", "--registry", "http://127.0.0.1:1/zen"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let lines = stderr_lines(&output);
    assert!(
        lines[0].starts_with("error: invalid value 'http://127.0.0.1:1/zen' for '--registry")
            && lines[0].contains("bad registry URL"),
        "{lines:?}"
    );
    // With HOST or --server as well: clap refuses the mix.
    let output = common::client(&["load", "127.0.0.1", "--registry", "zk://h:1/zen"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");

    // Nothing listening where ZooKeeper should be.
    let nowhere = format!("zk://127.0.0.1:{}/zen", free_port());
    for command in ["ask", "load", "hold"] {
        let mut args = vec![command, "--registry", &nowhere, "--timeout", "1s"];
        if command == "hold" {
            args.extend(["-c", "1", "-d", "1s"]);
        }
        let output = common::client(&args);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let lines = stderr_lines(&output);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!("client: cannot reach the registry {nowhere}: ")),
            "{lines:?}"
        );
        assert!(output.stdout.is_empty());
    }

    // A registry with no server: a path nobody made, and one left empty.
    let zk = ZooKeeper::start();
    zk.create("/empty", b"");
    for path in ["/nobody", "/empty"] {
        let url = zk.url(path);
        let output = common::client(&["load", "--registry", &url, "--timeout", "1s"]);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        assert_eq!(
            stderr_lines(&output),
            [format!("client: no server registered in {url} within 1s")]
        );
    }
}

#[test]
fn a_znode_that_is_not_a_server_is_warned_about_once_and_skipped() {
    let zk = ZooKeeper::start();
    let url = zk.url("/zen");
    zk.create("/zen/garbage", b"not a server");
    let server = registered(&url, &[]);
    zk.wait_for_children("/zen", 2);
    let output = common::client(&["load", "--registry", &url, "-n", "500", "-c", "2", "--json"]);
    let report = report(&output);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(n(&report, "requests"), 500);
    assert_eq!(answers_from(&report, server.addr), 500);
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0]
            .starts_with("client: warning: skipping /zen/garbage in the registry: not a server"),
        "{lines:?}"
    );
}

#[test]
fn ask_and_hold_find_their_servers_in_the_registry() {
    let zk = ZooKeeper::start();
    let url = zk.url("/zen");
    let servers = [registered(&url, &[]), registered(&url, &[])];
    zk.wait_for_children("/zen", 2);

    let output = common::client(&["ask", "--registry", &url, "-n", "3"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    for line in stdout.lines() {
        let (question, reply) = line.split_once("? ").unwrap();
        assert_eq!(answer(format!("{question}?").as_bytes()), reply.as_bytes());
    }

    let output = common::client(&["hold", "--registry", &url, "-c", "10", "-d", "1s", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let report = report(&output);
    assert_eq!(n(&report, "connected"), 10);
    assert_eq!(n(&report, "open"), 10);
    assert_eq!(report["target"], url);
    // Each connection went to the server with the fewest: five each.
    for server in &servers {
        assert_eq!(report["per_server"][server.addr.to_string()], 5, "{report}");
    }
}

#[test]
fn ask_goes_past_a_registered_server_that_is_gone() {
    // A znode left by a server that is gone (its port refuses) beside a
    // live one: whichever ask picks first, it asks every question of the
    // live one, and says so when it had to.
    let zk = ZooKeeper::start();
    let url = zk.url("/zen");
    let gone: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    zk.create("/zen/gone", &entry(gone));
    let _server = registered(&url, &[]);
    zk.wait_for_children("/zen", 2);
    for _ in 0..3 {
        let output = common::client(&["ask", "--registry", &url, "-n", "7"]);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 7);
        for line in stderr_lines(&output) {
            assert!(
                line.starts_with(&format!("client: warning: cannot connect to {gone}: ")),
                "{line}"
            );
        }
    }
}

#[test]
fn ask_goes_past_a_registered_server_that_never_answers() {
    // A registered listener that nobody serves: the kernel completes the
    // handshake and takes the question, nothing answers (a frozen or
    // stuck server). Whichever ask picks first, it leaves the silent one
    // after half its --timeout and asks every question of the live one.
    let zk = ZooKeeper::start();
    let url = zk.url("/zen");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("local address");
    zk.create("/zen/silent", &entry(silent_addr));
    let _server = registered(&url, &[]);
    zk.wait_for_children("/zen", 2);
    for _ in 0..6 {
        let output = common::client(&["ask", "--registry", &url, "-n", "7", "--timeout", "2s"]);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 7);
        for line in stderr_lines(&output) {
            assert!(line.starts_with("client: warning: no answer to "), "{line}");
            assert!(
                line.ends_with(" within 1s; asking another server"),
                "{line}"
            );
        }
    }
}

#[test]
fn entries_that_name_no_one_server_are_skipped_with_one_warning_each() {
    // Each of these points at the live server's port (or at port 0): an
    // unspecified address even reaches it, on Linux. None is dialled.
    let zk = ZooKeeper::start();
    let url = zk.url("/zen");
    let server = registered(&url, &[]);
    let port = server.addr.port();
    let mapped = |ip: [u8; 4]| std::net::Ipv4Addr::from(ip).to_ipv6_mapped();
    let traps: [(&str, SocketAddr); 7] = [
        ("unspecified", ([0, 0, 0, 0], port).into()),
        (
            "unspecified6",
            (std::net::Ipv6Addr::UNSPECIFIED, port).into(),
        ),
        // IPv4 in IPv6 clothes: ::ffff:0.0.0.0 reaches this machine too.
        ("unspecified-mapped", (mapped([0, 0, 0, 0]), port).into()),
        ("multicast-mapped", (mapped([224, 0, 0, 1]), port).into()),
        ("multicast", ([224, 0, 0, 1], port).into()),
        ("broadcast", ([255, 255, 255, 255], port).into()),
        ("port0", ([127, 0, 0, 1], 0).into()),
    ];
    for (name, addr) in traps {
        zk.create(&format!("/zen/{name}"), &entry(addr));
    }
    zk.wait_for_children("/zen", 8);
    let output = common::client(&["load", "--registry", &url, "-n", "500", "-c", "8", "--json"]);
    let report = report(&output);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(answers_from(&report, server.addr), 500, "{report}");
    // One warning per entry, however many connections picked a server.
    let mut lines = stderr_lines(&output);
    lines.sort();
    let mut names: Vec<&str> = traps.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    assert_eq!(lines.len(), names.len(), "{lines:?}");
    for (line, name) in lines.iter().zip(names) {
        assert!(
            line.starts_with(&format!(
                "client: warning: skipping /zen/{name} in the registry: "
            )),
            "{lines:?}"
        );
    }
}

#[test]
fn registry_auth_keeps_others_from_rewriting_a_servers_znode() {
    let zk = ZooKeeper::start();
    let url = zk.url("/zen/servers");
    let server = registered(&url, &["--registry-auth", "zen:s3cret-pw", "-v"]);
    let znode = format!(
        "/zen/servers/{}",
        zk.wait_for_children("/zen/servers", 1)[0]
    );
    let forged = entry(([127, 0, 0, 1], free_port()).into());

    // Anyone reads it; nobody but the same user and password writes it,
    // deletes it, or adds another beside it (nor in the path above it).
    for credentials in [None, Some("zen:wrong"), Some("intruder:s3cret-pw")] {
        let attempt = async |client: &zk::Client| {
            let (data, _) = client.get_data(&znode).await.expect("anyone reads it");
            assert_eq!(
                serde_json::from_slice::<Value>(&data).unwrap()["port"],
                server.addr.port()
            );
            let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            [
                client.set_data(&znode, &forged, None).await.map(drop),
                client.delete(&znode, None).await,
                client
                    .create("/zen/servers/forged", &forged, &options)
                    .await
                    .map(drop),
                client
                    .create("/zen/forged", &forged, &options)
                    .await
                    .map(drop),
                client
                    .set_acl("/zen/servers", &zk::Acls::anyone_all(), None)
                    .await
                    .map(drop),
            ]
        };
        let results = match credentials {
            None => zk.with_client(attempt),
            Some(credentials) => zk.with_digest(credentials, attempt),
        };
        for result in results {
            assert_eq!(result, Err(zk::Error::NoAuth), "as {credentials:?}");
        }
    }
    // The same credentials may: they are the server's.
    zk.with_digest("zen:s3cret-pw", async |client: &zk::Client| {
        let (data, _) = client.get_data(&znode).await.unwrap();
        client.set_data(&znode, &data, None).await.unwrap();
    });

    // A client with the credentials finds it; the password shows nowhere.
    let output = common::client(&[
        "ask",
        "--registry",
        &url,
        "--registry-auth",
        "zen:s3cret-pw",
        "-n",
        "2",
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);
    assert!(!String::from_utf8_lossy(&output.stderr).contains("s3cret"));
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(!log.contains("s3cret"), "{log}");
}

#[test]
fn with_registry_auth_the_client_skips_entries_anyone_could_have_written() {
    // A path made without credentials: anyone may add to it. A forged
    // entry beside a server registered with credentials is dialled by a
    // client without them (as before), and skipped by one with them.
    let zk = ZooKeeper::start();
    let url = zk.url("/open");
    let decoy = Probe::start(Duration::ZERO);
    zk.create("/open/forged", &entry(decoy.addr));
    // A second forgery names the user in its ACL, with a made-up hash:
    // ZooKeeper lets anyone create that without knowing the password.
    let impostor = Probe::start(Duration::ZERO);
    zk.with_client(async |client| {
        let acl = [
            zk::Acl::new(
                zk::Permission::ALL,
                zk::AuthId::new("digest", "zen:AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            ),
            zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
        ];
        let options = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&acl));
        client
            .create("/open/impostor", &entry(impostor.addr), &options)
            .await
            .expect("anyone may create a node whose ACL names another's digest");
    });
    let server = registered(&url, &["--registry-auth", "zen:pw"]);
    zk.wait_for_children("/open", 3);
    let trusting = common::client(&["load", "--registry", &url, "-n", "400", "-c", "8", "--json"]);
    assert!(
        answers_from(&report(&trusting), decoy.addr) > 0,
        "{trusting:?}"
    );

    let careful = common::client(&[
        "load",
        "--registry",
        &url,
        "--registry-auth",
        "zen:pw",
        "-n",
        "400",
        "-c",
        "8",
        "--json",
    ]);
    let report = report(&careful);
    assert_eq!(careful.status.code(), Some(0), "{careful:?}");
    assert_eq!(answers_from(&report, server.addr), 400, "{report}");
    assert_eq!(answers_from(&report, impostor.addr), 0, "{report}");
    let lines = stderr_lines(&careful);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "client: warning: skipping /open/forged in the registry: world:anyone may write it"
        ),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(
            "client: warning: skipping /open/impostor in the registry: digest:zen may write it"
        ),
        "{lines:?}"
    );
    assert!(!lines[1].contains("AAAA"), "no hash is printed: {lines:?}");
    // The server said once that the path it found lets anyone add.
    let (_, log) = server.terminate();
    assert_eq!(log.matches("lets anyone add entries").count(), 1, "{log}");
}

#[test]
fn bad_registry_credentials_are_refused_without_repeating_them() {
    for bad in ["only-a-secret", ":no-user-secret", "user:"] {
        let output = common::client(&[
            "ask",
            "--registry",
            "zk://127.0.0.1:1/zen",
            "--registry-auth",
            bad,
        ]);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--registry-auth"), "{stderr}");
        assert!(stderr.contains("USER:PASSWORD"), "{stderr}");
        if bad != "user:" {
            assert!(!stderr.contains("secret"), "{stderr}");
        }
    }
}

#[test]
fn a_stuck_server_leaves_the_registry_with_the_health_probe_and_stays_without() {
    let zk = ZooKeeper::start();
    let probed = registered(
        &zk.url("/probed"),
        &["--health-interval", "200ms", "--health-fails", "2"],
    );
    let unprobed = registered(&zk.url("/unprobed"), &["--health-interval", "0"]);
    zk.wait_for_children("/probed", 1);
    zk.wait_for_children("/unprobed", 1);

    // Stuck: the serving thread stopped alone, the registry's thread (its
    // session's heartbeat, its probe) running on.
    let probed_stuck = StuckLoop::stop(probed.pid()).expect("ptrace the server");
    let unprobed_stuck = StuckLoop::stop(unprobed.pid()).expect("ptrace the server");
    zk.wait_for_children("/probed", 0);
    // Stuck as long as the probed one took to leave, and longer: its
    // session lives, so its znode stays.
    assert_eq!(zk.children("/unprobed").len(), 1);
    probed_stuck.resume().unwrap();
    unprobed_stuck.resume().unwrap();
    zk.wait_for_children("/probed", 1);
    assert_eq!(zk.children("/unprobed").len(), 1);

    // Back, and answering through the registry.
    let asked = common::client(&["ask", "--registry", &zk.url("/probed")]);
    assert_eq!(asked.status.code(), Some(0), "{asked:?}");
    let (_, log) = probed.terminate();
    let left =
        log.find("not answering its own question (2 times 200ms in a row): left the registry");
    let again = log.find("answering its own question again: registering again");
    assert!(left.is_some() && left < again, "{log}");
    let (_, log) = unprobed.terminate();
    assert!(!log.contains("not answering"), "{log}");
}

/// A server whose every question blocks its loop (`--work block:DUR`):
/// the probe's own question does, so the server leaves the registry, and
/// registers again once that question's answer comes, late.
#[test]
fn a_server_blocked_on_its_probes_question_leaves_and_comes_back_with_the_answer() {
    let zk = ZooKeeper::start();
    let url = zk.url("/blocked");
    let blocked = registered(
        &url,
        &[
            "--work",
            "block:1500ms",
            "--health-interval",
            "200ms",
            "--health-fails",
            "2",
        ],
    );
    zk.wait_for_children("/blocked", 1);
    zk.wait_for_children("/blocked", 0);
    zk.wait_for_children("/blocked", 1);
    let (_, log) = blocked.terminate();
    let left = log.find("left the registry");
    let again = log.find("answering its own question again");
    assert!(left.is_some() && left < again, "{log}");
}

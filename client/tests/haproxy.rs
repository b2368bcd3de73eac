//! Many servers, one service: a real HAProxy, started with
//! deploy/haproxy/zen.cfg (its ports and stats socket made the test's own),
//! in front of three real srv-poll servers.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};

use zen_utils::testkit::components::{free_port, haproxy_config as config, HaProxy};
use zen_utils::testkit::started::one_summary;
use zen_utils::testkit::Client;

/// A backend: srv-poll on a port of the test's choosing, so that it can be
/// killed and started again on the same one.
struct Backend {
    child: Child,
    stderr: Option<JoinHandle<String>>,
}

impl Backend {
    fn start(bin_dir: &Path, port: u16) -> Self {
        Self::start_with(bin_dir, port, &[])
    }

    fn start_with(bin_dir: &Path, port: u16, args: &[&str]) -> Self {
        let mut child = Command::new(bin_dir.join("srv-poll"))
            .args(["-p", &port.to_string(), "-v"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start srv-poll");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, format!("listening on 127.0.0.1:{port}\n"));
        let mut pipe = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        Self {
            child,
            stderr: Some(stderr),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; the exit and the log.
    fn terminate(mut self) -> String {
        // SAFETY: kill() only signals the child we started.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        let log = self.stderr.take().unwrap().join().unwrap();
        assert!(status.success(), "{status}: {log}");
        log
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn the_health_check_marks_a_killed_backend_down_and_a_restarted_one_up() {
    let bin_dir = common::server_binaries(&["srv-poll"]);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut backends: Vec<Backend> = ports
        .iter()
        .map(|port| Backend::start(&bin_dir, *port))
        .collect();
    let front = free_port();
    let front_addr: SocketAddr = ([127, 0, 0, 1], front).into();
    let haproxy = HaProxy::start(&config(front, &ports), front_addr);
    for name in ["zen1", "zen2", "zen3"] {
        haproxy.wait_for_status("zen_servers", name, "UP");
    }
    let mut client = Client::connect(front_addr);
    assert_eq!(client.ask(b"Simple is better than?"), b"complex.");
    drop(client);

    backends[1].kill();
    haproxy.wait_for_status("zen_servers", "zen2", "DOWN");
    // Every client now lands on a live server.
    for _ in 0..6 {
        let mut client = Client::connect(front_addr);
        assert_eq!(client.ask(b"Now is better than?"), b"never.");
    }
    backends[1] = Backend::start(&bin_dir, ports[1]);
    haproxy.wait_for_status("zen_servers", "zen2", "UP");

    // The health checks, each reset by HAProxy once answered, were
    // ordinary closes: no error in a backend's counters or log.
    let log = backends.remove(0).terminate();
    let summary = one_summary(&log);
    assert!(summary.connections >= 2, "checked: {log}");
    assert_eq!(summary.errors, 0, "{log}");
    assert!(!log.contains("closed: error"), "{log}");
    assert!(log.contains("closed: client closed"), "{log}");
}

/// HAProxy in TCP mode retries only connects: the sessions a killed
/// backend held are cut, and `client load` asks their questions again,
/// through HAProxy, on a live backend. Exactly N right answers, none
/// wrong, across the kill and the restart.
#[test]
fn a_load_through_haproxy_loses_no_answer_across_a_kill() {
    const N: u64 = 20_000;
    let bin_dir = common::server_binaries(&["srv-poll"]);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    // 1 ms per answer: the run lasts long enough to span the kill.
    let slow = |port: u16| Backend::start_with(&bin_dir, port, &["--work", "wait:1ms"]);
    let mut backends: Vec<Backend> = ports.iter().map(|port| slow(*port)).collect();
    let front = free_port();
    let front_addr: SocketAddr = ([127, 0, 0, 1], front).into();
    let haproxy = HaProxy::start(&config(front, &ports), front_addr);
    for name in ["zen1", "zen2", "zen3"] {
        haproxy.wait_for_status("zen_servers", name, "UP");
    }
    let mut load = Command::new(env!("CARGO_BIN_EXE_client"))
        .args([
            "load",
            "-p",
            &front.to_string(),
            "-c",
            "8",
            "-n",
            &N.to_string(),
            "--json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the client");
    // The kill comes once zen2 holds sessions (HAProxy's `scur`).
    haproxy.wait_for_field("zen_servers", "zen2", "scur", |scur| scur > 0);
    backends[1].kill();
    assert!(
        load.try_wait().unwrap().is_none(),
        "the load ended before the kill"
    );
    haproxy.wait_for_status("zen_servers", "zen2", "DOWN");
    backends[1] = slow(ports[1]);
    haproxy.wait_for_status("zen_servers", "zen2", "UP");
    let mut stdout = String::new();
    load.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let _ = load.wait();
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("a JSON report");
    assert_eq!(common::num(&report, "requests") as u64, N, "{report}");
    assert_eq!(
        common::num(&report, "errors_by_kind.wrong_answer"),
        0.0,
        "{report}"
    );
    assert_eq!(
        common::num(&report, "errors_by_kind.error_answer"),
        0.0,
        "{report}"
    );
    assert!(
        common::num(&report, "reasked") >= 1.0,
        "the cut sessions were asked again: {report}"
    );
}

//! What the `load` and `hold` tests share: running the client binary, and
//! small fake servers that misbehave on purpose.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use zen_utils::protocol::answer;
use zen_utils::Decoder;

/// How long any one client run may take before the test calls it hung:
/// far beyond what every run in these tests needs, so that a hang fails
/// the test (and the client is killed) instead of stalling the suite.
const HUNG: Duration = Duration::from_secs(60);

/// Runs `client <args>` to its end; a client still running after [`HUNG`]
/// is killed and fails the test.
pub(crate) fn client(args: &[&str]) -> Output {
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
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HUNG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("client {args:?} still running after {HUNG:?}: killed");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// `--server HOST:PORT` or `HOST -p PORT` arguments for `addr`.
pub(crate) fn target(addr: SocketAddr) -> Vec<String> {
    vec![
        addr.ip().to_string(),
        "-p".to_owned(),
        addr.port().to_string(),
    ]
}

/// Runs `client <command> <addr> <args> --json` and parses its one line.
pub(crate) fn json(command: &str, addr: SocketAddr, args: &[&str]) -> (Value, Output) {
    let mut all = vec![command.to_owned()];
    all.extend(target(addr));
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    all.push("--json".to_owned());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let output = client(&all);
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {output:?}");
    let report = serde_json::from_str(&stdout).expect("valid JSON");
    (report, output)
}

/// A number from a JSON report.
pub(crate) fn num(report: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(report, |value, key| &value[key])
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {report}"))
}

/// A thread-per-connection fake server: `handle(stream, n)` serves the
/// n-th connection (from 0) on a thread of its own. The server lives as
/// long as the test process.
pub(crate) fn fake_server<F>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream, usize) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = Arc::new(handle);
    let count = AtomicUsize::new(0);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let handle = Arc::clone(&handle);
            thread::spawn(move || handle(stream, n));
        }
    });
    addr
}

/// Serves zen questions, answering each with `reply(question)`, all the
/// answers of one read in one write; closes after `limit` answers, if any.
pub(crate) fn answer_questions(
    mut stream: TcpStream,
    reply: impl Fn(&[u8]) -> &'static [u8],
    limit: Option<usize>,
) {
    stream.set_nodelay(true).unwrap();
    let mut decoder = Decoder::new(1024);
    let mut answered = 0;
    let mut out = Vec::new();
    loop {
        let n = match stream.read(decoder.read_buf()) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        decoder.filled(n);
        while let Ok(Some(question)) = decoder.next_question() {
            if limit.is_some_and(|limit| answered == limit) {
                let _ = stream.write_all(&out);
                return;
            }
            out.extend_from_slice(reply(question));
            answered += 1;
        }
        if stream.write_all(&out).is_err() {
            return;
        }
        out.clear();
    }
}

/// A concurrent zen server that answers right.
pub(crate) fn zen_server() -> SocketAddr {
    fake_server(|stream, _| answer_questions(stream, answer, None))
}

/// The directory with the binaries `bins` of the workspace's servers: the
/// client's own, where cargo puts every binary of the workspace. `cargo
/// nextest run --workspace` and `cargo test --workspace` build them all
/// (each server crate has integration tests, and cargo builds a package's
/// binaries for those); when this package is tested alone they may be
/// missing, and are built here with the same cargo, profile and target
/// directory.
pub(crate) fn server_binaries(bins: &[&str]) -> std::path::PathBuf {
    use std::path::Path;
    let client = Path::new(env!("CARGO_BIN_EXE_client"));
    let dir = client.parent().expect("the client is in a directory");
    let missing = |dir: &Path| bins.iter().any(|bin| !dir.join(bin).is_file());
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
        for bin in bins {
            cargo.args(["-p", bin]);
        }
        let status = cargo
            .env("CARGO_TARGET_DIR", target_dir)
            .status()
            .expect("run cargo build for the servers");
        assert!(status.success(), "cargo build of {bins:?} failed");
    }
    assert!(!missing(dir), "{bins:?} not found in {}", dir.display());
    dir.to_owned()
}

//! The minimal version of each model (`srv-*/examples/*_minimal.rs`) under
//! test: the protocol cases it keeps, and, for each hardening it lacks, the
//! hostile client that breaks it and not the real server.
//!
//! [`minimal_suite!`](crate::minimal_suite) stamps them out in a server
//! crate's `tests/minimal.rs`. Both servers run as processes (the minimal
//! one is an example binary, found next to the test's own binaries and
//! built if missing), so every figure is the server's own: its replies, its
//! exit status, its `VmRSS` in `/proc/PID/status`. Nothing asserts a
//! duration; a wait for something that must *not* happen is bounded, and
//! the failure is the thing happening.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::binary::Running;
use super::{Client, PATIENCE};
use crate::protocol::{
    answer, APHORISMS, IDLE_TIMEOUT, REQUEST_TOO_LONG, SERVER_BUSY, UNKNOWN_APHORISM,
};
use crate::serve::listener;

/// How long a test waits to be sure something does *not* happen.
const QUIET_PERIOD: Duration = Duration::from_millis(300);

/// 1 MiB.
const MIB: usize = 1 << 20;

/// The example `name` of `package`, next to the running test's binaries
/// (`target/PROFILE/deps/..` → `target/PROFILE/examples/NAME`), built with
/// `cargo` (the test crate's `env!("CARGO")`) into the same target
/// directory and profile if missing.
pub fn example_binary(cargo: &str, package: &str, name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test
        .parent()
        .and_then(Path::parent)
        .expect("a test binary is in PROFILE/deps");
    let bin = profile_dir.join("examples").join(name);
    if !bin.is_file() {
        let profile = profile_dir
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("debug");
        let target_dir = profile_dir
            .parent()
            .expect("PROFILE is in a target directory");
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--example", name, "--profile"])
            // The `debug` directory is the `dev` profile's.
            .arg(if profile == "debug" { "dev" } else { profile })
            .env("CARGO_TARGET_DIR", target_dir)
            .status()
            .expect("run cargo build for the example");
        assert!(status.success(), "cargo build of example {name} failed");
    }
    assert!(bin.is_file(), "{} not found", bin.display());
    bin
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A process's resident memory (`VmRSS` in `/proc/PID/status`), in bytes.
pub fn resident_memory_of(pid: u32) -> usize {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<usize>().ok())
        .expect("VmRSS in /proc/PID/status")
        * 1024
}

// The protocol cases, against the minimal version `bin`.

/// Every question of the table gets its exact answer, one at a time.
pub fn answers_every_aphorism(bin: &str) {
    let server = Running::start(bin, &[]);
    let mut client = Client::connect(server.addr);
    for (question, reply) in APHORISMS {
        assert_eq!(text(&client.ask(question)), text(reply));
    }
}

/// A question that arrives one byte per write is answered once, whole.
pub fn answers_a_question_split_byte_by_byte(bin: &str) {
    let server = Running::start(bin, &[]);
    let mut client = Client::connect(server.addr);
    for &byte in b"Beautiful is better than?" {
        client.send(&[byte]);
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(text(&client.answer()), "ugly.");
    assert_eq!(text(&client.ask(b"Now is better than?")), "never.");
}

/// Many questions in one write are all answered, in the order asked.
pub fn answers_many_questions_in_one_write_in_order(bin: &str) {
    let server = Running::start(bin, &[]);
    let mut client = Client::connect(server.addr);
    let mut questions: Vec<&[u8]> = APHORISMS.iter().map(|(q, _)| *q).collect();
    questions.push(b"?");
    let questions = questions.repeat(50);
    client.send(&questions.concat());
    let want: Vec<u8> = questions.iter().flat_map(|q| answer(q)).copied().collect();
    assert_eq!(text(&client.answers(questions.len())), text(&want));
}

/// Unknown questions get the error answer and the connection stays open.
pub fn answers_unknown_questions_and_keeps_the_connection(bin: &str) {
    let server = Running::start(bin, &[]);
    let mut client = Client::connect(server.addr);
    for question in [
        &b"?"[..],
        b"beautiful is better than?",
        b"Beautiful is better than ?",
    ] {
        assert_eq!(text(&client.ask(question)), text(UNKNOWN_APHORISM));
    }
    assert_eq!(text(&client.ask(b"Explicit is better than?")), "implicit.");
}

/// After a half-close every complete question is answered, then the
/// server closes.
pub fn answers_everything_before_closing_on_half_close(bin: &str) {
    let server = Running::start(bin, &[]);
    let mut client = Client::connect(server.addr);
    client.send(b"Now is better than?Simple is better than?Complex is better than?Flat is");
    client.half_close();
    assert_eq!(text(&client.read_to_close()), "never.complex.complicated.");
}

// What each hardening buys: the real server `real` and the minimal one
// `minimal` against the same hostile client.

/// The real server of the hardening cases: its binary, and flags given
/// before each case's own (`--poller epoll`, say, where a server has two
/// ways to do the same).
#[derive(Debug, Clone, Copy)]
pub struct Real<'a> {
    /// The binary's path.
    pub bin: &'a str,
    /// Its flags in every case.
    pub args: &'a [&'a str],
}

impl Real<'_> {
    fn start(self, args: &[&str]) -> Running {
        Running::start(self.bin, &[self.args, args].concat())
    }

    fn start_with_fd_limit(self, args: &[&str], max_fds: u64) -> Running {
        Running::start_with_fd_limit(self.bin, &[self.args, args].concat(), max_fds)
    }
}

/// An idle client: the real server closes it after `--idle-timeout` with
/// `Error: idle timeout.`; the minimal one still holds it three timeouts
/// later and answers it.
pub fn idle_timeout_closes_an_idle_client(real: Real<'_>, minimal: &str) {
    let server = real.start(&["--idle-timeout", "300ms"]);
    let mut client = Client::connect(server.addr);
    assert_eq!(text(&client.read_to_close()), text(IDLE_TIMEOUT));

    let server = Running::start(minimal, &[]);
    let mut client = Client::connect(server.addr);
    assert_eq!(client.answer_within(3 * QUIET_PERIOD), None);
    assert_eq!(
        text(&client.ask(b"Now is better than?")),
        "never.",
        "the idle client was closed"
    );
}

/// 16 MiB with no `?`: the real server answers `Error: request too long.`,
/// closes, and its memory barely moves; the minimal one keeps every byte
/// (its memory grows by more than 10 MiB) and, given the `?` at last,
/// answers the 16 MiB question like any unknown one.
pub fn bounded_input_refuses_a_question_of_16_mib(real: Real<'_>, minimal: &str) {
    const SIZE: usize = 16 * MIB;
    let send = |mut stream: TcpStream| {
        thread::spawn(move || {
            let chunk = [b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < SIZE {
                match stream.write(&chunk[..chunk.len().min(SIZE - sent)]) {
                    Ok(n) => sent += n,
                    Err(_) => break, // The server hung up.
                }
            }
            (stream, sent)
        })
    };

    let server = real.start(&[]);
    let before = resident_memory_of(server.pid());
    let mut client = Client::connect(server.addr);
    let sender = send(client.try_clone_stream());
    assert_eq!(text(&client.read_to_close()), text(REQUEST_TOO_LONG));
    let grown = resident_memory_of(server.pid()).saturating_sub(before);
    drop(client);
    let (_, sent) = sender.join().unwrap();
    assert!(sent < SIZE, "the real server read all {SIZE} bytes");
    assert!(grown < 4 * MIB, "the real server grew {grown} bytes");

    let server = Running::start(minimal, &[]);
    let before = resident_memory_of(server.pid());
    let mut client = Client::connect(server.addr);
    let (mut stream, sent) = send(client.try_clone_stream()).join().unwrap();
    assert_eq!(sent, SIZE, "the minimal server stopped reading");
    stream.write_all(b"?").unwrap();
    assert_eq!(text(&client.answer()), text(UNKNOWN_APHORISM));
    let grown = resident_memory_of(server.pid()).saturating_sub(before);
    assert!(
        grown > 10 * MIB,
        "the minimal server grew only {grown} bytes"
    );
}

/// A client that sends `?` after `?` (each answered with 24 bytes) and
/// never reads: the real server stops reading it once 64 KiB of answers
/// wait, and its memory stays within 8 MiB of where it was; the minimal one
/// reads all 2 MiB and holds the 48 MiB of answers.
pub fn bounded_output_stops_reading_a_client_that_never_reads(real: Real<'_>, minimal: &str) {
    const SIZE: usize = 2 * MIB;

    let server = real.start(&[]);
    let before = resident_memory_of(server.pid());
    let (stream, sent) = never_read(server.addr, SIZE);
    let grown = resident_memory_of(server.pid()).saturating_sub(before);
    assert!(sent < SIZE, "the real server read all {sent} bytes");
    assert!(grown < 8 * MIB, "the real server grew {grown} bytes");
    listener::set_linger(&stream, Some(Duration::ZERO)).unwrap();
    drop(stream);

    let server = Running::start(minimal, &[]);
    let before = resident_memory_of(server.pid());
    let (_stream, sent) = never_read(server.addr, SIZE);
    assert_eq!(sent, SIZE, "the minimal server stopped reading");
    // It has everything, or soon will: its memory must pass 32 MiB more.
    let started = Instant::now();
    let grown = loop {
        let grown = resident_memory_of(server.pid()).saturating_sub(before);
        if grown > 32 * MIB || started.elapsed() > PATIENCE {
            break grown;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        grown > 32 * MIB,
        "the minimal server grew only {grown} bytes"
    );
}

/// Sends up to `size` bytes of `?` without ever reading, until all is sent
/// or the server has taken nothing for a quiet period; returns the
/// connection and how much was sent.
fn never_read(addr: SocketAddr, size: usize) -> (TcpStream, usize) {
    static NOISE: [u8; 64 * 1024] = [b'?'; 64 * 1024];
    let mut stream = Client::connect(addr).into_stream();
    // Small buffers on this side, so the kernel holds few answers for us.
    let socket = socket2::SockRef::from(&stream);
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    stream.set_nonblocking(true).unwrap();
    let (mut sent, mut last_progress) = (0, Instant::now());
    while sent < size && last_progress.elapsed() < QUIET_PERIOD {
        match stream.write(&NOISE[..NOISE.len().min(size - sent)]) {
            Ok(n) => {
                sent += n;
                last_progress = Instant::now();
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(error) => panic!("the client that never reads was failed: {error}"),
        }
    }
    (stream, sent)
}

/// `--max-conns 2`: the real server answers a third client `Error: server
/// busy.` and closes it; the minimal one serves all three.
pub fn max_conns_turns_away_the_third_client(real: Real<'_>, minimal: &str) {
    let server = real.start(&["--max-conns", "2"]);
    let mut first = Client::connect(server.addr);
    let mut second = Client::connect(server.addr);
    assert_eq!(text(&first.ask(b"Now is better than?")), "never.");
    assert_eq!(text(&second.ask(b"Flat is better than?")), "nested.");
    assert_eq!(
        text(&Client::connect(server.addr).read_to_close()),
        text(SERVER_BUSY)
    );

    let server = Running::start(minimal, &[]);
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(server.addr)).collect();
    for client in &mut clients {
        assert_eq!(text(&client.ask(b"Now is better than?")), "never.");
    }
}

/// SIGTERM with an answer in flight (`--work wait:300ms`, two questions in
/// one write, the signal sent once the first is answered): the real server
/// sends the second answer, closes, prints its summary and exits 0; the
/// minimal one dies of the signal and its client reads nothing more.
pub fn graceful_shutdown_answers_the_question_in_flight(real: Real<'_>, minimal: &str) {
    let server = real.start(&["--work", "wait:300ms"]);
    let mut client = Client::connect(server.addr);
    client.send(b"Now is better than?Flat is better than?");
    assert_eq!(text(&client.answer()), "never.");
    let (status, stderr) = server.terminate();
    assert_eq!(text(&client.read_to_close()), "nested.");
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(
        stderr.contains("summary: 1 connections, 2 questions answered"),
        "{stderr}"
    );

    let server = Running::start(minimal, &[]);
    let mut client = Client::connect(server.addr);
    assert_eq!(text(&client.ask(b"Now is better than?")), "never.");
    let (status, stderr) = server.terminate();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert!(!stderr.contains("summary"), "{stderr}");
    assert_eq!(text(&client.read_to_close()), "");
}

/// 200 clients against a server limited to 64 file descriptors: the real
/// server keeps serving (a client is answered once the others leave); the
/// minimal one's `accept` fails with `EMFILE` and the `?` on it ends the
/// process (it is a zombie, waiting for the test to reap it).
pub fn out_of_descriptors_ends_the_minimal_server(real: Real<'_>, minimal: &str) {
    const CLIENTS: usize = 200;
    let connect_all = |addr| -> Vec<TcpStream> {
        (0..CLIENTS)
            .filter_map(|_| TcpStream::connect(addr).ok())
            .collect()
    };

    let server = real.start_with_fd_limit(&["-q"], 64);
    let clients = connect_all(server.addr);
    drop(clients);
    let mut client = Client::connect(server.addr);
    assert_eq!(text(&client.ask(b"Now is better than?")), "never.");
    assert_ne!(process_state(server.pid()), 'Z', "the real server exited");

    let server = Running::start_with_fd_limit(minimal, &[], 64);
    let _clients = connect_all(server.addr);
    let started = Instant::now();
    while process_state(server.pid()) != 'Z' && started.elapsed() < PATIENCE {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        process_state(server.pid()),
        'Z',
        "the minimal server survived"
    );
}

/// The one-letter state of a process (`R`, `S`, `Z`...) in `/proc/PID/status`.
fn process_state(pid: u32) -> char {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("State:"))
        .and_then(|rest| rest.trim().chars().next())
        .expect("State in /proc/PID/status")
}

/// Stamps out, in a server crate's `tests/minimal.rs`, the protocol cases
/// against its minimal version (the example `example` of package
/// `package`) and the named hardening cases against it and the real
/// binary `real` (started with `real_args` first, if given).
#[macro_export]
macro_rules! minimal_suite {
    (
        package: $package:expr,
        example: $example:expr,
        real: $real:expr,
        $(real_args: [$($real_arg:expr),* $(,)?],)?
        hardening: [$($hardening:ident),* $(,)?]
        $(, requires: $requires:expr)? $(,)?
    ) => {
        fn minimal() -> ::std::string::String {
            let bin = $crate::testkit::minimal::example_binary(env!("CARGO"), $package, $example);
            bin.to_str().expect("a UTF-8 path").to_owned()
        }
        $crate::minimal_suite!(@protocol [$($requires)?]
            answers_every_aphorism,
            answers_a_question_split_byte_by_byte,
            answers_many_questions_in_one_write_in_order,
            answers_unknown_questions_and_keeps_the_connection,
            answers_everything_before_closing_on_half_close,
        );
        $crate::minimal_suite!(@hardening
            $crate::testkit::minimal::Real { bin: $real, args: &[$($($real_arg),*)?] },
            [$($requires)?]; $($hardening),*);
    };
    (@hardening $real:expr, $requires:tt; $($hardening:ident),*) => {
        $(
            #[test]
            fn $hardening() {
                if $crate::skip_unmet!(stringify!($hardening), $requires) {
                    return;
                }
                $crate::testkit::minimal::$hardening($real, &minimal());
            }
        )*
    };
    (@protocol $requires:tt $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if $crate::skip_unmet!(stringify!($case), $requires) {
                    return;
                }
                $crate::testkit::minimal::$case(&minimal());
            }
        )*
    };
}

//! `client ask` against real servers over real sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::thread;

use zen_utils::protocol::{answer, APHORISMS};
use zen_utils::testkit::TestServer;
use zen_utils::Config;

fn ask(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_client"))
        .arg("ask")
        .arg(addr.ip().to_string())
        .args(["-p", &addr.port().to_string()])
        .args(args)
        .output()
        .expect("run the client")
}

fn srv_single() -> TestServer {
    TestServer::start(srv_single::serve, Config::default())
}

/// A one-shot fake server that reads one question and replies `reply`.
fn fake_server(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut question = [0; 64];
        let _ = stream.read(&mut question);
        let _ = stream.write_all(reply);
    });
    addr
}

#[test]
fn asks_three_different_questions_and_prints_each_answer() {
    let server = srv_single();
    let output = ask(server.addr(), &[]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in &lines {
        let (question, reply) = line.split_once("? ").expect("question? answer");
        let question = format!("{question}?");
        assert!(
            APHORISMS.iter().any(|(q, _)| *q == question.as_bytes()),
            "{line}"
        );
        assert_eq!(reply.as_bytes(), answer(question.as_bytes()));
    }
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), 3, "the questions are different");
    assert_eq!(server.stop().answered, 3);
}

#[test]
fn asks_the_whole_table_with_n_7() {
    let server = srv_single();
    let output = ask(server.addr(), &["-n", "7"]);
    assert!(output.status.success(), "{output:?}");
    let mut lines: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    let mut table: Vec<String> = APHORISMS
        .iter()
        .map(|(q, a)| {
            format!(
                "{} {}",
                String::from_utf8_lossy(q),
                String::from_utf8_lossy(a)
            )
        })
        .collect();
    table.sort();
    assert_eq!(lines, table);
}

#[test]
fn cause_error_sends_half_a_question_and_the_server_lives_on() {
    let server = srv_single();
    let output = ask(server.addr(), &["-e"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "sent half a question (\"Beautiful is\") and hung up\n"
    );
    assert!(ask(server.addr(), &[]).status.success());
    let summary = server.stop();
    assert_eq!(
        (summary.connections, summary.answered, summary.dropped),
        (2, 3, 1)
    );
}

#[test]
fn a_refused_connection_is_one_line_and_a_failure() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let output = ask(addr, &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("client: cannot connect to {addr}: ")),
        "{stderr}"
    );
    assert!(stderr.contains("refused"), "{stderr}");
}

#[test]
fn a_wrong_answer_is_one_line_and_a_failure() {
    let output = ask(fake_server(b"wrong."), &["-n", "1"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("client: wrong answer to \""), "{stderr}");
    assert!(stderr.contains("got \"wrong.\""), "{stderr}");
}

#[test]
fn an_error_answer_is_reported_as_the_server_said_it() {
    let output = ask(fake_server(b"Error: server busy."), &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr,
        "client: the server answered \"Error: server busy.\"\n"
    );
}

#[test]
fn a_server_that_hangs_up_is_one_line_and_a_failure() {
    let output = ask(fake_server(b""), &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("client: the server closed the connection before answering"),
        "{stderr}"
    );
}

#[test]
fn a_silent_server_times_out_in_one_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let output = ask(listener.local_addr().unwrap(), &["--timeout", "200ms"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("client: no answer to \""), "{stderr}");
    assert!(stderr.ends_with(" within 200ms\n"), "{stderr}");
}

#[test]
fn impossible_numbers_are_refused_or_cost_nothing() {
    // The largest count is asked lazily: a server that hangs up after
    // five answers ends it with one line, long before any memory is spent.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut decoder = zen_utils::Decoder::new(1024);
        let mut answered = 0;
        while answered < 5 {
            match stream.read(decoder.read_buf()) {
                Ok(0) | Err(_) => return,
                Ok(n) => decoder.filled(n),
            }
            while let Ok(Some(question)) = decoder.next_question() {
                let _ = stream.write_all(answer(question));
                answered += 1;
            }
        }
    });
    let output = ask(addr, &["-n", "18446744073709551615"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // A close, or a reset when the next question was already on its way.
    assert!(
        stderr.contains("closed the connection") || stderr.contains("reset"),
        "{stderr}"
    );

    let output = ask(addr, &["--timeout", "0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("must be more than 0"), "{stderr}");
}

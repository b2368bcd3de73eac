//! The cases of the conformance suite, one function per behaviour of
//! SPEC.md. Each takes the function that starts the server under test and
//! the model it follows; [`conformance_suite!`](crate::conformance_suite)
//! turns each into a `#[test]`.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use super::{Client, Model, TestServer};
use crate::protocol::{
    answer, APHORISMS, IDLE_TIMEOUT, REQUEST_TOO_LONG, SERVER_BUSY, UNKNOWN_APHORISM,
};
use crate::{Config, Work, WorkKind};

/// Starts a server under test with a configuration.
pub type Start<'a> = &'a dyn Fn(Config) -> TestServer;

/// How long a test waits to be sure something does *not* happen (an answer
/// to a client that must wait). If it should have happened it would have
/// within this time on any machine; if the machine is slow, the test can
/// only pass wrongly, never fail wrongly.
const QUIET_PERIOD: Duration = Duration::from_millis(300);

fn quiet() -> Config {
    Config {
        verbosity: crate::Verbosity::Quiet,
        ..Config::default()
    }
}

fn wait(duration: Duration) -> Option<Work> {
    Some(Work {
        kind: WorkKind::Wait,
        duration,
    })
}

/// The answers to `questions`, concatenated, computed from the table.
fn expected(questions: &[&[u8]]) -> Vec<u8> {
    questions
        .iter()
        .flat_map(|q| answer(q).iter().copied())
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every question of the table gets its exact answer, one at a time.
pub fn answers_every_aphorism(start: Start<'_>, _: Model) {
    let server = start(quiet());
    let mut client = server.connect();
    for (question, reply) in APHORISMS {
        assert_eq!(text(&client.ask(question)), text(reply));
    }
}

/// A question that arrives one byte per write is answered once, whole.
pub fn answers_a_question_split_byte_by_byte(start: Start<'_>, _: Model) {
    let server = start(quiet());
    let mut client = server.connect();
    for &byte in b"Beautiful is better than?" {
        client.send(&[byte]);
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(text(&client.answer()), "ugly.");
    assert_eq!(text(&client.ask(b"Now is better than?")), "never.");
}

/// Many questions in one write are all answered, in the order asked.
pub fn answers_many_questions_in_one_write_in_order(start: Start<'_>, _: Model) {
    let server = start(quiet());
    let mut client = server.connect();
    let mut questions: Vec<&[u8]> = APHORISMS.iter().map(|(q, _)| *q).collect();
    questions.push(b"?");
    let questions = questions.repeat(50);
    client.send(&questions.concat());
    let want = expected(&questions);
    assert_eq!(text(&client.answers(questions.len())), text(&want));
}

/// Whitespace between questions is skipped; inside a question it counts.
pub fn skips_whitespace_between_questions(start: Start<'_>, _: Model) {
    let server = start(quiet());
    let mut client = server.connect();
    client.send(b" \r\n\tNow is better than?\n\nFlat is better than?\r\n");
    assert_eq!(text(&client.answers(2)), "never.nested.");
    client.send(b"Now is  better than?\n");
    assert_eq!(client.answer(), UNKNOWN_APHORISM);
}

/// Unknown questions, the empty one included, get the error answer and the
/// connection stays open.
pub fn answers_unknown_questions_and_keeps_the_connection(start: Start<'_>, _: Model) {
    let server = start(quiet());
    let mut client = server.connect();
    for question in [
        &b"?"[..],
        b"beautiful is better than?",
        b"Beautiful is better than ?",
    ] {
        assert_eq!(text(&client.ask(question)), text(UNKNOWN_APHORISM));
    }
    assert_eq!(text(&client.ask(b"Explicit is better than?")), "implicit.");
}

/// `--max-request` bytes with no `?`: what came before is answered, then
/// the error, then the server closes; it goes on serving others.
pub fn closes_a_request_that_is_too_long_after_answering_what_came_before(
    start: Start<'_>,
    _: Model,
) {
    let server = start(Config {
        max_request: 64,
        ..quiet()
    });
    let mut client = server.connect();
    let mut request = b"Now is better than?".to_vec();
    request.extend_from_slice(&[b'x'; 100]);
    client.send(&request);
    let got = client.read_to_close();
    assert_eq!(text(&got), format!("never.{}", text(REQUEST_TOO_LONG)));
    drop(client);
    assert_eq!(
        text(&server.connect().ask(b"Flat is better than?")),
        "nested."
    );
}

/// The limit is inclusive: a question of exactly `--max-request` bytes,
/// `?` included, is a question.
pub fn accepts_a_question_of_exactly_max_request_bytes(start: Start<'_>, _: Model) {
    let question = b"Beautiful is better than?";
    let server = start(Config {
        max_request: question.len(),
        ..quiet()
    });
    let mut client = server.connect();
    assert_eq!(text(&client.ask(question)), "ugly.");
    let mut longer = b"x".to_vec();
    longer.extend_from_slice(question);
    client.send(&longer);
    assert_eq!(text(&client.read_to_close()), text(REQUEST_TOO_LONG));
}

/// The book's `-e`: half a question, then a hang-up. The server drops it
/// and goes on serving.
pub fn survives_a_half_question_and_a_hang_up(start: Start<'_>, _: Model) {
    let server = start(quiet());
    let mut client = server.connect();
    client.send(b"Beautiful is better");
    drop(client);
    let mut next = server.connect();
    assert_eq!(text(&next.ask(b"Sparse is better than?")), "dense.");
}

/// After the client shuts down its sending side, every complete question
/// is still answered, then the server closes.
pub fn answers_everything_before_closing_on_half_close(start: Start<'_>, _: Model) {
    let server = start(quiet());
    let mut client = server.connect();
    client.send(b"Now is better than?Simple is better than?Complex is better than?Flat is");
    client.half_close();
    assert_eq!(text(&client.read_to_close()), "never.complex.complicated.");
}

/// A client that resets its connection mid-stream, with a partial question
/// and unread answers, harms no one else.
pub fn survives_a_reset_in_the_middle_of_a_stream(start: Start<'_>, _: Model) {
    let server = start(quiet());
    let mut client = server.connect();
    client.send(&b"Beautiful is better than?".repeat(2000));
    client.send(b"Explicit is bet");
    client.reset();
    let mut next = server.connect();
    assert_eq!(text(&next.ask(b"Now is better than?")), "never.");
}

/// A client that sends a huge pipeline without reading loses nothing: the
/// server stops reading until the client drains its answers, then answers
/// every question in order.
pub fn loses_nothing_when_a_huge_pipeline_is_sent_without_reading(start: Start<'_>, _: Model) {
    const QUESTIONS: usize = 100_000;
    let server = start(quiet());
    let mut client = server.connect();
    let questions: Vec<&[u8]> = APHORISMS
        .iter()
        .map(|(q, _)| *q)
        .cycle()
        .take(QUESTIONS)
        .collect();
    let stream = questions.concat();
    let want = expected(&questions);
    let mut writer = client.try_clone_stream();
    let sender = thread::spawn(move || {
        writer.write_all(&stream).expect("send the pipeline");
        writer
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
    });
    // Not reading for a while lets every buffer on the way fill up.
    thread::sleep(QUIET_PERIOD);
    let got = client.read_to_close();
    sender.join().unwrap();
    assert_eq!(got.len(), want.len(), "every answer arrives");
    assert!(got == want, "the answers arrive in order");
}

/// At `--max-conns` open connections, a new one is answered
/// `Error: server busy.` and closed; the others are untouched, and a freed
/// slot is used again. srv-single instead serves one client at a time.
pub fn limits_the_connections_it_serves(start: Start<'_>, model: Model) {
    let server = start(Config {
        max_conns: 2,
        ..quiet()
    });
    let mut first = server.connect();
    assert_eq!(text(&first.ask(b"Now is better than?")), "never.");
    match model {
        Model::OneAtATime => {
            let mut second = server.connect();
            second.send(b"Flat is better than?");
            assert_eq!(
                second.answer_within(QUIET_PERIOD),
                None,
                "served while the first was open"
            );
            drop(first);
            assert_eq!(text(&second.answer()), "nested.");
        }
        Model::Concurrent => {
            let mut second = server.connect();
            assert_eq!(text(&second.ask(b"Flat is better than?")), "nested.");
            let mut third = server.connect();
            assert_eq!(text(&third.read_to_close()), text(SERVER_BUSY));
            assert_eq!(text(&first.ask(b"Sparse is better than?")), "dense.");
            drop(first);
            // The server learns of the close asynchronously: retry, bounded.
            let served = (0..100).any(|_| {
                let mut next = server.connect();
                next.send(b"Simple is better than?");
                match next.answer_within(super::PATIENCE) {
                    Some(reply) if reply == b"complex." => true,
                    Some(reply) if reply == SERVER_BUSY => {
                        thread::sleep(Duration::from_millis(50));
                        false
                    }
                    other => panic!("unexpected reply {other:?}"),
                }
            });
            assert!(served, "a freed slot was never used again");
            assert_eq!(text(&second.ask(b"Now is better than?")), "never.");
        }
    }
}

/// No question for `--idle-timeout` since the connection opened: the server
/// says so and closes.
pub fn closes_an_idle_connection(start: Start<'_>, _: Model) {
    let server = start(Config {
        idle_timeout: Some(Duration::from_millis(200)),
        ..quiet()
    });
    let mut client = server.connect();
    assert_eq!(text(&client.read_to_close()), text(IDLE_TIMEOUT));
    let mut asked_once = server.connect();
    assert_eq!(text(&asked_once.ask(b"Now is better than?")), "never.");
    assert_eq!(text(&asked_once.read_to_close()), text(IDLE_TIMEOUT));
}

/// The idle timeout counts from the last question, not from the connection
/// opening: a client that keeps asking is never cut off.
pub fn keeps_a_connection_that_keeps_asking(start: Start<'_>, _: Model) {
    let timeout = Duration::from_millis(1500);
    let server = start(Config {
        idle_timeout: Some(timeout),
        ..quiet()
    });
    let mut client = server.connect();
    let started = Instant::now();
    // Keep asking for twice the timeout, a question every tenth of it.
    while started.elapsed() < timeout * 2 {
        assert_eq!(text(&client.ask(b"Now is better than?")), "never.");
        thread::sleep(timeout / 10);
    }
}

/// A client that trickles bytes without ever completing a question is
/// closed by the idle timeout too: the deadline counts questions, not bytes.
pub fn closes_a_connection_that_trickles_bytes_without_a_question(start: Start<'_>, _: Model) {
    let server = start(Config {
        idle_timeout: Some(Duration::from_millis(300)),
        ..quiet()
    });
    let mut client = server.connect();
    let mut writer = client.try_clone_stream();
    let trickle = thread::spawn(move || {
        // A byte every 50 ms for at most 20 s, until the server hangs up.
        for _ in 0..400 {
            if writer.write_all(b"B").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    assert_eq!(text(&client.read_to_close()), text(IDLE_TIMEOUT));
    drop(client);
    trickle.join().unwrap();
}

/// `--work wait:DUR` overlaps across clients in every concurrent model: N
/// clients are served in less than the N × DUR that one-at-a-time serving
/// must take at the very least. srv-single takes at least N × DUR.
pub fn overlaps_waiting_work_across_clients_when_concurrent(start: Start<'_>, model: Model) {
    const CLIENTS: u32 = 8;
    let work = Duration::from_millis(300);
    let server = start(Config {
        work: wait(work),
        ..quiet()
    });
    let addr = server.addr();
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                client.ask(b"Beautiful is better than?")
            })
        })
        .collect();
    for client in clients {
        assert_eq!(text(&client.join().unwrap()), "ugly.");
    }
    let elapsed = started.elapsed();
    let sequential = work * CLIENTS;
    match model {
        Model::OneAtATime => assert!(elapsed >= sequential, "{elapsed:?} < {sequential:?}"),
        Model::Concurrent => assert!(
            elapsed < sequential,
            "{CLIENTS} waits of {work:?} did not overlap: {elapsed:?}"
        ),
    }
}

/// On shutdown, questions already received are still answered, then the
/// connection closes and the server returns its summary.
pub fn answers_in_flight_questions_on_graceful_shutdown(start: Start<'_>, _: Model) {
    let server = start(Config {
        work: wait(Duration::from_millis(300)),
        ..quiet()
    });
    let mut client = server.connect();
    client.send(b"Beautiful is better than?Explicit is better than?");
    // The first answer proves the server has read both questions (they
    // arrived in one segment); the second is still being worked on.
    let mut got = client.answer();
    server.trigger_shutdown();
    got.extend(client.read_to_close());
    assert_eq!(text(&got), "ugly.implicit.");
    let summary = server.stop();
    assert_eq!(summary.answered, 2);
}

/// Shutdown does not wait for idle clients: it closes them, and `serve`
/// returns.
pub fn closes_idle_clients_on_graceful_shutdown(start: Start<'_>, _: Model) {
    let server = start(quiet());
    let mut asked = server.connect();
    assert_eq!(text(&asked.ask(b"Now is better than?")), "never.");
    let mut idle = server.connect();
    let summary = server.stop();
    assert_eq!(text(&asked.read_to_close()), "");
    assert_eq!(text(&idle.read_to_close()), "");
    assert_eq!(summary.answered, 1);
}

/// The summary counts every answer sent and every error answer.
pub fn counts_answers_and_errors_in_the_summary(start: Start<'_>, _: Model) {
    let server = start(Config {
        max_request: 32,
        ..quiet()
    });
    let mut client = server.connect();
    client.send(b"Now is better than??Flat is better than?");
    assert_eq!(
        text(&client.answers(3)),
        format!("never.{}nested.", text(UNKNOWN_APHORISM))
    );
    client.send(&[b'x'; 40]);
    assert_eq!(text(&client.read_to_close()), text(REQUEST_TOO_LONG));
    let summary = server.stop();
    assert_eq!(
        (summary.connections, summary.answered, summary.errors),
        (1, 3, 2)
    );
}

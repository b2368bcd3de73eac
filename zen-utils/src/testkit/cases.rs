//! The cases of the conformance suite, one function per behaviour of
//! docs/protocol.md. Each takes the function that starts the server under test and
//! the model it follows; [`conformance_suite!`](crate::conformance_suite)
//! turns each into a `#[test]`.

use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::{resident_memory, Client, Model, TestServer, PATIENCE};
use crate::protocol::frame::READ_CHUNK;
use crate::protocol::{
    answer, APHORISMS, IDLE_TIMEOUT, OUTPUT_LIMIT, REQUEST_TOO_LONG, SERVER_BUSY, UNKNOWN_APHORISM,
};
use crate::serve::shutdown::TICK;
use crate::{serve::listener, Config, Work, WorkKind};

/// Starts a server under test with a configuration.
pub type Start<'a> = &'a dyn Fn(Config) -> TestServer;

/// How long a test waits to be sure something does *not* happen (an answer
/// to a client that must wait). If it should have happened it would have
/// within this time on any machine; if the machine is slow, the test can
/// only pass wrongly, never fail wrongly.
const QUIET_PERIOD: Duration = Duration::from_millis(300);

/// How often a slowloris client sends its next byte.
pub const SLOWLORIS_PACE: Duration = Duration::from_millis(100);

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

/// While a hostile client holds a connection, another client is answered
/// at once in a concurrent model; srv-single must not answer it yet (it
/// has been sent `Flat is better than?`, answered once the hostile one leaves).
fn others_are_served_meanwhile(other: &mut Client, model: Model) {
    match model {
        Model::Concurrent => {
            for (question, reply) in APHORISMS {
                assert_eq!(text(&other.ask(question)), text(reply));
            }
        }
        Model::OneAtATime => {
            other.send(b"Flat is better than?");
            assert_eq!(
                other.answer_within(QUIET_PERIOD),
                None,
                "served while another client was connected"
            );
        }
    }
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

/// Clients that reset their connections at any point of a conversation
/// harm no one else: right after connecting, in the middle of a question,
/// with a pipeline of unread answers, and while another thread is still
/// writing their pipeline. A concurrent server goes on serving a client
/// that was connected all along.
pub fn survives_a_reset_in_the_middle_of_a_stream(start: Start<'_>, model: Model) {
    let server = start(quiet());
    let mut bystander = (model == Model::Concurrent).then(|| server.connect());
    if let Some(bystander) = &mut bystander {
        assert_eq!(text(&bystander.ask(b"Flat is better than?")), "nested.");
    }
    server.connect().reset();
    let mut client = server.connect();
    client.send(b"Beautiful is bet");
    client.reset();
    let mut client = server.connect();
    client.send(&b"Beautiful is better than?".repeat(2000));
    client.send(b"Explicit is bet");
    client.reset();
    let client = server.connect();
    let mut writer = client.try_clone_stream();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writing = Arc::clone(&stop);
    writer.set_write_timeout(Some(TICK)).unwrap();
    let sender = thread::spawn(move || {
        // Writes until told to stop, however the server's reads go.
        while !stop_writing.load(Ordering::Relaxed) {
            match writer.write(&b"Now is better than?".repeat(100)) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) if error.kind() == io::ErrorKind::TimedOut => {}
                Err(error) => panic!("the server failed the writer: {error}"),
            }
        }
    });
    thread::sleep(TICK);
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    client.reset();
    let mut next = server.connect();
    assert_eq!(text(&next.ask(b"Now is better than?")), "never.");
    if let Some(bystander) = &mut bystander {
        assert_eq!(text(&bystander.ask(b"Sparse is better than?")), "dense.");
    }
}

/// A client that resets its connection once it has every answer (as
/// HAProxy ends its health checks) closed it in the ordinary way: not an
/// error. (One that resets with questions outstanding failed: whether the
/// server saw them before the reset is up to the kernel, so that side is
/// not asserted here.)
pub fn a_reset_after_every_answer_is_an_ordinary_close(start: Start<'_>, _: Model) {
    let server = start(quiet());
    for question in [&b"Beautiful is better than?"[..], b"Flat is better than?"] {
        let mut checker = server.connect();
        assert_eq!(checker.ask(question), answer(question));
        checker.reset();
    }
    // A third client, answered, proves both resets were taken in.
    let mut last = server.connect();
    assert_eq!(text(&last.ask(b"Now is better than?")), "never.");
    drop(last);
    let summary = server.stop();
    assert_eq!(
        (summary.connections, summary.answered, summary.errors),
        (3, 3, 0),
        "{summary}"
    );
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
                match next.answer_within(PATIENCE) {
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

/// `--max-conns` holds through refusals: a burst of five times the limit,
/// all connected at once, has exactly the limit served and the rest
/// refused; once they all leave, the limit's worth of new clients are all
/// served and one more is refused, three rounds running. A refusal never
/// frees a place it did not take. srv-single, which serves one at a time,
/// serves every client of each burst, one after the other.
pub fn max_conns_holds_through_bursts_of_refusals(start: Start<'_>, model: Model) {
    const MAX: usize = 2;
    const BURST: usize = 5 * MAX;
    let server = start(Config {
        max_conns: MAX,
        ..quiet()
    });
    for round in 1..=3 {
        if model == Model::OneAtATime {
            let mut burst: Vec<Client> = (0..BURST).map(|_| server.connect()).collect();
            for client in &mut burst {
                client.send(b"Now is better than?");
            }
            // Each is answered once the one before it has left.
            for mut client in burst {
                assert_eq!(text(&client.answer()), "never.", "round {round}");
            }
            continue;
        }
        // The clients of the round before have left, but the server learns
        // of a close asynchronously: fewer served than the limit is retried
        // (bounded); more is never excused.
        let burst = eventually(|| {
            let (served, busy) = connect_and_ask(&server, BURST);
            assert!(
                served.len() <= MAX,
                "round {round}: {} served",
                served.len()
            );
            (served.len() == MAX).then_some(busy)
        });
        assert_eq!(burst, BURST - MAX, "round {round}: refused");
        let held = eventually(|| {
            let (served, _) = connect_and_ask(&server, MAX);
            (served.len() == MAX).then_some(served)
        });
        let mut one_more = server.connect();
        assert_eq!(
            text(&one_more.read_to_close()),
            text(SERVER_BUSY),
            "round {round}: one more than --max-conns"
        );
        drop(held);
    }
}

/// Connects `clients` clients at once, each asking one question, and
/// reads every reply: returns the clients served (still connected) and how
/// many were refused `Error: server busy.`.
fn connect_and_ask(server: &TestServer, clients: usize) -> (Vec<Client>, usize) {
    let question = b"Now is better than?";
    let mut all: Vec<Client> = (0..clients).map(|_| server.connect()).collect();
    for client in &mut all {
        client.send(question);
    }
    let (mut served, mut busy) = (Vec::new(), 0);
    for mut client in all {
        match client.answer() {
            reply if reply == answer(question) => served.push(client),
            reply if reply == SERVER_BUSY => busy += 1,
            reply => panic!("unexpected reply {:?}", text(&reply)),
        }
    }
    (served, busy)
}

/// Tries `attempt` until it gives a value, pausing between tries: for
/// what the server learns asynchronously (a client's close). Bounded.
fn eventually<T>(mut attempt: impl FnMut() -> Option<T>) -> T {
    for _ in 0..100 {
        if let Some(value) = attempt() {
            return value;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("not within 100 tries")
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

/// Slowloris: clients that trickle bytes (one every [`SLOWLORIS_PACE`])
/// without ever completing a question are closed by the idle timeout all
/// the same: the deadline counts questions, not bytes. The server serves
/// the next client (srv-single only once they are closed).
pub fn closes_a_connection_that_trickles_bytes_without_a_question(start: Start<'_>, _: Model) {
    const TRICKLERS: usize = 3;
    let server = start(Config {
        idle_timeout: Some(Duration::from_millis(300)),
        ..quiet()
    });
    let tricklers: Vec<Client> = (0..TRICKLERS).map(|_| server.connect()).collect();
    let writers: Vec<_> = tricklers
        .iter()
        .map(|trickler| {
            let mut writer = trickler.try_clone_stream();
            thread::spawn(move || {
                // A byte at a time for at most 40 s, until the server hangs up.
                for _ in 0..400 {
                    if writer.write_all(b"B").is_err() {
                        return;
                    }
                    thread::sleep(SLOWLORIS_PACE);
                }
            })
        })
        .collect();
    // srv-single closes them one after the other; the others all at once.
    for mut trickler in tricklers {
        assert_eq!(text(&trickler.read_to_close()), text(IDLE_TIMEOUT));
    }
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(
        text(&server.connect().ask(b"Now is better than?")),
        "never."
    );
}

/// Slowloris clients, each trickling a question one byte every
/// [`SLOWLORIS_PACE`], do not keep a concurrent server from serving
/// another client meanwhile; srv-single serves the other client only once
/// they are done. Every trickled question is answered whole.
pub fn serves_others_while_slowloris_clients_trickle(start: Start<'_>, model: Model) {
    const TRICKLERS: usize = 10;
    let question = b"Now is better than?";
    let (body, mark) = question.split_at(question.len() - 1);
    let server = start(Config {
        idle_timeout: None,
        ..quiet()
    });
    let tricklers: Vec<Client> = (0..TRICKLERS).map(|_| server.connect()).collect();
    let mut writers: Vec<_> = tricklers.iter().map(Client::try_clone_stream).collect();
    let (finish, finish_now) = mpsc::channel::<()>();
    let trickle = thread::spawn(move || {
        for &byte in body {
            for writer in &mut writers {
                writer.write_all(&[byte]).expect("trickle a byte");
            }
            thread::sleep(SLOWLORIS_PACE);
        }
        // The questions stay incomplete until the test says so.
        let _ = finish_now.recv();
        for writer in &mut writers {
            writer.write_all(mark).expect("finish the question");
        }
    });
    let mut other = server.connect();
    others_are_served_meanwhile(&mut other, model);
    finish.send(()).unwrap();
    trickle.join().unwrap();
    // Each trickler leaves once answered, so srv-single takes the next.
    for mut trickler in tricklers {
        assert_eq!(text(&trickler.answer()), "never.");
    }
    if model == Model::OneAtATime {
        assert_eq!(text(&other.answer()), "nested.");
    }
    assert_eq!(text(&other.ask(b"Sparse is better than?")), "dense.");
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

/// The shutdown rule: the grace bounds the work too. Five pipelined
/// questions, each with `--work wait:1500ms`, from a client that reads; the
/// shutdown begins once the first answer has come. Answers keep coming,
/// in order, while the grace lasts; when it ends, the question being
/// worked on and those behind it are dropped unanswered, counted as
/// dropped (not as errors), and `serve` returns: no model waits out work
/// that outlasts the grace. (All five would need the grace to last until
/// 7.5 s, 6 s after the shutdown began: far beyond its 2 s.)
pub fn drops_work_that_outlasts_the_shutdown_grace(start: Start<'_>, _: Model) {
    let server = start(Config {
        work: wait(Duration::from_millis(1500)),
        ..quiet()
    });
    let mut client = server.connect();
    let questions: Vec<u8> = APHORISMS[..5]
        .iter()
        .flat_map(|(q, _)| q.to_vec())
        .collect();
    client.send(&questions);
    let mut got = client.answer();
    server.trigger_shutdown();
    got.extend(client.read_to_close());
    let all: Vec<u8> = APHORISMS[..5]
        .iter()
        .flat_map(|(_, a)| a.to_vec())
        .collect();
    assert!(
        all.starts_with(&got),
        "not a prefix in order: {}",
        text(&got)
    );
    let answered = got.iter().filter(|&&b| b == b'.').count() as u64;
    let summary = server.stop();
    assert_eq!(summary.answered, answered, "{summary:?}");
    assert_eq!(summary.answered + summary.dropped, 5, "{summary:?}");
    assert!(summary.dropped >= 1, "{summary:?}");
    assert_eq!(summary.errors, 0, "{summary:?}");
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

// Hostile clients and faults: what a server must survive, not just serve.

/// Clients that pipeline questions and never read their answers cannot make
/// the server hold more than its output bound: past it, the server stops
/// reading from them. Each sends `?` (whose answer, `Error: unknown
/// aphorism.`, is 24 times longer) until the server stops taking it: that
/// must happen long before [`NEVER_READ_SEND`], which a server without the
/// bound would read to the end, holding 24 times as much in answers. The
/// server's memory grows by no more than the bound per client. Then the
/// clients reset, and the server serves.
pub fn bounds_the_memory_of_clients_that_never_read(start: Start<'_>, _: Model) {
    const CLIENTS: usize = 8;
    /// What a connection may cost the server: its output bound and a
    /// doubling buffer's slack, a decoder, a small thread stack in the
    /// thread-per-connection models.
    const PER_CLIENT: usize = 2 * OUTPUT_LIMIT + READ_CHUNK + 1024 + 64 * 1024;
    /// The allocator's and the runtime's own growth: arenas, caches, timers.
    const SLACK: usize = 32 << 20;
    static NOISE: [u8; 64 * 1024] = [b'?'; 64 * 1024];
    let server = start(quiet());
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let stream = server.connect().into_stream();
            // Small buffers on this side, so that the kernel does not take
            // megabytes of answers in the server's place.
            let socket = socket2::SockRef::from(&stream);
            socket.set_recv_buffer_size(4096).unwrap();
            socket.set_send_buffer_size(4096).unwrap();
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();
    let before = resident_memory();
    let mut sent = [0; CLIENTS];
    // Non-blocking writes round the clients until none has sent a byte for
    // a quiet period (the server stopped reading them) or all is sent.
    let mut last_progress = Instant::now();
    while last_progress.elapsed() < QUIET_PERIOD {
        let mut progress = false;
        for (stream, sent) in clients.iter_mut().zip(&mut sent) {
            let chunk = &NOISE[..(NEVER_READ_SEND - *sent).min(NOISE.len())];
            if chunk.is_empty() {
                continue;
            }
            match stream.write(chunk) {
                Ok(n) => {
                    *sent += n;
                    progress = true;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => panic!("a client that never reads was failed: {error}"),
            }
        }
        if progress {
            last_progress = Instant::now();
        } else {
            thread::sleep(Duration::from_millis(5));
        }
    }
    let grown = resident_memory().saturating_sub(before);
    assert!(
        sent.iter().all(|&sent| sent < NEVER_READ_SEND),
        "the server read everything from clients that never read: {sent:?}"
    );
    let bound = CLIENTS * PER_CLIENT + SLACK;
    assert!(
        grown < bound,
        "memory grew {grown} bytes (bound {bound}) while clients that never read sent {sent:?}"
    );
    for stream in clients {
        listener::set_linger(&stream, Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(
        text(&server.connect().ask(b"Now is better than?")),
        "never."
    );
}

/// How much a client that never reads tries to send. What it manages is
/// what the kernel's buffers hold (a few hundred KiB on loopback, with this
/// side's buffers small) plus what the server takes until its output is at
/// its bound: a few KiB of `?`.
pub const NEVER_READ_SEND: usize = 4 << 20;

/// A client process killed with SIGKILL while it writes a pipeline (and
/// never reads) leaves a reset behind, and the server goes on serving.
pub fn survives_a_client_killed_in_the_middle_of_a_write(start: Start<'_>, _: Model) {
    let server = start(quiet());
    let mut client = server.connect();
    // `yes` writes "Now is better than?\n" as fast as it can, here into the
    // connection, and reads nothing.
    let mut yes = {
        let socket = OwnedFd::from(client.try_clone_stream());
        Command::new("yes")
            .arg("Now is better than?")
            .stdin(Stdio::null())
            .stdout(Stdio::from(socket))
            .stderr(Stdio::null())
            .spawn()
            .expect("start `yes`")
    };
    // The server is answering it; from now on only the child holds the
    // connection, so that its death closes it.
    assert_eq!(text(&client.answer()), "never.");
    drop(client);
    // Long enough for every buffer on the way to fill, so that the server
    // is blocked on a client that does not read when the client dies.
    thread::sleep(QUIET_PERIOD);
    yes.kill().expect("SIGKILL `yes`");
    yes.wait().expect("reap `yes`");
    assert_eq!(
        text(&server.connect().ask(b"Flat is better than?")),
        "nested."
    );
}

/// A burst of connections opened and closed as fast as one client can, in
/// every way a client can leave (at once, after a question it does not wait
/// for, half-way through a question, with a reset), leaves the server
/// serving, srv-single included. A concurrent server keeps serving a client
/// connected all along.
pub fn keeps_serving_through_a_burst_of_connections(start: Start<'_>, model: Model) {
    const BURST: usize = 1000;
    let server = start(quiet());
    let mut bystander = (model == Model::Concurrent).then(|| server.connect());
    if let Some(bystander) = &mut bystander {
        assert_eq!(text(&bystander.ask(b"Flat is better than?")), "nested.");
    }
    for i in 0..BURST {
        let mut stream = TcpStream::connect(server.addr()).expect("connect in the burst");
        // A write may fail if the server was quick to see the close of an
        // earlier one; that is the client's loss, not the test's.
        match i % 4 {
            0 => {}
            1 => {
                let _ = stream.write_all(b"Now is better than?");
            }
            2 => {
                let _ = stream.write_all(b"Now is bet");
            }
            _ => listener::set_linger(&stream, Some(Duration::ZERO)).unwrap(),
        }
    }
    let mut next = server.connect();
    assert_eq!(text(&next.ask(b"Simple is better than?")), "complex.");
    if let Some(bystander) = &mut bystander {
        assert_eq!(text(&bystander.ask(b"Sparse is better than?")), "dense.");
    }
}

/// A request of many megabytes with no `?` is cut off at `--max-request`:
/// the client gets `Error: request too long.` and a close, long before it
/// has sent it all, and the server goes on serving.
pub fn closes_a_request_of_many_megabytes_without_a_question_mark(start: Start<'_>, _: Model) {
    const SIZE: usize = 16 << 20;
    let server = start(quiet());
    let mut client = server.connect();
    let mut writer = client.try_clone_stream();
    let sender = thread::spawn(move || {
        let chunk = [b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < SIZE {
            match writer.write(&chunk) {
                Ok(n) => sent += n,
                // The server hung up: the rest will never be read.
                Err(_) => break,
            }
        }
        sent
    });
    assert_eq!(text(&client.read_to_close()), text(REQUEST_TOO_LONG));
    drop(client);
    let sent = sender.join().unwrap();
    assert!(
        sent < SIZE,
        "the server read all {SIZE} bytes of one request"
    );
    assert_eq!(
        text(&server.connect().ask(b"Now is better than?")),
        "never."
    );
    let summary = server.stop();
    assert_eq!((summary.answered, summary.errors), (1, 1));
}

/// A shutdown in the middle of a pipelined load, the clients writing and
/// reading as fast as they can: every client gets a prefix of its answers,
/// in order and exact, and its connection ends within [`PATIENCE`] however
/// fast it goes on writing; the server counts at least every answer the
/// clients received. A concurrent server has answered every client before
/// the shutdown; srv-single the first.
pub fn answers_in_order_until_shut_down_under_pipelined_load(start: Start<'_>, model: Model) {
    const CLIENTS: usize = 8;
    let server = start(quiet());
    let served = match model {
        Model::Concurrent => CLIENTS,
        Model::OneAtATime => 1,
    };
    // Everyone meets here once the served clients have had an answer.
    let ready = Arc::new(Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let mut flood = Flood::start(&server);
            let ready = Arc::clone(&ready);
            thread::spawn(move || {
                if index < served {
                    flood.read_some();
                }
                ready.wait();
                flood.read_to_close()
            })
        })
        .collect();
    ready.wait();
    server.trigger_shutdown();
    let mut received = 0;
    for (index, client) in clients.into_iter().enumerate() {
        let answers = client.join().unwrap();
        if index < served {
            assert!(answers > 0, "client {index} got nothing");
        }
        received += answers;
    }
    let summary = server.stop();
    assert!(
        summary.answered >= received,
        "the clients received {received} answers, the server counted {}",
        summary.answered
    );
}

/// A client that pipelines as fast as it can, writing and reading at once,
/// does not starve a concurrent server's other clients; srv-single serves
/// the next client once it leaves. Its answers are all exact, in order.
pub fn serves_others_while_a_client_floods_a_pipeline(start: Start<'_>, model: Model) {
    let server = start(quiet());
    let mut flood = Flood::start(&server);
    flood.read_some();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_reading = Arc::clone(&stop);
    let reader = thread::spawn(move || {
        while !stop_reading.load(Ordering::Relaxed) {
            flood.read_some();
        }
        flood
    });
    let mut other = server.connect();
    others_are_served_meanwhile(&mut other, model);
    stop.store(true, Ordering::Relaxed);
    let flood = reader.join().unwrap();
    flood.stop();
    if model == Model::OneAtATime {
        assert_eq!(text(&other.answer()), "nested.");
    }
    assert_eq!(text(&other.ask(b"Sparse is better than?")), "dense.");
}

/// A client that writes the table over and over from a thread of its own,
/// as fast as the server takes it, and checks every answer it reads.
struct Flood {
    stream: TcpStream,
    writer: thread::JoinHandle<()>,
    /// The answers to one round of the table.
    round: Vec<u8>,
    /// Where in `round` the next byte read must be.
    at: usize,
    answers: u64,
}

impl Flood {
    fn start(server: &TestServer) -> Self {
        let stream = server.connect().into_stream();
        let mut writer = stream.try_clone().unwrap();
        let questions: Vec<u8> = APHORISMS.iter().flat_map(|(q, _)| *q).copied().collect();
        let questions = questions.repeat(16);
        // Writes until the server or `stop` closes the connection.
        let writer = thread::spawn(move || while writer.write_all(&questions).is_ok() {});
        Self {
            stream,
            writer,
            round: APHORISMS.iter().flat_map(|(_, a)| *a).copied().collect(),
            at: 0,
            answers: 0,
        }
    }

    /// Reads once; returns how many bytes came (0 at the close).
    ///
    /// # Panics
    /// If a byte is not the one expected, or nothing comes within [`PATIENCE`].
    fn read_some(&mut self) -> usize {
        let mut chunk = [0; 16 * 1024];
        let n = match io::Read::read(&mut self.stream, &mut chunk) {
            Ok(n) => n,
            Err(error) if super::is_reset(&error) => 0,
            Err(error) => panic!("no answer within {PATIENCE:?}: {error}"),
        };
        for &byte in &chunk[..n] {
            assert_eq!(
                byte as char, self.round[self.at] as char,
                "a wrong answer after {} right ones",
                self.answers
            );
            self.answers += u64::from(byte == b'.');
            self.at = (self.at + 1) % self.round.len();
        }
        n
    }

    /// Reads until the server closes the connection, which it must do
    /// within [`PATIENCE`]; returns the answers received in all.
    fn read_to_close(mut self) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        while self.read_some() > 0 {
            assert!(
                Instant::now() < deadline,
                "still answering {PATIENCE:?} after the shutdown"
            );
        }
        self.writer.join().unwrap();
        self.answers
    }

    /// Closes the connection (with a reset, since answers are unread) and
    /// waits for the writer to notice.
    fn stop(self) {
        listener::set_linger(&self.stream, Some(Duration::ZERO)).unwrap();
        self.stream.shutdown(std::net::Shutdown::Both).unwrap();
        drop(self.stream);
        self.writer.join().unwrap();
    }
}

/// Random byte streams (mostly questions, `?` and whitespace), split at
/// random: the server answers each exactly as the protocol's framing decodes
/// it, closes after a request too long, never panics, and still serves.
/// A failing stream is shrunk to a minimal one by proptest.
pub fn answers_random_byte_streams_as_the_spec_frames_them(start: Start<'_>, _: Model) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as Cases, TestRunner};

    const MAX_REQUEST: usize = 48;
    let server = start(Config {
        max_request: MAX_REQUEST,
        ..quiet()
    });
    let token = prop_oneof![
        3 => prop::sample::select(APHORISMS.map(|(q, _)| q.to_vec()).to_vec()),
        3 => Just(b"?".to_vec()),
        2 => prop::sample::select(vec![b" ", b"\t", b"\r", b"\n"]).prop_map(|b| b.to_vec()),
        4 => prop::sample::select(b"Now is better than".to_vec()).prop_map(|b| vec![b]),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ];
    let stream = prop::collection::vec(token, 0..120).prop_map(|tokens| tokens.concat());
    let pieces = prop::collection::vec((1usize..64, any::<bool>()), 1..16);
    let mut runner = TestRunner::new(Cases {
        cases: 32,
        failure_persistence: None,
        ..Cases::default()
    });
    let result = runner.run(&(stream, pieces), |(stream, pieces)| {
        let (questions, too_long_at) = frame(&stream, MAX_REQUEST);
        // Past the point where the server must give up, nothing matters.
        let stream = &stream[..too_long_at.unwrap_or(stream.len())];
        let mut want = expected(&questions);
        if too_long_at.is_some() {
            want.extend_from_slice(REQUEST_TOO_LONG);
        }
        let mut client = server.connect();
        let mut writer = client.try_clone_stream();
        let stream = stream.to_vec();
        let sender = thread::spawn(move || {
            let mut rest = &stream[..];
            for &(size, pause) in pieces.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, after) = rest.split_at(size.min(rest.len()));
                // The server may close first after a request too long.
                if writer.write_all(piece).is_err() {
                    return;
                }
                rest = after;
                if pause {
                    thread::sleep(Duration::from_micros(300));
                }
            }
            let _ = writer.shutdown(std::net::Shutdown::Write);
        });
        let got = client.read_to_close();
        sender.join().unwrap();
        prop_assert_eq!(text(&got), text(&want));
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    assert_eq!(
        text(&server.connect().ask(b"Now is better than?")),
        "never."
    );
    server.stop();
}

/// The protocol's framing applied to a whole stream, as plainly as possible:
/// skip whitespace, then a question is every byte up to and including the
/// first `?`. Returns the questions, and where the stream becomes a request
/// too long (the end of `max_request` bytes with no `?`), if it does.
fn frame(stream: &[u8], max_request: usize) -> (Vec<&[u8]>, Option<usize>) {
    let mut questions = Vec::new();
    let mut at = 0;
    loop {
        while stream.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        let rest = &stream[at..];
        match rest.iter().position(|&b| b == b'?') {
            Some(end) if end < max_request => {
                questions.push(&rest[..=end]);
                at += end + 1;
            }
            _ => {
                return (
                    questions,
                    (rest.len() >= max_request).then_some(at + max_request),
                )
            }
        }
    }
}

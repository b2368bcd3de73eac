//! `--offload N` (srv-poll, srv-async, srv-hybrid): the cases that only
//! helper threads make true, run by [`offload_suite!`](crate::offload_suite).
//! The whole conformance suite also runs with helpers, through
//! [`offloaded`]: on helpers, a blocking sleep is served the way the loop
//! serves a timer, so every case holds as it does with `--work wait`.

use std::thread;
use std::time::Duration;

use super::{Client, TestServer};
use crate::protocol::{APHORISMS, REQUEST_TOO_LONG};
use crate::{Config, Work, WorkKind};

/// Starts a server under test with a configuration.
pub type Start<'a> = &'a dyn Fn(Config) -> TestServer;

/// `config` served with 16 helpers, its `--work wait` turned into `--work
/// block`: the conformance suite's cases of waiting work then run on the
/// helpers, and must hold as they do with a timer.
pub fn offloaded(config: Config) -> Config {
    let work = config.work.map(|work| match work.kind {
        WorkKind::Wait => Work {
            kind: WorkKind::Block,
            ..work
        },
        _ => work,
    });
    Config {
        work,
        offload: 16,
        ..config
    }
}

fn quiet(offload: usize, kind: WorkKind, duration: Duration) -> Config {
    Config {
        verbosity: crate::Verbosity::Quiet,
        work: Some(Work { kind, duration }),
        offload,
        ..Config::default()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Pipelined questions whose work runs on 4 helpers come back in the order
/// asked, on each of two connections at once: a connection hands its
/// helpers one question at a time.
pub fn offloaded_answers_keep_their_order(start: Start<'_>) {
    let server = start(quiet(4, WorkKind::Cpu, Duration::from_micros(200)));
    let mut questions: Vec<&[u8]> = APHORISMS.iter().map(|(q, _)| *q).collect();
    questions.push(b"?");
    let want: Vec<u8> = questions
        .iter()
        .flat_map(|q| crate::protocol::answer(q).to_vec())
        .collect();
    let mut clients: Vec<Client> = (0..2).map(|_| server.connect()).collect();
    for client in &mut clients {
        client.send(&questions.concat());
    }
    for client in &mut clients {
        assert_eq!(text(&client.answers(questions.len())), text(&want));
    }
    assert_eq!(server.stop().answered, 2 * questions.len() as u64);
}

/// The one helper sleeps in a client's `--work block` for a minute, and
/// the loop goes on: another client's question that is too long (an
/// answer that needs no work) is refused and closed at once, while the
/// first one's answer is still being worked on. Without helpers the loop
/// itself would sleep, and nobody would hear from it for a minute. (The
/// shutdown then closes the first client at the end of the grace: a sleep
/// cannot be cut short, and its answer is dropped.)
pub fn the_loop_serves_others_while_a_helper_blocks(start: Start<'_>) {
    let server = start(Config {
        max_request: 32,
        ..quiet(1, WorkKind::Block, Duration::from_secs(60))
    });
    let mut first = server.connect();
    first.send(b"Now is better than?");
    let mut second = server.connect();
    second.send(&[b'a'; 33]);
    assert_eq!(text(&second.read_to_close()), text(REQUEST_TOO_LONG));
    assert_eq!(
        first.answer_within(Duration::from_millis(100)),
        None,
        "a minute of work answered already"
    );
    assert_eq!(server.stop().dropped, 1, "the first one's answer");
}

/// More clients than the helpers' queue holds (one helper: 64 jobs) each
/// ask a question at once: the works that found the queue full wait for
/// room, their connections unread meanwhile, and every client gets its
/// right answer. Nothing is dropped. (One helper takes 5 ms a question,
/// 750 ms for all: the clients ask long before the queue has drained.)
pub fn a_full_helper_queue_loses_nothing(start: Start<'_>) {
    const CLIENTS: usize = 150;
    let server = start(quiet(1, WorkKind::Block, Duration::from_millis(5)));
    let addr = server.addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            thread::spawn(move || {
                let (question, answer) = APHORISMS[i % APHORISMS.len()];
                let mut client = Client::connect(addr);
                (text(&client.ask(question)), text(answer))
            })
        })
        .collect();
    for client in clients {
        let (got, want) = client.join().unwrap();
        assert_eq!(got, want);
    }
    assert_eq!(server.stop().answered, CLIENTS as u64);
}

/// Clients that ask and then reset (`SO_LINGER` 0) while their work waits
/// for the one helper take their work with them: the server watches a
/// connection whose work is queued, sees the reset, and the helper skips
/// the work instead of sleeping through it for nobody. A live client that
/// asks after them is answered, and the summary counts no answer made for
/// the clients that left (at most a few whose reset the server was slow to
/// see). Each client waits a moment before its reset, so that the server
/// has read its question: a reset that comes first takes the unread
/// question with it, and there is no work to cancel.
pub fn work_of_clients_that_reset_is_cancelled(start: Start<'_>) {
    const GONE: usize = 20;
    let server = start(quiet(1, WorkKind::Block, Duration::from_millis(200)));
    for (question, _) in APHORISMS.iter().cycle().take(GONE) {
        let mut client = server.connect();
        client.send(question);
        thread::sleep(Duration::from_millis(20));
        client.reset();
    }
    let (question, answer) = APHORISMS[0];
    let mut live = server.connect();
    assert_eq!(text(&live.ask(question)), text(answer));
    drop(live);
    let summary = server.stop();
    let made_for_the_gone = summary.answered - 1;
    assert!(
        made_for_the_gone <= (GONE / 4) as u64,
        "{made_for_the_gone} of {GONE} answers were worked out for clients that had reset"
    );
}

/// Stamps out the offload cases, one `#[test]` each, against the server
/// that `serve` starts (`serve(listener, config, shutdown)`; the cases set
/// `config.offload`).
#[macro_export]
macro_rules! offload_suite {
    (serve: $serve:expr $(,)?) => {
        fn start_offloaded(config: $crate::Config) -> $crate::testkit::TestServer {
            $crate::testkit::TestServer::start($serve, config)
        }
        $crate::offload_suite!(@cases
            offloaded_answers_keep_their_order,
            the_loop_serves_others_while_a_helper_blocks,
            a_full_helper_queue_loses_nothing,
            work_of_clients_that_reset_is_cancelled,
        );
    };
    (@cases $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testkit::offload_cases::$case(&start_offloaded);
            }
        )*
    };
}

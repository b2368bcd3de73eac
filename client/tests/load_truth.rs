//! `client load` against small servers whose true counts are known: each
//! server counts the connections it accepted, the questions it read and
//! the answers it sent, and each run's report, as text and as `--json`, is
//! checked against those counts. Every figure the project publishes comes
//! from this engine. No test asserts how fast anything is; a run that
//! never ends fails (see `common::client`).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{client, fake_server};
use serde_json::Value;
use zen_utils::protocol::answer;
use zen_utils::Decoder;

/// What a server really did.
#[derive(Default, Debug)]
struct Truth {
    conns: AtomicUsize,
    questions: AtomicUsize,
    answers: AtomicUsize,
    /// The most answers one connection got (counted by `serve_questions`).
    most_per_conn: AtomicUsize,
}

impl Truth {
    fn conns(&self) -> u64 {
        self.conns.load(Ordering::SeqCst) as u64
    }
    fn questions(&self) -> u64 {
        self.questions.load(Ordering::SeqCst) as u64
    }
    fn answers(&self) -> u64 {
        self.answers.load(Ordering::SeqCst) as u64
    }
    fn most_per_conn(&self) -> u64 {
        self.most_per_conn.load(Ordering::SeqCst) as u64
    }
}

/// A thread-per-connection server that counts its connections; `serve`
/// counts the rest.
fn counted<F>(serve: F) -> (SocketAddr, Arc<Truth>)
where
    F: Fn(TcpStream, &Truth) + Send + Sync + 'static,
{
    let truth = Arc::new(Truth::default());
    let seen = Arc::clone(&truth);
    let addr = fake_server(move |stream, _| {
        seen.conns.fetch_add(1, Ordering::SeqCst);
        serve(stream, &seen);
    });
    (addr, truth)
}

/// Reads zen questions and answers each with `reply(k, question)` for the
/// k-th question of the connection (from 0), all of one read in one
/// write, counting questions and answers; `None` stops answering.
fn serve_questions(
    mut stream: TcpStream,
    truth: &Truth,
    reply: impl Fn(usize, &[u8]) -> Option<Vec<u8>>,
) {
    stream.set_nodelay(true).unwrap();
    let mut decoder = Decoder::new(1024);
    let mut asked = 0;
    let mut answered = 0;
    loop {
        let n = match stream.read(decoder.read_buf()) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        decoder.filled(n);
        let mut out = Vec::new();
        while let Ok(Some(question)) = decoder.next_question() {
            truth.questions.fetch_add(1, Ordering::SeqCst);
            match reply(asked, question) {
                Some(bytes) => {
                    out.extend_from_slice(&bytes);
                    truth.answers.fetch_add(1, Ordering::SeqCst);
                    answered += 1;
                    truth.most_per_conn.fetch_max(answered, Ordering::SeqCst);
                }
                None => {
                    // Stalls for good, holding the connection open.
                    let _ = stream.write_all(&out);
                    while matches!(stream.read(&mut [0; 4096]), Ok(n) if n > 0) {}
                    return;
                }
            }
            asked += 1;
        }
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// The right answer, as bytes of its own.
fn right(question: &[u8]) -> Vec<u8> {
    answer(question).to_vec()
}

/// What a report says, read from the text or from the JSON, so that the
/// two can be held to the same ground truth.
#[derive(Debug, PartialEq)]
struct Seen {
    requests: u64,
    /// The error kinds that happened, by their name in the text report.
    errors: BTreeMap<String, u64>,
    reconnects: u64,
    /// `planned_reconnects` (the text's `planned` line, 0 when absent).
    planned: u64,
    reasked: u64,
    served: u64,
    /// `(target, answers)`, when there are several targets.
    per_target: Vec<(String, u64)>,
    stopped_early: Option<String>,
    exit: Option<i32>,
}

impl Seen {
    fn error(&self, kind: &str) -> u64 {
        self.errors.get(kind).copied().unwrap_or(0)
    }

    fn from_json(report: &Value, exit: Option<i32>) -> Self {
        let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("{v} in {report}"));
        let errors = report["errors_by_kind"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, count)| n(count) > 0)
            .map(|(kind, count)| {
                let name = match kind.as_str() {
                    "closed" => "closed by server".to_owned(),
                    other => other.replace('_', " "),
                };
                (name, n(count))
            })
            .collect::<BTreeMap<_, _>>();
        assert_eq!(
            errors.values().sum::<u64>(),
            n(&report["errors"]),
            "{report}"
        );
        let targets = report["per_target"].as_array().unwrap();
        Self {
            requests: n(&report["requests"]),
            errors,
            reconnects: n(&report["reconnects"]),
            planned: n(&report["planned_reconnects"]),
            reasked: n(&report["reasked"]),
            served: n(&report["served_conns"]),
            per_target: if targets.len() > 1 {
                targets
                    .iter()
                    .map(|t| (t["target"].as_str().unwrap().to_owned(), n(&t["requests"])))
                    .collect()
            } else {
                Vec::new()
            },
            stopped_early: report["stopped_early"].as_str().map(str::to_owned),
            exit,
        }
    }

    fn from_text(text: &str, exit: Option<i32>) -> Self {
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name:?} in:\n{text}"))
                .trim()
                .to_owned()
        };
        let first_number = |s: &str| -> u64 {
            s.split(|c: char| !c.is_ascii_digit())
                .find(|w| !w.is_empty())
                .unwrap()
                .parse()
                .unwrap()
        };
        let errors_line = field("errors ");
        let errors = match errors_line.split_once(" (") {
            Some((_, kinds)) => kinds
                .trim_end_matches(')')
                .split(", ")
                .map(|kind| {
                    let (name, count) = kind.rsplit_once(' ').unwrap();
                    (name.to_owned(), count.parse().unwrap())
                })
                .collect(),
            None => BTreeMap::new(),
        };
        assert_eq!(
            errors.values().sum::<u64>(),
            first_number(&errors_line),
            "{text}"
        );
        let per_target = match text.split_once("per target ") {
            Some((_, rest)) => rest
                .lines()
                .skip(1)
                .take_while(|line| line.starts_with("  ") && line.contains(':'))
                .map(|line| {
                    let mut words = line.split_whitespace();
                    let target = words.next().unwrap().to_owned();
                    (target, words.next().unwrap().parse().unwrap())
                })
                .collect(),
            None => Vec::new(),
        };
        Self {
            requests: first_number(&field("requests ")),
            errors,
            reconnects: first_number(&field("reconnects ")),
            planned: text
                .lines()
                .find_map(|line| line.strip_prefix("planned "))
                .map_or(0, first_number),
            reasked: first_number(&field("re-asked ")),
            served: first_number(&field("served conns ")),
            per_target,
            stopped_early: text
                .lines()
                .find_map(|line| line.strip_prefix("stopped early: "))
                .map(str::to_owned),
            exit,
        }
    }
}

/// Runs `client load` twice, each time against fresh servers made by
/// `make` (one or several, each with its truth): once with `--json`, once
/// for the text report. `check` holds each report to its own run's truth.
fn load_twice<M, C>(make: M, args: &[&str], check: C)
where
    M: Fn() -> Vec<(SocketAddr, Arc<Truth>)>,
    C: Fn(&Seen, &[Arc<Truth>]),
{
    for json in [true, false] {
        let servers = make();
        let mut all = vec!["load".to_owned()];
        for (addr, _) in &servers {
            all.extend(["--server".to_owned(), addr.to_string()]);
        }
        all.extend(args.iter().map(|arg| (*arg).to_owned()));
        if json {
            all.push("--json".to_owned());
        }
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let output = client(&all);
        let stdout = String::from_utf8(output.stdout.clone()).unwrap();
        let stderr = String::from_utf8(output.stderr.clone()).unwrap();
        assert!(!stderr.contains("panicked"), "{stderr}");
        let seen = if json {
            let report: Value =
                serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {output:?}"));
            Seen::from_json(&report, output.status.code())
        } else {
            Seen::from_text(&stdout, output.status.code())
        };
        let truths: Vec<Arc<Truth>> = servers.into_iter().map(|(_, truth)| truth).collect();
        // The servers' threads count as they go: a moment for the last
        // counts to land after the client has gone.
        thread::sleep(Duration::from_millis(50));
        let mode = if json { "--json" } else { "text" };
        eprintln!("{mode}: {seen:?}; truth: {truths:?}");
        check(&seen, &truths);
    }
}

fn one(server: (SocketAddr, Arc<Truth>)) -> Vec<(SocketAddr, Arc<Truth>)> {
    vec![server]
}

/// A server that reads each question and then streams `.` for ever.
fn flooding_dots() -> (SocketAddr, Arc<Truth>) {
    counted(|mut stream, truth| {
        let mut question = [0; 64];
        if !matches!(stream.read(&mut question), Ok(n) if n > 0) {
            return;
        }
        truth.questions.fetch_add(1, Ordering::SeqCst);
        let dots = [b'.'; 64 * 1024];
        while stream.write_all(&dots).is_ok() {}
    })
}

#[test]
fn a_server_flooding_dots_ends_on_time_with_one_error_per_connection() {
    // -d: the run must end. Each connection's question gets `.` (a wrong
    // answer); the next `.` answers nothing, which closes the connection:
    // one unasked answer per connection the server accepted, but for those
    // the end of the run cut short (at most one per client connection).
    load_twice(
        || one(flooding_dots()),
        &["-c", "4", "-d", "1s", "--timeout", "1s"],
        |seen, truth| {
            let conns = truth[0].conns();
            assert_eq!(seen.requests, 0);
            assert_eq!(seen.exit, Some(1));
            let unasked = seen.error("unasked answer");
            assert!(
                unasked <= conns && unasked + 4 >= conns,
                "{unasked} of {conns}"
            );
            assert!(seen.error("wrong answer") <= truth[0].questions());
            // Each connect the client made, the server accepted; one still
            // in progress at the end is accepted but never opened.
            assert!((seen.reconnects + 4..=seen.reconnects + 8).contains(&conns));
        },
    );
    // -n: exact. Four questions, four wrong answers, four unasked, and no
    // more connections than the four.
    load_twice(
        || one(flooding_dots()),
        &["-c", "4", "-n", "4", "--timeout", "1s"],
        |seen, truth| {
            assert_eq!(truth[0].conns(), 4);
            assert_eq!(truth[0].questions(), 4);
            assert_eq!(seen.requests, 0);
            assert_eq!(seen.error("wrong answer"), 4);
            assert_eq!(seen.error("unasked answer"), 4);
            assert_eq!(seen.errors.len(), 2);
            assert_eq!(seen.reconnects, 0);
            assert_eq!(seen.stopped_early, None);
            assert_eq!(seen.exit, Some(1));
        },
    );
}

#[test]
fn a_server_answering_twice_is_closed_once_per_connection() {
    let twice = || {
        one(counted(|stream, truth| {
            serve_questions(stream, truth, |_, q| Some(right(q).repeat(2)));
        }))
    };
    load_twice(
        twice,
        &["-c", "1", "-n", "10", "--threads", "1"],
        |seen, truth| {
            // Every connection: one right answer, then one unasked; the
            // client closes it and asks the next question on a new one.
            assert_eq!(truth[0].conns(), 10);
            assert_eq!(truth[0].questions(), 10);
            assert_eq!(seen.requests, 10);
            assert_eq!(seen.error("unasked answer"), 10);
            assert_eq!(seen.errors.len(), 1);
            assert_eq!(seen.reconnects, 9);
            assert_eq!(seen.stopped_early, None);
        },
    );
}

#[test]
fn hostile_servers_of_every_kind_end_on_time() {
    // Garbage with no `.`, silence, a close at once, a reset, and one byte
    // per 100 ms: each run ends by itself, with no right answer counted.
    let garbage = || {
        one(counted(|mut stream, _| {
            let junk = [b'x'; 64 * 1024];
            while stream.write_all(&junk).is_ok() {}
        }))
    };
    let silent = || {
        one(counted(|mut stream, _| {
            while matches!(stream.read(&mut [0; 4096]), Ok(n) if n > 0) {}
        }))
    };
    let closes = || one(counted(|stream, _| drop(stream)));
    let resets = || {
        // Reads the question, then resets the connection.
        one(counted(|mut stream, _| {
            let _ = stream.read(&mut [0; 64]);
            let socket = socket2::Socket::from(stream);
            socket.set_linger(Some(Duration::ZERO)).unwrap();
        }))
    };
    let trickles = || {
        one(counted(|mut stream, _| {
            for byte in b"x".repeat(100) {
                if stream.write_all(&[byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
        }))
    };
    let args = ["-c", "4", "-d", "1s", "--timeout", "1s"];
    load_twice(garbage, &args, |seen, truth| {
        assert_eq!(seen.requests, 0);
        let wrong = seen.error("wrong answer");
        assert!(wrong >= 4 && wrong <= truth[0].conns(), "{seen:?}");
    });
    load_twice(silent, &args, |seen, truth| {
        assert_eq!(seen.requests, 0);
        assert_eq!(seen.errors, BTreeMap::new());
        assert_eq!(truth[0].conns(), 4);
        assert_eq!(seen.exit, Some(1));
    });
    load_twice(closes, &args, |seen, truth| {
        assert_eq!(seen.requests, 0);
        let closed = seen.error("closed by server") + seen.error("reset");
        assert!(closed >= 4 && closed <= truth[0].conns(), "{seen:?}");
    });
    load_twice(resets, &args, |seen, truth| {
        assert_eq!(seen.requests, 0);
        let failed = seen.error("reset") + seen.error("closed by server");
        assert!(failed >= 4 && failed <= truth[0].conns(), "{seen:?}");
    });
    load_twice(trickles, &args, |seen, truth| {
        assert_eq!(seen.requests, 0);
        assert_eq!(truth[0].conns(), 4);
        assert_eq!(seen.exit, Some(1));
    });
}

#[test]
fn a_failure_in_the_same_read_as_answers_loses_none_of_them() {
    // Every connection's third answer is followed by 2,000 bytes with no
    // `.`: the three answers count, the junk fails the connection, and the
    // next connection asks on. Ten questions take four connections.
    let junk_after_three = || {
        one(counted(|stream, truth| {
            serve_questions(stream, truth, |k, q| {
                let mut bytes = right(q);
                if k == 2 {
                    bytes.extend_from_slice(&[b'x'; 2_000]);
                }
                Some(bytes)
            });
        }))
    };
    load_twice(
        junk_after_three,
        &["-c", "1", "-n", "10", "--threads", "1"],
        |seen, truth| {
            assert_eq!(seen.requests, 10);
            assert_eq!(truth[0].answers(), 10);
            assert_eq!(truth[0].conns(), 4);
            assert_eq!(seen.error("wrong answer"), 3);
            assert_eq!(seen.errors.len(), 1);
            assert_eq!(seen.reconnects, 3);
            assert_eq!(seen.stopped_early, None);
            assert_eq!(seen.exit, Some(1));
        },
    );
}

/// A server that answers `Error: warming up.` for its first 500 ms (from
/// its first connection), then right.
fn warming_up() -> (SocketAddr, Arc<Truth>) {
    let started = Arc::new(std::sync::OnceLock::new());
    counted(move |stream, truth| {
        let started = *started.get_or_init(Instant::now);
        serve_questions(stream, truth, |_, q| {
            Some(if started.elapsed() < Duration::from_millis(500) {
                b"Error: warming up.".to_vec()
            } else {
                right(q)
            })
        });
    })
}

#[test]
fn nothing_is_counted_during_the_warmup() {
    load_twice(
        || one(warming_up()),
        &["-c", "2", "-d", "1s", "--warmup", "1s"],
        |seen, truth| {
            assert_eq!(seen.errors, BTreeMap::new(), "{seen:?}");
            assert!(seen.requests > 0 && seen.requests <= truth[0].answers());
            assert_eq!(seen.exit, Some(0));
        },
    );
    load_twice(
        || one(warming_up()),
        &["-c", "2", "-n", "200", "--warmup", "1s"],
        |seen, truth| {
            assert_eq!(seen.errors, BTreeMap::new(), "{seen:?}");
            assert_eq!(seen.requests, 200);
            assert!(truth[0].answers() > 200);
            assert_eq!(seen.exit, Some(0));
        },
    );
}

#[test]
fn a_long_expected_reply_in_pieces_is_right() {
    // An 1,100-byte reply, sent as 1,050 bytes, a pause, then 50.
    let long_replies = || {
        one(counted(|mut stream, truth| {
            stream.set_nodelay(true).unwrap();
            let mut buf = [0; 5];
            while stream.read_exact(&mut buf).is_ok() {
                truth.questions.fetch_add(1, Ordering::SeqCst);
                let reply = b"y".repeat(1_100);
                let sent = stream.write_all(&reply[..1_050]).is_ok() && {
                    thread::sleep(Duration::from_millis(20));
                    stream.write_all(&reply[1_050..]).is_ok()
                };
                if !sent {
                    return;
                }
                truth.answers.fetch_add(1, Ordering::SeqCst);
            }
        }))
    };
    let expect = "y".repeat(1_100);
    load_twice(
        long_replies,
        &[
            "-c", "1", "-n", "5", "--send", r"GET\r\n", "--expect", &expect,
        ],
        |seen, truth| {
            assert_eq!(seen.requests, 5);
            assert_eq!(truth[0].answers(), 5);
            assert_eq!(seen.errors, BTreeMap::new());
            assert_eq!(seen.exit, Some(0));
        },
    );
}

#[test]
fn a_reply_of_another_length_is_one_wrong_answer_per_question() {
    let redis_error = || {
        one(counted(|mut stream, truth| {
            let mut buf = [0; 6];
            while stream.read_exact(&mut buf).is_ok() {
                truth.questions.fetch_add(1, Ordering::SeqCst);
                if stream
                    .write_all(b"-ERR unknown command 'PING'\r\n")
                    .is_err()
                {
                    return;
                }
                truth.answers.fetch_add(1, Ordering::SeqCst);
            }
        }))
    };
    let args = [
        "-c",
        "1",
        "-n",
        "4",
        "--send",
        r"PING\r\n",
        "--expect",
        r"+PONG\r\n",
    ];
    load_twice(redis_error, &args, |seen, truth| {
        assert_eq!(truth[0].answers(), 4);
        assert_eq!(seen.requests, 0);
        assert_eq!(seen.error("wrong answer"), 4);
        assert_eq!(seen.errors.len(), 1);
        assert_eq!(seen.exit, Some(1));
    });
}

fn right_server(delay: Duration) -> (SocketAddr, Arc<Truth>) {
    counted(move |stream, truth| {
        serve_questions(stream, truth, |_, q| {
            thread::sleep(delay);
            Some(right(q))
        });
    })
}

#[test]
fn a_slow_server_beside_a_fast_one_holds_no_thread_and_shows_per_target() {
    let make = || {
        vec![
            right_server(Duration::ZERO),
            right_server(Duration::from_millis(10)),
        ]
    };
    load_twice(
        make,
        &["-c", "4", "-n", "2000", "--threads", "2"],
        |seen, truth| {
            assert_eq!(seen.requests, 2000);
            assert_eq!(seen.stopped_early, None);
            assert_eq!(seen.per_target.len(), 2);
            for ((_, answers), truth) in seen.per_target.iter().zip(truth) {
                assert_eq!(*answers, truth.answers());
            }
            assert_eq!(truth[0].answers() + truth[1].answers(), 2000);
            assert_eq!(seen.exit, Some(0));
        },
    );
}

#[test]
fn a_dead_server_strands_no_part_of_the_budget() {
    let make = || {
        let down = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        vec![
            right_server(Duration::ZERO),
            (down, Arc::new(Truth::default())),
        ]
    };
    load_twice(
        make,
        &["-c", "4", "-n", "1000", "--timeout", "3s", "--threads", "2"],
        |seen, truth| {
            assert_eq!(seen.requests, 1000);
            assert_eq!(truth[0].answers(), 1000);
            assert_eq!(seen.per_target[1].1, 0);
            assert_eq!(seen.stopped_early, None);
            assert!(seen.error("refused") >= 2, "{seen:?}");
            assert_eq!(seen.errors.len(), 1);
        },
    );
    // A server that stops answering mid-run, with questions in flight:
    // they time out and go back to the budget for the other server.
    let make = || {
        let stalls = counted(|stream, truth| {
            serve_questions(stream, truth, |k, q| (k < 3).then(|| right(q)));
        });
        vec![right_server(Duration::ZERO), stalls]
    };
    load_twice(
        make,
        &[
            "-c",
            "4",
            "-n",
            "300",
            "--pipeline",
            "4",
            "--timeout",
            "1s",
            "--threads",
            "2",
        ],
        |seen, truth| {
            assert_eq!(seen.requests, 300);
            assert_eq!(seen.stopped_early, None);
            for ((_, answers), truth) in seen.per_target.iter().zip(truth) {
                assert_eq!(*answers, truth.answers());
            }
            assert_eq!(truth[0].answers() + truth[1].answers(), 300);
        },
    );
}

#[test]
fn a_rate_of_one_question_a_century_asks_one() {
    load_twice(
        || one(right_server(Duration::ZERO)),
        &["-c", "1", "-d", "1s", "--rate", "1e-11"],
        |seen, truth| {
            assert_eq!(truth[0].questions(), 1);
            assert_eq!(seen.requests, 1);
            assert_eq!(seen.errors, BTreeMap::new());
        },
    );
}

#[test]
fn the_window_opens_once_the_connections_are_open() {
    // One of two servers never accepts (its backlog is full), so the
    // connects take the whole --timeout: that time is no part of -d.
    let make = || {
        let full =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        full.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        full.listen(0).unwrap();
        let addr = full.local_addr().unwrap().as_socket().unwrap();
        // Fill its queue, and keep it (and the socket) for the test's life.
        let filler = TcpStream::connect(addr).unwrap();
        std::mem::forget((full, filler));
        vec![
            right_server(Duration::ZERO),
            (addr, Arc::new(Truth::default())),
        ]
    };
    load_twice(
        make,
        &["-c", "8", "-d", "1s", "--timeout", "2s"],
        |seen, truth| {
            assert!(seen.requests > 0, "{seen:?}");
            assert_eq!(seen.per_target[0].1, seen.requests);
            assert!(seen.requests <= truth[0].answers());
        },
    );
}

#[test]
fn questions_given_back_reopen_few_connections() {
    // The first connection stalls after three answers; the others answer.
    // Its questions time out and go back to the budget: one question, so
    // it takes at most one reopened connection per load thread.
    let make = || {
        let first = Arc::new(AtomicUsize::new(0));
        one(counted(move |stream, truth| {
            let nth = first.fetch_add(1, Ordering::SeqCst);
            serve_questions(stream, truth, |k, q| (nth != 0 || k < 3).then(|| right(q)));
        }))
    };
    load_twice(
        make,
        &[
            "-c",
            "20",
            "-n",
            "2000",
            "--timeout",
            "500ms",
            "--threads",
            "2",
        ],
        |seen, truth| {
            assert_eq!(seen.requests, 2000);
            assert_eq!(seen.error("timeout"), 1);
            assert!(seen.reconnects <= 1, "{seen:?}");
            assert!(truth[0].conns() <= 20 + 1 + 2, "{truth:?}");
            assert_eq!(seen.stopped_early, None);
        },
    );
}

#[test]
fn a_slow_open_loop_with_n_is_no_stall() {
    // One question a second on one connection, a timeout of half that:
    // the gaps between questions are the schedule, not a stalled server.
    load_twice(
        || one(right_server(Duration::ZERO)),
        &["-c", "1", "-n", "3", "--rate", "1", "--timeout", "500ms"],
        |seen, truth| {
            assert_eq!(seen.stopped_early, None);
            assert_eq!(seen.requests, 3);
            assert_eq!(truth[0].answers(), 3);
            assert_eq!(seen.exit, Some(0));
        },
    );
}

#[test]
fn a_client_paused_past_its_timeout_reads_before_it_blames_the_server() {
    // The client is stopped (SIGSTOP) for longer than its --timeout while
    // the server answers at once: the answers are in the socket when it
    // resumes, and no question timed out.
    let (addr, truth) = right_server(Duration::ZERO);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["load", "--server", &addr.to_string()])
        .args(["-c", "4", "-d", "2s", "--timeout", "300ms", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = rustix::process::Pid::from_child(&child);
    thread::sleep(Duration::from_millis(500));
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    thread::sleep(Duration::from_millis(800));
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    let output = child.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let seen = Seen::from_json(&report, output.status.code());
    assert_eq!(seen.errors, BTreeMap::new(), "{seen:?}");
    assert!(seen.requests > 0 && seen.requests <= truth.answers());
}

#[test]
fn reconnect_every_3_is_the_books_client() {
    // Connect, three questions, close: ten times for thirty answers. The
    // planned reconnects are the nine connections opened in place of one
    // that had its three answers (the tenth has nothing left to ask).
    load_twice(
        || one(right_server(Duration::ZERO)),
        &["-c", "1", "-n", "30", "--reconnect-every", "3"],
        |seen, truth| {
            assert_eq!(truth[0].conns(), 10);
            assert_eq!(truth[0].answers(), 30);
            assert_eq!(truth[0].most_per_conn(), 3);
            assert_eq!(seen.requests, 30);
            assert_eq!(seen.errors, BTreeMap::new());
            assert_eq!(seen.planned, 9);
            assert_eq!(seen.planned + 1, truth[0].conns());
            assert_eq!((seen.reconnects, seen.reasked), (0, 0));
            assert_eq!(seen.stopped_early, None);
            assert_eq!(seen.exit, Some(0));
        },
    );
}

#[test]
fn reconnect_every_with_a_pipeline_and_threads_opens_exactly_n_over_every() {
    // Each connection takes its five questions from the shared budget as
    // it opens, two in flight at most: 1,000 questions are 200
    // connections, whatever the threads' race for the budget.
    load_twice(
        || one(right_server(Duration::ZERO)),
        &[
            "-c",
            "4",
            "--pipeline",
            "2",
            "-n",
            "1000",
            "--reconnect-every",
            "5",
            "--threads",
            "2",
        ],
        |seen, truth| {
            assert_eq!(truth[0].conns(), 200);
            assert_eq!(truth[0].answers(), 1000);
            assert_eq!(truth[0].questions(), 1000);
            assert_eq!(truth[0].most_per_conn(), 5);
            assert_eq!(seen.requests, 1000);
            assert_eq!(seen.errors, BTreeMap::new());
            assert_eq!(seen.planned, 196);
            assert_eq!(seen.reconnects, 0);
            assert_eq!(seen.exit, Some(0));
        },
    );
}

#[test]
fn reconnect_every_in_the_open_loop_is_exact_too() {
    load_twice(
        || one(right_server(Duration::ZERO)),
        &[
            "-c",
            "2",
            "-n",
            "30",
            "--rate",
            "2000",
            "--reconnect-every",
            "3",
        ],
        |seen, truth| {
            assert_eq!(truth[0].conns(), 10);
            assert_eq!(truth[0].answers(), 30);
            assert_eq!(truth[0].most_per_conn(), 3);
            assert_eq!(seen.requests, 30);
            assert_eq!(seen.errors, BTreeMap::new());
            assert_eq!(seen.planned, 8);
            assert_eq!(seen.exit, Some(0));
        },
    );
}

#[test]
fn reconnect_every_for_a_duration_spreads_over_both_servers() {
    load_twice(
        || vec![right_server(Duration::ZERO), right_server(Duration::ZERO)],
        &["-c", "4", "-d", "500ms", "--reconnect-every", "3"],
        |seen, truth| {
            assert_eq!(seen.errors, BTreeMap::new());
            assert_eq!(seen.reconnects, 0);
            assert_eq!(seen.per_target.len(), 2);
            for ((_, answers), truth) in seen.per_target.iter().zip(truth) {
                // Each server: its two first connections, and more since.
                assert!(truth.conns() > 2, "{truth:?}");
                assert!(truth.most_per_conn() <= 3, "{truth:?}");
                assert!(*answers > 0 && *answers <= truth.answers());
            }
            // Every connection the client opened, the servers accepted; a
            // connect still in progress at the end (one per connection at
            // most) is accepted but never opened.
            let accepted: u64 = truth.iter().map(|t| t.conns()).sum();
            assert!(
                (4 + seen.planned..=4 + seen.planned + 4).contains(&accepted),
                "{accepted} accepted, {seen:?}"
            );
            assert_eq!(seen.exit, Some(0));
        },
    );
}

#[test]
fn a_server_closing_before_the_nth_answer_is_still_a_failure() {
    // The server answers two questions, then closes on the third: with
    // --reconnect-every 3 that close is an error (closed by the server),
    // not the planned end, and its question is asked again on the next
    // connection, whose three count afresh. 30 answers take 15
    // connections; the last one, with two questions left, has both
    // answered.
    let closes_after_two = || {
        one(counted(|mut stream, truth| {
            let mut decoder = Decoder::new(1024);
            let mut asked = 0;
            loop {
                let n = match stream.read(decoder.read_buf()) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                decoder.filled(n);
                while let Ok(Some(question)) = decoder.next_question() {
                    truth.questions.fetch_add(1, Ordering::SeqCst);
                    if asked == 2 {
                        return; // every byte read: a clean close
                    }
                    if stream.write_all(&right(question)).is_err() {
                        return;
                    }
                    truth.answers.fetch_add(1, Ordering::SeqCst);
                    asked += 1;
                    truth.most_per_conn.fetch_max(asked, Ordering::SeqCst);
                }
            }
        }))
    };
    load_twice(
        closes_after_two,
        &["-c", "1", "-n", "30", "--reconnect-every", "3"],
        |seen, truth| {
            assert_eq!(truth[0].conns(), 15);
            assert_eq!(truth[0].answers(), 30);
            assert_eq!(truth[0].questions(), 44);
            assert_eq!(seen.requests, 30);
            assert_eq!(seen.error("closed by server"), 14);
            assert_eq!(seen.errors.len(), 1);
            assert_eq!((seen.reconnects, seen.reasked, seen.planned), (14, 14, 0));
            assert_eq!(seen.stopped_early, None);
            assert_eq!(seen.exit, Some(1));
        },
    );
}

#[test]
fn reconnect_every_0_is_refused_by_the_flag_parser() {
    let output = client(&["load", "--reconnect-every", "0"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("'--reconnect-every <N>': must be at least 1"),
        "{stderr}"
    );
    // And huge is fine: no connection reaches it.
    load_twice(
        || one(right_server(Duration::ZERO)),
        &[
            "-c",
            "2",
            "-n",
            "100",
            "--reconnect-every",
            "18446744073709551615",
        ],
        |seen, truth| {
            assert_eq!(truth[0].conns(), 2);
            assert_eq!(seen.requests, 100);
            assert_eq!((seen.planned, seen.reconnects), (0, 0));
            assert_eq!(seen.exit, Some(0));
        },
    );
}

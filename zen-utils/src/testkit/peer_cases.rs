//! The peers' cases of the conformance suite: servers that ask servers,
//! run against every model by [`peer_suite!`](crate::peer_suite). Each
//! case binds its servers' listeners first (a server must know its peers'
//! addresses before it starts), then starts them on those listeners.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use super::fake_peer::{Behaviour, FakePeer};
use super::{Client, Model, TestServer};
use crate::protocol::peers::PeerConfig;
use crate::protocol::{answer, APHORISMS, NO_PEER_ANSWERED, UNKNOWN_APHORISM};
use crate::{serve::listener, Config, Verbosity};

/// Starts the server under test on a listener, with a configuration.
pub type StartOn<'a> = &'a dyn Fn(TcpListener, Config) -> TestServer;

fn bind() -> (TcpListener, SocketAddr) {
    let listener = listener::bind("127.0.0.1:0".parse().unwrap(), 1024, false).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A quiet server's configuration knowing `part`, asking `peers`.
fn config(me: SocketAddr, part: (usize, usize), peers: &[SocketAddr]) -> Config {
    Config {
        verbosity: Verbosity::Quiet,
        peers: PeerConfig {
            part,
            peers: peers.to_vec(),
            me: Some(me),
            timeout: Duration::from_millis(500),
            ..PeerConfig::default()
        },
        ..Config::default()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The aphorism a server of `part` does not know, at `index`.
fn question(index: usize) -> &'static [u8] {
    APHORISMS[index].0
}

/// Two servers, each knowing half the table and peering the other,
/// answer all seven questions from either side, exactly.
pub fn a_pair_splitting_the_table_answers_everything_from_either_side(
    start: StartOn<'_>,
    _: Model,
) {
    let ((la, a), (lb, b)) = (bind(), bind());
    let _a = start(la, config(a, (1, 2), &[b]));
    let _b = start(lb, config(b, (2, 2), &[a]));
    for addr in [a, b] {
        let mut client = Client::connect(addr);
        for (question, reply) in APHORISMS {
            assert_eq!(text(&client.ask(question)), text(reply), "asked {addr}");
        }
    }
}

/// A chain of three (A asks B, B asks C) answers across two hops; with
/// `--max-hops 2` the second hop is not taken: `Error: unknown aphorism.`.
pub fn a_chain_of_three_answers_across_two_hops_and_max_hops_stops_it(
    start: StartOn<'_>,
    _: Model,
) {
    for (max_hops, want) in [(6, &b"implicit."[..]), (2, UNKNOWN_APHORISM)] {
        let ((la, a), (lb, b), (lc, c)) = (bind(), bind(), bind());
        let with_hops = |mut config: Config| {
            config.peers.max_hops = max_hops;
            config
        };
        // Explicit (position 2) is known to C only (part 2/3... of 3).
        let _c = start(lc, with_hops(config(c, (2, 3), &[])));
        let _b = start(lb, with_hops(config(b, (3, 3), &[c])));
        let _a = start(la, with_hops(config(a, (1, 3), &[b])));
        let mut client = Client::connect(a);
        assert_eq!(
            text(&client.ask(question(1))),
            text(want),
            "--max-hops {max_hops}"
        );
    }
}

/// A forwarded question whose history names the server itself, or every
/// one of its peers, is not forwarded again (its peer knows the answer,
/// and would have given it).
pub fn a_history_naming_the_server_or_all_its_peers_is_not_forwarded(start: StartOn<'_>, _: Model) {
    let ((la, a), (lb, b)) = (bind(), bind());
    let _a = start(la, config(a, (1, 2), &[b]));
    let _b = start(lb, config(b, (2, 2), &[a]));
    let mut client = Client::connect(a);
    for history in [a, b] {
        let request = format!("[{history}]Explicit is better than?");
        assert_eq!(
            text(&client.ask(request.as_bytes())),
            text(UNKNOWN_APHORISM),
            "{request}"
        );
    }
    // A malformed history is unknown too; a good one from elsewhere is
    // forwarded (and answered).
    assert_eq!(
        text(&client.ask(b"[nowhere]Explicit is better than?")),
        text(UNKNOWN_APHORISM)
    );
    assert_eq!(
        text(&client.ask(b"[127.0.0.9:9]Explicit is better than?")),
        "implicit."
    );
}

/// Nothing in a request makes a server connect anywhere but its peers: a
/// history naming a listening address that is not a peer is only
/// compared, never dialled.
pub fn a_history_never_makes_a_server_connect_anywhere(start: StartOn<'_>, _: Model) {
    let (bait, bait_addr) = bind();
    bait.set_nonblocking(true).unwrap();
    let ((la, a), (lb, b)) = (bind(), bind());
    let _a = start(la, config(a, (1, 2), &[b]));
    let _b = start(lb, config(b, (2, 2), &[a]));
    let mut client = Client::connect(a);
    let request = format!("[{bait_addr}]Explicit is better than?");
    assert_eq!(text(&client.ask(request.as_bytes())), "implicit.");
    assert_eq!(
        text(&client.ask(b"[127.0.0.9:9]Simple is better than?")),
        "complex."
    );
    thread::sleep(Duration::from_millis(100));
    assert!(bait.accept().is_err(), "a server connected to {bait_addr}");
}

/// A peer that is down, one that accepts and never answers, and one that
/// answers garbage each give `Error: no peer answered.` (within the peer
/// timeout), and the connection stays open. In a concurrent model, the
/// asker's other clients are served meanwhile.
pub fn a_failing_peer_gives_no_peer_answered_and_others_are_served(
    start: StartOn<'_>,
    model: Model,
) {
    // Down: bound and closed again, so nothing listens there.
    let down = bind().1;
    let (silent, silent_addr) = bind();
    let (garbage, garbage_addr) = bind();
    thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept() {
            held.push(stream);
        }
    });
    thread::spawn(move || {
        while let Ok((mut stream, _)) = garbage.accept() {
            thread::spawn(move || {
                let mut buf = [0; 256];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let _ = std::io::Write::write_all(&mut stream, b"Twelve is better than seven.");
                }
            });
        }
    });
    for peer in [down, silent_addr, garbage_addr] {
        let (la, a) = bind();
        let server = start(la, config(a, (1, 2), &[peer]));
        let mut asker = Client::connect(a);
        asker.send(question(1));
        if model == Model::Concurrent {
            let mut other = Client::connect(a);
            assert_eq!(
                text(&other.ask(question(0))),
                "ugly.",
                "served while {peer} is asked"
            );
        }
        assert_eq!(text(&asker.answer()), text(NO_PEER_ANSWERED), "peer {peer}");
        // The connection stays open, and local questions are answered.
        assert_eq!(text(&asker.ask(question(2))), "complex.");
        drop(server);
    }
}

/// A peer that answers with more bytes than any reply can be (and no full
/// stop), then holds the connection, failed: the asker gives `Error: no
/// peer answered.` as soon as the reply passed its maximum, not at the peer
/// timeout (a minute here, longer than the test client waits), and its
/// connection stays open.
pub fn a_peer_sending_an_over_long_reply_failed_at_once(start: StartOn<'_>, _: Model) {
    let peer = FakePeer::start(Behaviour::TooLong);
    let (la, a) = bind();
    let mut with_long_timeout = config(a, (1, 2), &[peer.addr()]);
    with_long_timeout.peers.timeout = Duration::from_secs(60);
    let _server = start(la, with_long_timeout);
    let mut asker = Client::connect(a);
    assert_eq!(text(&asker.ask(question(1))), text(NO_PEER_ANSWERED));
    assert_eq!(text(&asker.ask(question(2))), "complex.");
    assert_eq!(peer.accepted(), 1, "connections to the peer");
}

/// Pipelined questions, some answered here and some by the peer, come back
/// in the order asked, whatever the mix (a thousand random mixes, the same
/// on every run).
pub fn mixed_local_and_forwarded_questions_keep_their_order(start: StartOn<'_>, _: Model) {
    let ((la, a), (lb, b)) = (bind(), bind());
    let _a = start(la, config(a, (1, 2), &[b]));
    let _b = start(lb, config(b, (2, 2), &[a]));
    let mut client = Client::connect(a);
    let mut rng = fastrand::Rng::with_seed(1060);
    for round in 0..40 {
        let picks: Vec<usize> = (0..rng.usize(1..25))
            .map(|_| rng.usize(..APHORISMS.len()))
            .collect();
        let questions: Vec<u8> = picks.iter().flat_map(|i| question(*i).to_vec()).collect();
        let want: Vec<u8> = picks
            .iter()
            .flat_map(|i| answer(question(*i)).to_vec())
            .collect();
        client.send(&questions);
        assert_eq!(
            text(&client.answers(picks.len())),
            text(&want),
            "round {round}: {picks:?}"
        );
    }
}

/// Two servers asked each other's questions at the same moment. Two
/// srv-singles deadlock: each waits on the other, which is busy waiting on
/// it, until `--peer-timeout` breaks it, and both answer `Error: no peer
/// answered.`; then both serve again. A concurrent model answers both.
pub fn two_peers_asking_each_other_at_once(start: StartOn<'_>, model: Model) {
    let ((la, a), (lb, b)) = (bind(), bind());
    let _a = start(la, config(a, (1, 2), &[b]));
    let _b = start(lb, config(b, (2, 2), &[a]));
    let mut to_a = Client::connect(a);
    let mut to_b = Client::connect(b);
    // Each asks the question only the other server knows.
    to_a.send(question(1));
    to_b.send(question(0));
    let (from_a, from_b) = (text(&to_a.answer()), text(&to_b.answer()));
    match model {
        Model::OneAtATime => {
            assert_eq!(
                (from_a.as_str(), from_b.as_str()),
                (
                    text(NO_PEER_ANSWERED).as_str(),
                    text(NO_PEER_ANSWERED).as_str()
                )
            );
            drop((to_a, to_b));
            // Both serve again, peers included.
            let mut client = Client::connect(a);
            assert_eq!(text(&client.ask(question(1))), "implicit.");
        }
        Model::Concurrent => {
            assert_eq!((from_a.as_str(), from_b.as_str()), ("implicit.", "ugly."));
        }
    }
}

/// A peer that closes an idle connection (its `--idle-timeout`, here
/// 200 ms, writing `Error: idle timeout.` first) does not spoil the next
/// question forwarded to it: after each pause past the peer's idle
/// timeout, the question is answered by the peer, not `Error: no peer
/// answered.` (bytes that came before a question was sent answer none).
pub fn a_peer_that_closed_an_idle_connection_still_answers_the_next_question(
    start: StartOn<'_>,
    _: Model,
) {
    let ((la, a), (lb, b)) = (bind(), bind());
    let _a = start(la, config(a, (1, 2), &[b]));
    let _b = start(
        lb,
        Config {
            idle_timeout: Some(Duration::from_millis(200)),
            ..config(b, (2, 2), &[a])
        },
    );
    let mut client = Client::connect(a);
    for round in 0..3 {
        assert_eq!(text(&client.ask(question(1))), "implicit.", "round {round}");
        thread::sleep(Duration::from_millis(800));
    }
    assert_eq!(text(&client.ask(question(1))), "implicit.");
}

/// A peer that serves one connection at a time (as srv-single does) is
/// not held between questions: once a question forwarded to it is
/// answered, a client connecting straight to it is served, and the next
/// question forwarded to it too.
pub fn a_one_at_a_time_peer_is_not_held_between_questions(start: StartOn<'_>, _: Model) {
    let peer = FakePeer::start(Behaviour::OneAtATime);
    let (la, a) = bind();
    let _a = start(la, config(a, (1, 2), &[peer.addr()]));
    let mut through = Client::connect(a);
    assert_eq!(text(&through.ask(question(1))), "implicit.");
    let mut straight = Client::connect(peer.addr());
    straight.send(question(1));
    let got = straight.answer_within(Duration::from_secs(5));
    assert_eq!(
        got.as_deref().map(text).as_deref(),
        Some("implicit."),
        "the peer is still held by the asker's connection"
    );
    drop(straight);
    assert_eq!(text(&through.ask(question(3))), "implicit.");
}

/// The shutdown grace bounds the wait on peers too: a question forwarded
/// to two peers that accept and never answer, `--peer-timeout 10s` each,
/// when the shutdown begins. The server ends at the end of the grace (2 s
/// after the shutdown began, long before the first peer's timeout), the
/// client gets no answer, only the close, and the question counts as
/// dropped, not answered.
pub fn the_shutdown_grace_ends_the_wait_on_silent_peers(start: StartOn<'_>, _: Model) {
    let silent = [
        FakePeer::start(Behaviour::Silent),
        FakePeer::start(Behaviour::Silent),
    ];
    let (la, a) = bind();
    let mut with_long_timeout = config(a, (1, 2), &[silent[0].addr(), silent[1].addr()]);
    with_long_timeout.peers.timeout = Duration::from_secs(10);
    let server = start(la, with_long_timeout);
    let mut client = Client::connect(a);
    client.send(question(1));
    // Once the first peer has the question's connection, the server waits.
    let waiting_since = Instant::now();
    while silent[0].accepted() == 0 {
        assert!(
            waiting_since.elapsed() < super::PATIENCE,
            "the peer was never asked"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let shutdown_began = Instant::now();
    server.trigger_shutdown();
    assert_eq!(text(&client.read_to_close()), "");
    let summary = server.stop();
    let took = shutdown_began.elapsed();
    assert_eq!((summary.answered, summary.dropped), (0, 1), "{summary:?}");
    // Generous: the grace is 2 s; the first peer's timeout alone is 10 s.
    assert!(took < Duration::from_secs(9), "the server took {took:?}");
}

/// Two servers on `::1` splitting the table answer everything from either
/// side: a forwarded question's history holds IPv6 addresses as `--peer`
/// takes them (`[[::1]:7001]Explicit is better than?`). Skipped, with the
/// reason printed, where `::1` cannot be bound.
pub fn a_pair_on_ipv6_answers_everything_from_either_side(start: StartOn<'_>, _: Model) {
    let bind_v6 = || -> Option<(TcpListener, SocketAddr)> {
        let listener = listener::bind("[::1]:0".parse().unwrap(), 1024, false).ok()?;
        let addr = listener.local_addr().ok()?;
        Some((listener, addr))
    };
    let (Some((la, a)), Some((lb, b))) = (bind_v6(), bind_v6()) else {
        println!("skipped: ::1 cannot be bound here (no IPv6 loopback)");
        return;
    };
    let _a = start(la, config(a, (1, 2), &[b]));
    let _b = start(lb, config(b, (2, 2), &[a]));
    for addr in [a, b] {
        let mut client = Client::connect(addr);
        for (question, reply) in APHORISMS {
            assert_eq!(text(&client.ask(question)), text(reply), "asked {addr}");
        }
    }
    // A history from elsewhere, in IPv6, is forwarded with it.
    let mut client = Client::connect(a);
    assert_eq!(
        text(&client.ask(b"[[::1]:9]Explicit is better than?")),
        "implicit."
    );
}

/// A question in no part of the table is unknown at once, everywhere: it
/// makes no connection to any peer (a peer that counts its connections
/// sees none), with or without a history; a question of another part is
/// still forwarded (one connection).
pub fn a_question_in_no_part_of_the_table_is_never_forwarded(start: StartOn<'_>, _: Model) {
    let peer = FakePeer::start(Behaviour::OneAtATime);
    let (la, a) = bind();
    let _a = start(la, config(a, (1, 2), &[peer.addr()]));
    let mut client = Client::connect(a);
    for request in [&b"x?"[..], b"[127.0.0.9:9]x?", b"explicit is better than?"] {
        assert_eq!(text(&client.ask(request)), text(UNKNOWN_APHORISM));
    }
    assert_eq!(peer.accepted(), 0, "connections to the peer");
    assert_eq!(text(&client.ask(question(1))), "implicit.");
    assert_eq!(peer.accepted(), 1, "connections to the peer");
}

/// Stamps out the peers' cases, one `#[test]` each, against the server
/// that `serve` starts (as `conformance_suite!` takes it).
#[macro_export]
macro_rules! peer_suite {
    (serve: $serve:expr, model: $model:expr $(, requires: $requires:expr)? $(,)?) => {
        mod peers {
            use super::*;
            fn start_on(listener: ::std::net::TcpListener, config: $crate::Config) -> $crate::testkit::TestServer {
                $crate::testkit::TestServer::start_on(listener, $serve, config)
            }
            $crate::peer_suite!(@cases $model, [$($requires)?];
                a_pair_splitting_the_table_answers_everything_from_either_side,
                a_chain_of_three_answers_across_two_hops_and_max_hops_stops_it,
                a_history_naming_the_server_or_all_its_peers_is_not_forwarded,
                a_history_never_makes_a_server_connect_anywhere,
                a_failing_peer_gives_no_peer_answered_and_others_are_served,
                a_peer_sending_an_over_long_reply_failed_at_once,
                mixed_local_and_forwarded_questions_keep_their_order,
                two_peers_asking_each_other_at_once,
                a_peer_that_closed_an_idle_connection_still_answers_the_next_question,
                a_one_at_a_time_peer_is_not_held_between_questions,
                the_shutdown_grace_ends_the_wait_on_silent_peers,
                a_pair_on_ipv6_answers_everything_from_either_side,
                a_question_in_no_part_of_the_table_is_never_forwarded,
            );
        }
    };
    (@cases $model:expr, $requires:tt; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if $crate::skip_unmet!(stringify!($case), $requires) {
                    return;
                }
                $crate::testkit::peer_cases::$case(&start_on, $model);
            }
        )*
    };
}

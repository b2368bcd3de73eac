//! The peer calls of a raw event loop (srv-poll's, srv-uring's), run by
//! [`peer_call_suite!`](crate::peer_call_suite): the loop drives each
//! question asked of a peer as an attempt with a deadline, beside its
//! clients, and these cases test what only such a loop can get wrong: a
//! deadline of an attempt that is over, many calls waiting together, a
//! call whose client left.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{Client, TestServer};
use crate::protocol::peers::PeerConfig;
use crate::protocol::NO_PEER_ANSWERED;
use crate::{Config, Verbosity};

/// Starts the server under test with a configuration.
pub type Start<'a> = &'a dyn Fn(Config) -> TestServer;

/// A fake peer on `127.0.0.1:0`: each connection it accepts is handed
/// to `behave` on a thread of its own.
fn fake_peer(behave: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || behave(stream));
        }
    });
    addr
}

/// Reads the question, waits `after`, replies `reply`, and keeps the
/// connection open a while.
fn replying(mut stream: TcpStream, after: Duration, reply: &[u8]) {
    let mut question = [0; 256];
    let _ = stream.read(&mut question);
    thread::sleep(after);
    let _ = stream.write_all(reply);
    thread::sleep(Duration::from_secs(2));
}

/// The server under test knowing the first half of the table, asking
/// `peers`.
fn server(start: Start<'_>, peers: &[SocketAddr], timeout: Duration) -> TestServer {
    let config = Config {
        verbosity: Verbosity::Quiet,
        peers: PeerConfig {
            part: (1, 2),
            peers: peers.to_vec(),
            me: Some("127.0.0.1:1".parse().unwrap()),
            timeout,
            ..PeerConfig::default()
        },
        ..Config::default()
    };
    start(config)
}

/// The first peer says unknown after half the timeout, the second
/// answers 0.8 timeouts after it was asked: the first attempt's
/// deadline, due while the second is in progress, is an earlier
/// attempt's and fails nothing.
pub fn a_deadline_of_an_attempt_that_is_over_fails_nothing(start: Start<'_>) {
    let unknown = fake_peer(|stream| {
        replying(
            stream,
            Duration::from_millis(200),
            b"Error: unknown aphorism.",
        )
    });
    let knows = fake_peer(|stream| replying(stream, Duration::from_millis(320), b"implicit."));
    let server = server(start, &[unknown, knows], Duration::from_millis(400));
    let mut client = server.connect();
    let started = Instant::now();
    assert_eq!(client.ask(b"Explicit is better than?"), b"implicit.");
    assert!(started.elapsed() > Duration::from_millis(500));
}

/// Questions forwarded to a silent peer by many clients at once all
/// wait out the same timeout together, not one after another, and a
/// question the server knows is answered meanwhile.
pub fn calls_to_a_silent_peer_wait_together_and_others_are_served(start: Start<'_>) {
    let silent = fake_peer(|stream| replying(stream, Duration::from_secs(10), b""));
    let timeout = Duration::from_millis(500);
    let server = server(start, &[silent], timeout);
    let started = Instant::now();
    let mut waiting: Vec<Client> = (0..20).map(|_| server.connect()).collect();
    for client in &mut waiting {
        client.send(b"Explicit is better than?");
    }
    let mut local = server.connect();
    assert_eq!(local.ask(b"Beautiful is better than?"), b"ugly.");
    assert!(started.elapsed() < timeout / 2, "{:?}", started.elapsed());
    for client in &mut waiting {
        assert_eq!(client.answer(), NO_PEER_ANSWERED);
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= timeout && elapsed < 3 * timeout, "{elapsed:?}");
}

/// A client that closes while its question is with a peer: the call
/// ends at its timeout (a connection owing an answer does not read, nor
/// has a receive in flight, so the close is seen only then), its socket
/// closes (an abandoned io_uring attempt: once its cancelled receive
/// completed), its answer is dropped, and the server goes on.
pub fn a_call_whose_client_closed_ends_at_its_timeout(start: Start<'_>) {
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0; 256];
        while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
        let _ = closed_tx.send(Instant::now());
    });
    let timeout = Duration::from_millis(300);
    let server = server(start, &[silent], timeout);
    let mut client = server.connect();
    let asked = Instant::now();
    client.send(b"Explicit is better than?");
    thread::sleep(Duration::from_millis(50));
    drop(client);
    let seen = closed_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let after = seen.duration_since(asked);
    assert!(after >= timeout && after < 4 * timeout, "{after:?}");
    assert_eq!(server.connect().ask(b"Beautiful is better than?"), b"ugly.");
}

/// Stamps out the peer-call cases, one `#[test]` each, against the server
/// that `serve` starts; with `requires`, each is skipped (and says why)
/// when the requirement fails.
#[macro_export]
macro_rules! peer_call_suite {
    (serve: $serve:expr $(, requires: $requires:expr)? $(,)?) => {
        mod peer_calls {
            use super::*;
            fn start(config: $crate::Config) -> $crate::testkit::TestServer {
                $crate::testkit::TestServer::start($serve, config)
            }
            $crate::peer_call_suite!(@cases [$($requires)?];
                a_deadline_of_an_attempt_that_is_over_fails_nothing,
                calls_to_a_silent_peer_wait_together_and_others_are_served,
                a_call_whose_client_closed_ends_at_its_timeout,
            );
        }
    };
    (@cases $requires:tt; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if $crate::skip_unmet!(stringify!($case), $requires) {
                    return;
                }
                $crate::testkit::peer_call_cases::$case(&start);
            }
        )*
    };
}

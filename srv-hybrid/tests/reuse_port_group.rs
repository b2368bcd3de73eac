//! Per core, as the binary runs it: the first listener is bound with
//! `SO_REUSEPORT`, the others join its group, and the whole group listens
//! before `listening on` is printed. (The conformance kit binds without
//! `SO_REUSEPORT`, so its per-core runs take the shared-listener path.)

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::num::NonZeroUsize;

use srv_hybrid::{HybridOptions, Runtime};
use zen_utils::serve::listener;
use zen_utils::testkit::binary::Running;
use zen_utils::testkit::Client;

const WORKERS: usize = 4;
const CLIENTS: usize = 40;

fn per_core() -> HybridOptions {
    HybridOptions {
        workers: NonZeroUsize::new(WORKERS).unwrap(),
        runtime: Runtime::PerCore,
        backlog: 128,
    }
}

/// A listener on a free loopback port, with `SO_REUSEPORT` or without,
/// and the per-core group `listeners` makes of it: (port, group).
fn group_of(reuse_port: bool) -> (u16, Vec<TcpListener>) {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let first = listener::bind(loopback, 128, reuse_port).unwrap();
    let port = first.local_addr().unwrap().port();
    let group = srv_hybrid::listeners(first, per_core()).unwrap();
    assert_eq!(group.len(), WORKERS);
    (port, group)
}

/// What the binary does before it prints `listening on`: the group is
/// complete once `listeners` returns, before anything is served.
#[test]
fn the_group_listens_once_listeners_returns() {
    let (port, group) = group_of(true);
    assert_eq!(listening_sockets(port), WORKERS);
    drop(group);
    assert_eq!(listening_sockets(port), 0);
}

/// A listener bound without `SO_REUSEPORT` cannot be joined: every core
/// shares the one socket instead.
#[test]
fn without_reuse_port_the_cores_share_one_socket() {
    let (port, _group) = group_of(false);
    assert_eq!(listening_sockets(port), 1);
}

#[test]
fn per_core_listens_with_the_whole_group_before_it_says_so_and_serves_every_client() {
    let workers = WORKERS.to_string();
    let server = Running::start(
        env!("CARGO_BIN_EXE_srv-hybrid"),
        &["--runtime", "per-core", "--workers", &workers],
    );
    // No waiting: tools connect as soon as they read the line, and a
    // connection made before the group is complete would land on the
    // first listener and stay on its core. (A binary that bound the rest
    // just after the line would pass here whenever it won the race. The
    // test of `listeners` above cannot be raced; that the binary calls it
    // before the line is what main.rs's `run_prepared` step says.)
    assert_eq!(listening_sockets(server.addr.port()), WORKERS);

    // Many clients open at once, so that the kernel spreads them over the
    // group; every one of them is answered, whichever core it landed on.
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| Client::connect(server.addr)).collect();
    for client in &mut clients {
        assert_eq!(client.ask(b"Sparse is better than?"), b"dense.");
    }

    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status}: {stderr}");
    for client in &mut clients {
        assert_eq!(client.read_to_close(), b"");
    }
    let summary =
        format!("summary: {CLIENTS} connections, {CLIENTS} questions answered, 0 errors,");
    assert!(stderr.contains(&summary), "{stderr}");
}

/// How many IPv4 TCP sockets listen on `port`, from `/proc/net/tcp`
/// (local address `IP:PORT` in hex, state `0A` = LISTEN).
fn listening_sockets(port: u16) -> usize {
    let table = fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&port) && fields[3] == "0A"
        })
        .count()
}

//! Per core with a `SO_REUSEPORT` listener, as the binary binds it: `serve`
//! adds listeners to the kernel's group, and the group serves. (The
//! conformance kit binds without `SO_REUSEPORT`, so its per-core runs take
//! the shared-listener path instead.)

use std::fs;
use std::num::NonZeroUsize;
use std::thread;
use std::time::{Duration, Instant};

use srv_hybrid::{HybridOptions, Runtime};
use zen_utils::config::DEFAULT_BACKLOG;
use zen_utils::testkit::{Client, PATIENCE};
use zen_utils::{listener, Config, Shutdown, Verbosity};

const WORKERS: usize = 4;
const CLIENTS: usize = 40;

#[test]
fn per_core_joins_a_reuse_port_group_that_serves_every_client() {
    let first = listener::bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG, true).unwrap();
    let addr = first.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let server = {
        let shutdown = shutdown.clone();
        let config = Config {
            verbosity: Verbosity::Quiet,
            ..Config::default()
        };
        let options = HybridOptions {
            workers: NonZeroUsize::new(WORKERS).unwrap(),
            runtime: Runtime::PerCore,
            backlog: DEFAULT_BACKLOG,
        };
        thread::spawn(move || srv_hybrid::serve(first, config, shutdown, options))
    };

    // `serve` binds the rest of the group on its own thread: wait, bounded,
    // until the kernel lists one listening socket per core on the port.
    let started = Instant::now();
    while listening_sockets(addr.port()) < WORKERS {
        assert!(started.elapsed() < PATIENCE, "the group never formed");
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(listening_sockets(addr.port()), WORKERS);

    // Many clients open at once, so that the kernel spreads them over the
    // group; every one of them is answered, whichever core it landed on.
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| Client::connect(addr)).collect();
    for client in &mut clients {
        assert_eq!(client.ask(b"Sparse is better than?"), b"dense.");
    }

    shutdown.trigger();
    let summary = server.join().unwrap().unwrap();
    for client in &mut clients {
        assert_eq!(client.read_to_close(), b"");
    }
    assert_eq!(
        (summary.connections, summary.answered, summary.errors),
        (CLIENTS as u64, CLIENTS as u64, 0)
    );
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

//! The conformance suite, run against srv-threaded in both modes, and what
//! is particular to the pool: it is a limit on how many clients are served.

use std::time::Duration;

use srv_threaded::{serve, Mode};
use zen_utils::testkit::{Client, Model, TestServer};
use zen_utils::{Config, Verbosity};

/// The pool with its default size: more workers than the suite's
/// `max_conns: 2` case needs, so that its third client meets the
/// `--max-conns` check and not a full pool.
mod pool {
    use super::*;

    zen_utils::conformance_suite!(
        serve: |listener, config, shutdown| serve(listener, config, shutdown, Mode::default()),
        model: Model::Concurrent,
    );
    zen_utils::peer_suite!(
        serve: |listener, config, shutdown| serve(listener, config, shutdown, Mode::default()),
        model: Model::Concurrent,
    );
    zen_utils::binary_suite!(bin: env!("CARGO_BIN_EXE_srv-threaded"), args: []);
}

mod per_connection {
    use super::*;

    zen_utils::conformance_suite!(
        serve: |listener, config, shutdown| serve(listener, config, shutdown, Mode::PerConnection),
        model: Model::Concurrent,
    );
    zen_utils::peer_suite!(
        serve: |listener, config, shutdown| serve(listener, config, shutdown, Mode::PerConnection),
        model: Model::Concurrent,
    );
    zen_utils::binary_suite!(bin: env!("CARGO_BIN_EXE_srv-threaded"), args: ["--per-connection"]);
}

/// How long a client must go unanswered to show it is waiting; as in the
/// suite, a slow machine can only make this pass wrongly, never fail.
const QUIET_PERIOD: Duration = Duration::from_millis(300);

fn quiet() -> Config {
    Config {
        verbosity: Verbosity::Quiet,
        ..Config::default()
    }
}

fn start(mode: Mode) -> TestServer {
    TestServer::start(
        move |listener, config, shutdown| serve(listener, config, shutdown, mode),
        quiet(),
    )
}

/// With two workers, a third client is connected but not answered while
/// the first two stay connected, and it is answered as soon as one leaves:
/// the pool limits how many clients are served, and the rest wait in the
/// backlog rather than being refused.
#[test]
fn a_pool_serves_only_as_many_clients_as_it_has_workers() {
    let server = start(Mode::Pool { workers: 2 });
    let mut first = server.connect();
    let mut second = server.connect();
    assert_eq!(first.ask(b"Now is better than?"), b"never.");
    assert_eq!(second.ask(b"Flat is better than?"), b"nested.");
    let mut third = server.connect();
    third.send(b"Sparse is better than?");
    assert_eq!(
        third.answer_within(QUIET_PERIOD),
        None,
        "a third client was served by two workers"
    );
    // The two served clients are not disturbed by the waiting one.
    assert_eq!(first.ask(b"Simple is better than?"), b"complex.");
    assert_eq!(second.ask(b"Complex is better than?"), b"complicated.");
    drop(first);
    assert_eq!(third.answer(), b"dense.");
    assert_eq!(second.ask(b"Explicit is better than?"), b"implicit.");
    let summary = server.stop();
    assert_eq!((summary.connections, summary.errors), (3, 0));
}

/// Thread per connection serves every client at once, far more than the
/// default pool, all connected together.
#[test]
fn per_connection_serves_every_client_at_once() {
    const CLIENTS: usize = 200;
    let server = start(Mode::PerConnection);
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| server.connect()).collect();
    for client in &mut clients {
        client.send(b"Beautiful is better than?");
    }
    for client in &mut clients {
        assert_eq!(client.answer(), b"ugly.");
    }
    drop(clients);
    let summary = server.stop();
    assert_eq!((summary.connections, summary.answered), (200, 200));
}

//! What the criterion benches share: every server under test, and a load
//! that measures how long a server takes to give a number of answers.
//!
//! Each bench starts a server in-process on `127.0.0.1:0` (through the
//! conformance kit's [`TestServer`]) and loads it with `client load`'s
//! engine, called as a function ([`client::load::measure`]): `connections`
//! connections with `pipeline` questions in flight on each, until exactly
//! `answers` answers have come (`client load -n`). The engine's measured
//! window is the time criterion gets, which it reports as answers per
//! second (`thrpt`) and as time per answer (`time`).
//!
//! Read the numbers as a comparison between servers measured in one run,
//! not as absolutes: the load's threads share the machine's cores with the
//! server, so a model that needs many threads pays twice. `client load`
//! against a server in its own process, and `client compare`, give the
//! same engine the machine's cores to share with the server only.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use client::load::{self, Length, Options, Watch};
use zen_utils::testkit::TestServer;
use zen_utils::{Config, Verbosity};

/// A server the benches can start: its name in the report, and how.
#[derive(Clone, Copy)]
pub struct Server {
    /// The bench ID: the binary's name and its mode.
    pub name: &'static str,
    /// Starts it in-process on port 0 with a configuration.
    pub start: fn(Config) -> TestServer,
}

/// Every server and mode, in the course's order; srv-uring only where the
/// kernel lets a process use io_uring (else a line on stderr says why not).
pub fn servers() -> Vec<Server> {
    let mut servers = Vec::from(READINESS_SERVERS);
    match srv_uring::available() {
        Ok(()) => servers.push(Server {
            name: "srv-uring",
            start: |config| TestServer::start(srv_uring::serve, config),
        }),
        Err(error) => eprintln!("benches: skipping srv-uring: {error}"),
    }
    servers
}

/// The servers that wait for readiness (or block): every model but
/// srv-uring.
const READINESS_SERVERS: [Server; 7] = [
    Server {
        name: "srv-single",
        start: |config| TestServer::start(srv_single::serve, config),
    },
    Server {
        name: "srv-threaded-pool",
        start: |config| {
            TestServer::start(
                |l, c, s| srv_threaded::serve(l, c, s, srv_threaded::Mode::default()),
                config,
            )
        },
    },
    Server {
        name: "srv-threaded-per-connection",
        start: |config| {
            TestServer::start(
                |l, c, s| srv_threaded::serve(l, c, s, srv_threaded::Mode::PerConnection),
                config,
            )
        },
    },
    Server {
        name: "srv-poll",
        start: |config| TestServer::start(srv_poll::serve, config),
    },
    Server {
        name: "srv-async",
        start: |config| TestServer::start(srv_async::serve, config),
    },
    Server {
        name: "srv-hybrid-work-stealing",
        start: |config| {
            TestServer::start(
                |l, c, s| srv_hybrid::serve(l, c, s, hybrid(srv_hybrid::Runtime::WorkStealing)),
                config,
            )
        },
    },
    Server {
        name: "srv-hybrid-per-core",
        start: |config| {
            TestServer::start(
                |l, c, s| srv_hybrid::serve(l, c, s, hybrid(srv_hybrid::Runtime::PerCore)),
                config,
            )
        },
    },
];

fn hybrid(runtime: srv_hybrid::Runtime) -> srv_hybrid::HybridOptions {
    srv_hybrid::HybridOptions {
        workers: srv_hybrid::default_workers(),
        runtime,
        backlog: zen_utils::config::DEFAULT_BACKLOG,
    }
}

/// A server configuration for benches: the defaults, quiet, with `work`.
pub fn config(work: Option<zen_utils::Work>) -> Config {
    Config {
        work,
        verbosity: Verbosity::Quiet,
        ..Config::default()
    }
}

/// The shape of a load: how many connections, how many questions in
/// flight on each.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Client connections (`client load -c`), spread over the engine's
    /// default threads (half the cores, at most one per connection).
    pub connections: usize,
    /// Questions in flight on each connection (`client load --pipeline`).
    pub pipeline: NonZeroUsize,
}

impl Load {
    /// Asks exactly `answers` questions of the server at `addr` with
    /// `client load`'s engine (`-c connections --pipeline pipeline -n
    /// answers`, the aphorism table in turn), and returns the engine's
    /// measured window: from the moment every connection is open to the
    /// last answer. Every answer is checked, so a broken server fails the
    /// bench instead of winning it.
    ///
    /// # Panics
    /// If the load cannot start (no connection opens), or if the run had
    /// any error (a wrong answer, a broken connection) or stopped before
    /// every answer came.
    pub fn run(self, addr: SocketAddr, answers: u64) -> Duration {
        if answers == 0 {
            return Duration::ZERO;
        }
        let options = Options {
            connections: self.connections,
            pipeline: self.pipeline.get(),
            length: Length::Requests(answers),
            ..Options::new(addr)
        };
        let report = load::measure(&options, &mut Watch::default())
            .unwrap_or_else(|error| panic!("the bench load could not run: {error:#}"));
        assert!(
            report.errors == 0 && report.stopped_early.is_none() && report.requests == answers,
            "the bench load went wrong ({} of {answers} answers, errors: {:?}, stopped \
             early: {:?})",
            report.requests,
            report.errors_by_kind,
            report.stopped_early
        );
        Duration::from_secs_f64(report.seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_answers_every_load() {
        for server in servers() {
            let running = (server.start)(config(None));
            for (connections, pipeline) in [(1, 1), (3, 1), (2, 5)] {
                let load = Load {
                    connections,
                    pipeline: NonZeroUsize::new(pipeline).unwrap(),
                };
                load.run(running.addr(), 101);
            }
            assert_eq!(running.stop().answered, 3 * 101, "{}", server.name);
        }
    }
}

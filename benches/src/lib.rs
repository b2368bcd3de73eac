//! What the criterion benches share: every server under test, and a
//! closed-loop load that measures how long a server takes to give a number
//! of answers.
//!
//! Each bench starts a server in-process on `127.0.0.1:0` (through the
//! conformance kit's [`TestServer`]), opens `connections` client
//! connections on threads of the same process, keeps `pipeline` questions
//! in flight on each, and times how long `answers` answers take. Criterion
//! reports that as answers per second (`thrpt`) and as time per answer
//! (`time`).
//!
//! Read the numbers as a comparison between servers measured in one run,
//! not as absolutes: the client threads share the machine's cores with the
//! server, so a model that needs many threads pays twice. For numbers from a
//! separate, efficient load generator, use `client load` and
//! `client compare`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::thread;
use std::time::{Duration, Instant};

use zen_utils::protocol::APHORISMS;
use zen_utils::testkit::TestServer;
use zen_utils::{Config, Verbosity};

/// A server the benches can start: its name in the report, and how.
pub struct Server {
    /// The bench ID: the binary's name and its mode.
    pub name: &'static str,
    /// Starts it in-process on port 0 with a configuration.
    pub start: fn(Config) -> TestServer,
}

/// Every server and mode, in the course's order.
pub const SERVERS: [Server; 7] = [
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
    /// Client connections, each on its own thread.
    pub connections: usize,
    /// Questions in flight on each connection.
    pub pipeline: NonZeroUsize,
}

impl Load {
    /// Asks `answers` questions in all, spread evenly over the connections,
    /// and returns how long the answers took to arrive. Every answer is
    /// checked, so a broken server fails the bench instead of winning it.
    ///
    /// # Panics
    /// On a wrong answer or a broken connection.
    pub fn run(self, addr: SocketAddr, answers: u64) -> Duration {
        let connections = u64::try_from(self.connections.max(1)).unwrap();
        let started = Instant::now();
        let clients: Vec<_> = (0..connections)
            .map(|i| {
                // The first connections take the remainder.
                let share = answers / connections + u64::from(i < answers % connections);
                let pipeline = self.pipeline.get();
                thread::spawn(move || converse(addr, share, pipeline))
            })
            .collect();
        for client in clients {
            client.join().expect("a bench client failed");
        }
        started.elapsed()
    }
}

/// One closed-loop client: `pipeline` questions in flight, a new one sent
/// for each answer, until `answers` answers have come.
fn converse(addr: SocketAddr, answers: u64, pipeline: usize) {
    if answers == 0 {
        return;
    }
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    let questions: Vec<&[u8]> = APHORISMS.iter().map(|(q, _)| *q).collect();
    let burst: Vec<u8> = questions
        .iter()
        .cycle()
        .take(pipeline)
        .copied()
        .flatten()
        .copied()
        .collect();
    let mut sent = 0;
    let mut received = 0;
    let mut buf = [0u8; 16 * 1024];
    let mut expect = APHORISMS.iter().map(|(_, a)| *a).cycle();
    let mut answer = expect.next().unwrap();
    let mut matched = 0;
    // The first burst fills the pipeline; after that, one question per answer.
    let first = usize::try_from(answers).unwrap_or(usize::MAX).min(pipeline);
    let first_bytes: usize = questions.iter().cycle().take(first).map(|q| q.len()).sum();
    stream.write_all(&burst[..first_bytes]).expect("send");
    sent += first as u64;
    let mut next_question = questions.iter().cycle().skip(first % questions.len());
    let mut replies = Vec::with_capacity(burst.len());
    while received < answers {
        let n = stream.read(&mut buf).expect("receive");
        assert!(n > 0, "the server closed the connection");
        replies.clear();
        for &byte in &buf[..n] {
            assert_eq!(byte, answer[matched], "wrong answer");
            matched += 1;
            if matched == answer.len() {
                matched = 0;
                answer = expect.next().unwrap();
                received += 1;
                if sent < answers {
                    replies.extend_from_slice(next_question.next().unwrap());
                    sent += 1;
                }
            }
        }
        if !replies.is_empty() {
            stream.write_all(&replies).expect("send");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_answers_every_load() {
        for server in &SERVERS {
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

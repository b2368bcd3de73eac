//! A registered server's health probe: its registry thread asks the
//! server a real question over loopback, as HAProxy's `tcp-check` asks a
//! backend, so that a server whose ZooKeeper session is alive but whose
//! serving loop answers nothing (stuck) leaves the registry. A session
//! proves that a thread of the process runs, not that the server answers.
//!
//! The probe opens a connection for each question and closes it once the
//! answer came, as HAProxy's check does: a server that serves one
//! connection at a time (srv-single) is not held by it. A question not
//! answered within its interval keeps its connection, and no other is
//! asked until it is answered: a struggling server is never handed a pile
//! of probe questions to work through once it comes back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::peers::{ReplyRead, ReplyReader};
use crate::protocol::table::APHORISMS;

/// `--health-interval` and `--health-fails`, and whom to ask.
#[derive(Debug, Clone)]
pub struct Health {
    /// Where the server listens, as reached from inside its own host.
    pub addr: SocketAddr,
    /// The question asked (one the server knows itself: never forwarded).
    pub question: &'static [u8],
    /// How often it is asked; each ask is bounded by it.
    pub interval: Duration,
    /// Misses in a row that take the server out of the registry.
    pub fails: u32,
}

impl Health {
    /// The probe of a server bound to `bound` that knows part `part`
    /// (`K/N`) of the table; `None` when `interval` is zero (probe off).
    pub fn of(
        bound: SocketAddr,
        part: (usize, usize),
        interval: Duration,
        fails: u32,
    ) -> Option<Self> {
        if interval.is_zero() {
            return None;
        }
        // A wildcard bind listens on loopback too, in the same family.
        let ip = match bound.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        // Position K of the table is in part K/N: asked, it is answered
        // here and never forwarded to a peer.
        let (first, _) = part;
        let question = APHORISMS[(first - 1) % APHORISMS.len()].0;
        Some(Self {
            addr: SocketAddr::new(ip, bound.port()),
            question,
            interval,
            fails: fails.max(1),
        })
    }
}

/// The probe's connection while a question is outstanding.
pub struct Probe {
    health: Health,
    connection: Option<TcpStream>,
    /// A question was sent and its answer has not come yet.
    outstanding: bool,
    /// The answer read so far: read as a peer's reply is (any complete
    /// answer, error or not, is one).
    reply: ReplyReader,
}

impl Probe {
    /// A probe that has asked nothing yet.
    pub fn new(health: Health) -> Self {
        Self {
            health,
            connection: None,
            outstanding: false,
            reply: ReplyReader::new(),
        }
    }

    /// The probe's settings.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Waits until `fails` intervals in a row went by without an answer.
    pub async fn until_misses(&mut self) {
        let mut misses = 0;
        while misses < self.health.fails {
            misses = if self.ask().await { 0 } else { misses + 1 };
        }
    }

    /// Waits until an interval brings an answer.
    pub async fn until_answer(&mut self) {
        while !self.ask().await {}
    }

    /// One interval: asks (unless a question is still outstanding) and
    /// waits for the answer until the interval is over, then for the rest
    /// of it. Returns whether an answer came.
    async fn ask(&mut self) -> bool {
        let end = tokio::time::Instant::now() + self.health.interval;
        let answered = tokio::time::timeout_at(end, self.exchange()).await;
        let answered = match answered {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                self.forget();
                false
            }
            // The question stays outstanding on its connection; a connect
            // or a write cut short leaves nothing worth keeping.
            Err(_) => {
                if !self.outstanding {
                    self.forget();
                }
                false
            }
        };
        tokio::time::sleep_until(end).await;
        answered
    }

    /// Connects if need be, sends the question if none is outstanding, and
    /// reads until its answer's end (every answer, error or not, ends
    /// with a `.`).
    async fn exchange(&mut self) -> std::io::Result<()> {
        if self.connection.is_none() {
            let stream = TcpStream::connect(self.health.addr).await?;
            stream.set_nodelay(true)?;
            self.connection = Some(stream);
        }
        let stream = self.connection.as_mut().expect("connected above");
        if !self.outstanding {
            stream.write_all(self.health.question).await?;
            self.outstanding = true;
        }
        loop {
            let n = stream.read(self.reply.room()).await?;
            match self.reply.received(n) {
                ReplyRead::NeedMore => {}
                ReplyRead::Complete(_) => {
                    // Answered: the connection is let go until the next ask.
                    self.forget();
                    return Ok(());
                }
                ReplyRead::ClosedEarly => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                ReplyRead::TooLong => return Err(std::io::ErrorKind::InvalidData.into()),
            }
        }
    }

    /// Drops the connection (a clean close): the next ask starts afresh.
    fn forget(&mut self) {
        self.connection = None;
        self.outstanding = false;
        self.reply = ReplyReader::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_bind_is_asked_on_loopback_of_its_family_and_port() {
        let ms = Duration::from_millis(200);
        let v4 = Health::of("0.0.0.0:7001".parse().unwrap(), (1, 1), ms, 2).unwrap();
        assert_eq!(v4.addr, "127.0.0.1:7001".parse().unwrap());
        let v6 = Health::of("[::]:7002".parse().unwrap(), (1, 1), ms, 2).unwrap();
        assert_eq!(v6.addr, "[::1]:7002".parse().unwrap());
        let own = Health::of("10.1.2.3:7003".parse().unwrap(), (1, 1), ms, 2).unwrap();
        assert_eq!(own.addr, "10.1.2.3:7003".parse().unwrap());
    }

    #[test]
    fn the_question_is_the_servers_own_and_zero_is_off() {
        let bound = "127.0.0.1:7001".parse().unwrap();
        let ms = Duration::from_millis(200);
        let second = Health::of(bound, (2, 3), ms, 2).unwrap();
        assert_eq!(second.question, APHORISMS[1].0);
        assert!(Health::of(bound, (1, 1), Duration::ZERO, 2).is_none());
    }
}

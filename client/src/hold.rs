//! `client hold`: the slow client. It opens many connections, says nothing
//! on any of them, and watches what the server does: keep them, turn them
//! away as busy, or close them for being idle.
//!
//! One thread and one epoll loop watch every connection, so thousands cost
//! a socket and a few bytes each: all the connects are started at once
//! (non-blocking), then the loop waits for whatever the server says.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;
use zen_utils::duration::parse_duration;
use zen_utils::protocol::{IDLE_TIMEOUT, SERVER_BUSY};

use crate::event_loop::{connect_all, nanos, now_ns, Interest};
use crate::flags::{positive, positive_duration};
use crate::report::{ConnectFailures, HoldReport, IdleCloses};
use crate::servers::Picker;
use crate::target::Target;

/// The most a held connection keeps of what the server sends: enough for
/// either message it may say before closing.
const HEARD: usize = 32;

#[derive(Args, Debug)]
pub(crate) struct HoldArgs {
    #[command(flatten)]
    target: Target,

    /// Connections to open and keep idle
    #[arg(short = 'c', long = "connections", value_name = "CONNS", value_parser = positive)]
    connections: usize,

    /// How long to keep them (e.g. 500ms, 10s)
    #[arg(short = 'd', long = "duration", value_name = "DUR", value_parser = parse_duration)]
    duration: Duration,

    /// Give up on a connect that has not completed after this long (with
    /// --registry, also the longest wait for a first server)
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = positive_duration)]
    timeout: Duration,

    /// Print the report as one JSON object
    #[arg(long)]
    json: bool,
}

/// One held connection.
struct Held {
    stream: Option<std::net::TcpStream>,
    connected_at: u64,
    /// The first bytes the server sent on it.
    heard: [u8; HEARD],
    heard_len: usize,
    fate: Fate,
}

/// What became of a connection.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Open,
    Busy,
    /// Closed with `Error: idle timeout.`, this many nanoseconds after its
    /// connect.
    IdleTimeout(u64),
    Closed,
}

/// Holds the connections for the duration and prints the report. Exits 1
/// with one line only if no connection could be opened at all: what the
/// server did with the others is the report, not an error.
pub(crate) fn run(args: &HoldArgs) -> anyhow::Result<ExitCode> {
    crate::load::check_descriptors(args.connections)?;
    let holding = match &args.target.registry {
        Some(url) => {
            let picker = Picker::registry(url, args.target.registry_auth.as_ref(), args.timeout)?;
            Holding::connect_to(url.to_string(), &picker, args.connections, args.timeout)?
        }
        None => Holding::connect(args.target.addrs()?[0], args.connections, args.timeout)?,
    };
    let report = holding.hold(args.duration)?;
    crate::report::print(&report, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Idle connections, open and not yet watched: `client compare` opens
/// them, measures the server, then holds them while it loads the server.
pub(crate) struct Holding {
    /// The server, or the registry.
    target: String,
    connections: usize,
    held: Vec<Held>,
    failed: ConnectFailures,
    /// From a registry: connections held by each server.
    per_server: BTreeMap<String, usize>,
}

impl Holding {
    /// Opens `connections` connections to `addr`, all at once. Fails only
    /// if none could be opened.
    pub(crate) fn connect(
        addr: SocketAddr,
        connections: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let picker = Picker::fixed(vec![addr]);
        Self::connect_to(addr.to_string(), &picker, connections, timeout)
    }

    /// Opens `connections` connections to the servers `picker` picks, all
    /// at once. From a registry, a connect that fails is made again to
    /// another server, for as many rounds as there are servers; every
    /// failed connect is counted. Fails only if none could be opened.
    pub(crate) fn connect_to(
        target: String,
        picker: &Picker,
        connections: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let registry = picker.url().is_some();
        let rounds = if registry { picker.choices().max(1) } else { 1 };
        let mut failed = ConnectFailures::default();
        let mut first_error = None;
        let mut held = Vec::with_capacity(connections);
        let mut per_server = BTreeMap::new();
        // Each connection still to open, and the server it must avoid.
        let mut to_open: Vec<Option<SocketAddr>> = vec![None; connections];
        for _ in 0..rounds {
            let picked: Vec<(usize, SocketAddr)> = to_open
                .iter()
                .map_while(|&avoid| picker.pick(avoid))
                .collect();
            let addrs: Vec<SocketAddr> = picked.iter().map(|&(_, addr)| addr).collect();
            let results = connect_all(&addrs, timeout).context("cannot start connecting")?;
            to_open.clear();
            for ((target, addr), result) in picked.into_iter().zip(results) {
                match result {
                    Ok((stream, connected_at)) => {
                        held.push(Held {
                            stream: Some(stream),
                            connected_at,
                            heard: [0; HEARD],
                            heard_len: 0,
                            fate: Fate::Open,
                        });
                        if registry {
                            *per_server.entry(addr.to_string()).or_default() += 1;
                        }
                    }
                    Err(error) => {
                        picker.leave(target);
                        match error.kind() {
                            io::ErrorKind::ConnectionRefused => failed.refused += 1,
                            io::ErrorKind::TimedOut => failed.timeout += 1,
                            _ => failed.other += 1,
                        }
                        first_error.get_or_insert((addr, error));
                        to_open.push(Some(addr));
                    }
                }
            }
            if to_open.is_empty() {
                break;
            }
        }
        if held.is_empty() {
            return Err(match first_error {
                Some((addr, error)) => anyhow!("cannot connect to {addr}: {error}"),
                None => anyhow!("no server registered in {target} any more"),
            });
        }
        Ok(Self {
            target,
            connections,
            held,
            failed,
            per_server,
        })
    }

    /// Connections that connected.
    pub(crate) fn connected(&self) -> usize {
        self.held.len()
    }

    /// Keeps the connections idle for `duration`, watching what the server
    /// does with them, then closes them and reports.
    pub(crate) fn hold(mut self, duration: Duration) -> anyhow::Result<HoldReport> {
        watch(&mut self.held, duration)?;
        let mut idle_after: Vec<u64> = Vec::new();
        let mut report = HoldReport {
            connections: self.connections,
            seconds: duration.as_secs_f64(),
            connected: self.held.len(),
            open: 0,
            busy: 0,
            idle_timeout: IdleCloses::default(),
            closed: 0,
            connect_failed: self.failed,
            target: self.target,
            per_server: self.per_server,
        };
        for conn in &self.held {
            match conn.fate {
                Fate::Open => report.open += 1,
                Fate::Busy => report.busy += 1,
                Fate::IdleTimeout(after) => idle_after.push(after),
                Fate::Closed => report.closed += 1,
            }
        }
        idle_after.sort_unstable();
        if let (Some(first), Some(last)) = (idle_after.first(), idle_after.last()) {
            let seconds = |ns: u64| ns as f64 / 1e9;
            report.idle_timeout = IdleCloses {
                count: idle_after.len(),
                after_min: seconds(*first),
                after_median: seconds(idle_after[(idle_after.len() - 1) / 2]),
                after_max: seconds(*last),
            };
        }
        Ok(report)
    }
}

/// Watches every connection for `duration`, noting what the server says
/// and when it closes each one.
fn watch(held: &mut [Held], duration: Duration) -> io::Result<()> {
    let mut poller = crate::event_loop::poller(1024)?;
    for (key, conn) in held.iter().enumerate() {
        if let Some(stream) = &conn.stream {
            poller.add(stream, key as u64, Interest::READ)?;
        }
    }
    let end = now_ns().saturating_add(nanos(duration));
    let mut open = held.len();
    let mut buf = [0; 4096];
    while open > 0 && now_ns() < end {
        poller.wait(Some(end))?;
        for e in 0..poller.len() {
            let conn = &mut held[poller.event(e).key as usize];
            if hear(conn, &mut buf) {
                open -= 1;
            }
        }
    }
    for conn in held.iter_mut().filter(|conn| conn.fate == Fate::Open) {
        // A message that came without its close yet still tells the fate.
        conn.fate = match &conn.heard[..conn.heard_len] {
            heard if heard == SERVER_BUSY => Fate::Busy,
            _ => Fate::Open,
        };
    }
    Ok(())
}

/// The most reads one held connection gets per readiness event: a server
/// that floods one connection cannot keep the loop from the others and
/// from the end of the hold (its socket is level-triggered, so the rest is
/// reported again).
const READS_PER_EVENT: usize = 4;

/// Reads what the server sent on `conn`; returns whether it closed.
fn hear(conn: &mut Held, buf: &mut [u8]) -> bool {
    let Some(stream) = &conn.stream else {
        return false;
    };
    let mut reads = 0;
    let closed = loop {
        if reads == READS_PER_EVENT {
            break false;
        }
        reads += 1;
        match (&*stream).read(buf) {
            Ok(0) => break true,
            Ok(n) => {
                let keep = n.min(HEARD - conn.heard_len);
                conn.heard[conn.heard_len..conn.heard_len + keep].copy_from_slice(&buf[..keep]);
                conn.heard_len += keep;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break false,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            // A reset is a close too; what came before it tells why.
            Err(_) => break true,
        }
    };
    if closed {
        let heard = &conn.heard[..conn.heard_len];
        conn.fate = if heard == SERVER_BUSY {
            Fate::Busy
        } else if heard == IDLE_TIMEOUT {
            Fate::IdleTimeout(now_ns().saturating_sub(conn.connected_at))
        } else {
            Fate::Closed
        };
        conn.stream = None;
    }
    closed
}

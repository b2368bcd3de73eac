//! How a raw loop takes in a connection it accepted: admitted under
//! `--max-conns` (or turned away busy, without blocking: the loop must not
//! wait on a client it is turning away), its socket prepared, and named in
//! the loop's slab.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use crate::serve::admission::{Admission, Permit};
use crate::serve::listener;
use crate::serve::raw_loop::ids::ConnId;
use crate::{Config, Stats};

/// A connection accepted and admitted, handed to the connection the loop
/// builds in its slab.
#[derive(Debug)]
pub struct Admitted {
    /// Its socket.
    pub stream: TcpStream,
    /// Who it is, for the logs and the summary.
    pub peer: SocketAddr,
    /// Its name in the loop's slab.
    pub id: ConnId,
    /// Its place under `--max-conns`: given back when dropped.
    pub permit: Permit,
}

/// A raw loop's admissions: the `--max-conns` count its connections hold
/// permits of, and the count of connections admitted, which makes their
/// generations.
#[derive(Debug)]
pub struct Admitter {
    admission: Arc<Admission>,
    next_generation: u64,
}

impl Admitter {
    /// No connection admitted yet; at most `max_conns` open at once.
    pub fn new(max_conns: usize) -> Self {
        Self {
            admission: Admission::new(max_conns),
            next_generation: 0,
        }
    }

    /// How many connections are open (hold a permit) now.
    pub fn open(&self) -> usize {
        self.admission.open()
    }

    /// Takes in a connection just accepted (and counted) as the one at
    /// `key` in the loop's slab: a permit, the shared socket options, then
    /// `prepare`, the loop's own step (srv-poll registers the socket with
    /// its poller). `None`: it was turned away busy, or closed as failed.
    pub fn admit(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        key: usize,
        config: &Config,
        stats: &Stats,
        prepare: impl FnOnce(&TcpStream) -> io::Result<()>,
    ) -> Option<Admitted> {
        let Some(permit) = self.admission.try_admit() else {
            listener::turn_away(&stream, peer, config, stats);
            return None;
        };
        if let Err(error) = listener::prepare_accepted(&stream).and_then(|()| prepare(&stream)) {
            stats.error(1);
            stats.closed();
            tracing::debug!("connection from {peer} closed: error: {error}");
            return None;
        }
        let id = ConnId {
            key,
            generation: self.next_generation,
        };
        self.next_generation += 1;
        Some(Admitted {
            stream,
            peer,
            id,
            permit,
        })
    }
}

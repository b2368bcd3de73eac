//! Peers that are not servers of the project, for the peers' cases: one
//! that accepts and never answers, one that answers with more than any
//! reply can be, and one that serves one connection at a time (as
//! srv-single does). Each counts the connections it accepted,
//! and stops (its thread joined) when dropped: nothing outlives its test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::protocol::peers::MAX_PEER_REPLY;

/// How a fake peer behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Accepts every connection, holds it, and never writes a byte.
    Silent,
    /// Accepts every connection, writes more bytes than the longest reply
    /// ([`MAX_PEER_REPLY`]) with no full stop among them, and holds it:
    /// only a reader that checks the reply's maximum stops waiting before
    /// the peer timeout.
    TooLong,
    /// Serves one connection at a time until the asker closes it,
    /// answering `implicit.` to every question (`?`) on it; connections
    /// that come meanwhile wait in the listen queue.
    OneAtATime,
}

/// A fake peer on `127.0.0.1:0`, running until dropped.
pub struct FakePeer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How often the fake peer looks at its stop flag.
const NAP: Duration = Duration::from_millis(10);

impl FakePeer {
    /// Starts a fake peer that behaves as `behaviour` says.
    pub fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake peer");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (accepted.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut held = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    thread::sleep(NAP);
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                match behaviour {
                    Behaviour::Silent => held.push(stream),
                    Behaviour::TooLong => {
                        let mut stream = stream;
                        let _ = stream.write_all(&[b'x'; 2 * MAX_PEER_REPLY]);
                        held.push(stream);
                    }
                    Behaviour::OneAtATime => serve_until_closed(stream, &stopped),
                }
            }
        });
        Self {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Answers `implicit.` to each `?` on `stream` until the other side
/// closes it (or the fake peer stops).
fn serve_until_closed(mut stream: TcpStream, stop: &AtomicBool) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(NAP)).unwrap();
    let mut buf = [0; 1024];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                for _ in buf[..n].iter().filter(|b| **b == b'?') {
                    if stream.write_all(b"implicit.").is_err() {
                        return;
                    }
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

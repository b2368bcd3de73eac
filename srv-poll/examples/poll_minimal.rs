//! srv-poll, minimal: one thread, non-blocking sockets, a readiness loop.
//!
//! One `wait` tells which sockets are ready; the loop reads what each one
//! has, answers every complete question into that connection's output
//! buffer, and writes what the socket takes. No call ever blocks, so one
//! thread holds every conversation. Level-triggered epoll
//! (`zen_utils::serve::raw_loop::epoll`): a socket is reported for as long as it is ready.
//!
//! Correct framing (zen-utils' `Decoder`) and the table, nothing else: no
//! connection limit, no idle timeout, no bound on a question or on the
//! unsent answers, no graceful shutdown. What each missing piece costs is
//! in docs/course/hardening.md, shown by the tests in srv-poll/tests/minimal.rs.
//!
//! `cargo run --release -p srv-poll --example poll_minimal -- -p 1060`

use std::collections::HashMap;
use std::io::{self, ErrorKind::WouldBlock, Read, Write};
use std::net::{TcpListener, TcpStream};

use zen_utils::serve::raw_loop::epoll::{Interest, Poller, Trigger};
use zen_utils::{protocol::answer, Decoder};

/// One conversation's state between two wake-ups.
struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    out: Vec<u8>, // Answers not yet sent: nothing bounds it.
    eof: bool,    // The client sent its last byte (a close or a half-close).
}

fn main() -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port()))?;
    listener.set_nonblocking(true)?;
    println!("listening on {}", listener.local_addr()?);
    let mut poller = Poller::new(256, Trigger::Level)?;
    poller.add(&listener, 0, Interest::READ)?; // Key 0 is the listener.
    let (mut conns, mut next_key) = (HashMap::new(), 1);
    loop {
        poller.wait(None)?;
        for i in 0..poller.len() {
            let key = poller.event(i).key;
            if key == 0 {
                while let Ok((stream, _)) = listener.accept() {
                    stream.set_nonblocking(true)?;
                    poller.add(&stream, next_key, Interest::READ)?;
                    let conn = Conn {
                        stream,
                        decoder: Decoder::new(usize::MAX), // No bound worth the name.
                        out: Vec::new(),
                        eof: false,
                    };
                    conns.insert(next_key, conn);
                    next_key += 1;
                }
            } else if let Some(conn) = conns.get_mut(&key) {
                if let Ok(true) = serve(conn) {
                    let interest = Interest::new(!conn.eof, !conn.out.is_empty());
                    poller.modify(&conn.stream, key, interest)?;
                } else {
                    conns.remove(&key); // Closing the socket leaves the epoll set.
                }
            }
        }
    }
}

/// Reads what arrived, answers it, writes what the socket takes; `Ok(false)`
/// once the conversation is over.
fn serve(conn: &mut Conn) -> io::Result<bool> {
    if !conn.eof {
        match conn.stream.read(conn.decoder.read_buf()) {
            Ok(0) => conn.eof = true,
            Ok(n) => conn.decoder.filled(n),
            Err(error) if error.kind() == WouldBlock => {}
            Err(error) => return Err(error),
        }
        while let Some(question) = conn.decoder.next_question().map_err(io::Error::other)? {
            conn.out.extend_from_slice(answer(question));
        }
    }
    match conn.stream.write(&conn.out) {
        Ok(n) => drop(conn.out.drain(..n)),
        Err(error) if error.kind() == WouldBlock => {}
        Err(error) => return Err(error),
    }
    Ok(!(conn.eof && conn.out.is_empty()))
}

/// `-p PORT`, 1060 by default.
fn port() -> u16 {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|arg| arg == "-p");
    at.and_then(|at| args.get(at + 1))
        .map_or(1060, |port| port.parse().expect("-p PORT"))
}

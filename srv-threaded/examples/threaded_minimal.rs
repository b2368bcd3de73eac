//! srv-threaded, minimal: a thread per connection, blocking I/O.
//!
//! srv-single's conversation, unchanged, on a thread of its own: the main
//! thread only accepts, and the kernel's scheduler interleaves the
//! conversations. Nothing bounds the threads.
//!
//! Correct framing (zen-utils' `Decoder`) and the table, nothing else: no
//! connection limit, no idle timeout, no bound on a question, no graceful
//! shutdown. What each missing piece costs is in docs/course/hardening.md,
//! shown by the tests in srv-threaded/tests/minimal.rs.
//!
//! `cargo run --release -p srv-threaded --example threaded_minimal -- -p 1060`

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use zen_utils::{protocol::answer, Decoder};

fn main() -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port()))?;
    println!("listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = stream?;
        thread::spawn(move || converse(stream));
    }
    Ok(())
}

/// One conversation, to its end, on its own thread.
fn converse(mut stream: TcpStream) -> io::Result<()> {
    // No bound worth the name: a question may be gigabytes long.
    let mut decoder = Decoder::new(usize::MAX);
    loop {
        let n = stream.read(decoder.read_buf())?;
        if n == 0 {
            return Ok(()); // The client hung up (or half-closed): all is answered.
        }
        decoder.filled(n);
        while let Some(question) = decoder.next_question().map_err(io::Error::other)? {
            stream.write_all(answer(question))?;
        }
    }
}

/// `-p PORT`, 1060 by default.
fn port() -> u16 {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|arg| arg == "-p");
    at.and_then(|at| args.get(at + 1))
        .map_or(1060, |port| port.parse().expect("-p PORT"))
}

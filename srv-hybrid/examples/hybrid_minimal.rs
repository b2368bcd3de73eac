//! srv-hybrid, minimal: srv-async's tasks on tokio's work-stealing runtime,
//! a thread per core, a task per connection.
//!
//! The code is srv-async's minimal one; only the runtime differs: a ready
//! task runs on whichever worker thread is free, and an idle worker steals
//! tasks queued on a busy one, so CPU work spreads over every core.
//!
//! Correct framing (zen-utils' `Decoder`) and the table, nothing else: no
//! connection limit, no idle timeout, no bound on a question, no graceful
//! shutdown. What each missing piece costs is in docs/course/hardening.md,
//! shown by the tests in srv-hybrid/tests/minimal.rs.
//!
//! `cargo run --release -p srv-hybrid --example hybrid_minimal -- -p 1060`

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zen_utils::{protocol::answer, Decoder};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port())).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(converse(stream));
    }
}

/// One conversation, to its end, as one task.
async fn converse(mut stream: TcpStream) -> io::Result<()> {
    // No bound worth the name: a question may be gigabytes long.
    let mut decoder = Decoder::new(usize::MAX);
    loop {
        let n = stream.read(decoder.read_buf()).await?;
        if n == 0 {
            return Ok(()); // The client hung up (or half-closed): all is answered.
        }
        decoder.filled(n);
        while let Some(question) = decoder.next_question().map_err(io::Error::other)? {
            stream.write_all(answer(question)).await?;
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

//! srv-uring, minimal: one thread, an io_uring completion loop.
//!
//! The loop never asks which sockets are ready: it hands the kernel the
//! operations themselves (accept, receive into this room, send these
//! bytes) and sleeps in `submit_and_wait` until some are done. From a
//! submission to its completion the kernel owns the memory it names: the
//! decoder's room while `reading`, `flight` while `sending`. So answers
//! made meanwhile wait in `out`, and a connection is dropped only once
//! nothing of it is in flight.
//!
//! Correct framing (zen-utils' `Decoder`) and the table, nothing else: no
//! connection limit, no idle timeout, no bound on a question or on the
//! unsent answers, no graceful shutdown, no shared buffer pool.
//!
//! `cargo run --release -p srv-uring --example uring_minimal -- -p 1060`

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{opcode, squeue, types::Fd, IoUring};
use zen_utils::{protocol::answer, Decoder};

/// `user_data`: the accept, or a connection's key times 2 (+1: its send).
const ACCEPT: u64 = u64::MAX;

/// One conversation's state between two completions.
struct Conn {
    fd: OwnedFd,
    decoder: Decoder, // Its free room is the kernel's while `reading`.
    out: Vec<u8>,     // Answers made, not yet sending: nothing bounds it.
    flight: Vec<u8>,  // Answers being sent: the kernel's while `sending`.
    reading: bool,
    sending: bool,
    eof: bool,    // The client sent its last byte (or its receive failed).
    failed: bool, // A send failed: the client is gone.
}

fn main() -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port()))?;
    println!("listening on {}", listener.local_addr()?);
    let mut ring = IoUring::new(256)?;
    let accept = opcode::AcceptMulti::new(Fd(listener.as_raw_fd())).build();
    push(&mut ring, accept.user_data(ACCEPT))?; // One accept, a completion per client.
    let (mut conns, mut next_key) = (HashMap::new(), 0);
    loop {
        ring.submit_and_wait(1)?; // Submit everything queued, sleep until something is done.
        let done: Vec<_> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (data, result) in done {
            let key = if data == ACCEPT { next_key } else { data / 2 };
            if data == ACCEPT {
                // SAFETY: a new descriptor nothing else owns. EMFILE's `?` ends it all.
                let fd = unsafe { OwnedFd::from_raw_fd(errno(result)?) };
                conns.insert(key, Conn::new(fd));
                next_key += 1;
            }
            let conn = conns
                .get_mut(&key)
                .expect("a completion of a live connection");
            if data != ACCEPT && data % 2 == 1 {
                conn.sending = false;
                match result > 0 {
                    true => drop(conn.flight.drain(..result as usize)),
                    false => conn.failed = true,
                }
            } else if data != ACCEPT {
                conn.reading = false;
                match result > 0 {
                    true => conn.decoder.filled(result as usize),
                    false => conn.eof = true, // 0: end of input; < 0: an error.
                }
                while let Ok(Some(question)) = conn.decoder.next_question() {
                    conn.out.extend_from_slice(answer(question));
                }
            }
            if conn.submit_next(key, &mut ring)? {
                conns.remove(&key); // Nothing in flight: the kernel holds none of it.
            }
        }
    }
}

impl Conn {
    fn new(fd: OwnedFd) -> Self {
        let (decoder, out, flight) = (Decoder::new(usize::MAX), Vec::new(), Vec::new());
        let (reading, sending, eof, failed) = (false, false, false, false);
        Self {
            fd,
            decoder,
            out,
            flight,
            reading,
            sending,
            eof,
            failed,
        }
    }

    /// Queues a receive and a send if they are due; `Ok(true)`: it is over.
    fn submit_next(&mut self, key: u64, ring: &mut IoUring) -> io::Result<bool> {
        let fd = Fd(self.fd.as_raw_fd());
        if !self.reading && !self.eof {
            let room = self.decoder.read_buf();
            let recv = opcode::Recv::new(fd, room.as_mut_ptr(), room.len() as u32);
            push(ring, recv.build().user_data(key * 2))?;
            self.reading = true;
        }
        let unsent = !(self.failed || self.flight.is_empty() && self.out.is_empty());
        if unsent && !self.sending {
            self.flight.append(&mut self.out); // `out` stays the loop's to grow.
            let send = opcode::Send::new(fd, self.flight.as_ptr(), self.flight.len() as u32);
            push(
                ring,
                send.flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(key * 2 + 1),
            )?;
            self.sending = true;
        }
        Ok(self.eof && !self.reading && !self.sending && !unsent)
    }
}

/// Queues `entry`. SAFETY of every push here: the decoder's room and
/// `flight` are not touched, nor their `Conn` dropped, until its completion.
fn push(ring: &mut IoUring, entry: squeue::Entry) -> io::Result<()> {
    while unsafe { ring.submission().push(&entry) }.is_err() {
        ring.submit()?; // Full: hand the kernel what is queued, then retry.
    }
    Ok(())
}

/// A completion's result: a count or a descriptor, or `-errno`.
fn errno(result: i32) -> io::Result<i32> {
    (result >= 0)
        .then_some(result)
        .ok_or_else(|| io::Error::from_raw_os_error(-result))
}

/// `-p PORT`, 1060 by default.
fn port() -> u16 {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|arg| arg == "-p");
    at.and_then(|at| args.get(at + 1))
        .map_or(1060, |port| port.parse().expect("-p PORT"))
}

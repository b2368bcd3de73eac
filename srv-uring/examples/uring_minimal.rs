//! srv-uring, minimal: one thread, an io_uring completion loop.
//!
//! The loop hands the kernel the operations themselves (accept, receive into
//! this room, send these bytes) and sleeps in `submit_and_wait` until some
//! are done. Until an operation completes, the kernel owns the memory it
//! names: the decoder's room during a receive, `flight` during a send. So
//! answers made meanwhile wait in `out`, and a connection is dropped only
//! once nothing of it is in flight (`busy`). Framing (zen-utils' `Decoder`)
//! and the table, nothing else: no limits, no timeouts, no shutdown, no
//! buffer pool.
//!
//! `cargo run --release -p srv-uring --example uring_minimal -- -p 1060`

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{opcode, squeue, types::Fd, IoUring};
use slab::Slab;
use zen_utils::{protocol::answer, Decoder};

/// `user_data`: the accept, or a connection's key times 2 (+ RECV or SEND).
const ACCEPT: u64 = u64::MAX;
const RECV: usize = 0;
const SEND: usize = 1;

/// One conversation's state between two completions.
struct Conn {
    fd: OwnedFd,
    decoder: Decoder, // Its free room is the kernel's while receiving.
    out: Vec<u8>,     // Answers made, not yet sending: nothing bounds it.
    flight: Vec<u8>,  // Answers being sent: the kernel's while sending.
    busy: [bool; 2],  // In flight: [its receive, its send].
    eof: bool,        // Nothing more to read: its last byte came, or it failed.
}

fn main() -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port()))?;
    println!("listening on {}", listener.local_addr()?);
    let mut ring = IoUring::new(256)?;
    let accept = opcode::AcceptMulti::new(Fd(listener.as_raw_fd())).build();
    // SAFETY: the accept takes no buffer; the listener outlives the ring.
    unsafe { push(&mut ring, accept.user_data(ACCEPT))? }; // One accept, a completion per client.
    let mut conns = Slab::new();
    loop {
        ring.submit_and_wait(1)?; // Submit all that is queued, sleep until something is done.
        let done: Vec<_> = ring.completion().collect();
        for (data, result) in done.iter().map(|c| (c.user_data(), c.result())) {
            let (key, op) = ((data / 2) as usize, (data % 2) as usize); // op: RECV or SEND.
            if data == ACCEPT && result < 0 {
                return Err(io::Error::from_raw_os_error(-result)); // EMFILE ends it all.
            } else if data == ACCEPT {
                // SAFETY: a new descriptor that nothing else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(result) };
                let decoder = Decoder::new(usize::MAX); // No bound worth the name.
                let (out, flight, busy, eof) = (vec![], vec![], [false; 2], false);
                let key = conns.insert(Conn {
                    fd,
                    decoder,
                    out,
                    flight,
                    busy,
                    eof,
                });
                conns[key].submit_next(key, &mut ring)?;
                continue;
            }
            let conn = &mut conns[key]; // Live until nothing of it is in flight.
            conn.busy[op] = false; // Its operation completed: its memory is ours again.
            match (op, result > 0) {
                (RECV, true) => conn.decoder.filled(result as usize),
                (_, true) => drop(conn.flight.drain(..result as usize)),
                (RECV, false) => conn.eof = true, // 0: end of input; < 0: an error.
                (_, false) => (conn.eof, conn.out, conn.flight) = (true, vec![], vec![]),
            }
            while let Ok(Some(question)) = conn.decoder.next_question() {
                conn.out.extend_from_slice(answer(question));
            }
            if conn.submit_next(key, &mut ring)? {
                conns.remove(key); // Nothing in flight: the kernel holds none of it.
            }
        }
    }
}

impl Conn {
    /// Queues a receive and a send if they are due; `Ok(true)`: it is over.
    fn submit_next(&mut self, key: usize, ring: &mut IoUring) -> io::Result<bool> {
        let fd = Fd(self.fd.as_raw_fd());
        if !self.busy[RECV] && !self.eof {
            let room = self.decoder.read_buf();
            let recv = opcode::Recv::new(fd, room.as_mut_ptr(), room.len() as u32);
            // SAFETY: the room is the decoder's, untouched until the completion
            // (`busy`), and the `Conn` is removed only once nothing is in flight.
            unsafe { push(ring, recv.build().user_data((2 * key + RECV) as u64))? };
            self.busy[RECV] = true;
        }
        let unsent = !(self.flight.is_empty() && self.out.is_empty());
        if unsent && !self.busy[SEND] {
            self.flight.append(&mut self.out); // `out` stays the loop's to grow.
            let send = opcode::Send::new(fd, self.flight.as_ptr(), self.flight.len() as u32);
            let send = send.flags(libc::MSG_NOSIGNAL).build();
            // SAFETY: `flight` is not touched until the completion (`busy`).
            unsafe { push(ring, send.user_data((2 * key + SEND) as u64))? };
            self.busy[SEND] = true;
        }
        Ok(self.eof && self.busy == [false; 2] && !unsent)
    }
}

/// Queues `entry`.
///
/// # Safety
///
/// Until `entry`'s completion the kernel may read or write the memory it
/// names at any moment: the caller keeps that memory and its descriptor
/// alive, unmoved and untouched until then. The borrow checker cannot see
/// this loan; only this contract can.
unsafe fn push(ring: &mut IoUring, entry: squeue::Entry) -> io::Result<()> {
    // SAFETY: the caller keeps `entry`'s memory alive until its completion.
    while unsafe { ring.submission().push(&entry) }.is_err() {
        ring.submit()?; // Full: hand the kernel what is queued, then retry.
    }
    Ok(())
}

/// `-p PORT`, 1060 by default.
fn port() -> u16 {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|arg| arg == "-p");
    at.and_then(|at| args.get(at + 1))
        .map_or(1060, |port| port.parse().expect("-p PORT"))
}

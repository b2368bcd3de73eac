//! srv-single: one thread, one conversation at a time, blocking I/O.
//!
//! ```text
//!   main thread:  accept() ──► converse with client A until it leaves ──► accept() ──► client B …
//!                                 read() ─► answer all ─► write() ─┐
//!                                    ▲─────────────────────────────┘
//!   client B meanwhile: connected (the kernel queued it), never answered
//! ```
//!
//! - **Threads:** one. It does everything, in order.
//! - **What blocks:** everything. `accept()` blocks until a client comes;
//!   then `read()` and `write()` block on that client alone. While one
//!   client is connected, every other waits in the kernel's backlog, which
//!   is why a single slow or idle client starves them all.
//! - **Per-connection state:** the local variables of [`converse`]: a
//!   framing decoder and an output buffer, on the stack of the one thread.
//! - **What limits concurrency:** the model itself: exactly one client is
//!   served at a time, so `--max-conns` can never be reached.
//! - **Asking peers** (`--peer`, a question it does not know): the one
//!   thread blocks on the peer, connect, question, answer, for up to
//!   `--peer-timeout` (or the end of the shutdown grace), and serves
//!   nobody meanwhile. Two srv-singles that
//!   ask each other at once deadlock: each waits on the other, which is
//!   busy waiting on it, until the timeout breaks it and both answer
//!   `Error: no peer answered.`. Each question opens its own connection:
//!   a kept one would hold a one-at-a-time peer for as long as it stays
//!   open.
//! - **Shutdown:** blocking calls wait at most a [`TICK`]
//!   (a socket timeout), so the thread notices the shutdown flag within a
//!   tick even while blocked in `accept()` or `read()`; it then answers the
//!   questions already received, closes, and returns the summary.
//!
//! [`converse`] is the whole blocking conversation: zen-utils'
//! [`zen_utils::protocol::conversation::Conversation`], which holds
//! the protocol, driven by a thread that blocks. srv-threaded runs the very
//! same function on many threads.
//!
//! ```text
//! cargo run --release -p srv-single -- -p 1060
//! ```

use std::io;
use std::net::TcpListener;

use socket2::SockRef;
use zen_utils::serve::listener::{AcceptErrors, AcceptFailure, ACCEPT_BACKOFF};
use zen_utils::serve::shutdown::TICK;
use zen_utils::{Config, Shutdown, Stats, Summary};

pub use zen_utils::serve::blocking::converse;

/// Serves clients one at a time on `listener` until `shutdown` is
/// triggered, then returns the summary.
pub fn serve(listener: TcpListener, config: Config, shutdown: Shutdown) -> io::Result<Summary> {
    let stats = Stats::new();
    let accept_errors = AcceptErrors::new();
    // accept() honours SO_RCVTIMEO on Linux: the wait for a client is cut
    // into ticks so that a shutdown is noticed while nobody connects.
    SockRef::from(&listener).set_read_timeout(Some(TICK))?;
    while !shutdown.is_triggered() {
        match listener.accept() {
            Ok((stream, peer)) => {
                stats.connection();
                // The one conversation: nothing else happens until it ends.
                converse(stream, peer, &config, &shutdown, &stats);
            }
            Err(error) => on_accept_error(&error, &accept_errors, &listener),
        }
    }
    Ok(stats.summary())
}

/// Logs a failed `accept()` (warnings about running out of resources at
/// most once per [`ACCEPT_WARNING_INTERVAL`](zen_utils::serve::listener::ACCEPT_WARNING_INTERVAL),
/// counted by `errors`, which every accepting thread shares) and, when
/// descriptors or memory ran out, pauses so that the loop does not spin
/// while nothing can change. The server goes on serving either way.
/// srv-threaded's workers use it too.
///
/// A listener handed down non-blocking (systemd's `NonBlocking=yes`, or
/// one shared with event-loop workers, which make it so) says
/// `WouldBlock` at once instead of waiting a tick: the thread then waits
/// for a connection for a tick itself, rather than spin. The listener's
/// mode is never changed: other processes share it.
pub fn on_accept_error(error: &io::Error, errors: &AcceptErrors, listener: &TcpListener) {
    if error.kind() == io::ErrorKind::WouldBlock {
        zen_utils::serve::listener::wait_for_connection(listener, TICK);
    } else if errors.on_error(error) == AcceptFailure::OutOfResources {
        std::thread::sleep(ACCEPT_BACKOFF);
    }
}

//! srv-uring: one thread, a raw io_uring completion loop.

mod buf_ring;
mod connection;
mod event_loop;
mod peer_call;
mod ring;
mod timers;
mod waker;

use std::io;
use std::net::TcpListener;

pub use ring::available;
use zen_utils::{Config, Shutdown, Summary};

/// How the loop accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// One multishot accept: one submission, a completion per connection.
    /// For a listener this process alone accepts on.
    Multishot,
    /// One accept at a time, submitted again after each completion. For a
    /// listener shared with other processes (`--processes` workers): a
    /// multishot accept waits on the listener *exclusively* and stays
    /// first in its wait queue, so the first worker to arm one would take
    /// every connection; a single accept leaves the queue when it
    /// completes and joins it again at the back, so the workers take
    /// turns.
    OneAtATime,
}

/// Serves every client from one thread on `listener` until `shutdown` is
/// triggered, then returns the summary. Fails at once, in one line, if
/// io_uring cannot be used here.
pub fn serve(listener: TcpListener, config: Config, shutdown: Shutdown) -> io::Result<Summary> {
    serve_with(listener, config, shutdown, Accept::Multishot)
}

/// [`serve`], with the way of accepting chosen.
pub fn serve_with(
    listener: TcpListener,
    config: Config,
    shutdown: Shutdown,
    accept: Accept,
) -> io::Result<Summary> {
    event_loop::EventLoop::new(listener, config, shutdown, accept)?.run()
}

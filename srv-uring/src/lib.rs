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

/// Serves every client from one thread on `listener` until `shutdown` is
/// triggered, then returns the summary. Fails at once, in one line, if
/// io_uring cannot be used here.
pub fn serve(listener: TcpListener, config: Config, shutdown: Shutdown) -> io::Result<Summary> {
    event_loop::EventLoop::new(listener, config, shutdown)?.run()
}

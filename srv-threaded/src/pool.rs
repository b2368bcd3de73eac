//! The book's design: a fixed pool of workers that all block in `accept()`
//! on the one listener, each serving its client to the end before it
//! accepts the next.

use std::io;
use std::net::TcpListener;
use std::thread;

use srv_single::{converse, on_accept_error};
use zen_utils::serve::listener::turn_away;

use crate::{serving_thread, Shared};

/// Starts `workers` threads and waits for all of them to stop after the
/// shutdown.
pub(crate) fn run(listener: &TcpListener, shared: &Shared, workers: usize) -> io::Result<()> {
    thread::scope(|scope| {
        for index in 0..workers {
            let spawned = serving_thread(format!("worker-{index}"))
                .spawn_scoped(scope, || work(listener, shared));
            if let Err(error) = spawned {
                // The workers already running would wait for a shutdown
                // nobody triggers, and the scope would wait for them
                // forever: trigger it, so they stop within a tick and the
                // error reaches the caller.
                shared.shutdown.trigger();
                return Err(error);
            }
        }
        // Leaving the scope joins every worker.
        Ok(())
    })
}

/// One worker's life: accept a client, serve it until it leaves, repeat.
fn work(listener: &TcpListener, shared: &Shared) {
    let Shared {
        config,
        shutdown,
        stats,
        ..
    } = shared;
    while !shutdown.is_triggered() {
        // Every idle worker blocks here on the same listener; the kernel
        // wakes one of them per connection, so they need no lock and no
        // queue of their own.
        match listener.accept() {
            Ok((stream, peer)) => {
                stats.connection();
                match shared.open.try_admit() {
                    // From here until the client leaves, this worker serves
                    // it alone and accepts no one: that is what makes the
                    // pool a limit on concurrency. The permit is its place
                    // under --max-conns, given back when it is dropped.
                    Some(_permit) => converse(stream, peer, config, shutdown, stats),
                    // Over --max-conns: answer busy and go back to accept()
                    // at once.
                    None => turn_away(&stream, peer, config, stats),
                }
            }
            Err(error) => on_accept_error(&error, &shared.accept_errors, listener),
        }
    }
}

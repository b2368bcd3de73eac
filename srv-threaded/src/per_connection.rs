//! `--per-connection`: one accept loop that starts a thread for each
//! client (the book's `ThreadingMixIn`), bounded by `--max-conns`.

use std::net::TcpListener;
use std::thread;

use srv_single::{converse, on_accept_error};
use zen_utils::serve::listener::{turn_away, ACCEPT_BACKOFF};

use crate::{serving_thread, Shared};

/// Accepts on the calling thread until the shutdown, then waits for every
/// connection's thread to finish.
pub(crate) fn run(listener: &TcpListener, shared: &Shared) {
    let Shared {
        config,
        shutdown,
        stats,
        accept_errors,
        open,
    } = shared;
    thread::scope(|scope| {
        while !shutdown.is_triggered() {
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(error) => {
                    on_accept_error(&error, accept_errors, listener);
                    continue;
                }
            };
            stats.connection();
            // The limit is checked before a thread exists, so a flood of
            // clients costs a busy answer each, never a thread each.
            let Some(permit) = open.try_admit() else {
                turn_away(&stream, peer, config, stats);
                continue;
            };
            // The new thread owns the connection and its place under the
            // limit (the permit); the place is freed when the conversation
            // ends.
            let spawned = serving_thread("connection".to_owned()).spawn_scoped(scope, move || {
                let _permit = permit;
                converse(stream, peer, config, shutdown, stats);
            });
            if let Err(error) = spawned {
                // The system is out of threads or memory. The connection
                // and its place were dropped with the closure, so the
                // client sees a close; pause as for any accept that ran
                // out of resources, rather than spin, and warn as rarely.
                stats.error(1);
                stats.closed();
                tracing::debug!("connection from {peer} closed: no thread to serve it: {error}");
                accept_errors.out_of_resources("starting a connection's thread", &error);
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
        // Leaving the scope joins every connection's thread: each sees the
        // shutdown within a tick, answers what it has received, and ends.
    });
}

//! The part of every server's `main` that is the same for all five: raise
//! the descriptor limit, bind (and prepare), install the signal handlers,
//! print `listening on IP:PORT`, serve, print the summary.

use std::io::{self, Write};
use std::net::TcpListener;
use std::process::ExitCode;

use crate::{Config, ServerArgs, Shutdown, Summary};

/// Runs a server binary to its end and returns its exit code.
///
/// `serve` is the crate's `serve` function with any model-specific options
/// bound in. `reuse_port` binds the listener with `SO_REUSEPORT`. Every
/// error is one line on stderr starting with `name`, and a non-zero exit.
pub fn run(
    name: &str,
    args: &ServerArgs,
    reuse_port: bool,
    serve: impl FnOnce(TcpListener, Config, Shutdown) -> io::Result<Summary>,
) -> ExitCode {
    run_prepared(name, args, reuse_port, Ok, serve)
}

/// [`run`], with a step between binding and announcing: `prepare` turns the
/// bound listener into whatever `serve` takes (srv-hybrid binds the rest of
/// its per-core listeners there).
///
/// `listening on` is printed only once `prepare` has succeeded, because
/// tools read that line as "ready": every socket that will accept must be
/// listening by then, or the first connections could be refused or all
/// land on one listener.
pub fn run_prepared<T>(
    name: &str,
    args: &ServerArgs,
    reuse_port: bool,
    prepare: impl FnOnce(TcpListener) -> io::Result<T>,
    serve: impl FnOnce(T, Config, Shutdown) -> io::Result<Summary>,
) -> ExitCode {
    let config = args.config();
    crate::log::init(config.verbosity);
    if let Err(error) = crate::listener::raise_fd_limit() {
        tracing::warn!("{name}: warning: cannot raise the file-descriptor limit: {error}");
    }
    let listener = match args.bind(reuse_port) {
        Ok(listener) => listener,
        Err(error) => return fail(name, &error),
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => return fail(name, &error),
    };
    let prepared = match prepare(listener) {
        Ok(prepared) => prepared,
        Err(error) => return fail(name, &error),
    };
    // The signal handlers come before the line: a tool that reads it may
    // send SIGTERM at once, and must get a graceful shutdown, not a death
    // by the signal's default action. A signal that comes before `serve`
    // runs is not lost: `serve` starts with the shutdown triggered.
    let shutdown = Shutdown::new();
    if let Err(error) = shutdown.trigger_on_signals() {
        return fail(name, &error);
    }
    // Tools start a server with `-p 0` and read this line to find the port,
    // so it is the first line on stdout and leaves at once.
    let mut stdout = io::stdout().lock();
    if let Err(error) = writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush()) {
        return fail(name, &error);
    }
    drop(stdout);
    tracing::info!("{name}: serving on {addr} ({config})");
    match serve(prepared, config.clone(), shutdown) {
        Ok(summary) => {
            tracing::info!("{name}: {summary}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(name, &error),
    }
}

fn fail(name: &str, error: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!("{name}: error: {error}");
    ExitCode::FAILURE
}

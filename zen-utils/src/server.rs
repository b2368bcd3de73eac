//! The part of every server's `main` that is the same for all five: raise
//! the descriptor limit, bind, print `listening on IP:PORT`, install the
//! signal handlers, serve, print the summary.

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
    let config = args.config();
    if let Err(error) = crate::listener::raise_fd_limit() {
        if config.log_warnings() {
            eprintln!("{name}: warning: cannot raise the file-descriptor limit: {error}");
        }
    }
    let listener = match args.bind(reuse_port) {
        Ok(listener) => listener,
        Err(error) => return fail(name, &error),
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => return fail(name, &error),
    };
    // Tools start a server with `-p 0` and read this line to find the port,
    // so it is the first line on stdout and leaves at once.
    let mut stdout = io::stdout().lock();
    if let Err(error) = writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush()) {
        return fail(name, &error);
    }
    drop(stdout);
    if config.log_warnings() {
        eprintln!("{name}: serving on {addr} ({config})");
    }
    let shutdown = Shutdown::new();
    if let Err(error) = shutdown.trigger_on_signals() {
        return fail(name, &error);
    }
    match serve(listener, config.clone(), shutdown) {
        Ok(summary) => {
            if config.log_warnings() {
                eprintln!("{name}: {summary}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => fail(name, &error),
    }
}

fn fail(name: &str, error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{name}: error: {error}");
    ExitCode::FAILURE
}

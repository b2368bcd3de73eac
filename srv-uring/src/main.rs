//! The srv-uring binary: parse flags, probe io_uring, bind, print
//! `listening on`, serve.

use std::process::ExitCode;

use clap::Parser;
use srv_uring::Accept;
use zen_utils::ServerArgs;

/// The zen aphorism server on one thread with an io_uring completion loop:
/// every client at once, several operations per system call.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli: Cli = zen_utils::deploy::server::parse();
    zen_utils::deploy::server::run_prepared(
        "srv-uring",
        &cli.server,
        false,
        // Probed before `listening on` is printed: where io_uring is
        // refused (a seccomp profile, kernel.io_uring_disabled), the server
        // says so in one line and exits non-zero, rather than announce
        // itself and fail.
        |listener| srv_uring::available().map(|()| listener),
        |listener, config, shutdown| {
            // A supervisor's workers share its listener: see `Accept`.
            let accept = if zen_utils::deploy::supervisor::is_worker() {
                Accept::OneAtATime
            } else {
                Accept::Multishot
            };
            srv_uring::serve_with(listener, config, shutdown, accept)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}

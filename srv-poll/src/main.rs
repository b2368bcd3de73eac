//! The srv-poll binary: parse flags, bind, print `listening on`, serve.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use srv_poll::PollMode;
use zen_utils::{OffloadArgs, ServerArgs};

/// The zen aphorism server on one thread with a readiness loop: every
/// client at once, as long as no answer needs the CPU for long.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    #[command(flatten)]
    offload: OffloadArgs,

    /// How sockets are registered with epoll: level (no re-arm per event),
    /// edge (must read until WouldBlock) or oneshot (one more epoll_ctl
    /// per event)
    #[arg(long, value_enum, default_value_t = Mode::Level)]
    poll_mode: Mode,
}

/// `--poll-mode`, as clap reads it.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Level,
    Edge,
    Oneshot,
}

fn main() -> ExitCode {
    let cli: Cli = zen_utils::deploy::server::parse();
    let mode = match cli.poll_mode {
        Mode::Level => PollMode::Level,
        Mode::Edge => PollMode::Edge,
        Mode::Oneshot => PollMode::Oneshot,
    };
    zen_utils::deploy::server::run(
        "srv-poll",
        &cli.server,
        false,
        |listener, config, shutdown| {
            srv_poll::serve_with_mode(listener, cli.offload.apply(config), shutdown, mode)
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

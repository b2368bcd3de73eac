//! The srv-poll binary: parse flags, bind, print `listening on`, serve.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use srv_poll::{PollMode, PollerKind};
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

    /// How sockets are registered with the poller: level (no re-arm per event),
    /// edge (must read until WouldBlock) or oneshot (one more epoll_ctl
    /// per event)
    #[arg(long, value_enum, default_value_t = Mode::Level)]
    poll_mode: Mode,

    /// What the loop waits on: polling (the portable polling crate: epoll
    /// here, kqueue, event ports or IOCP elsewhere; four more system calls
    /// per wait) or epoll (raw epoll, Linux only: one system call per wait)
    #[arg(long, value_enum, default_value_t = Backend::Polling)]
    poller: Backend,
}

/// `--poller`, as clap reads it.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Polling,
    Epoll,
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
    let poller = match cli.poller {
        Backend::Polling => PollerKind::Polling,
        Backend::Epoll => PollerKind::Epoll,
    };
    zen_utils::deploy::server::run(
        "srv-poll",
        &cli.server,
        false,
        |listener, config, shutdown| {
            srv_poll::serve_with(listener, cli.offload.apply(config), shutdown, poller, mode)
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

//! The srv-single binary: parse flags, bind, print `listening on`, serve.

use std::process::ExitCode;

use clap::Parser;
use zen_utils::ServerArgs;

/// The zen aphorism server, one client at a time: the simplest model, and
/// the one that starves every client but the first.
#[derive(Parser, Debug)]
// One connection at a time: no second connection is ever open to be
// turned away, so the shared flag's help says what it does here.
#[command(
    version,
    mut_arg("max_conns", |arg| arg.help(
        "Accepted, but never reached: srv-single serves one connection at a time, and every \
         other waits unanswered in the backlog (it never answers \"Error: server busy.\")"
    ))
)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli: Cli = zen_utils::deploy::server::parse();
    zen_utils::deploy::server::run("srv-single", &cli.server, false, srv_single::serve)
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

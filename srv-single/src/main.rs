//! The srv-single binary: parse flags, bind, print `listening on`, serve.

use std::process::ExitCode;

use clap::Parser;
use zen_utils::ServerArgs;

/// The zen aphorism server, one client at a time: the simplest model, and
/// the one that starves every client but the first.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    zen_utils::server::run("srv-single", &cli.server, false, srv_single::serve)
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

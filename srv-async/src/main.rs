//! The srv-async binary: parse flags, bind, print `listening on`, serve.

use std::process::ExitCode;

use clap::Parser;
use zen_utils::{OffloadArgs, ServerArgs};

/// The zen aphorism server on one thread, a tokio task per connection: the
/// book's asyncio server. Many clients at once, one core.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    #[command(flatten)]
    offload: OffloadArgs,
}

fn main() -> ExitCode {
    let cli: Cli = zen_utils::deploy::server::parse();
    zen_utils::deploy::server::run(
        "srv-async",
        &cli.server,
        false,
        |listener, config, shutdown| {
            srv_async::serve(listener, cli.offload.apply(config), shutdown)
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

//! The `client` binary: the library's command line, parsed and run.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    client::cli::Cli::parse().run()
}

//! The zen client: talks to any zen server (or, for `load`, any
//! request/reply TCP server) and reports what it saw.

mod ask;
mod target;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Ask a zen server questions, the way the book's client does.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ask N different random questions, one at a time, and print each
    /// question with its answer (the book's client)
    Ask(ask::AskArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ask(args) => ask::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, whatever went wrong: the chain of causes joined by ": ".
            eprintln!("client: {error:#}");
            ExitCode::FAILURE
        }
    }
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

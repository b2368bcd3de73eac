//! The srv-threaded binary: parse flags, bind, print `listening on`, serve.

use std::process::ExitCode;

use clap::builder::RangedU64ValueParser;
use clap::Parser;
use srv_threaded::{Mode, DEFAULT_WORKERS};
use zen_utils::ServerArgs;

/// The zen aphorism server on threads: a pool of workers that all block in
/// accept() on one listener (the book's design), or one thread per client.
#[derive(Parser, Debug)]
// The pool serves at most --workers connections at once, so the shared
// flag's help says when it matters here.
#[command(
    version,
    mut_arg("max_conns", |arg| arg.help(
        "Most connections served at once; one more is answered \"Error: server busy.\" and \
         closed (in the pool, only when below --workers: otherwise clients beyond the workers \
         wait in the backlog)"
    ))
)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// Threads in the pool, each serving one client at a time from accept
    /// to close. The pool is a rate limiter: clients beyond it wait in the
    /// backlog unanswered, and with blocking waits throughput is about
    /// workers / wait time. The default serves the 50-64 clients of the
    /// experiments
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WORKERS,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    workers: usize,

    /// Start one thread per connection instead of a pool, bounded by
    /// --max-conns
    #[arg(long, conflicts_with = "workers")]
    per_connection: bool,
}

fn main() -> ExitCode {
    let cli: Cli = zen_utils::deploy::server::parse();
    let mode = if cli.per_connection {
        Mode::PerConnection
    } else {
        Mode::Pool {
            workers: cli.workers,
        }
    };
    zen_utils::deploy::server::run(
        "srv-threaded",
        &cli.server,
        false,
        |listener, config, shutdown| srv_threaded::serve(listener, config, shutdown, mode),
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

    #[test]
    fn chooses_the_mode_from_the_flags() {
        let cli = Cli::try_parse_from(["srv-threaded"]).unwrap();
        assert_eq!((cli.workers, cli.per_connection), (DEFAULT_WORKERS, false));
        let cli = Cli::try_parse_from(["srv-threaded", "--per-connection"]).unwrap();
        assert!(cli.per_connection);
        for bad in [
            &["srv-threaded", "--workers", "0"][..],
            &["srv-threaded", "--workers", "8", "--per-connection"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?} should fail");
        }
    }
}

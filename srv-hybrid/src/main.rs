//! The srv-hybrid binary: parse flags, bind every listener and build every
//! runtime, print `listening on`, serve.

use std::num::NonZeroUsize;
use std::process::ExitCode;

use clap::Parser;
use srv_hybrid::{HybridOptions, Runtime};
use zen_utils::{OffloadArgs, ServerArgs};

const NAME: &str = "srv-hybrid";

/// The zen aphorism server on many threads: srv-async's tasks on tokio's
/// work-stealing runtime, or on one single-threaded runtime per core.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// Threads that serve connections, at most 1024 [default: the number
    /// of CPUs]
    #[arg(long, value_name = "N", value_parser = parse_workers)]
    workers: Option<NonZeroUsize>,

    /// How the threads share the connections
    #[arg(long, value_enum, default_value_t = Runtime::WorkStealing)]
    runtime: Runtime,

    #[command(flatten)]
    offload: OffloadArgs,
}

fn main() -> ExitCode {
    let cli: Cli = zen_utils::deploy::server::parse();
    let per_core = cli.runtime == Runtime::PerCore;
    let options = HybridOptions {
        workers: cli.workers.unwrap_or_else(srv_hybrid::default_workers),
        runtime: cli.runtime,
        backlog: cli.server.backlog,
    };
    // Per core, the first listener is bound with SO_REUSEPORT so that the
    // others can join its group; all of them are bound before `listening on`.
    zen_utils::deploy::server::run_prepared(
        NAME,
        &cli.server,
        per_core,
        |listener| srv_hybrid::prepare(listener, options),
        |prepared, config, shutdown| {
            srv_hybrid::serve_prepared(prepared, cli.offload.apply(config), shutdown)
        },
    )
}

/// `--workers`: from 1 to [`srv_hybrid::MAX_WORKERS`].
fn parse_workers(text: &str) -> Result<NonZeroUsize, String> {
    let workers: NonZeroUsize = text.parse().map_err(|error| format!("{error}"))?;
    if workers.get() > srv_hybrid::MAX_WORKERS {
        return Err(format!("must be at most {}", srv_hybrid::MAX_WORKERS));
    }
    Ok(workers)
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
    fn defaults_to_work_stealing_on_every_cpu() {
        let cli = Cli::try_parse_from([NAME]).unwrap();
        assert_eq!(cli.runtime, Runtime::WorkStealing);
        assert_eq!(cli.workers, None);
        let cli = Cli::try_parse_from([NAME, "--runtime", "per-core", "--workers", "3"]).unwrap();
        assert_eq!(cli.runtime, Runtime::PerCore);
        assert_eq!(cli.workers, NonZeroUsize::new(3));
        assert!(Cli::try_parse_from([NAME, "--workers", "0"]).is_err());
        assert!(Cli::try_parse_from([NAME, "--workers", "1025"]).is_err());
        assert!(Cli::try_parse_from([NAME, "--workers", "1024"]).is_ok());
    }
}

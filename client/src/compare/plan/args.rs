//! `client compare`'s flags: what the command line asks of the plan.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use zen_utils::duration::parse_duration;

use super::lineup::DEFAULT_POOL_WORKERS;
use crate::flags::{positive, positive_duration};

#[derive(Args, Debug)]
pub(crate) struct CompareArgs {
    /// Shorter runs (0.3 s each, 2,000 idle connections for C10K): about a
    /// minute and a half in all on 2 cores. Without it, 2 s runs and 10,000
    /// idle connections: about five and a half minutes
    #[arg(long)]
    pub(crate) quick: bool,

    /// Run only these experiments: one-client, many-clients, slow-backend,
    /// cpu-bound, blocking, pipelining, slow-clients, c10k, work-stealing,
    /// short-connections, dead-server, servers-ask-servers
    #[arg(long, value_name = "EXP[,EXP]", value_delimiter = ',')]
    pub(crate) only: Vec<String>,

    /// Run only these servers: a binary (srv-single, srv-threaded,
    /// srv-poll, srv-async, srv-hybrid, srv-uring, redis-server) or one
    /// mode (srv-threaded-pool, srv-threaded-per-conn, srv-poll-epoll,
    /// srv-poll-offload, srv-async-offload, srv-hybrid-ws,
    /// srv-hybrid-per-core) [default:
    /// all, and redis-server if it is on the PATH]
    #[arg(long, value_name = "NAME[,NAME]", value_delimiter = ',')]
    pub(crate) servers: Vec<String>,

    /// Write results.json, report.md, report.html and the SVG charts into
    /// this directory
    #[arg(long, value_name = "DIR", default_value = "zen-report")]
    pub(crate) out: PathBuf,

    /// Where the server binaries are [default: the directory of this
    /// client binary, where `cargo build --release` puts them all]
    #[arg(long, value_name = "DIR")]
    pub(crate) bin_dir: Option<PathBuf>,

    /// Measure each run for this long, instead of --quick's or the full
    /// run's
    #[arg(long, value_name = "DUR", value_parser = positive_duration)]
    pub(crate) duration: Option<Duration>,

    /// Load each server this long before measuring, instead of --quick's
    /// or the full run's
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub(crate) warmup: Option<Duration>,

    /// Threads in srv-threaded's pool: fewer than the 64 connections of
    /// the many-clients experiments, so that the pool's limit shows
    #[arg(long, value_name = "N", default_value_t = DEFAULT_POOL_WORKERS, value_parser = positive)]
    pub(crate) pool_workers: usize,

    /// Idle connections in the C10K experiment [default: 10000, or 2000
    /// with --quick]
    #[arg(long, value_name = "N", value_parser = positive)]
    pub(crate) c10k: Option<usize>,
}

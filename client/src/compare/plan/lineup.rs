//! Who is compared: every server binary in every mode worth seeing, and
//! `redis-server` as the reference where it is installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// The pool's size in the comparison: smaller than the 64 connections of
/// the many-clients experiments, so that the pool shows itself as the rate
/// limiter it is (16 clients served, 48 waiting), where the server's own
/// default of 64 workers would hide it.
pub(crate) const DEFAULT_POOL_WORKERS: usize = 16;

/// One server in one mode: a row of every table.
#[derive(Debug, Clone)]
pub(crate) struct Contender {
    /// What `--servers` and the JSON call it: `srv-threaded-pool`.
    pub(crate) id: &'static str,
    /// The binary: `srv-threaded`.
    pub(crate) bin: &'static str,
    /// The row's name in tables and charts: `srv-threaded pool:16`.
    pub(crate) label: String,
    /// Its model-specific flags.
    pub(crate) args: Vec<String>,
    pub(crate) kind: Kind,
    /// The experiments it takes part in, by key, for a variant worth
    /// seeing only there; `None`: every one its kind takes part in.
    pub(crate) only_in: Option<&'static [&'static str]>,
}

impl Contender {
    /// Whether it has a row in experiment `key`, as far as `only_in` says.
    pub(crate) fn takes_part_in(&self, key: &str) -> bool {
        self.only_in.is_none_or(|keys| keys.contains(&key))
    }
}

/// What a contender is, as far as the experiments care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One conversation at a time (srv-single).
    OneAtATime,
    /// A fixed pool of threads, each serving one connection at a time.
    Pool,
    /// Serves every connection at once (a thread each, or an event loop).
    Concurrent,
    /// srv-hybrid: the contenders of the work-stealing experiment.
    Hybrid,
    /// An event loop with `--offload` helpers: the cure, shown beside the
    /// disease in the experiments of work that holds the thread (4 and 5).
    Offload,
    /// `redis-server`, answering `PING` with `+PONG`.
    Redis,
}

/// The helpers of the `--offload` rows: the 1,600 answers/s of 16
/// sleeps of 10 ms at a time, where the loop alone makes 100.
pub(crate) const OFFLOAD_HELPERS: usize = 16;

/// The reference server's binary.
pub(crate) const REDIS: &str = "redis-server";

/// Every contender, in the course's order: from the simplest model to the
/// most parallel, then the reference.
pub(crate) fn everyone(pool_workers: usize) -> Vec<Contender> {
    let contender = |id, bin, label: &str, args: &[&str], kind| Contender {
        id,
        bin,
        label: label.to_owned(),
        args: args.iter().map(|&arg| arg.to_owned()).collect(),
        kind,
        only_in: None,
    };
    let pool = pool_workers.to_string();
    let helpers = OFFLOAD_HELPERS.to_string();
    let offloaded = |id, bin: &'static str| Contender {
        label: format!("{bin} --offload {OFFLOAD_HELPERS}"),
        ..contender(id, bin, "", &["--offload", &helpers], Kind::Offload)
    };
    vec![
        contender(
            "srv-single",
            "srv-single",
            "srv-single",
            &[],
            Kind::OneAtATime,
        ),
        Contender {
            label: format!("srv-threaded pool:{pool_workers}"),
            ..contender(
                "srv-threaded-pool",
                "srv-threaded",
                "",
                &["--workers", &pool],
                Kind::Pool,
            )
        },
        contender(
            "srv-threaded-per-conn",
            "srv-threaded",
            "srv-threaded per-conn",
            &["--per-connection"],
            Kind::Concurrent,
        ),
        contender("srv-poll", "srv-poll", "srv-poll", &[], Kind::Concurrent),
        // The raw epoll loop beside the portable default, where the system
        // calls per answer show: one busy client, and many.
        Contender {
            only_in: Some(&["one-client", "many-clients"]),
            ..contender(
                "srv-poll-epoll",
                "srv-poll",
                "srv-poll --poller epoll",
                &["--poller", "epoll"],
                Kind::Concurrent,
            )
        },
        offloaded("srv-poll-offload", "srv-poll"),
        contender("srv-async", "srv-async", "srv-async", &[], Kind::Concurrent),
        offloaded("srv-async-offload", "srv-async"),
        contender(
            "srv-hybrid-ws",
            "srv-hybrid",
            "srv-hybrid work-stealing",
            &["--runtime", "work-stealing"],
            Kind::Hybrid,
        ),
        contender(
            "srv-hybrid-per-core",
            "srv-hybrid",
            "srv-hybrid per-core",
            &["--runtime", "per-core"],
            Kind::Hybrid,
        ),
        contender("srv-uring", "srv-uring", "srv-uring", &[], Kind::Concurrent),
        contender(REDIS, REDIS, "redis-server (reference)", &[], Kind::Redis),
    ]
}

/// The contenders `--servers` asks for (a name is an id or a binary:
/// `srv-threaded` is both of its modes), or by default every zen server
/// and redis if `redis_installed`.
pub(crate) fn select(
    all: Vec<Contender>,
    names: &[String],
    redis_installed: bool,
) -> anyhow::Result<Vec<Contender>> {
    if names.is_empty() {
        return Ok(all
            .into_iter()
            .filter(|c| c.kind != Kind::Redis || redis_installed)
            .collect());
    }
    for name in names {
        if !all.iter().any(|c| c.id == name || c.bin == name) {
            let known: Vec<&str> = all.iter().map(|c| c.id).collect();
            bail!("no server called {name:?} (known: {})", known.join(", "));
        }
    }
    let chosen: Vec<Contender> = all
        .into_iter()
        .filter(|c| names.iter().any(|name| c.id == name || c.bin == name))
        .collect();
    if !redis_installed && chosen.iter().any(|c| c.kind == Kind::Redis) {
        bail!(
            "{REDIS} was asked for but is not on the PATH (Debian: apt-get install redis-server)"
        );
    }
    Ok(chosen)
}

/// Where the server binaries are: `--bin-dir`, or the directory of the
/// running `client`, where cargo puts every binary of the workspace.
pub(crate) fn bin_dir(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir.to_owned());
    }
    let exe = std::env::current_exe()?;
    match exe.parent() {
        Some(dir) => Ok(dir.to_owned()),
        None => bail!("cannot tell the directory of {}", exe.display()),
    }
}

/// The path of each zen binary the contenders need, or one line saying
/// what to do when one is missing.
pub(crate) fn check_binaries(contenders: &[Contender], dir: &Path) -> anyhow::Result<()> {
    for contender in contenders.iter().filter(|c| c.kind != Kind::Redis) {
        let path = dir.join(contender.bin);
        if !path.is_file() {
            bail!(
                "{} not found in {}: run `cargo build --release` first (or pass --bin-dir DIR)",
                contender.bin,
                dir.display()
            );
        }
    }
    Ok(())
}

/// Where `redis-server` is on the PATH, if it is.
pub(crate) fn find_on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(bin))
        .find(|candidate| candidate.is_file())
}

/// Fails unless `bin` can be started: used for redis, whose absence is not
/// an error but whose brokenness is.
pub(crate) fn ensure_runs(bin: &Path) -> anyhow::Result<()> {
    let status = Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !status.success() {
        bail!("{} --version failed ({status})", bin.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(contenders: &[Contender]) -> Vec<&'static str> {
        contenders.iter().map(|c| c.id).collect()
    }

    #[test]
    fn a_binary_name_selects_each_of_its_modes() {
        let chosen = select(everyone(16), &["srv-threaded".to_owned()], true).unwrap();
        assert_eq!(ids(&chosen), ["srv-threaded-pool", "srv-threaded-per-conn"]);
        let chosen = select(everyone(16), &["srv-hybrid-per-core".to_owned()], true).unwrap();
        assert_eq!(ids(&chosen), ["srv-hybrid-per-core"]);
        assert_eq!(chosen[0].args, ["--runtime", "per-core"]);
    }

    #[test]
    fn redis_joins_by_default_only_when_installed() {
        // Nine servers and modes, two --offload rows, redis.
        assert_eq!(select(everyone(16), &[], true).unwrap().len(), 12);
        let without = select(everyone(16), &[], false).unwrap();
        assert!(without.iter().all(|c| c.kind != Kind::Redis));
        assert!(select(everyone(16), &["redis-server".to_owned()], false).is_err());
        assert!(select(everyone(16), &["srv-nope".to_owned()], true).is_err());
    }

    #[test]
    fn srv_poll_on_raw_epoll_is_only_in_the_first_two_experiments() {
        let all = everyone(16);
        let epoll = all.iter().find(|c| c.id == "srv-poll-epoll").unwrap();
        assert_eq!(epoll.args, ["--poller", "epoll"]);
        let experiments = super::super::experiments::all(&super::super::experiments::Sizes::QUICK);
        let with: Vec<usize> = experiments
            .iter()
            .filter(|e| epoll.takes_part_in(e.key))
            .map(|e| e.number)
            .collect();
        assert_eq!(with, [1, 2]);
        assert!(all
            .iter()
            .filter(|c| c.id != "srv-poll-epoll")
            .all(|c| c.only_in.is_none()));
    }

    #[test]
    fn the_pool_label_says_its_size() {
        let pool = &everyone(8)[1];
        assert_eq!(pool.label, "srv-threaded pool:8");
        assert_eq!(pool.args, ["--workers", "8"]);
    }
}

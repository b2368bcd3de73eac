//! The plan: what a comparison runs, as the command line (`args.rs`) asks,
//! decided and checked before any server starts. Who is compared
//! (`lineup.rs`), the ten experiments that run every server
//! (`experiments.rs`) and what their tables should show (`checks.rs`),
//! and the experiments run apart, whose rows are not one server each
//! (`dead_server.rs`, `servers_ask_servers.rs`). Nothing here starts a
//! server: trying srv-uring is the caller's, handed in.

mod args;
pub(crate) mod checks;
pub(crate) mod dead_server;
pub(crate) mod experiments;
pub(crate) mod lineup;
pub(crate) mod servers_ask_servers;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

pub(crate) use args::CompareArgs;
use experiments::{Experiment, Sizes, Take};
use lineup::{Contender, Kind, REDIS};

/// Everything a comparison will run.
pub(crate) struct Plan {
    /// `--quick`: the experiments run apart size themselves by it.
    pub(crate) quick: bool,
    pub(crate) sizes: Sizes,
    /// Where the zen server binaries are.
    pub(crate) bin_dir: PathBuf,
    /// `redis-server`, where it is installed and runs.
    pub(crate) redis: Option<PathBuf>,
    /// Who is compared: a row of every table.
    pub(crate) contenders: Vec<Contender>,
    /// The per-server experiments `--only` asks for, in the README's order.
    pub(crate) experiments: Vec<Planned>,
    /// The experiments run apart that `--only` asks for, after the others.
    pub(crate) apart: Vec<Apart>,
}

/// One per-server experiment and its rows: who runs, and who is skipped
/// and why (a contender it is not about has no row).
pub(crate) struct Planned {
    pub(crate) experiment: Experiment,
    pub(crate) rows: Vec<(Contender, Take)>,
}

/// An experiment with its own shape, run after the others: its rows are
/// ways to reach three backends, or pairs of servers, not one server each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Apart {
    /// Experiment 11, with backends of this binary.
    DeadServer { model: &'static str },
    /// Experiment 12: a pair of every zen model in the lineup.
    ServersAskServers,
}

impl Apart {
    /// Its name for `--only` and in the JSON.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::DeadServer { .. } => dead_server::KEY,
            Self::ServersAskServers => servers_ask_servers::KEY,
        }
    }
}

impl Plan {
    /// The plan that `args` ask for. Unknown names, a missing binary and
    /// an `--out` that cannot be written are refused here, before any
    /// server starts; then `uring_refusal` tries srv-uring, which a
    /// kernel or a container's seccomp profile may refuse io_uring: once,
    /// and its rows then say why not.
    pub(crate) fn make(
        args: &CompareArgs,
        uring_refusal: impl FnOnce(&Path) -> Option<&'static str>,
    ) -> anyhow::Result<Self> {
        let base = if args.quick {
            Sizes::QUICK
        } else {
            Sizes::FULL
        };
        let sizes = Sizes {
            duration: args.duration.unwrap_or(base.duration),
            warmup: args.warmup.unwrap_or(base.warmup),
            c10k: args.c10k.unwrap_or(base.c10k),
            pool_workers: args.pool_workers,
        };
        let experiments = select_experiments(experiments::all(&sizes), &args.only)?;
        let redis = match lineup::find_on_path(REDIS) {
            Some(path) => lineup::ensure_runs(&path).map(|()| path).ok(),
            None => None,
        };
        let contenders = lineup::select(
            lineup::everyone(sizes.pool_workers),
            &args.servers,
            redis.is_some(),
        )?;
        let bin_dir = lineup::bin_dir(args.bin_dir.as_deref())?;
        lineup::check_binaries(&contenders, &bin_dir)?;
        check_writable(&args.out)?;

        let uring_refused = contenders
            .iter()
            .find(|contender| contender.bin == "srv-uring" && !experiments.is_empty())
            .and_then(|contender| uring_refusal(&bin_dir.join(contender.bin)));
        let experiments = experiments
            .into_iter()
            .map(|experiment| Planned {
                rows: rows(&experiment, &contenders, &sizes, uring_refused),
                experiment,
            })
            .collect();
        // Experiments 11 and 12 run apart: their rows are ways to reach
        // three backends, and pairs of servers, not one server each.
        let wanted = |key: &str| wanted(&args.only, key);
        let mut apart = Vec::new();
        if wanted(dead_server::KEY) {
            // The backends are one model: the first server named, srv-poll
            // by default.
            let model = contenders
                .iter()
                .find(|contender| contender.kind != Kind::Redis)
                .filter(|_| !args.servers.is_empty())
                .map_or("srv-poll", |contender| contender.bin);
            apart.push(Apart::DeadServer { model });
        }
        if wanted(servers_ask_servers::KEY) {
            apart.push(Apart::ServersAskServers);
        }
        Ok(Self {
            quick: args.quick,
            sizes,
            bin_dir,
            redis,
            contenders,
            experiments,
            apart,
        })
    }

    /// The runs in all: a fresh server for each of a per-server
    /// experiment, each way of experiment 11 and each pair of experiment 12.
    pub(crate) fn runs(&self) -> usize {
        let per_server = self
            .experiments
            .iter()
            .flat_map(|planned| &planned.rows)
            .filter(|(_, take)| *take == Take::Run)
            .count();
        per_server
            + self
                .apart
                .iter()
                .map(|&apart| self.runs_apart(apart))
                .sum::<usize>()
    }

    /// The runs of an experiment run apart.
    pub(crate) fn runs_apart(&self, apart: Apart) -> usize {
        match apart {
            Apart::DeadServer { .. } => dead_server::pairs().len(),
            Apart::ServersAskServers => self.pairs().count(),
        }
    }

    /// The contenders of experiment 12: one pair of each.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = &Contender> {
        self.contenders
            .iter()
            .filter(|contender| servers_ask_servers::takes_part(contender))
    }

    /// What it will run, in a line: the experiments, the servers that take
    /// part in any of them, and the runs.
    pub(crate) fn summary(&self) -> String {
        let mut servers: Vec<&str> = self
            .experiments
            .iter()
            .flat_map(|planned| planned.rows.iter().map(|(contender, _)| contender.id))
            .collect();
        for &apart in &self.apart {
            match apart {
                Apart::DeadServer { model } => servers.push(model),
                Apart::ServersAskServers => servers.extend(self.pairs().map(|c| c.id)),
            }
        }
        servers.sort_unstable();
        servers.dedup();
        let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        format!(
            "client compare: {}, {}, {}; servers from {}",
            count(self.experiments.len() + self.apart.len(), "experiment"),
            count(servers.len(), "server"),
            count(self.runs(), "run"),
            self.bin_dir.display()
        )
    }
}

/// The rows of `experiment`: every contender it is about, srv-uring
/// skipped with the reason where io_uring was refused.
fn rows(
    experiment: &Experiment,
    contenders: &[Contender],
    sizes: &Sizes,
    uring_refused: Option<&'static str>,
) -> Vec<(Contender, Take)> {
    contenders
        .iter()
        .filter_map(|contender| {
            if !contender.takes_part_in(experiment.key) {
                return None;
            }
            let take = match ((experiment.takes)(contender, sizes), uring_refused) {
                (Take::Absent, _) => return None,
                (Take::Run, Some(why)) if contender.bin == "srv-uring" => Take::Skip(why),
                (take, _) => take,
            };
            Some((contender.clone(), take))
        })
        .collect()
}

/// The per-server experiments `--only` names, in their own order. A name
/// that is no experiment's key is refused with every key, those of the
/// experiments run apart included.
fn select_experiments(all: Vec<Experiment>, only: &[String]) -> anyhow::Result<Vec<Experiment>> {
    let keys: Vec<&str> = all
        .iter()
        .map(|experiment| experiment.key)
        .chain([dead_server::KEY, servers_ask_servers::KEY])
        .collect();
    for name in only {
        if !keys.contains(&name.as_str()) {
            bail!("no experiment called {name:?} (known: {})", keys.join(", "));
        }
    }
    Ok(all
        .into_iter()
        .filter(|experiment| wanted(only, experiment.key))
        .collect())
}

/// Whether `--only` (empty: everything) asks for the experiment `key`.
fn wanted(only: &[String], key: &str) -> bool {
    only.is_empty() || only.iter().any(|name| name == key)
}

/// Creates `out` and makes sure a file can be written there, before any
/// server is started: the report is written at the end, and a comparison
/// takes minutes whose results would all be lost.
fn check_writable(out: &Path) -> anyhow::Result<()> {
    let cannot = || format!("cannot write the report in {}", out.display());
    std::fs::create_dir_all(out).with_context(cannot)?;
    let probe = out.join(format!(".client-compare-{}", std::process::id()));
    let written = std::fs::write(&probe, b"");
    let _ = std::fs::remove_file(&probe);
    written.with_context(cannot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_known_experiments() {
        let all = experiments::all(&Sizes::QUICK);
        let chosen =
            select_experiments(all.clone(), &["c10k".to_owned(), "one-client".to_owned()]).unwrap();
        let keys: Vec<&str> = chosen.iter().map(|e| e.key).collect();
        assert_eq!(keys, ["one-client", "c10k"]);
        assert!(select_experiments(all, &["c100k".to_owned()]).is_err());
    }

    /// A plan of these experiments, over every contender but redis.
    fn plan_of(experiments: Vec<Experiment>, apart: Vec<Apart>) -> Plan {
        let contenders: Vec<Contender> = lineup::everyone(16)
            .into_iter()
            .filter(|contender| contender.kind != Kind::Redis)
            .collect();
        let sizes = Sizes::QUICK;
        let experiments = experiments
            .into_iter()
            .map(|experiment| Planned {
                rows: rows(&experiment, &contenders, &sizes, None),
                experiment,
            })
            .collect();
        Plan {
            quick: true,
            sizes,
            bin_dir: PathBuf::from("/bin"),
            redis: None,
            contenders,
            experiments,
            apart,
        }
    }

    #[test]
    fn the_summary_counts_the_experiments_run_apart() {
        let dead = plan_of(Vec::new(), vec![Apart::DeadServer { model: "srv-poll" }]);
        assert_eq!(
            dead.summary(),
            "client compare: 1 experiment, 1 server, 10 runs; servers from /bin"
        );
        // srv-single, the pool, per-conn, srv-poll, srv-async, both
        // srv-hybrids and srv-uring: a pair each.
        let peers = plan_of(Vec::new(), vec![Apart::ServersAskServers]);
        assert_eq!(
            peers.summary(),
            "client compare: 1 experiment, 8 servers, 8 runs; servers from /bin"
        );
        let one_client = experiments::all(&Sizes::QUICK)
            .into_iter()
            .filter(|experiment| experiment.key == "one-client")
            .collect();
        // One client: the eight above and srv-poll on raw epoll, then
        // experiment 11's three kinds × three ways and its stuck registry
        // pair without the health probe.
        let both = plan_of(one_client, vec![Apart::DeadServer { model: "srv-poll" }]);
        assert_eq!(
            both.summary(),
            "client compare: 2 experiments, 9 servers, 19 runs; servers from /bin"
        );
    }
}

//! What a comparison found, as written to `results.json`: the machine, the
//! settings, and for every experiment every server's full load report,
//! its CPU time and memory, how it exited, and the checks judged on it;
//! experiments 11 and 12, whose rows are not one server each, in their
//! own shapes. Every type that goes into the JSON is here, and nothing
//! else: the plan, the runners and the report all read and write these,
//! and this file imports none of them (a leaf).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::report::{HoldReport, LoadReport};

/// How many nice levels below the load generator (this process) every
/// server runs (as far as nice goes: 19 is the lowest). They share the
/// machine's cores, and the kernel lets a thread that has just woken
/// preempt the one running on its core: at
/// equal priority, every question wakes a server thread that takes the
/// load generator's core from it, and a server with two or more threads
/// then measures the load generator being starved, not itself (the
/// README's performance section gives the figures: a multi-threaded
/// server gains much from this, a single-threaded one nothing). On its own
/// machine, as in real use, a load generator is preempted by no server.
/// Lowering a child's priority needs no privilege.
pub(crate) const SERVER_NICE: i32 = 10;

/// Everything `client compare` measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Results {
    pub(crate) machine: Machine,
    pub(crate) settings: Settings,
    pub(crate) experiments: Vec<ExperimentResult>,
    /// One client's round trip, from experiment 1, if it ran.
    pub(crate) round_trip: Option<RoundTrip>,
    /// Experiment 11, three ways to survive a failed server, if it ran.
    pub(crate) dead_server: Option<DeadServerResult>,
    /// Experiment 12, servers that ask servers, if it ran.
    pub(crate) ask_peers: Option<ServersAskServersResult>,
    /// Stopped by Ctrl-C or SIGTERM: the runs after that are missing.
    pub(crate) interrupted: bool,
}

/// Where and when it ran: which model wins and who is served carry over
/// to other machines; absolute rates, and ratios that hang on the round
/// trip, wake-up latency or the number of cores, do not.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// UTC, `2025-01-31 14:02 UTC`.
    pub(crate) date: String,
    pub(crate) unix_time: u64,
    /// CPUs this process may run on.
    pub(crate) cores: usize,
    /// `uname -r`.
    pub(crate) kernel: String,
    /// The CPU's model name, from /proc/cpuinfo.
    pub(crate) cpu: Option<String>,
}

/// How the comparison was run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    pub(crate) quick: bool,
    /// The measured window of each run, seconds.
    pub(crate) duration_seconds: f64,
    pub(crate) warmup_seconds: f64,
    pub(crate) pool_workers: usize,
    pub(crate) c10k_connections: usize,
    /// Where the server binaries came from.
    pub(crate) bin_dir: String,
    /// The load generator's threads (on the same machine as the servers).
    pub(crate) load_threads: usize,
    /// `client load --timeout`: longer than any run, so that a connection
    /// left waiting (by srv-single, by the pool) is reported unserved
    /// rather than failed.
    pub(crate) load_timeout_seconds: f64,
}

/// One experiment's runs.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExperimentResult {
    pub(crate) number: usize,
    pub(crate) key: String,
    pub(crate) title: String,
    pub(crate) lesson: String,
    pub(crate) runs: Vec<RunResult>,
    /// What the table should show, and whether it did on this run.
    pub(crate) checks: Vec<CheckResult>,
    /// The rates the cost models predict for some rows, beside those
    /// measured; empty when experiment 1 did not run (no round trip to
    /// start from) or the experiment has no model.
    pub(crate) predictions: Vec<PredictionResult>,
}

/// One client's round trip on this machine, from experiment 1: where
/// every prediction starts.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RoundTrip {
    /// The mean time from question sent to answer read, µs (1 ÷ the
    /// one client's answers/s).
    pub(crate) us: f64,
    /// The row it was measured on (srv-single's, if it ran).
    pub(crate) server: String,
}

/// A row's rate as its cost model predicts it, and as measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PredictionResult {
    pub(crate) server: String,
    pub(crate) label: String,
    /// The model as a formula: `16 workers ÷ (10ms + round trip)`.
    pub(crate) formula: String,
    pub(crate) predicted_rps: f64,
    /// `None` when the row did not run.
    pub(crate) measured_rps: Option<f64>,
}

/// One server (one row) in one experiment.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunResult {
    /// The contender's id: `srv-threaded-pool`.
    pub(crate) server: String,
    /// The row's name: `srv-threaded pool:16`.
    pub(crate) label: String,
    pub(crate) status: Status,
    /// Why it was skipped, or what failed.
    pub(crate) note: Option<String>,
    /// The server's command line.
    pub(crate) server_command: String,
    /// The load's command line, less the target.
    pub(crate) load_command: String,
    /// The command line of a load run alongside the measured one, if any.
    pub(crate) background_command: Option<String>,
    /// `client load`'s full report.
    pub(crate) load: Option<LoadReport>,
    /// The report of the load run alongside, if any.
    pub(crate) background: Option<LoadReport>,
    /// `client hold`'s report on the idle connections, if any were held.
    pub(crate) hold: Option<HoldReport>,
    pub(crate) server_usage: Option<ServerUsage>,
    /// How the server ended after SIGTERM.
    pub(crate) exit: Option<Exit>,
}

/// Whether a row was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Ok,
    Skipped,
    Failed,
}

/// The server process's costs, from /proc.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct ServerUsage {
    /// User plus system CPU time in the measured window, all threads
    /// (counted by the kernel in clock ticks, usually 10 ms).
    pub(crate) cpu_seconds: f64,
    /// `cpu_seconds` per answer the load counted, in microseconds; `None`
    /// when nothing was answered.
    pub(crate) cpu_us_per_answer: Option<f64>,
    /// Context switches of the server's threads in the measured window,
    /// voluntary plus involuntary (/proc/PID/task/*/status, the threads
    /// alive at the window's end).
    pub(crate) context_switches: u64,
    /// `context_switches` per answer the load counted; `None` when
    /// nothing was answered. Below 1 when one wake-up serves several
    /// answers (an event loop's batch), 1 or more when every answer
    /// wakes a thread (or two: a pool's worker and whoever hands it on).
    pub(crate) switches_per_answer: Option<f64>,
    /// Peak resident memory (`VmHWM`) over the server's life, KiB.
    pub(crate) peak_rss_kib: u64,
    /// Resident memory at the end of the load (`VmRSS`), KiB.
    pub(crate) rss_kib: u64,
    /// With idle connections held for memory (C10K).
    pub(crate) idle: Option<IdleMemory>,
    /// CPU used in the window by every other process on the machine (not
    /// the server, not this client), in cores: near 0 on a quiet machine.
    /// More than a few tenths means the run competed with something else.
    pub(crate) others_cores: f64,
}

/// What idle connections cost the server.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct IdleMemory {
    /// Connections the server had accepted (its new file descriptors).
    pub(crate) accepted: usize,
    /// How long from the first connect to the last accept seen.
    pub(crate) accept_seconds: f64,
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_after_kib: u64,
    /// `(after - before) / accepted`, in bytes.
    pub(crate) bytes_per_connection: Option<f64>,
}

/// A check evaluated, as written to results.json.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckResult {
    pub(crate) text: String,
    /// `true` held, `false` the lesson did not show on this run, `null`
    /// not measured.
    pub(crate) held: Option<bool>,
    /// The figures it used: `srv-poll answers/s` → 312000.
    pub(crate) figures: BTreeMap<String, f64>,
}

/// How a server ended.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Exit {
    /// Exited 0 within the time `run/process.rs` gives it after SIGTERM,
    /// with its summary line (zen servers).
    pub(crate) clean: bool,
    /// Its exit code, if it exited rather than being killed by a signal.
    pub(crate) code: Option<i32>,
    /// What went wrong, when it was not clean, with its last log lines.
    pub(crate) problem: Option<String>,
    /// The server's own counts, from its summary line.
    pub(crate) summary: Option<ServerSummary>,
}

/// The numbers of a zen server's `summary:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct ServerSummary {
    pub(crate) connections: u64,
    pub(crate) answered: u64,
    pub(crate) errors: u64,
    pub(crate) dropped: u64,
}

/// How the client of experiment 11 reaches the backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Way {
    Servers,
    Haproxy,
    Registry,
}

impl Way {
    pub(crate) const ALL: [Self; 3] = [Self::Servers, Self::Haproxy, Self::Registry];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Servers => "--server ×3",
            Self::Haproxy => "HAProxy in front",
            Self::Registry => "ZooKeeper registry",
        }
    }
}

/// How a backend fails in experiment 11.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// SIGKILL: its connections reset at once.
    Dead,
    /// SIGSTOP for a while, then SIGCONT.
    Frozen,
    /// Every thread stopped but its registry's: heartbeating, not answering.
    Stuck,
}

impl Kind {
    pub(crate) const ALL: [Self; 3] = [Self::Dead, Self::Frozen, Self::Stuck];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Dead => "dead",
            Self::Frozen => "frozen",
            Self::Stuck => "stuck",
        }
    }

    /// What is done to the backend, and what undoes it.
    pub(crate) fn how(self) -> (&'static str, &'static str) {
        match self {
            Self::Dead => ("killed (SIGKILL)", "started again"),
            Self::Frozen => ("frozen (SIGSTOP)", "thawed (SIGCONT)"),
            Self::Stuck => ("stuck (serving threads stopped)", "let go"),
        }
    }
}

/// The settings experiment 11's figures follow from.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct FailoverSettings {
    /// The client's `--timeout`.
    pub(crate) timeout_ms: u64,
    /// HAProxy's `inter` and `fall`.
    pub(crate) haproxy_inter_ms: u64,
    pub(crate) haproxy_fall: u64,
    /// The servers' ZooKeeper session timeout.
    pub(crate) session_timeout_ms: u64,
    /// The servers' `--health-interval` and `--health-fails`.
    pub(crate) health_interval_ms: u64,
    pub(crate) health_fails: u64,
}

/// Experiment 11, three ways to survive a failed server: a row per
/// failure kind and way.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeadServerResult {
    pub(crate) number: usize,
    pub(crate) key: &'static str,
    pub(crate) title: &'static str,
    pub(crate) lesson: &'static str,
    /// The backends' binary.
    pub(crate) model: String,
    /// Each run's length.
    pub(crate) seconds: f64,
    /// When backend 2 fails, and when that is undone, seconds into a run.
    pub(crate) fail_at_seconds: f64,
    pub(crate) recover_at_seconds: f64,
    pub(crate) interval_ms: u64,
    pub(crate) settings: FailoverSettings,
    pub(crate) pairs: Vec<FailoverRun>,
    /// What the lesson says the table shows, judged on it.
    pub(crate) checks: Vec<CheckResult>,
}

/// One failure kind met one way.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FailoverRun {
    pub(crate) kind: Kind,
    pub(crate) way: Way,
    /// The servers' health probe was on (`--health-interval`); the
    /// registry's stuck pair also runs once without it.
    pub(crate) health_probe: bool,
    /// `None` when it ran; why not, when it did not ("not run: install
    /// haproxy") or failed.
    pub(crate) not_run: Option<String>,
    pub(crate) answers: u64,
    /// Questions that got a wrong or an error answer: must be 0 (a broken
    /// or timed-out connection's questions are asked again).
    pub(crate) lost: u64,
    /// Errors the client saw (refused connects, resets, timeouts...).
    pub(crate) errors: u64,
    /// Questions asked again after their connection broke or timed out.
    pub(crate) reasked: u64,
    /// From the failure until the client first saw an error (a reset, a
    /// refused connect, a timeout): when this way made it notice.
    pub(crate) noticed_after_ms: Option<f64>,
    /// From the failure until the rate was back to 90% of what it was.
    pub(crate) recovered_after_ms: Option<f64>,
    /// From the recovery until the failed backend answered again.
    pub(crate) back_after_ms: Option<f64>,
    /// The registry way: from the failure until the backend's znode was
    /// gone (none: it stayed while it failed).
    pub(crate) left_registry_after_ms: Option<f64>,
    /// Each backend's answers, from its own summary (a killed one reports
    /// nothing: backend 2 then counts its second life only).
    pub(crate) per_backend: Vec<Option<u64>>,
    /// Answers per `interval_ms` of the run, as `client load --every` counts them.
    pub(crate) series: Vec<u64>,
}

impl FailoverRun {
    /// A pair that did not run, and why.
    pub(crate) fn not_run(kind: Kind, way: Way, health_probe: bool, why: String) -> Self {
        Self {
            kind,
            way,
            health_probe,
            not_run: Some(why),
            answers: 0,
            lost: 0,
            errors: 0,
            reasked: 0,
            noticed_after_ms: None,
            recovered_after_ms: None,
            back_after_ms: None,
            left_registry_after_ms: None,
            per_backend: Vec::new(),
            series: Vec::new(),
        }
    }

    /// Its row's name: the way, and the probe when it is off.
    pub(crate) fn label(&self) -> String {
        if self.health_probe || self.way != Way::Registry {
            self.way.label().to_owned()
        } else {
            format!("{}, --health-interval 0", self.way.label())
        }
    }
}

/// Experiment 12, servers that ask servers: a row per model's pair.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServersAskServersResult {
    pub(crate) number: usize,
    pub(crate) key: &'static str,
    pub(crate) title: &'static str,
    pub(crate) lesson: &'static str,
    pub(crate) seconds: f64,
    pub(crate) rows: Vec<PairRow>,
    /// What the lesson says the table shows, judged on it.
    pub(crate) checks: Vec<CheckResult>,
}

/// One model's pair of servers, in experiment 12.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PairRow {
    pub(crate) server: String,
    pub(crate) label: String,
    /// Why it did not run, if it did not.
    pub(crate) failed: Option<String>,
    /// Right answers per second, both sides together.
    pub(crate) rps: f64,
    /// `Error: no peer answered.` and other error answers, both sides.
    pub(crate) no_peer_answered: u64,
    /// Clients that got any right answer, of both sides'.
    pub(crate) served: usize,
    /// The worse side's latencies, µs.
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// What the row shows.
    pub(crate) note: &'static str,
}

impl CheckResult {
    /// A check judged on figures that are not runs of one server
    /// (experiments 11 and 12 measure ways and pairs): not measured when
    /// `verdicts` is empty, else held when every verdict held. Each
    /// verdict comes with the figure it read.
    pub(crate) fn of(text: impl Into<String>, verdicts: Vec<(String, f64, bool)>) -> Self {
        let held = (!verdicts.is_empty()).then(|| verdicts.iter().all(|(_, _, held)| *held));
        Self {
            text: text.into(),
            held,
            figures: verdicts
                .into_iter()
                .map(|(name, value, _)| (name, value))
                .collect(),
        }
    }
}

impl Machine {
    /// This machine, now.
    pub(crate) fn now() -> Self {
        let unix_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |text| text.trim().to_owned());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, name)| name.trim().to_owned())
            });
        Self {
            date: utc_date(unix_time),
            unix_time,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            kernel,
            cpu,
        }
    }
}

/// `2025-01-31 14:02 UTC` for a Unix time (the proleptic Gregorian
/// calendar, Howard Hinnant's `civil_from_days`).
fn utc_date(unix_time: u64) -> String {
    let days = (unix_time / 86_400) as i64;
    let minutes = (unix_time % 86_400) / 60;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minutes / 60,
        minutes % 60
    )
}

impl RunResult {
    /// The row's name.
    pub(crate) fn row_name(&self) -> String {
        self.label.clone()
    }

    /// The load report of a measured row.
    pub(crate) fn measured(&self) -> Option<&LoadReport> {
        match self.status {
            Status::Ok => self.load.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_utc() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_date(1_738_332_120), "2025-01-31 14:02 UTC");
    }
}

//! The ten experiments of the comparison (the README's list), as data: for
//! each, the server flags, the load (as `client load` flags), the idle
//! connections to hold, who takes part, the lesson the table teaches, and
//! the checks that say whether the lesson showed (checks.rs).

use std::time::Duration;

use zen_utils::duration::format_duration;

use super::checks::{every, Check};
use super::lineup::{Contender, Kind, OFFLOAD_HELPERS};
use crate::compare::format::group_digits;
use crate::compare::model::{ExperimentResult, PredictionResult, RoundTrip, RunResult};

/// How big the runs are: `--quick` or the full run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    /// The measured window of each run.
    pub(crate) duration: Duration,
    /// Load before the window, so that it measures a steady state.
    pub(crate) warmup: Duration,
    /// Idle connections in the C10K experiment.
    pub(crate) c10k: usize,
    /// The pool's threads (its rate limit shows in several experiments).
    pub(crate) pool_workers: usize,
}

impl Sizes {
    /// About a minute for everything on 2 cores: enough answers for
    /// stable rates and medians; the tails (p99.9) are rough.
    pub(crate) const QUICK: Self = Self {
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(100),
        c10k: 2_000,
        pool_workers: super::lineup::DEFAULT_POOL_WORKERS,
    };

    /// A few minutes on 2 cores: the figures for the README.
    pub(crate) const FULL: Self = Self {
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        c10k: 10_000,
        pool_workers: super::lineup::DEFAULT_POOL_WORKERS,
    };
}

/// The many clients of experiments 2 to 6: more than the pool has
/// threads, as many as `client load`'s connections spread over.
pub(crate) const MANY: usize = 64;
/// Questions in flight per connection when pipelining.
pub(crate) const PIPELINE: usize = 16;
/// The busy clients measured while idle connections are held: a few, so
/// that what they see is the idle connections' doing, not their own load.
pub(crate) const BUSY: usize = 4;
/// The shortest slow-clients run: the idle timeout is a third of it, and
/// the pool must get through two rounds of idle connections within it.
const SLOW_CLIENTS_MIN: Duration = Duration::from_millis(1500);

/// Every contender, by id (checks over "every server" read those that ran).
const ALL: &[&str] = &[
    "srv-single",
    "srv-threaded-pool",
    "srv-threaded-per-conn",
    "srv-poll",
    "srv-async",
    "srv-hybrid-ws",
    "srv-hybrid-per-core",
    "srv-uring",
    "redis-server",
];
/// The models that serve every connection at once.
const CONCURRENT: &[&str] = &[
    "srv-threaded-per-conn",
    "srv-poll",
    "srv-async",
    "srv-hybrid-ws",
    "srv-hybrid-per-core",
    "srv-uring",
];
/// The event-driven ones among them.
const EVENT_DRIVEN: &[&str] = &[
    "srv-poll",
    "srv-async",
    "srv-hybrid-ws",
    "srv-hybrid-per-core",
    "srv-uring",
];
/// The ideal rate of [`MANY`] connections each waiting 10 ms per answer.
const IDEAL: f64 = (MANY * 100) as f64;
/// Work stealing: the CPU each answer costs...
const STEAL_WORK: &str = "100us";
const STEAL_WORK_DURATION: Duration = Duration::from_micros(100);
/// ... the questions the heavy connection keeps in flight ...
const HEAVY_PIPELINE: usize = 32;
/// ... and the light connections, measured, at this rate in all: a fifth
/// of a core of work, so that a free worker always has time for them.
const LIGHT: usize = 16;
const LIGHT_RATE: u64 = 2_000;
/// The wait, or the blocking call, of each answer in the slow-backend
/// and blocking experiments.
const TEN_MS: Duration = Duration::from_millis(10);
/// The computation of each answer in the CPU-bound experiment.
const CPU_WORK: Duration = Duration::from_micros(200);
/// Short connections: questions per connection.
const SHORT: u64 = 3;

/// One experiment: a table of the report.
#[derive(Debug, Clone)]
pub(crate) struct Experiment {
    pub(crate) number: usize,
    /// Its name for `--only` and in the JSON: `many-clients`.
    pub(crate) key: &'static str,
    pub(crate) title: &'static str,
    /// What the table shows, in a sentence or two.
    pub(crate) lesson: String,
    /// Who takes part.
    pub(crate) takes: fn(&Contender, &Sizes) -> Take,
    /// Added to every server's command line.
    pub(crate) server_flags: Vec<String>,
    pub(crate) load: LoadPlan,
    /// Idle connections opened before the load and held through it.
    pub(crate) hold: Option<HoldPlan>,
    /// A second load, started before the measured one and kept up through
    /// it, whose own figures are not the table's (the heavy connections of
    /// work stealing).
    pub(crate) background: Option<LoadPlan>,
    /// What the table should show, checked on the figures measured.
    pub(crate) checks: Vec<Check>,
    /// The rates the lesson's cost models predict for some rows, from the
    /// round trip one client measured in experiment 1.
    pub(crate) predictions: Vec<Prediction>,
}

/// A row's predicted rate: which server, by which model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Prediction {
    /// The contender's id: `srv-threaded-pool`.
    pub(crate) server: &'static str,
    pub(crate) model: Model,
}

/// A cost model: answers per second from one client's round trip (the
/// time one question takes there and back, server work included, when
/// nothing else is going on) and the experiment's own parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Model {
    /// One connection served at a time, one question in flight: as fast
    /// as one client, 1 ÷ round trip.
    OneClient,
    /// `workers` threads, each busy with one connection for `each` plus
    /// the round trip per question: workers ÷ (each + round trip).
    Pool { workers: usize, each: Duration },
    /// An event loop (or a thread each) that has `batch` questions
    /// waiting `each` at once: batch ÷ (each + round trip).
    Batch { batch: usize, each: Duration },
    /// A loop held `each` per answer by work it does itself (a blocking
    /// call, a computation), nothing overlapping: 1 ÷ each.
    Blocked { each: Duration },
}

impl Model {
    /// Answers per second, given one client's round trip.
    pub(crate) fn rate(&self, round_trip: Duration) -> f64 {
        let rtt = round_trip.as_secs_f64();
        match *self {
            Self::OneClient => 1.0 / rtt,
            Self::Pool { workers, each } => workers as f64 / (each.as_secs_f64() + rtt),
            Self::Batch { batch, each } => batch as f64 / (each.as_secs_f64() + rtt),
            Self::Blocked { each } => 1.0 / each.as_secs_f64(),
        }
    }

    /// The model as a formula a reader can work out: `16 workers ÷ (10ms
    /// + round trip)`.
    pub(crate) fn formula(&self) -> String {
        match *self {
            Self::OneClient => "1 ÷ round trip".to_owned(),
            Self::Pool { workers: 1, each } => {
                format!("1 ÷ ({} + round trip)", format_duration(each))
            }
            Self::Pool { workers, each } => {
                format!(
                    "{workers} workers ÷ ({} + round trip)",
                    format_duration(each)
                )
            }
            Self::Batch { batch, each } if each.is_zero() => {
                format!("{batch} at once ÷ round trip")
            }
            Self::Batch { batch, each } => {
                format!("{batch} at once ÷ ({} + round trip)", format_duration(each))
            }
            Self::Blocked { each } => format!("1 ÷ {}", format_duration(each)),
        }
    }
}

/// One client's round trip, from experiment 1's results: srv-single's
/// row if it answered, else the first row that did.
pub(crate) fn round_trip(one_client: &ExperimentResult) -> Option<RoundTrip> {
    let answered = |run: &&RunResult| run.measured().is_some_and(|load| load.rps > 0.0);
    let run = one_client
        .runs
        .iter()
        .filter(answered)
        .find(|run| run.server == "srv-single")
        .or_else(|| one_client.runs.iter().find(answered))?;
    Some(RoundTrip {
        us: 1e6 / run.measured()?.rps,
        server: run.server.clone(),
    })
}

/// Each prediction of `experiment` worked out from `round_trip`, beside
/// the rate its row measured (rows that did not take part are left out).
pub(crate) fn predicted(
    experiment: &Experiment,
    runs: &[RunResult],
    round_trip: &RoundTrip,
) -> Vec<PredictionResult> {
    let rtt = Duration::from_secs_f64(round_trip.us / 1e6);
    experiment
        .predictions
        .iter()
        .filter_map(|prediction| {
            let run = runs.iter().find(|run| run.server == prediction.server)?;
            Some(PredictionResult {
                server: run.server.clone(),
                label: run.label.clone(),
                formula: prediction.model.formula(),
                predicted_rps: prediction.model.rate(rtt),
                measured_rps: run.measured().map(|load| load.rps),
            })
        })
        .collect()
}

/// The predictions of a row each: `server` by `model`.
fn predict(rows: &[(&'static str, Model)]) -> Vec<Prediction> {
    rows.iter()
        .map(|&(server, model)| Prediction { server, model })
        .collect()
}

/// The load: `client load` flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadPlan {
    pub(crate) connections: usize,
    pub(crate) pipeline: usize,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    /// Open loop: this many questions per second in all (`--rate`).
    pub(crate) rate: Option<u64>,
    /// Close each connection after this many answers (`--reconnect-every`).
    pub(crate) reconnect_every: Option<u64>,
    /// The load generator's threads (`--threads`); `None`: its default,
    /// half the cores.
    pub(crate) threads: Option<usize>,
}

/// Idle connections to hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HoldPlan {
    pub(crate) connections: usize,
    /// Measure the server's memory once it has accepted them all (C10K),
    /// rather than start the load at once (slow clients, where the order
    /// in the accept queue is the point).
    pub(crate) measure_memory: bool,
}

/// Whether a contender takes part in an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    Run,
    /// A row that says why it was not run.
    Skip(&'static str),
    /// No row: the experiment is not about it (redis beyond the plain
    /// loads, anything but srv-hybrid in the work-stealing experiment).
    Absent,
}

/// Every experiment, in the README's order, sized by `sizes`.
pub(crate) fn all(sizes: &Sizes) -> Vec<Experiment> {
    let d = sizes.duration;
    let w = sizes.warmup;
    let load = |connections, pipeline| LoadPlan {
        connections,
        pipeline,
        duration: d,
        warmup: w,
        rate: None,
        reconnect_every: None,
        threads: None,
    };
    let flags = |flags: &[&str]| flags.iter().map(|&f| f.to_owned()).collect::<Vec<_>>();
    let slow = d.max(SLOW_CLIENTS_MIN);
    let idle_timeout = format_duration(Duration::from_millis((slow / 3).as_millis() as u64));
    let pool = sizes.pool_workers;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    vec![
        Experiment {
            number: 1,
            key: "one-client",
            title: "One client",
            lesson: "One connection, one question at a time: every model is as fast as the \
                     round trip through the kernel allows, so they are all alike (redis too). \
                     Concurrency models only differ once there is concurrency."
                .to_owned(),
            server_flags: Vec::new(),
            load: load(1, 1),
            hold: None,
            takes: zen_and_redis,
            background: None,
            predictions: Vec::new(),
            checks: vec![Check::new(
                "every server answers at least half as fast as the fastest",
                |f| {
                    let rates: Vec<f64> = ALL.iter().filter_map(|server| f.rps(server)).collect();
                    let fastest = rates.iter().copied().fold(0.0, f64::max);
                    (rates.len() >= 2).then(|| rates.iter().all(|&rps| rps >= 0.5 * fastest))
                },
            )],
        },
        Experiment {
            number: 2,
            key: "many-clients",
            title: "Many clients",
            lesson: format!(
                "{MANY} connections at once. srv-single serves one of them (the others wait \
                 in the accept queue: served 1/{MANY}), the pool serves as many as it has \
                 threads ({pool}/{MANY}), and thread-per-connection and the event-driven \
                 servers serve all {MANY}. Jain's index shows how evenly the answers were \
                 shared. srv-uring submits its reads and writes to io_uring and reaps their \
                 completions in batches: well under one system call per answer, where a \
                 readiness loop makes two or more (scripts/syscalls-per-answer counts \
                 them). Where the load generator's one thread is the limit for every \
                 event-driven server, answers/s cannot show what that saves; \
                 switches/answer shows the batches (one wake-up for many answers), and \
                 scripts/performance.py measures the rate against a bare C epoll server. \
                 srv-single answers at one client's rate, 1 ÷ round trip."
            ),
            server_flags: Vec::new(),
            load: load(MANY, 1),
            hold: None,
            takes: zen_and_redis,
            background: None,
            predictions: predict(&[("srv-single", Model::OneClient)]),
            checks: vec![
                Check::new(format!("srv-single served 1 of {MANY}"), |f| {
                    Some(f.served("srv-single")? == 1.0)
                }),
                Check::new(format!("the pool served {pool} of {MANY}"), move |f| {
                    Some(f.served("srv-threaded-pool")? == pool as f64)
                }),
                Check::new(
                    format!("thread-per-connection and the event-driven servers served all {MANY}"),
                    |f| every(CONCURRENT, |server| Some(f.served(server)? == MANY as f64)),
                ),
                Check::new(
                    format!("srv-poll ≥ 2 × srv-single at {MANY} clients"),
                    |f| Some(f.rps("srv-poll")? >= 2.0 * f.rps("srv-single")?),
                ),
            ],
        },
        Experiment {
            number: 3,
            key: "slow-backend",
            title: "Slow backend",
            lesson: format!(
                "Each answer waits 10 ms for something outside the server (`--work wait:10ms`), \
                 {MANY} connections: the ideal is {MANY} × 100 = {} answers/s. Waiting overlaps \
                 in every concurrent model; srv-single waits for each answer in turn (100/s) \
                 and the pool {pool} at a time ({}/s).",
                MANY * 100,
                pool * 100
            ),
            server_flags: flags(&["--work", "wait:10ms"]),
            // The load generator gets every core, not its default half:
            // an event loop answers the 64 connections of a cycle together,
            // and one client thread handling those answers in turn adds
            // its own queue to every round trip, which a thread per
            // connection, answering each on its own, would not pay.
            load: LoadPlan {
                threads: Some(cores),
                ..load(MANY, 1)
            },
            hold: None,
            takes: zen_only,
            background: None,
            predictions: predict(&[
                ("srv-single", Model::Pool { workers: 1, each: TEN_MS }),
                ("srv-threaded-pool", Model::Pool { workers: pool, each: TEN_MS }),
                ("srv-threaded-per-conn", Model::Batch { batch: MANY, each: TEN_MS }),
                ("srv-poll", Model::Batch { batch: MANY, each: TEN_MS }),
                ("srv-async", Model::Batch { batch: MANY, each: TEN_MS }),
                ("srv-uring", Model::Batch { batch: MANY, each: TEN_MS }),
            ]),
            checks: vec![
                Check::new(
                    format!(
                        "every concurrent model ≥ 0.9 × the ideal {}/s",
                        group_digits((MANY * 100) as f64)
                    ),
                    |f| every(CONCURRENT, |server| Some(f.rps(server)? >= 0.9 * IDEAL)),
                ),
                Check::new(
                    "one thread waits as well as a thread each: srv-poll and srv-async ≥ \
                     0.97 × srv-threaded per-conn",
                    |f| {
                        let threads = f.rps("srv-threaded-per-conn")?;
                        every(&["srv-poll", "srv-async"], |server| {
                            Some(f.rps(server)? >= 0.97 * threads)
                        })
                    },
                ),
                Check::new(
                    format!(
                        "the pool ≈ {pool}/{MANY} of the ideal: 0.8 to 1.1 × {}/s",
                        group_digits((pool * 100) as f64)
                    ),
                    move |f| {
                        let share = f.rps("srv-threaded-pool")? / (pool as f64 * 100.0);
                        Some((0.8..=1.1).contains(&share))
                    },
                ),
                Check::new("srv-single ≤ 110/s, one wait at a time", |f| {
                    Some(f.rps("srv-single")? <= 110.0)
                }),
            ],
        },
        Experiment {
            number: 4,
            key: "cpu-bound",
            title: "CPU-bound",
            lesson: format!(
                "Each answer costs 200 µs of computation (`--work cpu:200us`): one thread \
                 tops out at 5,000 answers/s. The one-thread models (srv-single, srv-poll, \
                 srv-async, srv-uring) use one core; threads and srv-hybrid use every core (here \
                 shared with the load generator). The cure for an event loop: \
                 `--offload {OFFLOAD_HELPERS}` computes on helper threads, so srv-poll and \
                 srv-async use every core too, while their loop only reads and writes."
            ),
            server_flags: flags(&["--work", "cpu:200us"]),
            load: load(MANY, 1),
            hold: None,
            takes: zen_and_offload,
            background: None,
            predictions: predict(&[
                ("srv-single", Model::Pool { workers: 1, each: CPU_WORK }),
                ("srv-poll", Model::Blocked { each: CPU_WORK }),
                ("srv-async", Model::Blocked { each: CPU_WORK }),
                ("srv-uring", Model::Blocked { each: CPU_WORK }),
            ]),
            checks: if cores >= 2 {
                vec![
                    Check::new(
                        format!("srv-threaded per-conn ≥ 1.5 × srv-poll on {cores} cores"),
                        |f| Some(f.rps("srv-threaded-per-conn")? >= 1.5 * f.rps("srv-poll")?),
                    ),
                    Check::new(
                        format!(
                            "with --offload {OFFLOAD_HELPERS}, srv-poll and srv-async ≥ 1.5 × \
                             themselves without it on {cores} cores"
                        ),
                        |f| {
                            every(&["srv-poll", "srv-async"], |server| {
                                let cured = f.rps(&format!("{server}-offload"))?;
                                Some(cured >= 1.5 * f.rps(server)?)
                            })
                        },
                    ),
                ]
            } else {
                Vec::new()
            },
        },
        Experiment {
            number: 5,
            key: "blocking",
            title: "Blocking in the event loop",
            lesson: format!(
                "Each answer makes a blocking 10 ms call (`--work block:10ms`), the classic \
                 mistake in an event loop: srv-poll, srv-async and srv-uring collapse to srv-single's \
                 100 answers/s (each answer waits behind every other connection's call: \
                 about {MANY} × 10 ms), srv-hybrid to its workers × 100; threads block only \
                 themselves (the pool {}/s, a thread per connection all {MANY}). The cure, \
                 beside the disease: `--offload {OFFLOAD_HELPERS}` makes the calls on \
                 {OFFLOAD_HELPERS} helper threads (Flash's helpers, libuv's pool, tokio's \
                 `spawn_blocking`), and the loop serves everyone meanwhile: the {}/s that \
                 {OFFLOAD_HELPERS} helpers allow, each answer waiting only for a free helper.",
                pool * 100,
                group_digits((OFFLOAD_HELPERS * 100) as f64),
            ),
            server_flags: flags(&["--work", "block:10ms"]),
            load: load(MANY, 1),
            hold: None,
            takes: zen_and_offload,
            background: None,
            predictions: predict(&[
                ("srv-single", Model::Pool { workers: 1, each: TEN_MS }),
                ("srv-threaded-pool", Model::Pool { workers: pool, each: TEN_MS }),
                ("srv-threaded-per-conn", Model::Batch { batch: MANY, each: TEN_MS }),
                ("srv-poll", Model::Blocked { each: TEN_MS }),
                ("srv-async", Model::Blocked { each: TEN_MS }),
                ("srv-uring", Model::Blocked { each: TEN_MS }),
                ("srv-poll-offload", Model::Pool { workers: OFFLOAD_HELPERS, each: TEN_MS }),
                ("srv-async-offload", Model::Pool { workers: OFFLOAD_HELPERS, each: TEN_MS }),
            ]),
            checks: vec![
                Check::new("srv-poll and srv-async ≤ 1.2 × srv-single", |f| {
                    let single = f.rps("srv-single")?;
                    every(&["srv-poll", "srv-async"], |server| {
                        Some(f.rps(server)? <= 1.2 * single)
                    })
                }),
                Check::new(
                    format!(
                        "srv-threaded per-conn ≥ 0.9 × the ideal {}/s",
                        group_digits((MANY * 100) as f64)
                    ),
                    |f| Some(f.rps("srv-threaded-per-conn")? >= 0.9 * IDEAL),
                ),
                Check::new(
                    format!(
                        "with --offload {OFFLOAD_HELPERS}, srv-poll and srv-async ≥ 0.9 × the \
                         {}/s its helpers allow",
                        group_digits((OFFLOAD_HELPERS * 100) as f64)
                    ),
                    |f| {
                        let allowed = (OFFLOAD_HELPERS * 100) as f64;
                        every(&["srv-poll-offload", "srv-async-offload"], |server| {
                            Some(f.rps(server)? >= 0.9 * allowed)
                        })
                    },
                ),
            ],
        },
        Experiment {
            number: 6,
            key: "pipelining",
            title: "Pipelining",
            lesson: format!(
                "{MANY} connections × {PIPELINE} questions in flight: a server that answers \
                 every question of a read with one write pays one read and one write per \
                 batch, not per question, so throughput rises several times over one in \
                 flight (compare with many clients)."
            ),
            server_flags: Vec::new(),
            load: load(MANY, PIPELINE),
            hold: None,
            takes: zen_and_redis,
            background: None,
            predictions: predict(&[("srv-single", Model::Batch { batch: PIPELINE, each: Duration::ZERO })]),
            checks: vec![
                Check::new("srv-poll ≥ 5 × srv-single", |f| {
                    Some(f.rps("srv-poll")? >= 5.0 * f.rps("srv-single")?)
                }),
                Check::new("srv-poll ≥ 3 × its own rate in many clients", |f| {
                    Some(f.rps("srv-poll")? >= 3.0 * f.rps_in("many-clients", "srv-poll")?)
                }),
            ],
        },
        Experiment {
            number: 7,
            key: "slow-clients",
            title: "Slow clients",
            lesson: format!(
                "{} idle connections (`client hold`) arrive first, then {BUSY} busy ones; \
                 servers run with `--idle-timeout {idle_timeout}`. srv-single is held by one \
                 idle client after another and never gets to the busy ones; the pool's \
                 {pool} threads are all held until the idle timeout frees them, so the busy \
                 clients wait (see max latency); the other models serve the busy clients at \
                 once.",
                2 * pool
            ),
            server_flags: flags(&["--idle-timeout", &idle_timeout]),
            load: LoadPlan {
                connections: BUSY,
                pipeline: 1,
                duration: slow,
                // The busy clients' first questions, asked at once and
                // answered only when a thread is freed, are the point.
                warmup: Duration::ZERO,
                rate: None,
                reconnect_every: None,
                threads: None,
            },
            hold: Some(HoldPlan {
                connections: 2 * pool,
                measure_memory: false,
            }),
            takes: zen_only,
            background: None,
            predictions: Vec::new(),
            checks: vec![
                Check::new(
                    format!("srv-single served 0 of the {BUSY} busy clients"),
                    |f| Some(f.served("srv-single")? == 0.0),
                ),
                Check::new(format!("the event-driven servers served all {BUSY}"), |f| {
                    every(EVENT_DRIVEN, |server| {
                        Some(f.served(server)? == BUSY as f64)
                    })
                }),
            ],
        },
        Experiment {
            number: 8,
            key: "c10k",
            title: "C10K",
            lesson: format!(
                "{} idle connections held open, plus {BUSY} busy ones: what an idle \
                 connection costs in server memory (a thread and its stack, or a few \
                 hundred bytes of task or slab entry), and whether the busy clients are \
                 still served fast. Starting a thread per connection is slow enough that \
                 the accept queue overflows, and the kernel's retries bring the rest in \
                 over seconds: see how many were accepted.",
                group_digits(sizes.c10k as f64)
            ),
            server_flags: Vec::new(),
            load: load(BUSY, 1),
            hold: Some(HoldPlan {
                connections: sizes.c10k,
                measure_memory: true,
            }),
            takes: |contender, _| match contender.kind {
                Kind::OneAtATime | Kind::Pool => Take::Skip(
                    "serves a fixed number of connections at a time: idle ones starve \
                     the rest (see slow clients)",
                ),
                Kind::Redis | Kind::Offload => Take::Absent,
                Kind::Concurrent | Kind::Hybrid => Take::Run,
            },
            background: None,
            predictions: Vec::new(),
            checks: vec![
                Check::new("srv-poll: RSS per idle connection ≤ 2 KiB", |f| {
                    Some(f.idle_bytes("srv-poll")? <= 2048.0)
                }),
                Check::new(
                    "srv-threaded per-conn: RSS per idle connection ≥ 4 KiB (a thread)",
                    |f| Some(f.idle_bytes("srv-threaded-per-conn")? >= 4096.0),
                ),
            ],
        },
        Experiment {
            number: 9,
            key: "work-stealing",
            title: "Work stealing vs runtime per core",
            lesson: format!(
                "srv-hybrid's two runtimes, every answer costing {STEAL_WORK} of CPU \
                 (`--work cpu:{STEAL_WORK}`): one heavy connection keeps {HEAVY_PIPELINE} \
                 questions in flight (a batch holds its thread for {}), while {LIGHT} light \
                 ones ask {} questions/s in all (the table's figures are theirs, latency \
                 measured from when each question was due). Work stealing hands the light \
                 connections to whichever worker is free, so they barely notice the heavy \
                 one; per core, the light connections the kernel hashed to the heavy one's \
                 core wait behind every batch of it while the other core idles: a tail \
                 (p90, p99) many times longer. (CPU/answer counts the heavy connection's \
                 answers too.) With even load (many clients, pipelining) \
                 per-core shares nothing between threads and is about as fast.",
                format_duration(STEAL_WORK_DURATION * HEAVY_PIPELINE as u32),
                group_digits(LIGHT_RATE as f64),
            ),
            server_flags: flags(&["--work", &format!("cpu:{STEAL_WORK}")]),
            load: LoadPlan {
                rate: Some(LIGHT_RATE),
                ..load(LIGHT, 1)
            },
            hold: None,
            background: Some(LoadPlan {
                warmup: Duration::ZERO,
                // Through the light load's warmup and window.
                duration: w + d + Duration::from_millis(500),
                ..load(1, HEAVY_PIPELINE)
            }),
            predictions: Vec::new(),
            checks: vec![Check::new(
                "per-core's p90 latency of the light connections ≥ 3 × work-stealing's",
                |f| Some(f.p90("srv-hybrid-per-core")? >= 3.0 * f.p90("srv-hybrid-ws")?),
            )],
            takes: |contender, _| match contender.kind {
                Kind::Hybrid => Take::Run,
                _ => Take::Absent,
            },
        },
        Experiment {
            number: 10,
            key: "short-connections",
            title: "Short connections",
            lesson: format!(
                "{MANY} connections as in many clients, but each closes after \
                 {SHORT} questions and a new one takes its place (`--reconnect-every \
                 {SHORT}`, the book's client: connect, ask three questions, close). Every \
                 answer now carries a third of a connect, an accept and a close; \
                 srv-threaded per-conn also starts and ends a thread per connection, and \
                 pays the most. srv-single, whose one connection used to hold it, now \
                 serves every client in turn."
            ),
            server_flags: Vec::new(),
            load: LoadPlan {
                reconnect_every: Some(SHORT),
                threads: None,
                ..load(MANY, 1)
            },
            hold: None,
            background: None,
            predictions: Vec::new(),
            checks: vec![
                Check::new(
                    "thread-per-connection and the event-driven servers: ≤ 0.75 × their \
                     rate with long connections (many clients)",
                    |f| {
                        every(CONCURRENT, |server| {
                            Some(f.rps(server)? <= 0.75 * f.rps_in("many-clients", server)?)
                        })
                    },
                ),
                Check::new(
                    "srv-threaded per-conn ≤ 0.75 × srv-poll (a thread per connection)",
                    |f| Some(f.rps("srv-threaded-per-conn")? <= 0.75 * f.rps("srv-poll")?),
                ),
                Check::new(
                    format!("srv-single served all {MANY}, one after another"),
                    |f| Some(f.served("srv-single")? == MANY as f64),
                ),
            ],
            takes: zen_and_redis,
        },
    ]
}

/// Every zen server and redis; the `--offload` rows are for the
/// experiments of work that holds the thread.
fn zen_and_redis(contender: &Contender, _: &Sizes) -> Take {
    match contender.kind {
        Kind::Offload => Take::Absent,
        _ => Take::Run,
    }
}

fn zen_only(contender: &Contender, _: &Sizes) -> Take {
    match contender.kind {
        Kind::Redis | Kind::Offload => Take::Absent,
        _ => Take::Run,
    }
}

/// Every zen server, and the `--offload` rows beside the event loops:
/// work that holds the thread, and its cure.
fn zen_and_offload(contender: &Contender, _: &Sizes) -> Take {
    match contender.kind {
        Kind::Redis => Take::Absent,
        _ => Take::Run,
    }
}

impl LoadPlan {
    /// The `client load` flags of this plan, as a reader would type them.
    pub(crate) fn flags(&self) -> Vec<String> {
        let mut flags = vec!["-c".to_owned(), self.connections.to_string()];
        if self.pipeline > 1 {
            flags.extend(["--pipeline".to_owned(), self.pipeline.to_string()]);
        }
        if let Some(rate) = self.rate {
            flags.extend(["--rate".to_owned(), rate.to_string()]);
        }
        if let Some(every) = self.reconnect_every {
            flags.extend(["--reconnect-every".to_owned(), every.to_string()]);
        }
        if let Some(threads) = self.threads {
            flags.extend(["--threads".to_owned(), threads.to_string()]);
        }
        flags.extend(["-d".to_owned(), format_duration(self.duration)]);
        let warmup = match self.warmup {
            Duration::ZERO => "0s".to_owned(),
            warmup => format_duration(warmup),
        };
        flags.extend(["--warmup".to_owned(), warmup]);
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_experiments_with_distinct_keys() {
        let experiments = all(&Sizes::QUICK);
        assert_eq!(experiments.len(), 10);
        let mut keys: Vec<_> = experiments.iter().map(|e| e.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 10);
        assert!(experiments
            .iter()
            .enumerate()
            .all(|(i, e)| e.number == i + 1));
    }

    #[test]
    fn models_work_out_from_the_round_trip() {
        let rtt = Duration::from_micros(50);
        let ms = Duration::from_millis(10);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6 * b;
        assert!(close(Model::OneClient.rate(rtt), 20_000.0));
        // 16 / 10.05 ms
        let pool = Model::Pool {
            workers: 16,
            each: ms,
        };
        assert!(close(pool.rate(rtt), 16.0 / 0.010_05));
        assert_eq!(pool.formula(), "16 workers ÷ (10ms + round trip)");
        let batch = Model::Batch {
            batch: 64,
            each: ms,
        };
        assert!(close(batch.rate(rtt), 64.0 / 0.010_05));
        assert_eq!(batch.formula(), "64 at once ÷ (10ms + round trip)");
        let pipelined = Model::Batch {
            batch: 16,
            each: Duration::ZERO,
        };
        assert!(close(pipelined.rate(rtt), 320_000.0));
        assert_eq!(pipelined.formula(), "16 at once ÷ round trip");
        let blocked = Model::Blocked {
            each: Duration::from_micros(200),
        };
        assert!(close(blocked.rate(rtt), 5_000.0));
        assert!(
            close(blocked.rate(Duration::from_secs(1)), 5_000.0),
            "no round trip in it"
        );
        let single = Model::Pool {
            workers: 1,
            each: ms,
        };
        assert_eq!(single.formula(), "1 ÷ (10ms + round trip)");
    }

    #[test]
    fn every_predicted_server_is_a_contender_of_its_experiment() {
        let everyone = super::super::lineup::everyone(16);
        for experiment in all(&Sizes::FULL) {
            for prediction in &experiment.predictions {
                let contender = everyone.iter().find(|c| c.id == prediction.server);
                let contender = contender.unwrap_or_else(|| panic!("{}", prediction.server));
                assert_ne!(
                    (experiment.takes)(contender, &Sizes::FULL),
                    Take::Absent,
                    "{}: {}",
                    experiment.key,
                    prediction.server
                );
            }
        }
    }

    #[test]
    fn flags_read_as_a_command_line() {
        let plan = LoadPlan {
            connections: 64,
            pipeline: 16,
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            rate: None,
            reconnect_every: None,
            threads: None,
        };
        assert_eq!(
            plan.flags().join(" "),
            "-c 64 --pipeline 16 -d 2s --warmup 500ms"
        );
    }
}

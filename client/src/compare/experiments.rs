//! The nine experiments of the comparison (the README's list), as data: for each, the server flags,
//! the load (as `client load` flags), the idle connections to hold, who
//! takes part, and the lesson the table teaches.

use std::time::Duration;

use zen_utils::config::format_duration;

use super::lineup::{Contender, Kind};

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
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(200),
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
}

/// The load: `client load` flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadPlan {
    pub(crate) connections: usize,
    pub(crate) pipeline: usize,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
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
    };
    let flags = |flags: &[&str]| flags.iter().map(|&f| f.to_owned()).collect::<Vec<_>>();
    let slow = d.max(SLOW_CLIENTS_MIN);
    let idle_timeout = format_duration(Duration::from_millis((slow / 3).as_millis() as u64));
    let pool = sizes.pool_workers;
    // srv-hybrid runs a thread per core. One busy connection more than
    // there are threads cannot be spread evenly: the work-stealing lesson.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let uneven = cores + 1;
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
                 shared."
            ),
            server_flags: Vec::new(),
            load: load(MANY, 1),
            hold: None,
            takes: zen_and_redis,
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
            load: load(MANY, 1),
            hold: None,
            takes: zen_only,
        },
        Experiment {
            number: 4,
            key: "cpu-bound",
            title: "CPU-bound",
            lesson: "Each answer costs 200 µs of computation (`--work cpu:200us`): one thread \
                     tops out at 5,000 answers/s. The one-thread models (srv-single, srv-poll, \
                     srv-async) use one core; threads and srv-hybrid use every core (here \
                     shared with the load generator)."
                .to_owned(),
            server_flags: flags(&["--work", "cpu:200us"]),
            load: load(MANY, 1),
            hold: None,
            takes: zen_only,
        },
        Experiment {
            number: 5,
            key: "blocking",
            title: "Blocking in the event loop",
            lesson: format!(
                "Each answer makes a blocking 10 ms call (`--work block:10ms`), the classic \
                 mistake in an event loop: srv-poll and srv-async collapse to srv-single's \
                 100 answers/s, srv-hybrid to its workers × 100; threads block only \
                 themselves (the pool {}/s, a thread per connection all {MANY}).",
                pool * 100
            ),
            server_flags: flags(&["--work", "block:10ms"]),
            load: load(MANY, 1),
            hold: None,
            takes: zen_only,
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
            },
            hold: Some(HoldPlan {
                connections: 2 * pool,
                measure_memory: false,
            }),
            takes: zen_only,
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
                Kind::Redis => Take::Absent,
                Kind::Concurrent | Kind::Hybrid => Take::Run,
            },
        },
        Experiment {
            number: 9,
            key: "work-stealing",
            title: "Work stealing vs runtime per core",
            lesson: format!(
                "srv-hybrid's two runtimes, {uneven} busy connections that each need CPU \
                 (`--work cpu:200us`) on {cores} threads: they cannot be split evenly. \
                 Work stealing hands a connection to whichever worker is free, so every \
                 worker stays busy and the connections get equal shares; per core, each \
                 connection stays on the core the kernel hashed it to, so one core has more \
                 to do than the other (or all of it): a lower Jain's index and a longer \
                 tail, or less throughput. The kernel's hash differs from run to run, and \
                 so does the split. With even load (many clients, pipelining) per-core \
                 shares nothing between threads and is about as fast.",
            ),
            server_flags: flags(&["--work", "cpu:200us"]),
            load: load(uneven, 1),
            hold: None,
            takes: |contender, _| match contender.kind {
                Kind::Hybrid => Take::Run,
                _ => Take::Absent,
            },
        },
    ]
}

fn zen_and_redis(_: &Contender, _: &Sizes) -> Take {
    Take::Run
}

fn zen_only(contender: &Contender, _: &Sizes) -> Take {
    if contender.kind == Kind::Redis {
        Take::Absent
    } else {
        Take::Run
    }
}

impl LoadPlan {
    /// The `client load` flags of this plan, as a reader would type them.
    pub(crate) fn flags(&self) -> Vec<String> {
        let mut flags = vec!["-c".to_owned(), self.connections.to_string()];
        if self.pipeline > 1 {
            flags.extend(["--pipeline".to_owned(), self.pipeline.to_string()]);
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

/// `12345.6` as `12,346`.
pub(crate) fn group_digits(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nine_experiments_with_distinct_keys() {
        let experiments = all(&Sizes::QUICK);
        assert_eq!(experiments.len(), 9);
        let mut keys: Vec<_> = experiments.iter().map(|e| e.key).collect();
        keys.dedup();
        assert_eq!(keys.len(), 9);
        assert!(experiments
            .iter()
            .enumerate()
            .all(|(i, e)| e.number == i + 1));
    }

    #[test]
    fn flags_read_as_a_command_line() {
        let plan = LoadPlan {
            connections: 64,
            pipeline: 16,
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
        };
        assert_eq!(
            plan.flags().join(" "),
            "-c 64 --pipeline 16 -d 2s --warmup 500ms"
        );
    }

    #[test]
    fn groups_digits_by_three() {
        assert_eq!(group_digits(0.4), "0");
        assert_eq!(group_digits(999.0), "999");
        assert_eq!(group_digits(1000.0), "1,000");
        assert_eq!(group_digits(1234567.8), "1,234,568");
    }
}

//! The tables: one per experiment, the same Markdown on the terminal (with
//! aligned columns) and in report.md, which adds the lessons, the charts
//! and how to read them.

use std::fmt::Write as _;

use crate::compare::format::{figure, group_digits, kib, micros};
use crate::compare::model::{
    CheckResult, ExperimentResult, Results, RoundTrip, RunResult, Status, SERVER_NICE,
};

/// An experiment's table, with its title, for the terminal: after
/// experiment 1, the round trip the predictions start from.
pub(crate) fn for_terminal(
    experiment: &ExperimentResult,
    round_trip: Option<&RoundTrip>,
) -> String {
    let round_trip = match round_trip {
        Some(rtt) if experiment.key == "one-client" => format!("\n{}\n", round_trip_line(rtt)),
        _ => String::new(),
    };
    format!(
        "\n{}. {}\n{}{round_trip}{}{}",
        experiment.number,
        experiment.title,
        markdown_table(experiment),
        predictions_list(experiment),
        checks_list(&experiment.checks)
    )
}

/// One client's round trip, in a sentence, with the rate it allows.
pub(crate) fn round_trip_line(rtt: &RoundTrip) -> String {
    format!(
        "One client's round trip on this machine: {} on average (1 ÷ {}'s {} \
         answers/s with one client asking one question at a time, experiment 1). \
         The predictions under the tables start from it.",
        micros(rtt.us),
        rtt.server,
        group_digits(1e6 / rtt.us)
    )
}

/// The predicted rates beside the measured ones, as a list (empty when
/// there are none).
pub(crate) fn predictions_list(experiment: &ExperimentResult) -> String {
    if experiment.predictions.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nPredicted by the cost model, and measured:\n\n");
    for line in prediction_lines(experiment) {
        let _ = writeln!(out, "- {line}");
    }
    out
}

/// `srv-single: 1 ÷ round trip: predicted 46,900/s, measured 45,100/s
/// (0.96 ×)`, a line per prediction.
pub(crate) fn prediction_lines(experiment: &ExperimentResult) -> Vec<String> {
    experiment
        .predictions
        .iter()
        .map(|p| {
            let measured = p.measured_rps.map_or_else(
                || "not measured".to_owned(),
                |rps| {
                    format!(
                        "measured {}/s ({:.2} ×)",
                        group_digits(rps),
                        rps / p.predicted_rps
                    )
                },
            );
            format!(
                "{}: {}: predicted {}/s, {measured}",
                p.label,
                p.formula,
                group_digits(p.predicted_rps)
            )
        })
        .collect()
}

/// Where, when and how the figures were measured: the report's first
/// paragraph, with the command between `quote`s (backticks in Markdown).
pub(crate) fn intro(results: &Results, quote: &str) -> String {
    let (machine, settings) = (&results.machine, &results.settings);
    let cpu = machine
        .cpu
        .as_deref()
        .map_or_else(String::new, |cpu| format!(" ({cpu})"));
    format!(
        "Measured on {}, {} cores{cpu}, Linux {}, by {quote}client compare{}{quote}: \
         each run {} s after {} s of warmup, the load generator on {} thread{} \
         of the same machine, over loopback, every server {} nice levels below it \
         (so that a server's waking threads never preempt the load). Every server \
         was started fresh for every run. Which model wins, who is served \
         and the shape of each collapse carry over to other machines; the \
         absolute rates do not, nor the ratios that hang on the round trip, \
         on how fast a thread wakes or on the number of cores.",
        machine.date,
        machine.cores,
        machine.kernel,
        if settings.quick { " --quick" } else { "" },
        settings.duration_seconds,
        settings.warmup_seconds,
        settings.load_threads,
        if settings.load_threads == 1 { "" } else { "s" },
        SERVER_NICE,
    )
}

/// The whole report.md.
pub(crate) fn report(results: &Results, charts: &[&str]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# zen: six concurrency models, side by side\n");
    let _ = writeln!(md, "{}\n", intro(results, "`"));
    if let Some(rtt) = &results.round_trip {
        let _ = writeln!(md, "{}\n", round_trip_line(rtt));
    }
    if results.interrupted {
        let _ = writeln!(
            md,
            "**Interrupted:** the experiments after the last table did not run.\n"
        );
    }
    for chart in charts {
        let _ = writeln!(md, "![{chart}]({chart})\n");
    }
    md.push_str(HOW_TO_READ);
    for experiment in &results.experiments {
        let _ = writeln!(md, "\n## {}. {}\n", experiment.number, experiment.title);
        let _ = writeln!(md, "{}\n", experiment.lesson);
        if let Some(first) = experiment.runs.first() {
            let alongside = first
                .background_command
                .as_ref()
                .map_or_else(String::new, |command| {
                    format!(", alongside `{command}` (not in the table)")
                });
            let _ = writeln!(
                md,
                "Load: `{}`{alongside} (servers: `{}`, ...).\n",
                first.load_command, first.server_command
            );
        }
        md.push_str(&markdown_table(experiment));
        md.push_str(&predictions_list(experiment));
        md.push_str(&checks_list(&experiment.checks));
        for run in &experiment.runs {
            if let Some(problem) = run.exit.as_ref().and_then(|exit| exit.problem.as_ref()) {
                let _ = writeln!(
                    md,
                    "\n- **{}** did not stop cleanly: {problem}",
                    run.row_name()
                );
            }
        }
    }
    md
}

pub(crate) const HOW_TO_READ: &str = "\
## How to read the tables

- **answers/s**: right answers per second in the measured window (errors
  are never counted as answers).
- **p50 / p99 / p99.9 / max**: latency of those answers, from question sent
  to answer read, in µs (ms, s where marked).
- **served**: connections that got at least one answer, of all the client
  opened. Fewer than all means clients left waiting for the whole run.
- **fairness**: Jain's index of the answers per connection: 1.00 when every
  connection got as many as every other, 1/n when one got them all.
- **CPU/answer**: the server's CPU time (user + system, all threads, from
  /proc) in the measured window, divided by the answers; ≈0 when the
  server used under 30 ms of CPU in the whole window (it was waiting).
- **switches/answer**: the server's context switches (voluntary and
  involuntary, summed over its threads, from /proc/PID/task/*/status) in
  the measured window, divided by the answers: about 1 or more when every
  answer wakes a thread, well under 1 when one wake-up serves a batch.
  Threads that ended during the window take their counts with them.
  System calls per answer are counted by scripts/syscalls-per-answer
  (perf or strace), not here.
- **peak RSS**: the server's peak resident memory (VmHWM).
- **idle accepted, RSS/idle conn** (C10K): how many of the idle connections
  the server had accepted (and how long that took), and how much its
  resident memory grew, divided by them.
- **predicted, measured**, under some tables: the rate a cost model
  gives from one client's round trip (experiment 1) and the experiment's
  own figures (workers, the 10 ms wait), beside the rate measured.
- **checks**, under each table: what the lesson says the table should
  show, checked on its figures: ✓ it did; ✗ the lesson did not show on
  this run; – not measured (a server it needs did not run). A check that
  does not hold is reported, never an error: it does not change the exit
  status, since machines vary (cores, load, the kernel's choices).
- **notes**: errors seen by the client, idle connections closed by the
  server, other processes that used the CPU during the run (machine busy
  elsewhere: that row's figures are skewed), and anything that did not go
  as planned.
";

/// Other processes using this many cores during a run are worth a note:
/// the figures of that row competed with them. (Less is within the noise
/// of comparing the machine's CPU counters with the processes' own.)
const BUSY_ELSEWHERE: f64 = 0.3;

/// Less CPU time than this in a window (three clock ticks) is shown as
/// ≈0 per answer.
const IDLE_CPU: f64 = 0.03;

/// An experiment's table as cells, rendered to Markdown here and to HTML
/// in report.html.
pub(crate) struct Table {
    pub(crate) header: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<String>>,
}

impl Table {
    /// Whether column `i` holds numbers (right-aligned).
    pub(crate) fn numeric(&self, i: usize) -> bool {
        numeric(&self.header, i)
    }
}

fn numeric(header: &[&str], i: usize) -> bool {
    i > 0 && header[i] != "notes"
}

/// The columns every table has, then the experiment's own.
pub(crate) fn table(experiment: &ExperimentResult) -> Table {
    let held = experiment.runs.iter().any(|run| run.hold.is_some());
    let idle_memory = experiment.runs.iter().any(|run| {
        run.server_usage
            .as_ref()
            .is_some_and(|usage| usage.idle.is_some())
    });
    let mut header = vec![
        "server",
        "answers/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "served",
        "fairness",
        "CPU/answer",
        "switches/answer",
        "peak RSS",
    ];
    if idle_memory {
        header.extend(["idle accepted", "RSS/idle conn"]);
    }
    header.push("notes");
    let rows = experiment
        .runs
        .iter()
        .map(|run| row(run, held, idle_memory))
        .collect();
    Table { header, rows }
}

fn markdown_table(experiment: &ExperimentResult) -> String {
    let table = table(experiment);
    align(&table.header, &table.rows)
}

fn row(run: &RunResult, held: bool, idle_memory: bool) -> Vec<String> {
    let dash = || "–".to_owned();
    let mut cells = vec![run.row_name()];
    match run.measured() {
        Some(load) => {
            let answered = load.requests > 0;
            let latency = |value: f64| if answered { micros(value) } else { dash() };
            cells.extend([
                group_digits(load.rps),
                latency(load.latency_us.p50),
                latency(load.latency_us.p99),
                latency(load.latency_us.p999),
                latency(load.latency_us.max),
                format!("{}/{}", load.served_conns, load.connections),
                format!("{:.2}", load.fairness.jain),
            ]);
        }
        None => cells.extend((0..7).map(|_| dash())),
    }
    match &run.server_usage {
        Some(usage) => {
            cells.push(match usage.cpu_us_per_answer {
                // Less than a few clock ticks in the whole window: the
                // server was waiting, and the figure would be noise.
                Some(_) if usage.cpu_seconds < IDLE_CPU => "≈0".to_owned(),
                Some(us) => format!("{us:.1} µs"),
                None => dash(),
            });
            cells.push(
                usage
                    .switches_per_answer
                    .map_or_else(dash, |switches| format!("{switches:.2}")),
            );
            cells.push(kib(usage.peak_rss_kib as f64));
            if idle_memory {
                match &usage.idle {
                    Some(idle) => {
                        cells.push(group_digits(idle.accepted as f64));
                        cells.push(
                            idle.bytes_per_connection
                                .map_or_else(dash, |bytes| kib(bytes / 1024.0)),
                        );
                    }
                    None => cells.extend([dash(), dash()]),
                }
            }
        }
        None => {
            cells.extend([dash(), dash(), dash()]);
            if idle_memory {
                cells.extend([dash(), dash()]);
            }
        }
    }
    cells.push(notes(run, held));
    cells
}

/// Errors, idle closes, skips, failures and unclean exits, briefly.
fn notes(run: &RunResult, held: bool) -> String {
    let mut notes = Vec::new();
    match run.status {
        Status::Skipped => notes.push(format!(
            "not run: {}",
            run.note.as_deref().unwrap_or("skipped")
        )),
        Status::Failed => notes.push(format!(
            "FAILED: {}",
            run.note.as_deref().unwrap_or("unknown error")
        )),
        Status::Ok => {}
    }
    if let Some(load) = run.measured() {
        if load.errors > 0 {
            let named = load.errors_by_kind.named();
            notes.push(format!("{} errors ({})", load.errors, named.join(", ")));
        }
        if let Some(reason) = &load.stopped_early {
            notes.push(format!("stopped early: {reason}"));
        }
    }
    if held {
        if let Some(hold) = &run.hold {
            let idle = &hold.idle_timeout;
            let accepted = run
                .server_usage
                .as_ref()
                .and_then(|usage| usage.idle.as_ref());
            if idle.count > 0 {
                notes.push(format!(
                    "{}/{} idle closed by timeout",
                    idle.count, hold.connected
                ));
            } else if let Some(accepted) = accepted {
                notes.push(format!(
                    "{} of {} idle accepted in {:.1} s",
                    group_digits(accepted.accepted as f64),
                    group_digits(hold.connected as f64),
                    accepted.accept_seconds
                ));
            } else {
                notes.push(format!("{}/{} idle kept open", hold.open, hold.connected));
            }
            if hold.connected < hold.connections {
                notes.push(format!(
                    "{} idle did not connect",
                    hold.connections - hold.connected
                ));
            }
        }
    }
    if let Some(usage) = &run.server_usage {
        if usage.others_cores >= BUSY_ELSEWHERE {
            notes.push(format!(
                "machine busy elsewhere: {:.1} cores",
                usage.others_cores
            ));
        }
    }
    if let Some(problem) = run.exit.as_ref().and_then(|exit| exit.problem.as_ref()) {
        let short = problem.split(';').next().unwrap_or(problem);
        notes.push(format!("server {short}"));
    }
    notes.join("; ")
}

/// A Markdown table whose columns line up in a terminal; numbers are
/// right-aligned.
fn align(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .map(|row| row[i].chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let numeric = |i: usize| numeric(header, i);
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        out.push('|');
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if numeric(i) {
                let _ = write!(out, " {}{cell} |", " ".repeat(pad));
            } else {
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            }
        }
        out.push('\n');
    };
    let header: Vec<String> = header.iter().map(|&h| h.to_owned()).collect();
    line(&mut out, &header);
    out.push('|');
    for (i, width) in widths.iter().enumerate() {
        let dashes = "-".repeat((*width).max(3));
        if numeric(i) {
            let _ = write!(out, " {}: |", &dashes[1..]);
        } else {
            let _ = write!(out, " {dashes} |");
        }
    }
    out.push('\n');
    for row in rows {
        line(&mut out, row);
    }
    out
}

/// The mark of a verdict, with what it means.
fn mark(held: Option<bool>) -> &'static str {
    match held {
        Some(true) => "✓",
        Some(false) => "✗ lesson did not show on this run",
        None => "– not measured",
    }
}

/// The checks of an experiment as a list, for the terminal and report.md.
pub(crate) fn checks_list(checks: &[CheckResult]) -> String {
    if checks.is_empty() {
        return String::new();
    }
    let mut out =
        String::from("\nChecks (one that does not hold fails nothing: machines vary):\n\n");
    for check in checks {
        let figures: Vec<String> = check
            .figures
            .iter()
            .map(|(name, value)| format!("{name} {}", figure(*value)))
            .collect();
        let (sign, rest) = match check.held {
            Some(true) => ("✓", String::new()),
            held => {
                let words = mark(held);
                let (sign, words) = words.split_once(' ').unwrap_or((words, ""));
                (sign, format!(": {words}"))
            }
        };
        out.push_str(&format!("- {sign} {}{rest}", check.text));
        if !figures.is_empty() {
            out.push_str(&format!(" ({})", figures.join(", ")));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::plan::checks::Check;

    #[test]
    fn columns_line_up() {
        let table = align(
            &["server", "answers/s", "notes"],
            &[
                vec!["srv-poll".to_owned(), "1,234".to_owned(), String::new()],
                vec!["srv-single".to_owned(), "12".to_owned(), "x".to_owned()],
            ],
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "| server     | answers/s | notes |");
        assert_eq!(lines[1], "| ---------- | --------: | ----- |");
        assert_eq!(lines[2], "| srv-poll   |     1,234 |       |");
        assert_eq!(lines[3], "| srv-single |        12 | x     |");
    }

    #[test]
    fn a_check_on_servers_not_run_is_not_measured() {
        let check = Check::new("srv-poll ≥ 2 × srv-single", |f| {
            Some(f.rps("srv-poll")? >= 2.0 * f.rps("srv-single")?)
        });
        let result = check.evaluate(&[], &[]);
        assert_eq!(result.held, None);
        assert!(result.figures.is_empty());
        let listed = checks_list(&[result]);
        assert!(listed.contains("- – srv-poll ≥ 2 × srv-single: not measured"));
    }
}

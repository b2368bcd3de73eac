//! The experiments run apart (11 and 12), whose rows are ways to reach
//! three backends and pairs of servers, not one server each, as every
//! report shows them: a heading, the lesson, a table, the checks and a
//! chart where there is one. Their tables are Markdown, for the terminal
//! and report.md, split into cells again for report.html.

use super::charts::DEAD_SERVER_CHART;
use super::tables::checks_list;
use crate::compare::format::{group_digits, micros};
use crate::compare::model::{CheckResult, DeadServerResult, Results, ServersAskServersResult, Way};
use crate::compare::plan::servers_ask_servers::CLIENTS;

/// An experiment run apart, as the report shows it.
pub(crate) struct Section<'a> {
    pub(crate) number: usize,
    pub(crate) key: &'static str,
    pub(crate) title: &'static str,
    pub(crate) lesson: &'static str,
    /// Its table, as Markdown.
    pub(crate) table: String,
    /// A paragraph under the table, if it has one (the settings its
    /// figures came from).
    pub(crate) note: Option<String>,
    pub(crate) checks: &'a [CheckResult],
    /// Its chart, if it has one: the file's name, and what it draws.
    pub(crate) chart: Option<(&'static str, &'static str)>,
}

/// The experiments run apart that `results` hold, in their order.
pub(crate) fn sections(results: &Results) -> Vec<Section<'_>> {
    let mut sections = Vec::new();
    if let Some(dead) = &results.dead_server {
        sections.push(Section {
            number: dead.number,
            key: dead.key,
            title: dead.title,
            lesson: dead.lesson,
            table: dead_server_table(dead),
            note: Some(dead_server_settings(dead)),
            checks: &dead.checks,
            chart: Some((
                DEAD_SERVER_CHART,
                "answers per 100 ms, a panel per failure kind",
            )),
        });
    }
    if let Some(peers) = &results.ask_peers {
        sections.push(Section {
            number: peers.number,
            key: peers.key,
            title: peers.title,
            lesson: peers.lesson,
            table: servers_ask_servers_table(peers),
            note: None,
            checks: &peers.checks,
            chart: None,
        });
    }
    sections
}

/// The experiment run apart called `key`, if `results` hold it.
pub(crate) fn section<'a>(results: &'a Results, key: &str) -> Option<Section<'a>> {
    sections(results)
        .into_iter()
        .find(|section| section.key == key)
}

impl Section<'_> {
    /// Its title, table and checks, for the terminal.
    pub(crate) fn for_terminal(&self) -> String {
        format!(
            "{}. {}\n{}{}{}",
            self.number,
            self.title,
            self.table,
            self.note_below(),
            checks_list(self.checks)
        )
    }

    /// The note as Markdown under the table: a paragraph of its own.
    fn note_below(&self) -> String {
        self.note
            .as_ref()
            .map_or_else(String::new, |note| format!("\n{note}\n"))
    }

    /// Its part of report.md; `drawn` are the charts that could be drawn,
    /// `(file name, SVG)`.
    pub(crate) fn markdown(&self, drawn: &[(String, String)]) -> String {
        let mut md = format!(
            "\n## {}. {}\n\n{}\n\n{}",
            self.number, self.title, self.lesson, self.table
        );
        md += &self.note_below();
        md += &checks_list(self.checks);
        if let Some((chart, what)) = self.chart {
            if drawn.iter().any(|(drawn, _)| drawn == chart) {
                md += &format!("\n![{what}]({chart})\n");
            }
        }
        md
    }
}

/// Experiment 11's table, as Markdown: a row per failure kind and way.
pub(crate) fn dead_server_table(result: &DeadServerResult) -> String {
    let mut out = format!(
        "| backend 2 ({} ×3, {:.1} s runs, failing at {:.1} s, recovering at {:.1} s) | way | answers | lost | errors seen | re-asked | noticed after | rate back to 90% after | serving again after | left the registry after | answers per backend |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n",
        result.model, result.seconds, result.fail_at_seconds, result.recover_at_seconds
    );
    for pair in &result.pairs {
        let kind = pair.kind.label();
        if let Some(why) = &pair.not_run {
            out += &format!("| {kind} | {} | {why} | | | | | | | | |\n", pair.label());
            continue;
        }
        let ms = |v: Option<f64>| v.map_or("–".to_owned(), |ms| format!("{ms:.0} ms"));
        let left = match pair.way {
            Way::Registry => pair
                .left_registry_after_ms
                .map_or("stayed".to_owned(), |ms| format!("{ms:.0} ms")),
            _ => String::new(),
        };
        let backends: Vec<String> = pair
            .per_backend
            .iter()
            .map(|n| n.map_or("?".to_owned(), |n| group_digits(n as f64)))
            .collect();
        out += &format!(
            "| {kind} | {} | {} | {} | {} | {} | {} | {} | {} | {left} | {} |\n",
            pair.label(),
            group_digits(pair.answers as f64),
            pair.lost,
            pair.errors,
            pair.reasked,
            ms(pair.noticed_after_ms),
            ms(pair.recovered_after_ms),
            ms(pair.back_after_ms),
            backends.join(" / ")
        );
    }
    out
}

/// The settings experiment 11's figures came from, a line under its table.
fn dead_server_settings(result: &DeadServerResult) -> String {
    let s = &result.settings;
    format!(
        "Settings: client --timeout {} ms; HAProxy inter {} ms, fall {}; ZooKeeper session \
         {} ms; --health-interval {} ms, --health-fails {}.",
        s.timeout_ms,
        s.haproxy_inter_ms,
        s.haproxy_fall,
        s.session_timeout_ms,
        s.health_interval_ms,
        s.health_fails
    )
}

/// Experiment 12's table, as Markdown.
pub(crate) fn servers_ask_servers_table(result: &ServersAskServersResult) -> String {
    let mut out = format!(
        "| server ({} clients a side, {:.0} s) | answers/s | no peer answered | served | p50 | p99 | what it shows |\n|---|--:|--:|--:|--:|--:|---|\n",
        CLIENTS, result.seconds
    );
    for row in &result.rows {
        if let Some(why) = &row.failed {
            out += &format!("| {} | {why} | | | | | {} |\n", row.label, row.note);
            continue;
        }
        // A row with no answer has no latency to show.
        let latency = |us: f64| {
            if row.rps > 0.0 {
                micros(us)
            } else {
                "–".to_owned()
            }
        };
        out += &format!(
            "| {} | {} | {} | {}/{} | {} | {} | {} |\n",
            row.label,
            group_digits(row.rps),
            row.no_peer_answered,
            row.served,
            2 * CLIENTS,
            latency(row.p50_us),
            latency(row.p99_us),
            row.note
        );
    }
    out
}

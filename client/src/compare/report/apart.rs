//! The tables of the experiments run apart (11 and 12), whose rows are
//! ways to reach three backends and pairs of servers, not one server
//! each: Markdown, for the terminal and report.md, and split into cells
//! again for report.html.

use crate::compare::format::{group_digits, micros};
use crate::compare::model::{DeadServerResult, ServersAskServersResult};
use crate::compare::plan::servers_ask_servers::CLIENTS;

/// Where experiment 11's chart goes in the report directory.
pub(crate) const DEAD_SERVER_CHART: &str = "dead-server.svg";

/// Experiment 11's table, as Markdown.
pub(crate) fn dead_server_table(result: &DeadServerResult) -> String {
    let mut out = format!(
        "| way ({} ×3, {:.0} s, killed at {:.1} s, back at {:.1} s) | answers | lost | errors seen | re-asked | rate back after | restarted one back after | answers per backend |\n|---|---|---|---|---|---|---|---|\n",
        result.model, result.seconds, result.kill_at_seconds, result.restart_at_seconds
    );
    for way in &result.ways {
        if let Some(why) = &way.not_run {
            out += &format!("| {} | {why} | | | | | | |\n", way.way.label());
            continue;
        }
        let ms = |v: Option<f64>| v.map_or("–".to_owned(), |ms| format!("{ms:.0} ms"));
        let backends: Vec<String> = way
            .per_backend
            .iter()
            .map(|n| n.map_or("?".to_owned(), |n| group_digits(n as f64)))
            .collect();
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            way.way.label(),
            group_digits(way.answers as f64),
            way.lost,
            way.errors,
            way.reasked,
            ms(way.recovered_after_ms),
            ms(way.back_after_ms),
            backends.join(" / ")
        );
    }
    out
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
        out += &format!(
            "| {} | {} | {} | {}/{} | {} | {} | {} |\n",
            row.label,
            group_digits(row.rps),
            row.no_peer_answered,
            row.served,
            2 * CLIENTS,
            micros(row.p50_us),
            micros(row.p99_us),
            row.note
        );
    }
    out
}

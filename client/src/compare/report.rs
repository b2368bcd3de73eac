//! The report, made from the results alone: the tables (`tables.rs`, and
//! `apart.rs` for the experiments run apart), the SVG charts (`charts.rs`)
//! and report.html (`html.rs`), written into `--out` with results.json.

pub(crate) mod apart;
pub(crate) mod charts;
pub(crate) mod html;
pub(crate) mod tables;

use std::path::Path;

use anyhow::Context as _;

use super::model::Results;

/// Writes results.json, report.md, report.html and the charts.
pub(crate) fn write(results: &Results, out: &Path) -> anyhow::Result<()> {
    let write = |name: &str, contents: String| {
        let path = out.join(name);
        std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))
    };
    write(
        "results.json",
        serde_json::to_string_pretty(results)? + "\n",
    )?;
    let charts = charts::draw(results);
    let apart_charts = charts::apart(results);
    for (name, svg) in charts.iter().chain(&apart_charts) {
        write(name, svg.clone())?;
    }
    let names: Vec<&str> = charts.iter().map(|(name, _)| name.as_str()).collect();
    let mut report = tables::report(results, &names);
    for section in apart::sections(results) {
        report += &section.markdown(&apart_charts);
    }
    write("report.md", report)?;
    write("report.html", html::report(results, &charts, &apart_charts))?;
    Ok(())
}

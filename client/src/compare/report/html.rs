//! report.html: the same content as report.md on one self-contained page
//! for a browser: the charts inline as SVG, the styles in a `<style>`
//! block, nothing loaded from elsewhere, no script. Built from the
//! results, with the tables' cells from [`super::tables`] and
//! [`super::apart`].

use std::fmt::Write as _;

use super::apart::{self, Section};
use super::tables;
use crate::compare::model::{CheckResult, ExperimentResult, Results};

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif;
  max-width: 1320px; margin: 2em auto; padding: 0 1em; line-height: 1.45;
  color: #222; background: #fff; }
h1 { font-size: 1.7em; margin-bottom: 0.3em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ccc;
  padding-bottom: 0.2em; }
code { font-family: ui-monospace, 'DejaVu Sans Mono', Menlo, monospace;
  font-size: 0.9em; background: #f3f3f3; padding: 0 0.2em; border-radius: 3px; }
.table { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.55em; vertical-align: top; }
th { background: #eef1f5; text-align: left; }
td.num, th.num { text-align: right; white-space: nowrap;
  font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1em 0; }
figure svg { max-width: 100%; height: auto; border: 1px solid #ddd; }
ul.checks { list-style: none; padding-left: 0.5em; }
ul.checks li { margin: 0.2em 0; }
.mark { display: inline-block; width: 1.3em; font-weight: bold; }
.held { color: #1a7f37; }
.failed { color: #cf222e; }
.unmeasured { color: #777; }
.figures { color: #666; font-size: 0.9em; }
.warning { color: #cf222e; }
";

/// The whole report.html. `charts` are the figures above the tables,
/// `(file name, SVG)`; `apart_charts` those of the experiments run apart.
pub(crate) fn report(
    results: &Results,
    charts: &[(String, String)],
    apart_charts: &[(String, String)],
) -> String {
    let title = "zen: six concurrency models, side by side";
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(title),
        escape(title)
    );
    let _ = writeln!(html, "<p>{}</p>", escape(&tables::intro(results, "")));
    if let Some(rtt) = &results.round_trip {
        let _ = writeln!(html, "<p>{}</p>", escape(&tables::round_trip_line(rtt)));
    }
    if results.interrupted {
        html.push_str(
            "<p class=\"warning\"><strong>Interrupted:</strong> the experiments after \
             the last table did not run.</p>\n",
        );
    }
    for (name, svg) in charts {
        figure(&mut html, name, svg);
    }
    how_to_read(&mut html);
    for experiment in &results.experiments {
        experiment_section(&mut html, experiment);
    }
    for section in apart::sections(results) {
        apart_section(&mut html, &section, apart_charts);
    }
    html.push_str("</body>\n</html>\n");
    html
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text written in report.md's few inline marks: `code` and
/// **bold** become `<code>` and `<strong>`; everything else is text.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            for (j, part) in part.split("**").enumerate() {
                if j % 2 == 1 {
                    let _ = write!(out, "<strong>{}</strong>", escape(part));
                } else {
                    out.push_str(&escape(part));
                }
            }
        }
    }
    out
}

/// A chart, inline: the SVG's text itself, less any XML declaration.
fn figure(html: &mut String, name: &str, svg: &str) {
    let svg = match svg.trim_start().strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map_or(rest, |(_, svg)| svg),
        None => svg,
    };
    let _ = writeln!(
        html,
        "<figure aria-label=\"{}\">\n{}\n</figure>",
        escape(name),
        svg.trim()
    );
}

/// The "How to read the tables" section: report.md's list, item by item.
fn how_to_read(html: &mut String) {
    let mut items: Vec<String> = Vec::new();
    let mut heading = String::new();
    for line in tables::HOW_TO_READ.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            heading = title.to_owned();
        } else if let Some(item) = line.strip_prefix("- ") {
            items.push(item.to_owned());
        } else if let Some(last) = items.last_mut() {
            if !line.trim().is_empty() {
                last.push(' ');
                last.push_str(line.trim());
            }
        }
    }
    let _ = writeln!(html, "<h2>{}</h2>\n<ul>", escape(&heading));
    for item in &items {
        let _ = writeln!(html, "<li>{}</li>", inline(item));
    }
    html.push_str("</ul>\n");
}

fn experiment_section(html: &mut String, experiment: &ExperimentResult) {
    heading(html, experiment.number, &experiment.key, &experiment.title);
    let _ = writeln!(html, "<p>{}</p>", inline(&experiment.lesson));
    if let Some(first) = experiment.runs.first() {
        let alongside = first
            .background_command
            .as_ref()
            .map_or_else(String::new, |command| {
                format!(
                    ", alongside <code>{}</code> (not in the table)",
                    escape(command)
                )
            });
        let _ = writeln!(
            html,
            "<p>Load: <code>{}</code>{alongside} (servers: <code>{}</code>, ...).</p>",
            escape(&first.load_command),
            escape(&first.server_command)
        );
    }
    let table = tables::table(experiment);
    let numeric: Vec<bool> = (0..table.header.len()).map(|i| table.numeric(i)).collect();
    write_table(html, &table.header, &table.rows, &numeric);
    let predictions = tables::prediction_lines(experiment);
    if !predictions.is_empty() {
        html.push_str("<p>Predicted by the cost model, and measured:</p>\n<ul>\n");
        for line in predictions {
            let _ = writeln!(html, "<li>{}</li>", escape(&line));
        }
        html.push_str("</ul>\n");
    }
    checks(html, &experiment.checks);
    let problems: Vec<String> = experiment
        .runs
        .iter()
        .filter_map(|run| {
            let problem = run.exit.as_ref()?.problem.as_ref()?;
            Some(format!(
                "<li><strong>{}</strong> did not stop cleanly: {}</li>",
                escape(&run.row_name()),
                escape(problem)
            ))
        })
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(html, "<ul>\n{}\n</ul>", problems.join("\n"));
    }
}

fn heading(html: &mut String, number: usize, key: &str, title: &str) {
    let _ = writeln!(
        html,
        "<h2 id=\"{}\">{number}. {}</h2>",
        escape(key),
        escape(title)
    );
}

/// A table of text cells; `numeric[i]` right-aligns column `i`.
fn write_table<H: AsRef<str>>(
    html: &mut String,
    header: &[H],
    rows: &[Vec<String>],
    numeric: &[bool],
) {
    let class = |i: usize| {
        if numeric.get(i).copied().unwrap_or(false) {
            " class=\"num\""
        } else {
            ""
        }
    };
    html.push_str("<div class=\"table\"><table>\n<thead><tr>");
    for (i, cell) in header.iter().enumerate() {
        let _ = write!(html, "<th{}>{}</th>", class(i), escape(cell.as_ref()));
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        html.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let _ = write!(html, "<td{}>{}</td>", class(i), escape(cell));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody>\n</table></div>\n");
}

/// The checks under a table, each with its mark and the figures it read.
fn checks(html: &mut String, checks: &[CheckResult]) {
    if checks.is_empty() {
        return;
    }
    html.push_str(
        "<p>Checks (one that does not hold fails nothing: machines vary):</p>\n\
         <ul class=\"checks\">\n",
    );
    for check in checks {
        let (class, mark, words) = match check.held {
            Some(true) => ("held", "✓", ""),
            Some(false) => ("failed", "✗", ": lesson did not show on this run"),
            None => ("unmeasured", "–", ": not measured"),
        };
        let figures: Vec<String> = check
            .figures
            .iter()
            .map(|(name, value)| format!("{name} {}", crate::compare::format::figure(*value)))
            .collect();
        let figures = if figures.is_empty() {
            String::new()
        } else {
            format!(
                " <span class=\"figures\">({})</span>",
                escape(&figures.join(", "))
            )
        };
        let _ = writeln!(
            html,
            "<li><span class=\"mark {class}\">{mark}</span>{}{}{figures}</li>",
            escape(&check.text),
            escape(words)
        );
    }
    html.push_str("</ul>\n");
}

/// An experiment run apart: its table, and its chart if it was drawn.
fn apart_section(html: &mut String, section: &Section<'_>, drawn: &[(String, String)]) {
    heading(html, section.number, section.key, section.title);
    let _ = writeln!(html, "<p>{}</p>", inline(section.lesson));
    pipe_table(html, &section.table);
    if let Some(note) = &section.note {
        let _ = writeln!(html, "<p>{}</p>", escape(note));
    }
    checks(html, section.checks);
    if let Some((name, _)) = section.chart {
        if let Some((_, svg)) = drawn.iter().find(|(drawn, _)| drawn == name) {
            figure(html, name, svg);
        }
    }
}

/// Experiments 11 and 12 build their tables as cells joined by `|`
/// (their cells are figures and fixed words, never a `|`): split into
/// cells again, the same table in HTML. A column is right-aligned when
/// its separator says so, or when every cell in it is a figure.
fn pipe_table(html: &mut String, markdown: &str) {
    let cells = |line: &str| -> Vec<String> {
        let line = line.trim();
        let line = line.strip_prefix('|').unwrap_or(line);
        let line = line.strip_suffix('|').unwrap_or(line);
        line.split('|').map(|cell| cell.trim().to_owned()).collect()
    };
    let mut lines = markdown.lines().filter(|line| !line.trim().is_empty());
    let header = lines.next().map(cells).unwrap_or_default();
    let separator = lines.next().map(cells).unwrap_or_default();
    let rows: Vec<Vec<String>> = lines.map(cells).collect();
    let is_figure = |cell: &str| {
        cell.is_empty() || cell.starts_with(|c: char| c.is_ascii_digit() || c == '–' || c == '?')
    };
    let numeric: Vec<bool> = (0..header.len())
        .map(|i| {
            i > 0
                && (separator.get(i).is_some_and(|sep| sep.ends_with(':'))
                    || rows
                        .iter()
                        .all(|row| row.get(i).is_none_or(|cell| is_figure(cell))))
        })
        .collect();
    write_table(html, &header, &rows, &numeric);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("a & b <c> \"d\""),
            "a &amp; b &lt;c&gt; &quot;d&quot;"
        );
        assert_eq!(
            inline("run `client load -c 64 & x` then **see** <b>"),
            "run <code>client load -c 64 &amp; x</code> then <strong>see</strong> &lt;b&gt;"
        );
    }

    #[test]
    fn an_xml_declaration_is_dropped() {
        let mut html = String::new();
        figure(&mut html, "a.svg", "<?xml version=\"1.0\"?>\n<svg></svg>\n");
        assert_eq!(
            html,
            "<figure aria-label=\"a.svg\">\n<svg></svg>\n</figure>\n"
        );
    }

    #[test]
    fn a_pipe_table_becomes_cells() {
        let mut html = String::new();
        pipe_table(
            &mut html,
            "| way | answers | note |\n|---|---|---|\n| a & b | 1,200 | x<y |\n",
        );
        assert!(html.contains("<th>way</th><th class=\"num\">answers</th><th>note</th>"));
        assert!(html.contains("<td>a &amp; b</td><td class=\"num\">1,200</td><td>x&lt;y</td>"));
    }

    #[test]
    fn a_note_under_a_pipe_table_is_a_paragraph_not_a_row() {
        let section = Section {
            number: 11,
            key: "dead-server",
            title: "a title",
            lesson: "a lesson",
            table: "| way | answers |\n|---|--:|\n| a | 1 |\n".to_owned(),
            note: Some("Settings: inter 100 ms.".to_owned()),
            checks: &[],
            chart: None,
        };
        let mut html = String::new();
        apart_section(&mut html, &section, &[]);
        assert_eq!(html.matches("<tr>").count(), 2, "{html}");
        assert!(
            html.contains("</table></div>\n<p>Settings: inter 100 ms.</p>\n"),
            "{html}"
        );
    }
}

//! Every file the Markdown cites exists: the README, ARCHITECTURE.md, the
//! protocol, the course and the deployment notes send a reader to source
//! files by path, and a path that a move or a rename left behind is a
//! broken promise to that reader. Two forms are checked: a Markdown link
//! `[text](relative/path)`, resolved from the page's own folder, and a path
//! written out in the text (`srv-poll/src/event_loop.rs`), resolved from
//! the root of the repository.

use std::fs;
use std::path::{Path, PathBuf};

/// The folders whose paths a page may cite by name from the root.
const TOP_FOLDERS: &[&str] = &[
    "zen-utils/",
    "srv-single/",
    "srv-threaded/",
    "srv-poll/",
    "srv-async/",
    "srv-hybrid/",
    "srv-uring/",
    "client/",
    "benches/",
    "scripts/",
    "docs/",
    "deploy/",
    ".ci/",
];

/// The endings of the files a page may cite.
const CITED_ENDINGS: &[&str] = &[
    ".rs", ".md", ".py", ".sh", ".c", ".toml", ".json", ".svg", ".html", ".cfg", ".conf",
    ".service", ".socket",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the client crate sits in the workspace")
        .to_path_buf()
}

/// The Markdown pages of the repository, outside `target/` and `.git/`.
fn pages(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("a readable folder") {
        let path = entry.expect("a readable entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !matches!(name, "target" | ".git") {
                pages(&path, found);
            }
        } else if name.ends_with(".md") {
            found.push(path);
        }
    }
}

/// The targets of `[text](target)` links that point into the repository.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split('#').next().unwrap_or("").trim();
        let external = target.contains("://") || target.starts_with("mailto:");
        if !target.is_empty() && !external && !target.contains(' ') {
            targets.push(target.to_owned());
        }
        rest = &rest[end..];
    }
    targets
}

/// Paths written out in the text, from one of [`TOP_FOLDERS`] to one of
/// [`CITED_ENDINGS`], e.g. `srv-poll/src/event_loop.rs`.
fn written_paths(text: &str) -> Vec<String> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "_-./".contains(c);
    text.split(|c: char| !is_path_char(c))
        .map(|word| word.trim_end_matches('.'))
        .filter(|word| {
            TOP_FOLDERS.iter().any(|top| word.starts_with(top))
                && CITED_ENDINGS.iter().any(|ending| word.ends_with(ending))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_path_the_markdown_cites_exists() {
    let root = root();
    let mut found = Vec::new();
    pages(&root, &mut found);
    assert!(
        found.iter().any(|page| page.ends_with("ARCHITECTURE.md")),
        "the pages include ARCHITECTURE.md"
    );
    let mut missing = Vec::new();
    let mut checked = 0;
    for page in &found {
        let text = fs::read_to_string(page).expect("a readable page");
        let folder = page.parent().expect("a page sits in a folder");
        let shown = page
            .strip_prefix(&root)
            .unwrap_or(page)
            .display()
            .to_string();
        for target in link_targets(&text) {
            checked += 1;
            if !folder.join(&target).exists() {
                missing.push(format!("{shown}: link to {target}"));
            }
        }
        for path in written_paths(&text) {
            checked += 1;
            if !root.join(&path).exists() {
                missing.push(format!("{shown}: {path}"));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} citations found: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "cited paths that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn finds_both_forms_of_citation() {
    let text = "See [the loop](../srv-poll/src/event_loop.rs#L10) and \
                `zen-utils/src/protocol/peers.rs`, not https://example.org/x.rs.";
    assert_eq!(link_targets(text), ["../srv-poll/src/event_loop.rs"]);
    assert_eq!(written_paths(text), ["zen-utils/src/protocol/peers.rs"]);
}

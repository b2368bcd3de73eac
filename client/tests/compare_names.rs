//! The names a reader is given for `client compare` are the real ones:
//! the experiments' keys that `--only` takes, as its refusal of an unknown
//! key lists them, are the ones `--help` lists and says the number of, and
//! every `--only KEY` in the README and the lessons is one of them; every
//! server `--servers` takes is one `--help` lists. A failure names the
//! file and line that is wrong. Nothing here starts a server.

mod common;

use std::path::{Path, PathBuf};

use common::client;

/// What `client compare` lists after `known:` when it refuses `args`.
fn known(args: &[&str]) -> Vec<String> {
    let mut all = vec!["compare"];
    all.extend(args);
    let output = client(&all);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    let list = stderr
        .split_once("(known: ")
        .and_then(|(_, rest)| rest.trim_end().strip_suffix(')'))
        .unwrap_or_else(|| panic!("no list of known names: {stderr}"));
    list.split(", ").map(str::to_owned).collect()
}

/// Every experiment's key, as the client itself says them.
fn experiment_keys() -> Vec<String> {
    known(&["--only", "no-such-experiment"])
}

/// `client compare --help`.
fn help() -> String {
    let output = client(&["compare", "--help"]);
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The names a flag's paragraph in `help` lists after `intro`, up to the
/// next flag: `one-client, many-clients` as `["one-client",
/// "many-clients"]`.
fn listed_after(help: &str, intro: &str) -> Vec<String> {
    let (_, rest) = help
        .split_once(intro)
        .unwrap_or_else(|| panic!("--help has no {intro:?}:\n{help}"));
    let paragraph = rest.split("\n\n").next().unwrap_or(rest);
    let words: String = paragraph
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    words
        .split(|c: char| c == ',' || c == '(' || c == ')' || c == '[' || c.is_whitespace())
        .filter(|word| word.starts_with("srv-") || word.contains('-') || is_key(word))
        .map(str::to_owned)
        .collect()
}

/// A word that could be an experiment's key: lower case, digits and
/// dashes (`c10k`).
fn is_key(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[test]
fn an_unknown_experiment_is_refused_with_every_key() {
    let keys = experiment_keys();
    assert_eq!(keys.len(), 12, "every experiment's key: {keys:?}");
    for key in [
        "one-client",
        "short-connections",
        "dead-server",
        "servers-ask-servers",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
    }
    // Whichever kind of experiment the unknown key comes with.
    assert_eq!(known(&["--only", "dead-server,no-such-experiment"]), keys);
}

/// Numbers as `--help` writes them.
const NUMBERS: [&str; 16] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen",
];

#[test]
fn help_lists_the_real_experiments_and_their_number() {
    let keys = experiment_keys();
    let help = help();
    let listed = listed_after(&help, "Run only these experiments:");
    assert_eq!(listed, keys, "--only's list in --help");
    let number = NUMBERS[keys.len()];
    let said: Vec<&str> = help
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|pair| pair[1].trim_end_matches([',', '.', ')']) == "experiments")
        .map(|pair| pair[0])
        .filter(|word| NUMBERS.contains(word) || word.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert!(
        !said.is_empty(),
        "--help says how many experiments:\n{help}"
    );
    for word in said {
        assert!(
            word == number || word == keys.len().to_string(),
            "--help says {word:?} experiments, there are {number}:\n{help}"
        );
    }
}

#[test]
fn help_lists_every_server() {
    let servers = known(&["--servers", "srv-nope"]);
    let help = help();
    let listed = listed_after(&help, "Run only these servers:");
    for server in &servers {
        assert!(
            listed.contains(server),
            "--servers' help does not list {server}: {listed:?}"
        );
    }
}

/// README.md, ARCHITECTURE.md and every Markdown file under docs/.
fn markdown_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_lessons_only_name_real_experiments() {
    let keys = experiment_keys();
    let mut named = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        // `--only KEY[,KEY]`, even where a line break falls after --only;
        // a placeholder (`--only EXP[,EXP...]`) is no key.
        for (at, _) in text.match_indices("--only") {
            let rest = text[at + "--only".len()..].trim_start_matches([' ', '\n', '=']);
            let list: String = rest
                .chars()
                .take_while(|&c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == ','
                })
                .collect();
            let line = text[..at].lines().count().max(1);
            for key in list.split(',').filter(|key| !key.is_empty()) {
                named += 1;
                assert!(
                    keys.iter().any(|k| k == key),
                    "{}:{line}: `--only {key}`: no such experiment (known: {})",
                    file.display(),
                    keys.join(", ")
                );
            }
        }
    }
    assert!(named > 0, "the lessons name experiments");
}

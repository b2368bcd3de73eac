//! The README's flags are the binaries' flags. Every flag the top-level
//! README.md gives the client (its synopsis, its command lines, the flags
//! named in each command's paragraph) must be in that command's `--help`,
//! and every flag of a command's `--help` in its synopsis; every flag of
//! the servers' flags table (with its default) and of the servers' command
//! lines must be in each server's `--help`, every flag of a server's
//! `--help` in the table or in the README's list of its own flags, and the
//! "Run each" command lines must start their server. A failure names the
//! README line that is wrong. Nothing here is timed.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The server binaries, all of which the README's server flags concern.
const SERVERS: [&str; 6] = [
    "srv-single",
    "srv-threaded",
    "srv-poll",
    "srv-async",
    "srv-hybrid",
    "srv-uring",
];

/// The section that gives the client's synopsis and commands.
const CLIENT_SECTION: &str = "The client";
/// The section about `client compare`'s experiments.
const COMPARE_SECTION: &str = "See the six models side by side";
/// The section with the servers' shared flags (its heading begins so).
const SERVER_FLAGS_SECTION: &str = "Server flags";
/// The sentence that lists each server's own flags.
const OWN_FLAGS_SENTENCE: &str = "Each binary's `--help` lists its flags";
/// The line that introduces the servers' command lines.
const RUN_EACH: &str = "Run each";

// ---------------------------------------------------------------------------
// The README, cut into blocks.

/// A block of README.md: a heading, a fenced code block, or a paragraph
/// (a table is a paragraph too). `line` is 1-based, as an editor shows it.
#[derive(Debug)]
enum Block {
    Heading,
    Code { lines: Vec<(usize, String)> },
    Prose { line: usize, text: String },
}

/// A block with the heading of the section it is in.
struct Placed {
    section: String,
    block: Block,
}

fn readme_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn blocks(readme: &str) -> Vec<Placed> {
    let mut placed = Vec::new();
    let mut section = String::new();
    let mut lines = readme
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .peekable();
    while let Some((number, line)) = lines.next() {
        let block = if line.starts_with("```") {
            let mut code = Vec::new();
            for (n, l) in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                code.push((n, l.to_owned()));
            }
            Block::Code { lines: code }
        } else if line.starts_with('#') {
            section = line.trim_start_matches('#').trim().to_owned();
            Block::Heading
        } else if line.trim().is_empty() {
            continue;
        } else {
            let mut text = line.to_owned();
            while let Some(&(_, next)) = lines.peek() {
                if next.trim().is_empty() || next.starts_with("```") || next.starts_with('#') {
                    break;
                }
                text.push('\n');
                text.push_str(next);
                lines.next();
            }
            Block::Prose { line: number, text }
        };
        placed.push(Placed {
            section: section.clone(),
            block,
        });
    }
    placed
}

/// The blocks of the section whose heading starts with `heading`.
fn section<'a>(blocks: &'a [Placed], heading: &str) -> Vec<&'a Block> {
    let found: Vec<_> = blocks
        .iter()
        .filter(|placed| placed.section.starts_with(heading))
        .map(|placed| &placed.block)
        .collect();
    assert!(
        !found.is_empty(),
        "README.md has no section headed \"{heading}...\" (this test reads it)"
    );
    found
}

/// The code spans of a paragraph, each with the README line it starts on.
fn spans(line: usize, text: &str) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut newlines = 0;
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            spans.push((line + newlines, part.replace('\n', " ")));
        }
        newlines += part.matches('\n').count();
    }
    spans
}

// ---------------------------------------------------------------------------
// Flags, as the README writes them and as `--help` lists them.

/// The flags named in `text` (`-p`, `--max-conns`), and `HOST` where
/// `with_host` and the text names the positional argument.
fn names_in(text: &str, with_host: bool) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || "[]()|,/×=".contains(c))
        .filter_map(|token| {
            let token = token.trim_matches(|c| matches!(c, '`' | '.' | ';' | ':' | '\'' | '"'));
            if with_host && token == "HOST" {
                return Some("HOST".to_owned());
            }
            let (dashes, rest) = match token.strip_prefix("--") {
                Some(rest) => ("--", rest),
                None => ("-", token.strip_prefix('-')?),
            };
            if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
                return None;
            }
            let name: String = rest
                .chars()
                .take_while(|&c| c.is_ascii_alphanumeric() || c == '-')
                .collect();
            // A single dash takes one letter: `-n`, never a word.
            (dashes == "--" || name.len() == 1).then(|| format!("{dashes}{name}"))
        })
        .collect()
}

/// One option (or positional argument) of a `--help`: its names (`-p`,
/// `--port`; `HOST` for `[HOST]`) and its whole entry.
#[derive(Debug)]
struct Entry {
    names: Vec<String>,
    text: String,
}

/// What a `--help` lists.
struct Help {
    /// What was run, for messages: `client hold --help`.
    what: String,
    entries: Vec<Entry>,
}

impl Help {
    /// Runs `bin args --help`.
    fn of(bin: &Path, args: &[&str], name: &str) -> Self {
        let output = Command::new(bin)
            .args(args)
            .arg("--help")
            .output()
            .unwrap_or_else(|error| panic!("run {} --help: {error}", bin.display()));
        let what = format!(
            "{name} {}--help",
            args.iter().map(|a| format!("{a} ")).collect::<String>()
        );
        assert!(output.status.success(), "{what}: {output:?}");
        let text = String::from_utf8(output.stdout).expect("--help is UTF-8");
        Self {
            what,
            entries: entries(&text),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.entry(name).is_some()
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|entry| entry.names.iter().any(|n| n == name))
    }

    /// Every entry but `--help` and `--version`.
    fn options(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|entry| {
            !entry
                .names
                .iter()
                .any(|name| name == "--help" || name == "--version")
        })
    }
}

/// The entries of a clap `--help`: a line indented by at most six spaces
/// that starts with `-` or `[` opens one (clap's short and long help
/// alike); its text runs to the next one or to the next section heading.
fn entries(help: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut open = false;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if (1..=6).contains(&indent) && (trimmed.starts_with('-') || trimmed.starts_with('[')) {
            let spec = trimmed.split("  ").next().unwrap_or_default();
            let mut names = names_in(spec, false);
            if let Some(positional) = spec
                .strip_prefix('[')
                .and_then(|rest| rest.split(']').next())
            {
                names.push(positional.to_owned());
            }
            entries.push(Entry {
                names,
                text: line.to_owned(),
            });
            open = true;
        } else if indent == 0 && !line.is_empty() {
            open = false;
        } else if let (true, Some(entry)) = (open, entries.last_mut()) {
            entry.text.push('\n');
            entry.text.push_str(line);
        }
    }
    entries
}

/// The subcommands `client --help` lists (`help` aside).
fn client_commands() -> Vec<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_client"))
        .arg("--help")
        .output()
        .expect("run client --help");
    let text = String::from_utf8(output.stdout).expect("--help is UTF-8");
    let after = text
        .split("Commands:")
        .nth(1)
        .expect("client --help lists its commands");
    after
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|&command| command != "help")
        .map(str::to_owned)
        .collect()
}

/// A README line that names `flag` for a program, for the message if the
/// program has no such flag.
struct Mention {
    line: usize,
    flag: String,
    context: String,
}

/// Checks every mention against `help`; each one it lacks is a problem.
fn check(mentions: &[Mention], help: &Help, problems: &mut Vec<String>) {
    for mention in mentions {
        if !help.has(&mention.flag) {
            problems.push(format!(
                "README.md line {}: `{}` is not a flag of `{}` (in: {})",
                mention.line,
                mention.flag,
                help.what.trim_end_matches(" --help"),
                mention.context.trim()
            ));
        }
    }
}

/// Fails with every problem found, each once, in the order found.
fn report(problems: &[String]) {
    let mut seen = std::collections::BTreeSet::new();
    let once: Vec<&str> = problems
        .iter()
        .filter(|problem| seen.insert(problem.as_str()))
        .map(String::as_str)
        .collect();
    assert!(
        once.is_empty(),
        "README.md is out of step with the binaries:\n{}",
        once.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The client.

/// Every `client CMD ...` on a line or in a code span: what follows `CMD`
/// (to the end of the line, comment included), keyed by `CMD`.
fn client_command_lines(
    text: &str,
    line: usize,
    commands: &[String],
) -> Vec<(String, usize, String)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("client ") {
        let start = from + at;
        from = start + "client ".len();
        let before = text[..start].chars().next_back();
        if !matches!(before, None | Some('/' | '`' | ' ' | '\t')) {
            continue;
        }
        let rest = &text[from..];
        let word: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
        if commands.contains(&word) {
            found.push((word.clone(), line, rest[word.len()..].to_owned()));
        }
    }
    found
}

#[test]
fn client_flags_in_the_readme_are_the_client_s() {
    let readme = readme_text();
    let blocks = blocks(&readme);
    let commands = client_commands();
    let client = Path::new(env!("CARGO_BIN_EXE_client"));
    let helps: BTreeMap<&str, Help> = commands
        .iter()
        .map(|command| {
            let help = Help::of(client, &[command], "client");
            (command.as_str(), help)
        })
        .collect();
    let mut mentions: BTreeMap<String, Vec<Mention>> = BTreeMap::new();
    let mut mention = |command: &str, line: usize, context: &str, flags: Vec<String>| {
        for flag in flags {
            mentions
                .entry(command.to_owned())
                .or_default()
                .push(Mention {
                    line,
                    flag,
                    context: context.to_owned(),
                });
        }
    };
    let mut problems = Vec::new();

    // The synopsis: the first code block of the client's section, a line
    // per command, continued on lines that start with a space.
    let client_section = section(&blocks, CLIENT_SECTION);
    let Some(Block::Code { lines: synopsis }) = client_section
        .iter()
        .find(|block| matches!(block, Block::Code { .. }))
    else {
        panic!("README.md's section \"{CLIENT_SECTION}\" has no synopsis block");
    };
    let mut synopses: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    let mut current = None;
    for (line, text) in synopsis {
        if let Some(rest) = text.strip_prefix("client ") {
            let command: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            current = Some(command.clone());
            synopses.insert(command, (*line, Vec::new()));
        } else if !text.starts_with(char::is_whitespace) {
            current = None;
        }
        if let Some((_, names)) = current.as_ref().and_then(|c| synopses.get_mut(c)) {
            let flags = names_in(text, true);
            names.extend(flags.iter().cloned());
            mention(current.as_deref().unwrap_or_default(), *line, text, flags);
        }
    }

    // Every `client CMD ...` in a code block or a code span, anywhere.
    for placed in &blocks {
        let lines: Vec<(usize, String)> = match &placed.block {
            Block::Code { lines } => lines.clone(),
            Block::Prose { line, text } => spans(*line, text),
            Block::Heading => Vec::new(),
        };
        for (line, text) in &lines {
            for (command, line, rest) in client_command_lines(text, *line, &commands) {
                mention(&command, line, text, names_in(&rest, false));
            }
        }
    }

    // The flags a command's paragraphs name in code spans (a span that
    // starts with a flag): in the client's section, those of the command
    // whose paragraph (**`load`** ...) they follow, or of every command
    // before the first; in the comparison's section, compare's.
    let mut paragraphs = |blocks: &[&Block], mut command: Option<String>| {
        for block in blocks {
            let Block::Prose { line, text } = block else {
                continue;
            };
            if let Some(name) = text
                .strip_prefix("**`")
                .and_then(|rest| rest.split("`**").next())
            {
                if commands.iter().any(|c| c == name) {
                    command = Some(name.to_owned());
                }
            }
            for (line, span) in spans(*line, text) {
                if !span.trim_start().starts_with('-') {
                    continue;
                }
                let context = format!("`{span}`");
                match &command {
                    Some(command) => mention(command, line, &context, names_in(&span, false)),
                    None => {
                        for command in &commands {
                            mention(command, line, &context, names_in(&span, false));
                        }
                    }
                }
            }
        }
    };
    paragraphs(&client_section, None);
    paragraphs(
        &section(&blocks, COMPARE_SECTION),
        Some("compare".to_owned()),
    );

    for (command, help) in &helps {
        check(
            mentions.get(*command).map_or(&[][..], Vec::as_slice),
            help,
            &mut problems,
        );
        // And the other way: the synopsis shows every flag of `--help`.
        let Some((line, names)) = synopses.get(*command) else {
            problems.push(format!(
                "README.md line {}: the client synopsis has no line for `client {command}`",
                synopsis.first().map_or(0, |(line, _)| *line)
            ));
            continue;
        };
        for entry in help.options() {
            if !entry.names.iter().any(|name| names.contains(name)) {
                problems.push(format!(
                    "README.md line {line}: the synopsis of `client {command}` lacks {}, which \
                     `{}` lists",
                    entry.names.join("/"),
                    help.what
                ));
            }
        }
    }
    for command in synopses.keys() {
        if !helps.contains_key(command.as_str()) {
            problems.push(format!(
                "README.md line {}: `client {command}` is not a command of `client --help`",
                synopses[command].0
            ));
        }
    }
    report(&problems);
}

// ---------------------------------------------------------------------------
// The servers.

/// The directory with the server binaries this file starts.
fn server_binaries() -> PathBuf {
    common::server_binaries(&SERVERS)
}

/// A line of the "Run each" block: `cargo run --release -p BIN -- ARGS`.
struct RunLine {
    line: usize,
    text: String,
    bin: String,
    args: Vec<String>,
    /// What follows `#`, where the README names flags to try.
    comment: String,
}

/// What the README says about the servers' flags.
struct ServerDocs {
    /// The table's flags: (line, flag, default if the table gives one).
    table: Vec<(usize, String, Option<String>)>,
    /// The flags of the `srv-<model> ...` synopsis.
    synopsis: Vec<Mention>,
    /// Flags named in the section's prose, for every server.
    prose: Vec<Mention>,
    /// Each server's own flags, from the sentence that lists them.
    own: BTreeMap<String, Vec<Mention>>,
    /// The line where that sentence's paragraph starts.
    own_line: usize,
    /// The "Run each" command lines.
    run: Vec<RunLine>,
}

fn server_docs(blocks: &[Placed]) -> ServerDocs {
    let flags_section = section(blocks, SERVER_FLAGS_SECTION);
    let mut table = Vec::new();
    let mut synopsis = Vec::new();
    let mut prose = Vec::new();
    for block in &flags_section {
        match block {
            Block::Code { lines } => {
                for (line, text) in lines {
                    for flag in names_in(text, true) {
                        synopsis.push(Mention {
                            line: *line,
                            flag,
                            context: text.clone(),
                        });
                    }
                }
            }
            Block::Prose { line, text } if text.starts_with('|') => {
                for (i, row) in text.lines().enumerate() {
                    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                    let (Some(first), Some(default)) = (cells.get(1), cells.get(2)) else {
                        continue;
                    };
                    let default = default
                        .strip_prefix('`')
                        .and_then(|d| d.strip_suffix('`'))
                        .map(str::to_owned);
                    for (_, span) in spans(0, first) {
                        for flag in names_in(&span, true) {
                            table.push((line + i, flag, default.clone()));
                        }
                    }
                }
            }
            Block::Prose { line, text } => {
                for (line, span) in spans(*line, text) {
                    if span.trim_start().starts_with('-') {
                        for flag in names_in(&span, false) {
                            prose.push(Mention {
                                line,
                                flag,
                                context: format!("`{span}`"),
                            });
                        }
                    }
                }
            }
            Block::Heading => {}
        }
    }
    assert!(
        table.len() >= 2,
        "README.md's section \"{SERVER_FLAGS_SECTION}\" has no flags table"
    );

    // "Each binary's `--help` lists its flags: the shared ones above, plus
    // `--workers`/`--per-connection` (srv-threaded), `--poll-mode`
    // (srv-poll) and ...": the flags before each "(srv-...)" are its own.
    let mut own: BTreeMap<String, Vec<Mention>> = BTreeMap::new();
    let sentence = blocks.iter().find_map(|placed| match &placed.block {
        Block::Prose { line, text } if text.contains(OWN_FLAGS_SENTENCE) => Some((*line, text)),
        _ => None,
    });
    let Some((sentence_line, text)) = sentence else {
        panic!("README.md has no sentence \"{OWN_FLAGS_SENTENCE}...\" (this test reads it)");
    };
    // A parenthesis may name several servers: "(srv-poll, srv-async,
    // srv-hybrid; ...)" gives the flags before it to each of them.
    let mut rest = text.as_str();
    while let Some(at) = rest.find("(srv-") {
        let names = &rest[at + 1..];
        let names = &names[..names.find([')', ';']).unwrap_or(names.len())];
        let servers: Vec<String> = names
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|word| word.starts_with("srv-"))
            .map(str::to_owned)
            .collect();
        let before = &rest[..at];
        let line = sentence_line + text[..text.len() - rest.len() + at].matches('\n').count();
        for (_, span) in spans(0, before) {
            for flag in names_in(&span, false) {
                for server in &servers {
                    own.entry(server.clone()).or_default().push(Mention {
                        line,
                        flag: flag.clone(),
                        context: format!("`{span}` ({server})"),
                    });
                }
            }
        }
        rest = &rest[at + 1..];
    }

    // The code block after the line that starts with "Run each".
    let mut run = Vec::new();
    let after = blocks.iter().skip_while(
        |placed| !matches!(&placed.block, Block::Prose { text, .. } if text.starts_with(RUN_EACH)),
    );
    let Some(Block::Code { lines }) = after
        .map(|placed| &placed.block)
        .find(|block| matches!(block, Block::Code { .. }))
    else {
        panic!("README.md has no code block after \"{RUN_EACH}...\" (this test reads it)");
    };
    for (line, text) in lines {
        let (command, comment) = text.split_once('#').unwrap_or((text, ""));
        let Some((cargo, args)) = command.split_once(" -- ") else {
            continue;
        };
        let words: Vec<&str> = cargo.split_whitespace().collect();
        let bin = words
            .iter()
            .position(|&word| word == "-p")
            .and_then(|at| words.get(at + 1))
            .map_or_else(String::new, |&bin| bin.to_owned());
        run.push(RunLine {
            line: *line,
            text: text.clone(),
            bin,
            args: args.split_whitespace().map(str::to_owned).collect(),
            comment: comment.to_owned(),
        });
    }
    assert!(
        !run.is_empty(),
        "README.md's \"{RUN_EACH}\" block has no `cargo run ... -- ARGS` line"
    );
    ServerDocs {
        table,
        synopsis,
        prose,
        own,
        own_line: sentence_line,
        run,
    }
}

#[test]
fn server_flags_in_the_readme_are_every_server_s() {
    let readme = readme_text();
    let docs = server_docs(&blocks(&readme));
    let dir = server_binaries();
    let mut problems = Vec::new();
    for server in SERVERS {
        let help = Help::of(&dir.join(server), &[], server);
        for (line, flag, default) in &docs.table {
            let Some(entry) = help.entry(flag) else {
                problems.push(format!(
                    "README.md line {line}: `{flag}`, in the servers' flags table, is not a \
                     flag of `{server}`"
                ));
                continue;
            };
            if let Some(default) = default {
                if !entry.text.contains(&format!("[default: {default}]")) {
                    problems.push(format!(
                        "README.md line {line}: `{flag}` defaults to `{default}` in the table, \
                         but `{server} --help` says: {}",
                        entry.text.trim()
                    ));
                }
            }
        }
        check(&docs.synopsis, &help, &mut problems);
        check(&docs.prose, &help, &mut problems);
        let own = docs.own.get(server).map_or(&[][..], Vec::as_slice);
        check(own, &help, &mut problems);
        // And the other way: the README names every flag of `--help`.
        for entry in help.options() {
            let named = entry.names.iter().any(|name| {
                docs.table.iter().any(|(_, flag, _)| flag == name)
                    || own.iter().any(|mention| &mention.flag == name)
            });
            if !named {
                problems.push(format!(
                    "README.md line {}: `{server} --help` lists {}, which neither the servers' \
                     flags table (line {}) nor this sentence names",
                    docs.own_line,
                    entry.names.join("/"),
                    docs.table.first().map_or(0, |(line, _, _)| *line)
                ));
            }
        }
    }
    for run in &docs.run {
        if !SERVERS.contains(&run.bin.as_str()) {
            problems.push(format!(
                "README.md line {}: `{}` runs no server binary: {}",
                run.line, run.bin, run.text
            ));
            continue;
        }
        let help = Help::of(&dir.join(&run.bin), &[], &run.bin);
        let flags = names_in(&run.args.join(" "), false)
            .into_iter()
            .chain(names_in(&run.comment, false));
        let mentions: Vec<Mention> = flags
            .map(|flag| Mention {
                line: run.line,
                flag,
                context: run.text.clone(),
            })
            .collect();
        check(&mentions, &help, &mut problems);
    }
    report(&problems);
}

/// Each "Run each" command line starts its server (on port 0 instead of
/// the README's port): its flags and values go together. The server is
/// killed as soon as it says `listening on`.
#[test]
fn the_readme_s_server_command_lines_start() {
    let readme = readme_text();
    let docs = server_docs(&blocks(&readme));
    let dir = server_binaries();
    let mut problems = Vec::new();
    for run in docs
        .run
        .iter()
        .filter(|run| SERVERS.contains(&run.bin.as_str()))
    {
        let mut args = run.args.clone();
        match args.iter().position(|arg| arg == "-p" || arg == "--port") {
            Some(at) if at + 1 < args.len() => args[at + 1] = "0".to_owned(),
            _ => args.extend(["-p".to_owned(), "0".to_owned()]),
        }
        let mut child = Command::new(dir.join(&run.bin))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", run.bin));
        let mut first = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut first);
        let _ = child.kill();
        let output = child.wait_with_output().expect("wait for the server");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if run.bin == "srv-uring" && stderr.contains("srv-uring needs it") {
            // This machine refuses io_uring (a seccomp profile,
            // kernel.io_uring_disabled): the line cannot start here.
            eprintln!("skipped README.md line {}: {}", run.line, stderr.trim());
            continue;
        }
        if !matches!(read, Ok(n) if n > 0) || !first.starts_with("listening on ") {
            problems.push(format!(
                "README.md line {}: `{} {}` did not start ({}): {}",
                run.line,
                run.bin,
                args.join(" "),
                output.status,
                stderr.trim()
            ));
        }
    }
    report(&problems);
}

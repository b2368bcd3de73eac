//! The course keeps two promises a reader checks by hand: every lesson
//! (but lesson 8, about deployment) explains its figures with a cost
//! model and a "predict, then measure" exercise that starts from the
//! reader's own round trip, and lesson 9's picture has each server ask
//! its peer a question it does not know itself. Nothing here runs a
//! server or times anything.

use std::path::Path;

use zen_utils::protocol::APHORISMS;

const COURSE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/course");

/// The lessons that measure a model.
const MEASURED: &[&str] = &[
    "01-single.md",
    "02-threaded.md",
    "03-poll.md",
    "04-async.md",
    "05-hybrid.md",
    "06-hostile-clients.md",
    "07-processes-vs-threads.md",
    "09-peers.md",
    "10-uring.md",
];

fn lesson(name: &str) -> String {
    let path = Path::new(COURSE).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of the section under `heading`, up to the next `## `.
fn section<'a>(text: &'a str, heading: &str) -> Option<&'a str> {
    let start = text.find(&format!("\n## {heading}\n"))? + 1;
    let rest = &text[start + 3..];
    Some(&text[start..start + 3 + rest.find("\n## ").unwrap_or(rest.len())])
}

#[test]
fn every_measured_lesson_says_why_this_number_and_has_the_reader_predict_it() {
    for name in MEASURED {
        let text = lesson(name);
        let why = section(&text, "Why this number")
            .unwrap_or_else(|| panic!("{name}: no \"## Why this number\" section"));
        assert!(
            why.contains("**Predict, then measure.**"),
            "{name}: no predict-then-measure exercise"
        );
        assert!(
            why.contains("client load -p 1060 -c 1 -d 3s")
                || why.contains("client load -p 1063 -c 1 -d 3s"),
            "{name}: the exercise does not measure the reader's round trip with one client"
        );
        assert!(why.contains("round trip"), "{name}: no cost model");
        let exercises = text.find("\n## Exercises\n").unwrap_or(text.len());
        assert!(
            text.find("\n## Why this number\n").unwrap() < exercises,
            "{name}: the section comes before the exercises"
        );
    }
}

#[test]
fn the_peers_picture_asks_each_peer_what_only_it_knows() {
    let text = lesson("09-peers.md");
    let picture = section(&text, "The picture").expect("lesson 9 has a picture");
    let mut asked = 0;
    for line in picture.lines().filter(|line| line.contains("(knows ")) {
        // `clients ─► A (knows 1/2) ── "Explicit is better than?" ──► B (knows 2/2)`
        let part = |from: &str| -> (usize, usize) {
            let (k, n) = from
                .split_once("(knows ")
                .and_then(|(_, rest)| rest.split_once(')'))
                .and_then(|(part, _)| part.split_once('/'))
                .unwrap_or_else(|| panic!("no K/N in {line:?}"));
            (k.parse().unwrap(), n.parse().unwrap())
        };
        let mut quoted = line.split('"');
        let (before, question, after) = (
            quoted.next().unwrap(),
            quoted.next().unwrap(),
            quoted.next().unwrap(),
        );
        let position = APHORISMS
            .iter()
            .position(|(q, _)| *q == question.as_bytes())
            .unwrap_or_else(|| panic!("{question:?} is not in the table"))
            + 1;
        let knows = |(k, n): (usize, usize)| position % n == k % n;
        assert!(!knows(part(before)), "the asker knows {question:?}: {line}");
        assert!(
            knows(part(after)),
            "the peer does not know {question:?}: {line}"
        );
        asked += 1;
    }
    assert_eq!(asked, 2, "{picture}");
}

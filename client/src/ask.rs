//! `client ask`: the book's client. N different random questions, one at a
//! time, each printed with its answer; `-e` sends half a question and hangs up.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use zen_utils::protocol::{self, APHORISMS};

use crate::flags::positive_duration;
use crate::target::Target;

/// The longest answer the client accepts: the table's longest is 24 bytes,
/// so anything past this is not a zen server talking.
const MAX_ANSWER: usize = 1024;

#[derive(Args, Debug)]
pub(crate) struct AskArgs {
    #[command(flatten)]
    target: Target,

    /// How many questions to ask; all different up to the table's 7
    #[arg(short = 'n', long = "count", default_value_t = 3, value_name = "N")]
    count: u64,

    /// Send half a question, then hang up (to see the server survive it)
    #[arg(short = 'e', long)]
    cause_error: bool,

    /// Give up when the server is silent this long (e.g. 500ms, 10s)
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = positive_duration)]
    timeout: Duration,
}

pub(crate) fn run(args: &AskArgs) -> anyhow::Result<()> {
    let mut stream = args.target.connect(args.timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(args.timeout))?;
    if args.cause_error {
        let (question, _) = APHORISMS[0];
        let half = &question[..question.len() / 2];
        stream.write_all(half).context("cannot send")?;
        return say(format_args!(
            "sent half a question ({:?}) and hung up",
            String::from_utf8_lossy(half)
        ));
    }
    for question in random_questions(args.count) {
        stream.write_all(question).context("cannot send")?;
        let reply = read_answer(&mut stream, question, args.timeout)?;
        let expected = protocol::answer(question);
        if reply != expected {
            if protocol::is_error(&reply) {
                bail!("the server answered {:?}", String::from_utf8_lossy(&reply));
            }
            bail!(
                "wrong answer to {:?}: expected {:?}, got {:?}",
                String::from_utf8_lossy(question),
                String::from_utf8_lossy(expected),
                String::from_utf8_lossy(&reply)
            );
        }
        say(format_args!(
            "{} {}",
            String::from_utf8_lossy(question),
            String::from_utf8_lossy(&reply)
        ))?;
    }
    Ok(())
}

/// Prints one line on stdout. A closed stdout (`| head -1`) is an error to
/// report, not a panic as `println!` would make it.
fn say(line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

/// `count` questions from the table in random order, all different until
/// the table is used up, then another round. Made as they are asked, so
/// that any count costs the same memory.
fn random_questions(count: u64) -> impl Iterator<Item = &'static [u8]> {
    let round = || {
        let mut round: [&'static [u8]; APHORISMS.len()] = APHORISMS.map(|(question, _)| question);
        fastrand::shuffle(&mut round);
        round
    };
    std::iter::repeat_with(round)
        .flatten()
        .take(usize::try_from(count).unwrap_or(usize::MAX))
}

/// Reads one answer: every byte up to and including `.`.
fn read_answer(
    stream: &mut TcpStream,
    question: &[u8],
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    let asked = || String::from_utf8_lossy(question).into_owned();
    let mut reply = Vec::new();
    let mut byte = [0];
    while !reply.ends_with(b".") {
        match stream.read(&mut byte) {
            Ok(0) if reply.is_empty() => {
                bail!(
                    "the server closed the connection before answering {:?}",
                    asked()
                )
            }
            Ok(0) => bail!(
                "the server closed the connection in the middle of an answer: {:?}",
                String::from_utf8_lossy(&reply)
            ),
            Ok(_) => reply.push(byte[0]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(anyhow!(
                    "no answer to {:?} within {}",
                    asked(),
                    zen_utils::config::format_duration(timeout)
                ))
            }
            Err(error) => return Err(error).context("cannot receive"),
        }
        if reply.len() > MAX_ANSWER {
            bail!("an answer longer than {MAX_ANSWER} bytes: not a zen server?");
        }
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_all_different_up_to_the_table() {
        for count in 0..=7 {
            let mut questions: Vec<_> = random_questions(count).collect();
            assert_eq!(questions.len() as u64, count);
            questions.sort();
            questions.dedup();
            assert_eq!(questions.len() as u64, count);
        }
        assert_eq!(random_questions(10).count(), 10);
        // Made lazily: the largest count costs nothing until it is asked.
        assert!(random_questions(u64::MAX).nth(1_000).is_some());
    }
}

//! `client ask`: the book's client. N different random questions, one at a
//! time, each printed with its answer; `-e` sends half a question and hangs up.

use std::io::{ErrorKind, Read, Write};
use std::iter::Peekable;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use zen_utils::protocol::{self, APHORISMS};

use crate::flags::positive_duration;
use crate::servers::Picker;
use crate::target::Target;

/// The longest answer the client accepts: the table's longest is 24 bytes,
/// so anything past this is not a zen server talking.
const MAX_ANSWER: usize = 1024;
/// With a registry, the first wait before asking another server, doubled
/// after each failure up to [`RETRY_MAX`]: a server that is gone costs a
/// few connects, not a busy loop.
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);

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

    /// Give up when the server is silent this long (e.g. 500ms, 10s); with
    /// --registry, a server silent for half of it is left for another, and
    /// the client gives up when no server has answered for this long
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = positive_duration)]
    timeout: Duration,
}

pub(crate) fn run(args: &AskArgs) -> anyhow::Result<()> {
    let mut questions = random_questions(args.count).peekable();
    let Some(url) = &args.target.registry else {
        let stream = args.target.connect(args.timeout)?;
        let silence = args.timeout;
        return converse(stream, args, silence, &mut questions, &mut Instant::now())
            .map_err(Stop::error);
    };
    // Found through a registry: a refused connect or a broken connection
    // is one server gone; the questions not yet answered are asked of
    // another, until none has answered for --timeout. A silent server is
    // one gone too, but only if it is left before the whole --timeout is
    // spent on it: it is given half, so that another can still answer.
    let silence = (args.timeout / 2).max(Duration::from_millis(1));
    let picker = Picker::registry(url, args.target.registry_auth.as_ref(), args.timeout)?;
    let mut progress = Instant::now();
    let mut avoid = None;
    let mut backoff = RETRY_MIN;
    loop {
        let Some((target, addr)) = picker.pick(avoid) else {
            if progress.elapsed() > args.timeout {
                bail!("no server registered in {url} any more");
            }
            std::thread::sleep(backoff);
            continue;
        };
        picker.leave(target); // One connection at a time: nothing to balance.
        let result = TcpStream::connect_timeout(&addr, silence)
            .map_err(|error| Stop::Broken(anyhow!("cannot connect to {addr}: {error}")))
            .and_then(|stream| converse(stream, args, silence, &mut questions, &mut progress));
        match result {
            Ok(()) => return Ok(()),
            Err(Stop::Broken(error)) if progress.elapsed() <= args.timeout => {
                zen_utils::log_line!("client: warning: {error:#}; asking another server");
                avoid = Some(addr);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(RETRY_MAX);
            }
            Err(stop) => return Err(stop.error()),
        }
    }
}

/// Why a conversation stopped short.
enum Stop {
    /// The connection broke before an answer came (a reset, a close, a
    /// silence): with a registry, the question is asked of another server.
    Broken(anyhow::Error),
    /// The server answered wrong: asking another would hide it.
    Wrong(anyhow::Error),
}

impl Stop {
    fn error(self) -> anyhow::Error {
        match self {
            Self::Broken(error) | Self::Wrong(error) => error,
        }
    }
}

/// Asks `questions` on `stream` one at a time, printing each with its
/// answer and taking it off `questions` once answered; `progress` is when
/// the last answer came. A server silent for `silence` is given up on.
fn converse(
    mut stream: TcpStream,
    args: &AskArgs,
    silence: Duration,
    questions: &mut Peekable<impl Iterator<Item = &'static [u8]>>,
    progress: &mut Instant,
) -> Result<(), Stop> {
    let broken = |error: anyhow::Error| Stop::Broken(error);
    stream.set_nodelay(true).map_err(|e| broken(e.into()))?;
    stream
        .set_read_timeout(Some(silence))
        .map_err(|e| broken(e.into()))?;
    if args.cause_error {
        let (question, _) = APHORISMS[0];
        let half = &question[..question.len() / 2];
        stream
            .write_all(half)
            .context("cannot send")
            .map_err(broken)?;
        return say(format_args!(
            "sent half a question ({:?}) and hung up",
            String::from_utf8_lossy(half)
        ))
        .map_err(Stop::Wrong);
    }
    while let Some(&question) = questions.peek() {
        stream
            .write_all(question)
            .context("cannot send")
            .map_err(broken)?;
        let reply = read_answer(&mut stream, question, silence)?;
        let expected = protocol::answer(question);
        if reply != expected {
            if protocol::is_error(&reply) {
                return Err(Stop::Wrong(anyhow!(
                    "the server answered {:?}",
                    String::from_utf8_lossy(&reply)
                )));
            }
            return Err(Stop::Wrong(anyhow!(
                "wrong answer to {:?}: expected {:?}, got {:?}",
                String::from_utf8_lossy(question),
                String::from_utf8_lossy(expected),
                String::from_utf8_lossy(&reply)
            )));
        }
        *progress = Instant::now();
        questions.next();
        say(format_args!(
            "{} {}",
            String::from_utf8_lossy(question),
            String::from_utf8_lossy(&reply)
        ))
        .map_err(Stop::Wrong)?;
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
) -> Result<Vec<u8>, Stop> {
    let asked = || String::from_utf8_lossy(question).into_owned();
    let mut reply = Vec::new();
    let mut byte = [0];
    while !reply.ends_with(b".") {
        match stream.read(&mut byte) {
            Ok(0) if reply.is_empty() => {
                return Err(Stop::Broken(anyhow!(
                    "the server closed the connection before answering {:?}",
                    asked()
                )))
            }
            Ok(0) => {
                return Err(Stop::Broken(anyhow!(
                    "the server closed the connection in the middle of an answer: {:?}",
                    String::from_utf8_lossy(&reply)
                )))
            }
            Ok(_) => reply.push(byte[0]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Stop::Broken(anyhow!(
                    "no answer to {:?} within {}",
                    asked(),
                    zen_utils::duration::format_duration(timeout)
                )))
            }
            Err(error) => return Err(Stop::Broken(anyhow!(error).context("cannot receive"))),
        }
        if reply.len() > MAX_ANSWER {
            return Err(Stop::Wrong(anyhow!(
                "an answer longer than {MAX_ANSWER} bytes: not a zen server?"
            )));
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

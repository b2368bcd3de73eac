//! What a load run sends and what it expects back: the [`Workload`] a
//! caller asks for, compiled into a [`Script`] of request bytes built once
//! before the run, and an answer check that works on the bytes as they
//! arrive, without copying or allocating.

use anyhow::{bail, ensure};
use zen_utils::protocol::{self, APHORISMS};

/// The longest zen answer accepted before the connection is called broken:
/// the table's longest is 24 bytes, so anything this long without its `.`
/// is not the server we expected. A `--expect` reply needs no such bound:
/// its length is known, and it is taken in pieces of any size.
const MAX_ANSWER: usize = 1024;

/// Error answers all start with this (`Error: server busy.`, ...).
const ERROR_PREFIX: &[u8] = b"Error:";

/// What a load run asks, and what it expects back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Workload {
    /// The aphorism table, every question in turn (`client load`'s
    /// default).
    #[default]
    Table,
    /// One question of the table, over and over (`--question`). It must end
    /// in its only `?`, and be in the table: its answer would otherwise be
    /// `Error: unknown aphorism.`, and an error answer is never counted as
    /// an answer.
    Question(String),
    /// A fixed request and a fixed reply, for any request/reply server
    /// (`--send` and `--expect`, their escapes read). A reply is framed by
    /// its length alone.
    Fixed {
        /// The bytes of each request; not empty.
        send: Vec<u8>,
        /// The exact bytes of each reply; not empty.
        expect: Vec<u8>,
    },
}

/// Questions asked in a fixed cycle, each with the answer it must get:
/// a [`Workload`] made ready for a run.
#[derive(Debug)]
pub(crate) struct Script {
    /// The cycle's questions back to back, repeated so that any `pipeline`
    /// consecutive questions, starting anywhere in the first cycle, are one
    /// contiguous slice: a batch of questions is one `write` of one slice.
    script: Box<[u8]>,
    /// Question `i` of the script is `script[offsets[i]..offsets[i + 1]]`.
    offsets: Box<[usize]>,
    /// The answer to question `i` of the cycle.
    expected: Box<[Box<[u8]>]>,
    framing: Framing,
    description: String,
}

/// How answers are told apart in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A zen answer: every byte up to and including the first `.`.
    Dot,
    /// A foreign server's reply: exactly as many bytes as `--expect`.
    Fixed(usize),
}

/// What the check made of the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// How many bytes belonged to the answer being received.
    pub(crate) consumed: usize,
    /// The verdict if those bytes completed an answer.
    pub(crate) verdict: Option<Verdict>,
}

/// How a complete answer compared with the one expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Right,
    /// An `Error: ...` answer (zen framing only).
    ErrorAnswer,
    Wrong,
}

/// An answer ran past [`MAX_ANSWER`] bytes without ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AnswerTooLong;

/// The state of the answer being received on one connection: how many of
/// its bytes have come, and whether they still match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AnswerCheck {
    got: usize,
    matches: bool,
    error_prefix: bool,
}

impl Default for AnswerCheck {
    fn default() -> Self {
        Self {
            got: 0,
            matches: true,
            error_prefix: true,
        }
    }
}

impl Script {
    /// The script of `workload`, for `pipeline` questions in flight per
    /// connection.
    pub(crate) fn new(workload: &Workload, pipeline: usize) -> anyhow::Result<Self> {
        match workload {
            Workload::Table => Ok(Self::table(pipeline)),
            Workload::Question(question) => Self::question(question, pipeline),
            Workload::Fixed { send, expect } => Self::fixed(send, expect, pipeline),
        }
    }

    /// The aphorism table, every question in turn.
    pub(crate) fn table(pipeline: usize) -> Self {
        let questions: Vec<&[u8]> = APHORISMS.iter().map(|(question, _)| *question).collect();
        Self::zen(
            &questions,
            pipeline,
            "the aphorism table, in turn".to_owned(),
        )
    }

    /// One question of the table, over and over. It must end in its only
    /// `?`. A question the table lacks is refused: its answer would be
    /// `Error: unknown aphorism.`, and an error answer is never counted as
    /// an answer.
    pub(crate) fn question(question: &str, pipeline: usize) -> anyhow::Result<Self> {
        let bytes = question.as_bytes();
        ensure!(
            bytes.ends_with(b"?") && bytes.iter().filter(|&&b| b == b'?').count() == 1,
            "a question must end with its only `?`: {question:?}"
        );
        let answer = protocol::answer(bytes.trim_ascii_start());
        ensure!(
            !protocol::is_error(answer),
            "{question:?} is not in the aphorism table, so every answer would be {:?}; \
             ask one of the table's questions, or load another protocol with --send and --expect",
            String::from_utf8_lossy(answer)
        );
        let description = format!(
            "{question:?}, expecting {:?}",
            String::from_utf8_lossy(answer)
        );
        Ok(Self::zen(&[bytes], pipeline, description))
    }

    /// A fixed request and a fixed reply, for any request/reply server.
    /// They are described as `--send` and `--expect` write them, with
    /// `\r`, `\n` and `\\` escapes.
    pub(crate) fn fixed(request: &[u8], reply: &[u8], pipeline: usize) -> anyhow::Result<Self> {
        ensure!(!request.is_empty(), "--send must not be empty");
        ensure!(!reply.is_empty(), "--expect must not be empty");
        let description = format!("send {:?}, expect {:?}", escape(request), escape(reply));
        let len = reply.len();
        Ok(Self::build(
            &[request],
            vec![Box::from(reply)],
            Framing::Fixed(len),
            pipeline,
            description,
        ))
    }

    fn zen(questions: &[&[u8]], pipeline: usize, description: String) -> Self {
        let expected = questions
            .iter()
            .map(|question| Box::from(protocol::answer(question.trim_ascii_start())))
            .collect();
        Self::build(questions, expected, Framing::Dot, pipeline, description)
    }

    fn build(
        questions: &[&[u8]],
        expected: Vec<Box<[u8]>>,
        framing: Framing,
        pipeline: usize,
        description: String,
    ) -> Self {
        let cycle = questions.len();
        // Any run of `pipeline` questions starting in the first cycle must
        // fit: `cycle + pipeline` questions, rounded up to whole cycles.
        let copies = (cycle + pipeline).div_ceil(cycle);
        let mut script = Vec::new();
        let mut offsets = vec![0];
        for _ in 0..copies {
            for question in questions {
                script.extend_from_slice(question);
                offsets.push(script.len());
            }
        }
        Self {
            script: script.into_boxed_slice(),
            offsets: offsets.into_boxed_slice(),
            expected: expected.into_boxed_slice(),
            framing,
            description,
        }
    }

    /// Whether a wrong answer loses the framing of the stream. A zen answer
    /// ends at its `.`, so the next answer starts after it whatever this
    /// one said; a `--expect` reply is framed by its length only, and a
    /// reply of another length leaves the stream cut in the wrong places.
    pub(crate) fn wrong_loses_framing(&self) -> bool {
        matches!(self.framing, Framing::Fixed(_))
    }

    /// How many different questions the cycle has.
    pub(crate) fn cycle(&self) -> usize {
        self.expected.len()
    }

    /// The bytes of `count` consecutive questions starting with question
    /// `first` of the cycle (`first < cycle()`, `count <= pipeline`).
    pub(crate) fn questions(&self, first: usize, count: usize) -> &[u8] {
        &self.script[self.offsets[first]..self.offsets[first + count]]
    }

    /// How many bytes question `i` of the cycle has.
    pub(crate) fn question_len(&self, i: usize) -> usize {
        self.offsets[i + 1] - self.offsets[i]
    }

    /// What the run asks, in words.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    /// Takes the bytes of one answer from the front of `bytes`, which are
    /// the answer to question `expected` of the cycle (`None`: nothing was
    /// asked, so any answer is wrong). `check` carries an answer split
    /// across reads from one call to the next.
    pub(crate) fn take_answer(
        &self,
        check: &mut AnswerCheck,
        expected: Option<usize>,
        bytes: &[u8],
    ) -> Result<Step, AnswerTooLong> {
        let want: &[u8] = expected.map_or(&[], |i| &self.expected[i]);
        // The common case: the whole right answer at the front. It is the
        // answer and nothing more, because a zen answer's only `.` is its
        // last byte.
        if check.got == 0 && !want.is_empty() && bytes.starts_with(want) {
            return Ok(Step {
                consumed: want.len(),
                verdict: Some(Verdict::Right),
            });
        }
        let (piece, complete) = match self.framing {
            Framing::Dot => match bytes.iter().position(|&b| b == b'.') {
                Some(dot) => (&bytes[..=dot], true),
                None => (bytes, false),
            },
            Framing::Fixed(len) => {
                let take = (len - check.got).min(bytes.len());
                (&bytes[..take], check.got + take == len)
            }
        };
        check.absorb(piece, want);
        let verdict = if complete {
            let verdict = check.verdict(want, self.framing == Framing::Dot);
            *check = AnswerCheck::default();
            Some(verdict)
        } else if self.framing == Framing::Dot && check.got > MAX_ANSWER {
            return Err(AnswerTooLong);
        } else {
            None
        };
        Ok(Step {
            consumed: piece.len(),
            verdict,
        })
    }
}

impl AnswerCheck {
    /// Forgets a partial answer (its connection is gone).
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    fn absorb(&mut self, piece: &[u8], want: &[u8]) {
        let end = self.got + piece.len();
        self.matches = self.matches && end <= want.len() && want[self.got..end] == *piece;
        if self.got < ERROR_PREFIX.len() {
            let prefix = &ERROR_PREFIX[self.got..];
            let n = prefix.len().min(piece.len());
            self.error_prefix = self.error_prefix && piece[..n] == prefix[..n];
        }
        self.got = end;
    }

    fn verdict(&self, want: &[u8], zen: bool) -> Verdict {
        if self.matches && self.got == want.len() {
            Verdict::Right
        } else if zen && self.error_prefix && self.got >= ERROR_PREFIX.len() {
            Verdict::ErrorAnswer
        } else {
            Verdict::Wrong
        }
    }
}

/// Writes `\r`, `\n` and `\\` as escapes, the other bytes as they are:
/// the inverse of [`unescape`] (bytes that are not UTF-8 aside).
fn escape(bytes: &[u8]) -> String {
    let mut text = Vec::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            b'\r' => text.extend_from_slice(b"\\r"),
            b'\n' => text.extend_from_slice(b"\\n"),
            b'\\' => text.extend_from_slice(b"\\\\"),
            _ => text.push(byte),
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Reads `\r`, `\n` and `\\` escapes; every other byte stands for itself.
pub(crate) fn unescape(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut chars = text.bytes();
    while let Some(byte) = chars.next() {
        if byte != b'\\' {
            bytes.push(byte);
            continue;
        }
        match chars.next() {
            Some(b'r') => bytes.push(b'\r'),
            Some(b'n') => bytes.push(b'\n'),
            Some(b'\\') => bytes.push(b'\\'),
            Some(other) => bail!(
                "unknown escape `\\{}` in {text:?}: use \\r, \\n or \\\\",
                char::from(other)
            ),
            None => bail!("a lone `\\` at the end of {text:?}: write \\\\ for a backslash"),
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` to the check in pieces of `size` bytes, asking
    /// question `asked[k]` for the k-th answer; returns the verdicts.
    fn verdicts(workload: &Script, stream: &[u8], size: usize, asked: &[usize]) -> Vec<Verdict> {
        let mut check = AnswerCheck::default();
        let mut verdicts = Vec::new();
        for chunk in stream.chunks(size) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let expected = asked.get(verdicts.len()).copied();
                let step = workload.take_answer(&mut check, expected, rest).unwrap();
                rest = &rest[step.consumed..];
                verdicts.extend(step.verdict);
            }
        }
        verdicts
    }

    #[test]
    fn batches_of_questions_are_contiguous_from_anywhere_in_the_cycle() {
        let workload = Script::table(16);
        assert_eq!(workload.cycle(), 7);
        for (first, (question, _)) in APHORISMS.iter().enumerate() {
            let batch = workload.questions(first, 16);
            let expected: Vec<u8> = (first..first + 16)
                .flat_map(|i| APHORISMS[i % 7].0.iter().copied())
                .collect();
            assert_eq!(batch, expected);
            assert_eq!(workload.question_len(first), question.len());
        }
    }

    #[test]
    fn checks_answers_in_any_chunking() {
        let workload = Script::table(1);
        let stream = b"ugly.implicit.wrong.Error: server busy.complex.";
        for size in 1..=stream.len() {
            assert_eq!(
                verdicts(&workload, stream, size, &[0, 1, 2, 3, 2]),
                [
                    Verdict::Right,
                    Verdict::Right,
                    Verdict::Wrong,
                    Verdict::ErrorAnswer,
                    Verdict::Right
                ],
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn an_answer_to_nothing_is_wrong() {
        let workload = Script::table(1);
        assert_eq!(verdicts(&workload, b"ugly.", 5, &[]), [Verdict::Wrong]);
        assert_eq!(
            verdicts(&workload, b"Error: idle timeout.", 3, &[]),
            [Verdict::ErrorAnswer]
        );
    }

    #[test]
    fn a_too_long_answer_is_an_error() {
        let workload = Script::table(1);
        let mut check = AnswerCheck::default();
        let junk = [b'x'; MAX_ANSWER + 1];
        assert_eq!(
            workload.take_answer(&mut check, Some(0), &junk),
            Err(AnswerTooLong)
        );
    }

    #[test]
    fn fixed_replies_are_framed_by_length_and_compared_byte_for_byte() {
        let workload = Script::fixed(b"PING\r\n", b"+PONG\r\n", 4).unwrap();
        assert_eq!(
            workload.questions(0, 4),
            b"PING\r\nPING\r\nPING\r\nPING\r\n"
        );
        let stream = b"+PONG\r\n-ERR!\r\n+PONG\r\n";
        for size in 1..=stream.len() {
            assert_eq!(
                verdicts(&workload, stream, size, &[0, 0, 0]),
                [Verdict::Right, Verdict::Wrong, Verdict::Right]
            );
        }
    }

    #[test]
    fn one_question_expects_its_own_answer() {
        let workload = Script::question("Now is better than?", 2).unwrap();
        assert_eq!(workload.cycle(), 1);
        assert_eq!(verdicts(&workload, b"never.", 2, &[0]), [Verdict::Right]);
        let refused = Script::question("Why?", 1).unwrap_err().to_string();
        assert!(refused.contains("not in the aphorism table"), "{refused}");
        assert!(Script::question("Why", 1).is_err());
        assert!(Script::question("Why? Why?", 1).is_err());
    }

    #[test]
    fn a_long_fixed_reply_passes_in_any_pieces() {
        let reply = "x".repeat(1_100);
        let workload = Script::fixed(b"GET\r\n", reply.as_bytes(), 2).unwrap();
        let stream = reply.repeat(2);
        for size in [1, 50, 1_050, 1_100, 2_200] {
            assert_eq!(
                verdicts(&workload, stream.as_bytes(), size, &[0, 0]),
                [Verdict::Right, Verdict::Right],
                "pieces of {size}"
            );
        }
        assert!(workload.wrong_loses_framing());
        assert!(!Script::table(1).wrong_loses_framing());
    }

    #[test]
    fn unescapes_cr_lf_and_backslash_only() {
        assert_eq!(unescape(r"PING\r\n").unwrap(), b"PING\r\n");
        assert_eq!(unescape(r"a\\b").unwrap(), b"a\\b");
        assert!(unescape(r"\t").is_err());
        assert!(unescape("x\\").is_err());
        assert!(Script::fixed(b"", b"x", 1).is_err());
    }

    #[test]
    fn a_fixed_workload_is_described_as_its_flags_write_it() {
        for text in [r"PING\r\n", r"a\\b", "plain", r"\r\n\\\r"] {
            assert_eq!(escape(&unescape(text).unwrap()), text);
        }
        let workload = Workload::Fixed {
            send: b"PING\r\n".to_vec(),
            expect: b"+PONG\r\n".to_vec(),
        };
        assert_eq!(
            Script::new(&workload, 1).unwrap().description(),
            r#"send "PING\\r\\n", expect "+PONG\\r\\n""#
        );
    }
}

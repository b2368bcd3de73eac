//! One conversation with one client, from accept to close, with no I/O:
//! the protocol written once, for every model to drive.
//!
//! A driver (a blocking thread, a readiness loop, a task, a completion
//! loop) owns the socket, the clock and the way it waits. The
//! conversation owns everything else: the framing decoder, the answers
//! not yet sent and their bound ([`OUTPUT_LIMIT`]), the question whose
//! answer is owed (to `--work` or to the peers), the idle deadline, the
//! last word, and why it ended. It never reads a clock of its own: every
//! call that needs the time is given `now`.
//!
//! ```text
//!   driver                                      conversation
//!   read into read_buf() ───── received(n) ──►  decoder
//!                              answer(now) ──►  answers, in order, into output()
//!   ◄──── Some(Needed::Work(w)) ───────────────  a question needs --work
//!   do it (its own way) ────── worked(now) ──►  its answer joins output()
//!   ◄──── Some(Needed::Peers(f)) ──────────────  a question of another part
//!   ask the peers (its own way,
//!   Asking decides) ─── forwarded(reply) ──►  the relayed answer joins output()
//!   write output() ─────────── wrote(n) ─────►  fewer unsent
//!   idle_expired(now)? check_idle(now) ──────►  closing, or End::Unread
//!   shutdown() · drained() · grace_over() ───►  the server is stopping
//!   ◄──── last_word() ─────────────────────────  Error: idle timeout. / request too long.
//!   ◄──── end() ───────────────────────────────  Some(End) once it is over
//!   leftover() ──────────────────────────────►  what it leaves unanswered
//! ```
//!
//! **In which order a driver calls them.** After each read: `received(n)`
//! (`0`: the client shut its side), then `answer(now)`. When that returns
//! [`Needed`], the driver does the work or asks the peers, and calls
//! `worked(now)` or `forwarded(reply, now)`, each of which answers the
//! questions behind it and may return the next `Needed`. It writes
//! `output()` and reports each write with `wrote(n)`; while
//! `has_questions()`, it calls `answer` again before it waits, since
//! questions held back by the output bound must not wait for a read that
//! may never come. Before it waits: `wants_read()` says whether to read at
//! all (not while an answer is owed, nor over the output bound),
//! `idle_deadline()` and `write_deadline()` when to wake. When a deadline
//! passes: `check_idle(now)`. Then `last_word()` (sent best effort, once)
//! and `end()`: `Some(end)` means the driver closes the socket and calls
//! `end.record(peer, conversation.leftover(), stats)`. A failed read is
//! `read_failed(error)`, an end of its own. At shutdown: `shutdown()`,
//! `drained()` once a read finds nothing more, and `grace_over()` when
//! the grace runs out.
//!
//! **What each counts.** Answers are counted when they join the output
//! (`answer`, `worked`, `forwarded`), errors among them too: the
//! [`Stats`] passed in. Everything else is counted once, where the end is
//! recorded ([`End::record`]): the connection closed, a failure or an
//! unread output as an error, the last word as an error, a dropped
//! question. The queries (`output`, `wants_read`, `idle_deadline`,
//! `last_word`, `end`, `has_questions`, `memory`) count nothing, however
//! often they are asked.
//!
//! The order of answers is the order of questions, whatever the driver
//! does: a question whose answer is owed holds the ones behind it in the
//! decoder until its answer has joined the output.

use std::time::Instant;

use crate::protocol::frame::RequestTooLong;
use crate::protocol::peers::{Forward, Lookup};
use crate::protocol::{
    self, APHORISMS, IDLE_TIMEOUT, NO_PEER_ANSWERED, OUTPUT_LIMIT, REQUEST_TOO_LONG,
    UNKNOWN_APHORISM,
};
use crate::{Config, Decoder, End, Leftover, Stall, Stats, Work};

/// An output buffer that grew past this is freed once drained, so that a
/// connection that once had a burst of answers (up to [`OUTPUT_LIMIT`])
/// does not keep it while idle. A usual batch of answers fits below it and
/// keeps its buffer: no allocation per batch.
pub const OUTPUT_KEEP: usize = 4096;

/// The state of one conversation.
#[derive(Debug)]
pub struct Conversation {
    decoder: Decoder,
    /// Answers made and not yet written: `out[sent..]`.
    out: Vec<u8>,
    /// Under [`OUTPUT_LIMIT`]: what was written is dropped from the buffer
    /// past it (see [`wrote`](Self::wrote)). 32 bits hold it, and an idle
    /// connection is the smaller for it.
    sent: u32,
    /// When the idle timeout ends the conversation unless a question
    /// completes first; `None` when the timeout is off.
    idle_deadline: Option<Instant>,
    /// The answer whose `--work` is under way, as its place in the table
    /// ([`Owed`]): one byte, not a slice, in every connection.
    working: Option<Owed>,
    phase: Phase,
    /// Complete questions that will never be answered (the end of the
    /// shutdown grace cut them). Counted in 32 bits: a connection holds at
    /// most `--max-request` plus a read of questions.
    unanswered: u32,
}

/// An answer owed: the place of its aphorism in the table, the table's
/// length for `Error: unknown aphorism.`, one more for `Error: no peer
/// answered.`, or [`Owed::PEERS`]: the peers are being asked, and their
/// answer is not known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owed(u8);

impl Owed {
    /// Waiting for the peers' answer.
    const PEERS: Self = Self(u8::MAX);

    fn of(reply: &'static [u8]) -> Self {
        if reply == NO_PEER_ANSWERED {
            return Self(APHORISMS.len() as u8 + 1);
        }
        let place = APHORISMS.iter().position(|(_, answer)| *answer == reply);
        Self(place.unwrap_or(APHORISMS.len()) as u8)
    }

    fn reply(self) -> &'static [u8] {
        if usize::from(self.0) == APHORISMS.len() + 1 {
            return NO_PEER_ANSWERED;
        }
        APHORISMS
            .get(usize::from(self.0))
            .map_or(UNKNOWN_APHORISM, |(_, answer)| answer)
    }
}

/// What an answer needs before it can join the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needed {
    /// `--work`: the driver does it its own way, then calls
    /// [`Conversation::worked`].
    Work(Work),
    /// A question this server does not know: the driver asks the peers
    /// its own way, then calls [`Conversation::forwarded`] with the answer.
    Peers(Forward),
}

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Taking questions and answering them.
    Open,
    /// The client shut its sending side: answer what came, then end.
    InputClosed,
    /// The server is shutting down: answer what has already arrived (the
    /// driver reads only that), then end.
    ShuttingDown,
    /// Shutting down, and nothing more has arrived.
    Drained,
    /// The conversation ends this way once its output is written, after
    /// its last word if it has one.
    Closing(Closing),
}

/// How a conversation that decided to end ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    TooLong,
    IdleTimeout,
    Shutdown,
}

impl Conversation {
    /// A conversation that begins at `now` under `config`.
    pub fn new(config: &Config, now: Instant) -> Self {
        Self {
            decoder: Decoder::new(config.max_request),
            out: Vec::new(),
            sent: 0,
            idle_deadline: config.idle_timeout.map(|timeout| now + timeout),
            working: None,
            phase: Phase::Open,
            unanswered: 0,
        }
    }

    /// Room to read the client's bytes into.
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.decoder.read_buf()
    }

    /// `n` bytes were read into [`read_buf`](Self::read_buf); 0: the
    /// client shut its sending side.
    pub fn received(&mut self, n: usize) {
        if n == 0 {
            if matches!(self.phase, Phase::Open | Phase::ShuttingDown) {
                self.phase = Phase::InputClosed;
            }
        } else {
            self.decoder.filled(n);
        }
    }

    /// Whether the conversation takes more input now: it is open (or
    /// shutting down and has not yet taken all that arrived), no answer is
    /// being worked on, and its unsent answers are under their bound
    /// ([`OUTPUT_LIMIT`]): a client that does not read is not read from.
    pub fn wants_read(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::ShuttingDown)
            && self.working.is_none()
            && self.output().len() < OUTPUT_LIMIT
    }

    /// Answers the questions received, in order, while the unsent answers
    /// are under their bound. Returns what the answer of the next question
    /// needs, if it needs anything: `--work`, or the peers (a question this
    /// server does not know). The driver does it its own way, then calls
    /// [`worked`](Self::worked) or [`forwarded`](Self::forwarded) (or
    /// [`grace_over`](Self::grace_over) if the shutdown grace ran out
    /// first); the questions behind it wait, so answers stay in order.
    pub fn answer(&mut self, now: Instant, config: &Config, stats: &Stats) -> Option<Needed> {
        if self.working.is_some() || matches!(self.phase, Phase::Closing(_)) {
            return None;
        }
        let (mut answers, mut errors) = (0, 0);
        let mut needed = None;
        while self.output().len() < OUTPUT_LIMIT {
            let lookup = match self.decoder.next_question() {
                Ok(Some(question)) => config.peers.lookup(question),
                Ok(None) => break,
                Err(RequestTooLong { .. }) => {
                    // What came before is answered; the error is the last
                    // word, and the connection closes after it.
                    self.phase = Phase::Closing(Closing::TooLong);
                    break;
                }
            };
            let reply = match lookup {
                Lookup::Answer(reply) => reply,
                Lookup::Forward(forward) => {
                    // The peers do the work of this one, not `--work`.
                    self.working = Some(Owed::PEERS);
                    needed = Some(Needed::Peers(forward));
                    break;
                }
            };
            if let Some(work) = config.work {
                self.working = Some(Owed::of(reply));
                needed = Some(Needed::Work(work));
                break;
            }
            self.out.extend_from_slice(reply);
            answers += 1;
            errors += u64::from(protocol::is_error(reply));
        }
        self.count(answers, errors, now, config, stats);
        needed
    }

    /// The work of the question being answered is done (at `now`): its
    /// answer joins the output, and the questions behind it are answered.
    /// Returns what the next one needs, if anything.
    pub fn worked(&mut self, now: Instant, config: &Config, stats: &Stats) -> Option<Needed> {
        let owed = self.working.take()?;
        if owed == Owed::PEERS {
            // Not a work: put it back, the peers still owe the answer.
            self.working = Some(owed);
            return None;
        }
        self.give(owed.reply(), now, config, stats)
    }

    /// The peers' answer to the question being answered came (`reply`, as
    /// [`Asking`](crate::protocol::peers::Asking) decided it): it joins the output,
    /// and the questions behind it are answered. Returns what the next one
    /// needs, if anything.
    pub fn forwarded(
        &mut self,
        reply: &'static [u8],
        now: Instant,
        config: &Config,
        stats: &Stats,
    ) -> Option<Needed> {
        if self.working != Some(Owed::PEERS) {
            return None;
        }
        self.working = None;
        self.give(reply, now, config, stats)
    }

    fn give(
        &mut self,
        reply: &'static [u8],
        now: Instant,
        config: &Config,
        stats: &Stats,
    ) -> Option<Needed> {
        self.out.extend_from_slice(reply);
        self.count(1, u64::from(protocol::is_error(reply)), now, config, stats);
        self.answer(now, config, stats)
    }

    /// Counts answers made, and starts the idle clock again.
    fn count(&mut self, answers: u64, errors: u64, now: Instant, config: &Config, stats: &Stats) {
        if answers > 0 {
            stats.answered(answers, errors);
            self.idle_deadline = config.idle_timeout.map(|timeout| now + timeout);
        }
    }

    /// The answers made and not yet written, in order.
    pub fn output(&self) -> &[u8] {
        &self.out[self.sent as usize..]
    }

    /// `n` bytes of [`output`](Self::output) were written.
    pub fn wrote(&mut self, n: usize) {
        self.sent += n as u32;
        if self.sent as usize >= OUTPUT_LIMIT && (self.sent as usize) < self.out.len() {
            // A client that reads slowly but steadily may never let the
            // output drain whole, while answers keep joining it behind
            // what it read: drop what was written, so the buffer stays
            // within twice the bound.
            self.out.drain(..self.sent as usize);
            self.sent = 0;
        } else if self.sent as usize == self.out.len() {
            if self.out.capacity() > OUTPUT_KEEP {
                self.out = Vec::new();
            } else {
                self.out.clear();
            }
            self.sent = 0;
        }
    }

    /// When the conversation times out if no question completes: none
    /// while an answer is being worked on (the server owes it), none once
    /// it is closing.
    pub fn idle_deadline(&self) -> Option<Instant> {
        match (self.working, self.phase) {
            (Some(_), _) | (None, Phase::Closing(_)) => None,
            _ => self.idle_deadline,
        }
    }

    /// When the client must have read its answers: the idle deadline as
    /// it stands, whether an answer is owed or the conversation closes. A
    /// driver blocked writing gives up then.
    pub fn write_deadline(&self) -> Option<Instant> {
        self.idle_deadline
    }

    /// Whether the idle timeout has come at `now`: with answers unwritten,
    /// at [`write_deadline`](Self::write_deadline) (the client did not read
    /// them), whatever else the conversation is doing; otherwise at
    /// [`idle_deadline`](Self::idle_deadline).
    pub fn idle_expired(&self, now: Instant) -> bool {
        let deadline = if self.output().is_empty() {
            self.idle_deadline()
        } else {
            self.write_deadline()
        };
        deadline.is_some_and(|deadline| now >= deadline)
    }

    /// Looks at the idle deadline at `now`. Past it, a client with answers
    /// unwritten did not read them (the returned end, an error);
    /// otherwise the conversation closes with the last word `Error: idle
    /// timeout.`.
    pub fn check_idle(&mut self, now: Instant) -> Option<End> {
        if !self.idle_expired(now) {
            return None;
        }
        if !self.output().is_empty() {
            return Some(End::Unread(Stall::IdleTimeout));
        }
        self.phase = Phase::Closing(Closing::IdleTimeout);
        None
    }

    /// A read failed with `error`: how the conversation ends. A reset (or
    /// an abort) from a client that had nothing outstanding, no question
    /// begun or unanswered and every answer written, is an ordinary close,
    /// not an error: it is how load balancers end their health checks
    /// (HAProxy's `tcp-check` resets once it has its answer), and how
    /// clients that close with unread data in their buffers end.
    pub fn read_failed(&mut self, error: std::io::Error) -> End {
        let reset = matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        );
        let outstanding = self.working.is_some()
            || self.decoder.has_complete()
            || !self.decoder.partial().is_empty()
            || !self.output().is_empty();
        if reset && !outstanding {
            End::ClientClosed
        } else {
            End::Failed(error)
        }
    }

    /// The server begins its shutdown: the conversation answers what has
    /// already arrived, then ends.
    pub fn shutdown(&mut self) {
        if self.phase == Phase::Open {
            self.phase = Phase::ShuttingDown;
        }
    }

    /// Shutting down, a read found nothing more: once what came is
    /// answered and written, the conversation ends.
    pub fn drained(&mut self) {
        if self.phase == Phase::ShuttingDown {
            self.phase = Phase::Drained;
        }
    }

    /// The shutdown grace is over: the conversation ends now, whatever it
    /// was doing. A question being worked on, and those behind it, are
    /// dropped unanswered; answers not yet written mean the client did not
    /// read them (an error).
    pub fn grace_over(&mut self) -> End {
        let dropped = u64::from(self.working.take().is_some()) + self.decoder.drop_complete();
        self.unanswered = self.unanswered.saturating_add(dropped as u32);
        self.phase = Phase::Closing(Closing::Shutdown);
        if self.output().is_empty() {
            End::Shutdown
        } else {
            End::Unread(Stall::Shutdown)
        }
    }

    /// The error answer to send, best effort, once the output is written,
    /// before the conversation ends: `Error: request too long.` or `Error:
    /// idle timeout.`. The driver counts on no reply to it and ends the
    /// conversation after one try: a client that does not read cannot hold
    /// it. A query: asking twice changes nothing. The error it is is
    /// counted once, where the conversation's end is recorded
    /// ([`End::record`]: `TooLong` and `IdleTimeout` end with it).
    pub fn last_word(&self) -> Option<&'static [u8]> {
        if !self.output().is_empty() {
            return None;
        }
        let word = match self.phase {
            Phase::Closing(Closing::TooLong) => REQUEST_TOO_LONG,
            Phase::Closing(Closing::IdleTimeout) => IDLE_TIMEOUT,
            _ => return None,
        };
        Some(word)
    }

    /// Why the conversation is over, once it is: its output is written,
    /// no answer is being worked on, and it closes (after its last word,
    /// if it has one), or the client closed and every complete question
    /// is answered, or the server is shutting down and what arrived is
    /// answered.
    pub fn end(&mut self) -> Option<End> {
        if !self.output().is_empty() || self.working.is_some() {
            return None;
        }
        match self.phase {
            Phase::Closing(Closing::TooLong) => Some(End::TooLong),
            Phase::Closing(Closing::IdleTimeout) => Some(End::IdleTimeout),
            Phase::Closing(Closing::Shutdown) => Some(End::Shutdown),
            // Output empty and nothing worked on: `answer` took every
            // complete question (more would wait only behind the bound).
            Phase::InputClosed if !self.decoder.has_complete() => Some(End::ClientClosed),
            Phase::Drained if !self.decoder.has_complete() => Some(End::Shutdown),
            _ => None,
        }
    }

    /// Whether complete questions wait that [`answer`](Self::answer) would
    /// take now: they stayed behind the output bound, which the driver has
    /// since written down. A driver that blocks answers them before it
    /// blocks in a read.
    pub fn has_questions(&self) -> bool {
        self.working.is_none()
            && !matches!(self.phase, Phase::Closing(_))
            && self.decoder.has_complete()
    }

    /// The bytes the conversation holds in buffers: its read buffer and
    /// its output buffer.
    pub fn memory(&self) -> usize {
        self.decoder.capacity() + self.out.capacity()
    }

    /// The memory the conversation's read buffer holds (0 until the first
    /// read): a driver can wait for a connection's first bytes without
    /// making it one.
    pub fn buffer_capacity(&self) -> usize {
        self.decoder.capacity()
    }

    /// What the conversation leaves unanswered if it ends now, for the
    /// summary: a partial question, and complete questions it will never
    /// answer (those are dropped from it).
    pub fn leftover(&mut self) -> Leftover {
        // The complete questions first: what is left after them is partial.
        let unanswered = u64::from(self.unanswered)
            + u64::from(self.working.take().is_some())
            + self.decoder.drop_complete();
        self.unanswered = 0;
        Leftover {
            partial: self.decoder.partial().len(),
            unanswered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkKind;
    use std::time::Duration;

    fn config() -> Config {
        Config {
            idle_timeout: Some(Duration::from_secs(10)),
            ..Config::default()
        }
    }

    fn working(duration: Duration) -> (Config, Work) {
        let work = Work {
            kind: WorkKind::Wait,
            duration,
        };
        let config = Config {
            work: Some(work),
            ..config()
        };
        (config, work)
    }

    fn feed(conversation: &mut Conversation, bytes: &[u8]) {
        for &byte in bytes {
            conversation.read_buf()[0] = byte;
            conversation.received(1);
        }
    }

    fn take_output(conversation: &mut Conversation) -> Vec<u8> {
        let out = conversation.output().to_vec();
        conversation.wrote(out.len());
        out
    }

    #[test]
    fn answers_questions_split_byte_by_byte_in_order() {
        let (now, stats, config) = (Instant::now(), Stats::new(), config());
        let mut conversation = Conversation::new(&config, now);
        feed(
            &mut conversation,
            b" Now is better than?\nWhy?Flat is better than?Spa",
        );
        assert_eq!(conversation.answer(now, &config, &stats), None);
        assert_eq!(
            take_output(&mut conversation),
            b"never.Error: unknown aphorism.nested."
        );
        assert!(conversation.wants_read());
        conversation.received(0);
        let end = conversation.end().map(|end| end.to_string());
        assert_eq!(end.as_deref(), Some("client closed"));
        let left = Leftover {
            partial: 3,
            unanswered: 0,
        };
        assert_eq!(conversation.leftover(), left);
        let summary = stats.summary();
        assert_eq!((summary.answered, summary.errors), (3, 1));
    }

    #[test]
    fn work_holds_the_questions_behind_it_in_order() {
        let (now, stats) = (Instant::now(), Stats::new());
        let (config, work) = working(Duration::from_millis(10));
        let mut conversation = Conversation::new(&config, now);
        feed(
            &mut conversation,
            b"Now is better than?Flat is better than?",
        );
        assert_eq!(
            conversation.answer(now, &config, &stats),
            Some(Needed::Work(work))
        );
        assert!(!conversation.wants_read());
        assert_eq!(conversation.idle_deadline(), None, "an answer is owed");
        assert_eq!(conversation.output(), b"");
        assert_eq!(
            conversation.worked(now, &config, &stats),
            Some(Needed::Work(work))
        );
        assert_eq!(take_output(&mut conversation), b"never.");
        assert_eq!(conversation.worked(now, &config, &stats), None);
        assert_eq!(take_output(&mut conversation), b"nested.");
    }

    #[test]
    fn the_end_of_the_grace_drops_what_is_being_worked_on_and_behind_it() {
        let (now, stats) = (Instant::now(), Stats::new());
        let (config, _) = working(Duration::from_secs(1));
        let mut conversation = Conversation::new(&config, now);
        feed(
            &mut conversation,
            b"Now is better than?Flat is better than?Sparse is better than?",
        );
        conversation.answer(now, &config, &stats);
        conversation.worked(now, &config, &stats);
        take_output(&mut conversation);
        conversation.shutdown();
        assert_eq!(
            conversation.grace_over().to_string(),
            "server shutting down"
        );
        let left = Leftover {
            partial: 0,
            unanswered: 2,
        };
        assert_eq!(conversation.leftover(), left);
        assert_eq!(stats.summary().answered, 1);
    }

    #[test]
    fn a_request_too_long_is_answered_after_what_came_before_then_closes() {
        let (now, stats) = (Instant::now(), Stats::new());
        let config = Config {
            max_request: 8,
            ..config()
        };
        let mut conversation = Conversation::new(&config, now);
        feed(&mut conversation, b"Why?xxxxxxxxxx");
        conversation.answer(now, &config, &stats);
        assert_eq!(conversation.last_word(), None, "after the answers");
        assert_eq!(take_output(&mut conversation), b"Error: unknown aphorism.");
        assert_eq!(conversation.last_word(), Some(REQUEST_TOO_LONG));
        assert_eq!(conversation.last_word(), Some(REQUEST_TOO_LONG), "a query");
        let end = conversation.end().expect("it ends");
        assert_eq!(end.to_string(), "request too long");
        // The last word is counted once, where the end is recorded.
        end.record(
            "127.0.0.1:9".parse().unwrap(),
            conversation.leftover(),
            &stats,
        );
        assert_eq!(stats.summary().errors, 2);
    }

    #[test]
    fn idle_is_a_last_word_or_with_answers_unread_an_error() {
        let (now, stats, config) = (Instant::now(), Stats::new(), config());
        let later = now + Duration::from_secs(11);
        let mut quiet = Conversation::new(&config, now);
        assert!(quiet.check_idle(now).is_none());
        assert!(quiet.check_idle(later).is_none());
        assert_eq!(quiet.last_word(), Some(IDLE_TIMEOUT));
        let end = quiet.end().map(|end| end.to_string());
        assert_eq!(end.as_deref(), Some("idle timeout"));

        let mut unread = Conversation::new(&config, now);
        feed(&mut unread, b"Now is better than?");
        unread.answer(now, &config, &stats);
        let end = unread.check_idle(later + Duration::from_secs(10));
        assert!(
            matches!(end, Some(End::Unread(Stall::IdleTimeout))),
            "{end:?}"
        );

        // Answers unread behind a request too long (the conversation is
        // closing) or before an owed answer's work: still a stall at the
        // deadline, not a wait for ever.
        let small = Config {
            max_request: 8,
            ..config.clone()
        };
        let mut closing = Conversation::new(&small, now);
        feed(&mut closing, b"Why?xxxxxxxxxx");
        closing.answer(now, &small, &stats);
        assert!(closing.idle_expired(later));
        let end = closing.check_idle(later);
        assert!(
            matches!(end, Some(End::Unread(Stall::IdleTimeout))),
            "{end:?}"
        );
        let (working, _) = working(Duration::from_secs(1));
        let mut owed = Conversation::new(&working, now);
        feed(&mut owed, b"Why?Now is better than?");
        owed.answer(now, &working, &stats);
        owed.worked(now, &working, &stats);
        // The server owes the worked answer: no idle deadline of its own.
        assert!(owed.idle_deadline().is_none() && !owed.output().is_empty());
        assert!(owed.idle_expired(later));
    }

    #[test]
    fn questions_held_behind_the_bound_are_seen_past_whitespace_and_too_long() {
        let (now, stats, config) = (Instant::now(), Stats::new(), config());
        for tail in [&b"   \n  Now is better than?"[..], &[b'x'; 1100][..]] {
            let mut conversation = Conversation::new(&config, now);
            let mut bytes = vec![b'?'; OUTPUT_LIMIT / 24 + 1];
            bytes.extend_from_slice(tail);
            for chunk in bytes.chunks(1000) {
                conversation.read_buf()[..chunk.len()].copy_from_slice(chunk);
                conversation.received(chunk.len());
            }
            conversation.answer(now, &config, &stats);
            let unsent = conversation.output().len();
            conversation.wrote(unsent);
            assert!(conversation.has_questions(), "{:?}", &tail[..4]);
        }
    }

    #[test]
    fn output_past_its_bound_stops_answering_and_reading() {
        let (now, stats, config) = (Instant::now(), Stats::new(), config());
        let mut conversation = Conversation::new(&config, now);
        // `?` is answered `Error: unknown aphorism.` (24 bytes).
        let questions = OUTPUT_LIMIT / 24 + 10;
        for _ in 0..questions.div_ceil(1000) {
            let bytes = vec![b'?'; 1000];
            let room = conversation.read_buf();
            room[..bytes.len()].copy_from_slice(&bytes);
            conversation.received(bytes.len());
            conversation.answer(now, &config, &stats);
        }
        assert!(conversation.output().len() >= OUTPUT_LIMIT);
        assert!(!conversation.wants_read());
        let unsent = conversation.output().len();
        conversation.wrote(unsent);
        assert!(conversation.wants_read());
        conversation.answer(now, &config, &stats);
        assert!(
            !conversation.output().is_empty(),
            "the questions held back are answered"
        );
    }
}

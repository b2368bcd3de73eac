//! Servers that ask servers: a server that knows part of the table
//! (`--table-part K/N`) forwards a question of another part to its
//! configured peers (`--peer`), one after another, and relays the first
//! answer. A question in no part of the table is unknown at once: every
//! server holds the whole table, and answers only its part. This module is
//! the rule, written once and with no I/O: which questions are local, what
//! is forwarded to whom, where a peer's reply ends ([`ReplyReader`]) and
//! what it means. Each model does the asking its own way (that is the
//! lesson).
//!
//! A forwarded question carries the servers that already handled it:
//! `[127.0.0.1:7001,[::1]:7002]Flat is better than?` (each address as
//! `--peer` takes it, an IPv6 one in brackets). A server never
//! asks one of those again, never forwards once the history is as long
//! as `--max-hops`, and never connects anywhere but its configured peers:
//! the history is only compared, never dialled.

use std::net::SocketAddr;
use std::time::Duration;

use crate::protocol::{APHORISMS, NO_PEER_ANSWERED, UNKNOWN_APHORISM};

/// The default `--max-hops`: the history, the server itself added, must
/// be shorter than this for a question to be forwarded.
pub const DEFAULT_MAX_HOPS: usize = 6;
/// The default `--peer-timeout`.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest reply read from a peer: the longest valid one is
/// `Error: no peer answered.`; anything longer is garbage.
pub const MAX_PEER_REPLY: usize = 64;

/// What a server knows and whom it may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// `--table-part K/N`: this server knows the aphorisms at positions
    /// K, K+N, ... (1-based).
    pub part: (usize, usize),
    /// `--peer`: the only servers it ever connects to, in order.
    pub peers: Vec<SocketAddr>,
    /// `--max-hops`.
    pub max_hops: usize,
    /// `--peer-timeout`: connect and answer together, per peer asked.
    pub timeout: Duration,
    /// Its own address as peers know it (the bound one, or `--advertise`):
    /// what it adds to the history.
    pub me: Option<SocketAddr>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            part: (1, 1),
            peers: Vec::new(),
            max_hops: DEFAULT_MAX_HOPS,
            timeout: DEFAULT_PEER_TIMEOUT,
            me: None,
        }
    }
}

/// A question to ask the peers: the request to send (history included),
/// and the peers to ask, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// `[history,me]question`.
    pub request: Vec<u8>,
    /// Configured peers not in the history.
    pub peers: Vec<SocketAddr>,
}

/// How a question is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Here and now.
    Answer(&'static [u8]),
    /// By the peers.
    Forward(Forward),
}

impl PeerConfig {
    /// Whether this server knows the aphorism at `index` (0-based).
    fn knows(&self, index: usize) -> bool {
        let (k, n) = self.part;
        (index + 1) % n == k % n
    }

    /// How `request` (a complete question, history and all) is answered.
    pub fn lookup(&self, request: &[u8]) -> Lookup {
        let (history, question) = match split_history(request) {
            Ok(split) => split,
            Err(Malformed) => return Lookup::Answer(UNKNOWN_APHORISM),
        };
        // Every server holds the whole table, and answers only its part: a
        // question in no part of it is unknown everywhere, so asking a
        // peer would only pass the "unknown" round the mesh (one `x?`
        // cost 64 connections between 5 servers when it was forwarded).
        let Some(index) = APHORISMS.iter().position(|(known, _)| *known == question) else {
            return Lookup::Answer(UNKNOWN_APHORISM);
        };
        if self.knows(index) {
            return Lookup::Answer(APHORISMS[index].1);
        }
        let Some(me) = self.me else {
            return Lookup::Answer(UNKNOWN_APHORISM);
        };
        // With itself added, the history must stay shorter than the hops
        // allowed; a history that names this server already went round.
        if history.contains(&me) || history.len() + 1 >= self.max_hops {
            return Lookup::Answer(UNKNOWN_APHORISM);
        }
        let peers: Vec<SocketAddr> = self
            .peers
            .iter()
            .copied()
            .filter(|peer| *peer != me && !history.contains(peer))
            .collect();
        if peers.is_empty() {
            return Lookup::Answer(UNKNOWN_APHORISM);
        }
        let mut request = Vec::with_capacity(question.len() + 24 * (history.len() + 1) + 2);
        request.push(b'[');
        for addr in history.iter().chain([&me]) {
            if request.len() > 1 {
                request.push(b',');
            }
            request.extend_from_slice(addr.to_string().as_bytes());
        }
        request.push(b']');
        request.extend_from_slice(question);
        Lookup::Forward(Forward { request, peers })
    }
}

struct Malformed;

/// `[a,b]question` into its history and its question; no `[`: no history.
/// An address is written the way `--peer` takes it, so an IPv6 one
/// brings its own brackets (`[[::1]:7001,127.0.0.1:7002]`): the history
/// ends at the first `]` outside an address's.
fn split_history(request: &[u8]) -> Result<(Vec<SocketAddr>, &[u8]), Malformed> {
    let Some(rest) = request.strip_prefix(b"[") else {
        return Ok((Vec::new(), request));
    };
    let end = history_end(rest).ok_or(Malformed)?;
    let text = std::str::from_utf8(&rest[..end]).map_err(|_| Malformed)?;
    let history = if text.is_empty() {
        Vec::new()
    } else {
        text.split(',')
            .map(|addr| addr.parse().map_err(|_| Malformed))
            .collect::<Result<_, _>>()?
    };
    Ok((history, &rest[end + 1..]))
}

/// Where the history's closing `]` is in `rest` (the request after its
/// opening `[`): the first `]` not closing an IPv6 address's `[`. Brackets
/// nested deeper than an address's are malformed.
fn history_end(rest: &[u8]) -> Option<usize> {
    let mut in_address = false;
    for (at, byte) in rest.iter().enumerate() {
        match (byte, in_address) {
            (b'[', false) => in_address = true,
            (b']', true) => in_address = false,
            (b']', false) => return Some(at),
            (b'[', true) => return None,
            _ => {}
        }
    }
    None
}

/// What one peer's reply means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// An answer to relay, byte for byte: an aphorism's, or `Error: no
    /// peer answered.` from further on.
    Answer(&'static [u8]),
    /// `Error: unknown aphorism.`: ask the next peer.
    Unknown,
    /// Refused, reset, silent past the timeout, or garbage.
    Failed,
}

impl Reply {
    /// The meaning of `bytes`, one complete reply (up to its `.`).
    pub fn of(bytes: &[u8]) -> Self {
        if bytes == UNKNOWN_APHORISM {
            return Self::Unknown;
        }
        if bytes == NO_PEER_ANSWERED {
            return Self::Answer(NO_PEER_ANSWERED);
        }
        APHORISMS
            .iter()
            .find(|(_, answer)| *answer == bytes)
            .map_or(Self::Failed, |(_, answer)| Self::Answer(answer))
    }
}

/// The asking of the peers of one question, one after another.
#[derive(Debug)]
pub struct Asking {
    forward: Forward,
    next: usize,
    failed: bool,
}

impl Asking {
    /// Starts asking the peers of `forward`.
    pub fn new(forward: Forward) -> Self {
        Self {
            forward,
            next: 0,
            failed: false,
        }
    }

    /// The request to send to each peer.
    pub fn request(&self) -> &[u8] {
        &self.forward.request
    }

    /// The next peer to ask, if any is left.
    pub fn next_peer(&mut self) -> Option<SocketAddr> {
        let peer = self.forward.peers.get(self.next).copied();
        self.next += 1;
        peer
    }

    /// A peer replied (or failed): the answer to give, once it is decided.
    /// `None`: ask the next peer.
    pub fn heard(&mut self, reply: Reply) -> Option<&'static [u8]> {
        match reply {
            Reply::Answer(answer) => Some(answer),
            Reply::Unknown => self.exhausted(),
            Reply::Failed => {
                self.failed = true;
                self.exhausted()
            }
        }
    }

    /// The answer once every peer was asked, or `None` while one is left.
    fn exhausted(&self) -> Option<&'static [u8]> {
        (self.next >= self.forward.peers.len()).then_some(if self.failed {
            NO_PEER_ANSWERED
        } else {
            UNKNOWN_APHORISM
        })
    }
}

/// What a peer's reply read so far comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyRead {
    /// No `.` yet, and room for more: read again.
    NeedMore,
    /// One complete reply, and nothing after it: what it means.
    Complete(Reply),
    /// More than one reply can be: no `.` within [`MAX_PEER_REPLY`]
    /// bytes, or bytes after the `.` (the peer answered what it was not
    /// asked). The peer failed.
    TooLong,
    /// The peer closed the connection before its reply ended. The peer
    /// failed.
    ClosedEarly,
}

impl ReplyRead {
    /// As a driver whose failures are I/O errors reads it: `None` to read
    /// again, the reply, or why the peer failed.
    pub fn into_result(self) -> std::io::Result<Option<Reply>> {
        match self {
            Self::NeedMore => Ok(None),
            Self::Complete(reply) => Ok(Some(reply)),
            Self::TooLong => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a reply",
            )),
            Self::ClosedEarly => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// The reading of one peer's reply, with no I/O: every driver reads the
/// socket its own way (a blocking read, an await, a read on readiness, a
/// receive operation) into [`room`](Self::room), and tells
/// [`received`](Self::received) how many bytes came. The buffer is the
/// reply's maximum, inline: nothing is allocated per peer asked, and an
/// io_uring receive may name it while it is in flight (the reader does not
/// move while its owner does not).
#[derive(Debug, Clone)]
pub struct ReplyReader {
    buf: [u8; MAX_PEER_REPLY],
    filled: usize,
}

impl Default for ReplyReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplyReader {
    /// Nothing read yet.
    pub fn new() -> Self {
        Self {
            buf: [0; MAX_PEER_REPLY],
            filled: 0,
        }
    }

    /// Where the next read goes: never empty while the reply needs more
    /// (a full buffer is [`ReplyRead::TooLong`]).
    pub fn room(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// `n` bytes were read into [`room`](Self::room) (0: the peer closed
    /// its side): what the reply comes to now.
    pub fn received(&mut self, n: usize) -> ReplyRead {
        if n == 0 {
            return ReplyRead::ClosedEarly;
        }
        self.filled = (self.filled + n).min(MAX_PEER_REPLY);
        let read = &self.buf[..self.filled];
        match read.iter().position(|b| *b == b'.') {
            Some(end) if end + 1 == read.len() => ReplyRead::Complete(Reply::of(read)),
            Some(_) => ReplyRead::TooLong,
            None if read.len() == MAX_PEER_REPLY => ReplyRead::TooLong,
            None => ReplyRead::NeedMore,
        }
    }
}

/// Parses `K/N` for `--table-part`.
pub fn parse_part(text: &str) -> Result<(usize, usize), String> {
    let (k, n) = text.split_once('/').ok_or("expected K/N, e.g. 1/2")?;
    let (k, n): (usize, usize) = (
        k.parse().map_err(|_| "K is not a number")?,
        n.parse().map_err(|_| "N is not a number")?,
    );
    if n == 0 || n > APHORISMS.len() || k == 0 || k > n {
        return Err(format!("expected 1 <= K <= N <= {}", APHORISMS.len()));
    }
    Ok((k, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(part: (usize, usize), peers: &[&str], me: &str) -> PeerConfig {
        PeerConfig {
            part,
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            me: Some(me.parse().unwrap()),
            ..PeerConfig::default()
        }
    }

    #[test]
    fn a_half_knows_every_other_aphorism_and_forwards_the_rest_with_its_history() {
        let a = config((1, 2), &["127.0.0.1:2"], "127.0.0.1:1");
        assert_eq!(
            a.lookup(b"Beautiful is better than?"),
            Lookup::Answer(b"ugly.")
        );
        assert_eq!(
            a.lookup(b"Explicit is better than?"),
            Lookup::Forward(Forward {
                request: b"[127.0.0.1:1]Explicit is better than?".to_vec(),
                peers: vec!["127.0.0.1:2".parse().unwrap()],
            })
        );
        assert_eq!(
            a.lookup(b"[127.0.0.1:9]Explicit is better than?"),
            Lookup::Forward(Forward {
                request: b"[127.0.0.1:9,127.0.0.1:1]Explicit is better than?".to_vec(),
                peers: vec!["127.0.0.1:2".parse().unwrap()],
            })
        );
        let b = config((2, 2), &["127.0.0.1:1"], "127.0.0.1:2");
        assert_eq!(
            b.lookup(b"[127.0.0.1:1]Explicit is better than?"),
            Lookup::Answer(b"implicit.")
        );
    }

    #[test]
    fn loops_hops_and_malformed_histories_end_in_unknown() {
        let a = config((1, 2), &["127.0.0.1:2"], "127.0.0.1:1");
        for request in [
            &b"[127.0.0.1:1]Explicit is better than?"[..], // itself
            b"[127.0.0.1:2]Explicit is better than?",      // all its peers
            b"[not an address]Explicit is better than?",
            b"[127.0.0.1:2 Explicit is better than?",
        ] {
            assert_eq!(
                a.lookup(request),
                Lookup::Answer(UNKNOWN_APHORISM),
                "{request:?}"
            );
        }
        let hops = PeerConfig {
            max_hops: 2,
            ..a.clone()
        };
        assert_eq!(
            hops.lookup(b"[127.0.0.1:9]Explicit is better than?"),
            Lookup::Answer(UNKNOWN_APHORISM)
        );
    }

    #[test]
    fn ipv6_addresses_in_a_history_keep_their_brackets() {
        let a = config((1, 2), &["[::1]:2"], "[::1]:1");
        assert_eq!(
            a.lookup(b"Explicit is better than?"),
            Lookup::Forward(Forward {
                request: b"[[::1]:1]Explicit is better than?".to_vec(),
                peers: vec!["[::1]:2".parse().unwrap()],
            })
        );
        assert_eq!(
            a.lookup(b"[[::1]:9,127.0.0.1:8,[fe80::1%2]:7]Explicit is better than?"),
            Lookup::Forward(Forward {
                request: b"[[::1]:9,127.0.0.1:8,[fe80::1%2]:7,[::1]:1]Explicit is better than?"
                    .to_vec(),
                peers: vec!["[::1]:2".parse().unwrap()],
            })
        );
        let b = config((2, 2), &["[::1]:1"], "[::1]:2");
        assert_eq!(
            b.lookup(b"[[::1]:1]Explicit is better than?"),
            Lookup::Answer(b"implicit.")
        );
        for request in [
            &b"[[::1]:1]Explicit is better than?"[..], // itself
            b"[[::1]:2]Explicit is better than?",      // all its peers
            b"[[::1]Explicit is better than?",         // no port
            b"[[::1]:9 Explicit is better than?",      // no end
            b"[[[::1]]:9]Explicit is better than?",    // nested
            b"[[::1:9]Explicit is better than?",       // unclosed address
            b"[::1:9]Explicit is better than?",        // no brackets
        ] {
            assert_eq!(
                a.lookup(request),
                Lookup::Answer(UNKNOWN_APHORISM),
                "{}",
                String::from_utf8_lossy(request)
            );
        }
    }

    #[test]
    fn a_question_in_no_part_of_the_table_is_unknown_at_once_and_never_forwarded() {
        let a = config((1, 2), &["127.0.0.1:2", "127.0.0.1:3"], "127.0.0.1:1");
        for request in [
            &b"x?"[..],
            b"[127.0.0.1:9]x?",
            b"Explicit is better than ?",
            b"explicit is better than?",
        ] {
            assert_eq!(
                a.lookup(request),
                Lookup::Answer(UNKNOWN_APHORISM),
                "{}",
                String::from_utf8_lossy(request)
            );
        }
        // The rest of the table is still forwarded.
        assert!(matches!(
            a.lookup(b"[127.0.0.1:9]Explicit is better than?"),
            Lookup::Forward(_)
        ));
    }

    #[test]
    fn the_first_answer_wins_unknowns_ask_on_and_failures_say_so() {
        let forward = Forward {
            request: b"x?".to_vec(),
            peers: vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ],
        };
        let mut asking = Asking::new(forward.clone());
        asking.next_peer();
        assert_eq!(asking.heard(Reply::of(b"Error: unknown aphorism.")), None);
        asking.next_peer();
        assert_eq!(asking.heard(Reply::of(b"ugly.")), Some(&b"ugly."[..]));
        let mut asking = Asking::new(forward.clone());
        asking.next_peer();
        assert_eq!(asking.heard(Reply::of(b"garbage.")), None);
        asking.next_peer();
        assert_eq!(asking.heard(Reply::Unknown), Some(NO_PEER_ANSWERED));
        let mut asking = Asking::new(forward);
        asking.next_peer();
        asking.heard(Reply::Unknown);
        asking.next_peer();
        assert_eq!(asking.heard(Reply::Unknown), Some(UNKNOWN_APHORISM));
        assert_eq!(asking.next_peer(), None);
    }

    /// Feeds `chunks` to a reader, one read each; what the last one said.
    fn read(chunks: &[&[u8]]) -> ReplyRead {
        let mut reader = ReplyReader::new();
        let mut last = ReplyRead::NeedMore;
        for chunk in chunks {
            assert_eq!(last, ReplyRead::NeedMore, "read on after the end");
            reader.room()[..chunk.len()].copy_from_slice(chunk);
            last = reader.received(chunk.len());
        }
        last
    }

    #[test]
    fn a_reply_is_read_in_pieces_and_ends_at_its_full_stop() {
        assert_eq!(read(&[b"ug"]), ReplyRead::NeedMore);
        assert_eq!(
            read(&[b"ug", b"ly."]),
            ReplyRead::Complete(Reply::Answer(b"ugly."))
        );
        assert_eq!(
            read(&[b"Error: unknown aphorism."]),
            ReplyRead::Complete(Reply::Unknown)
        );
        assert_eq!(read(&[b"garbage."]), ReplyRead::Complete(Reply::Failed));
        assert_eq!(read(&[b"ug", b""]), ReplyRead::ClosedEarly);
        assert_eq!(read(&[b""]), ReplyRead::ClosedEarly);
    }

    #[test]
    fn a_reply_past_its_maximum_or_with_more_after_it_is_too_long() {
        assert_eq!(read(&[b"ugly.ugly."]), ReplyRead::TooLong);
        assert_eq!(read(&[b"ugly", b".x"]), ReplyRead::TooLong);
        let long = [b'x'; MAX_PEER_REPLY];
        assert_eq!(read(&[&long]), ReplyRead::TooLong);
        assert_eq!(
            read(&[&long[..MAX_PEER_REPLY - 1]]),
            ReplyRead::NeedMore,
            "one byte of room left"
        );
        assert_eq!(
            read(&[&long[..MAX_PEER_REPLY - 1], b"x"]),
            ReplyRead::TooLong
        );
        let mut longest = [b'x'; MAX_PEER_REPLY];
        longest[MAX_PEER_REPLY - 1] = b'.';
        assert_eq!(
            read(&[&longest]),
            ReplyRead::Complete(Reply::Failed),
            "a full stop in the last byte ends a reply"
        );
    }

    #[test]
    fn table_parts_parse_and_absurd_ones_are_refused() {
        assert_eq!(parse_part("1/2"), Ok((1, 2)));
        for bad in ["0/2", "3/2", "1/0", "1/8", "x", "1/"] {
            assert!(parse_part(bad).is_err(), "{bad}");
        }
    }
}

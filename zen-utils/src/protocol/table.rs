//! The aphorism table and the fixed answers of the protocol
//! (docs/protocol.md), byte for byte.

/// The questions the service knows and their answers, exact bytes.
///
/// The first three are the book's; the rest are the other "better than"
/// lines of PEP 20.
pub const APHORISMS: [(&[u8], &[u8]); 7] = [
    (b"Beautiful is better than?", b"ugly."),
    (b"Explicit is better than?", b"implicit."),
    (b"Simple is better than?", b"complex."),
    (b"Complex is better than?", b"complicated."),
    (b"Flat is better than?", b"nested."),
    (b"Sparse is better than?", b"dense."),
    (b"Now is better than?", b"never."),
];

/// The answer to a question that is not in the table (the empty `?` too).
pub const UNKNOWN_APHORISM: &[u8] = b"Error: unknown aphorism.";
/// Sent when `--max-request` bytes arrived with no `?`; the connection then closes.
pub const REQUEST_TOO_LONG: &[u8] = b"Error: request too long.";
/// Sent to a new connection while `--max-conns` are open; it is then closed.
pub const SERVER_BUSY: &[u8] = b"Error: server busy.";
/// Sent when no question completed for `--idle-timeout`; the connection then closes.
pub const IDLE_TIMEOUT: &[u8] = b"Error: idle timeout.";
/// The answer to a question the server does not know when a peer it asked
/// failed (refused, reset, silent, garbage) and none answered; the
/// connection stays open.
pub const NO_PEER_ANSWERED: &[u8] = b"Error: no peer answered.";

/// The most unsent answer bytes a connection may hold.
///
/// A client that sends faster than it reads is not read from again until
/// its answers drain below this bound, so a connection's memory never grows
/// with what the client sends. 64 KiB is a few socket buffers' worth: large
/// enough that a pipelining client never waits on it, small enough that
/// 10,000 stuck clients cost at most 640 MiB.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// The answer to one complete question (its bytes up to and including `?`).
///
/// Always an answer: a question not in the table gets [`UNKNOWN_APHORISM`].
pub fn answer(question: &[u8]) -> &'static [u8] {
    APHORISMS
        .iter()
        .find(|(known, _)| *known == question)
        .map_or(UNKNOWN_APHORISM, |(_, answer)| *answer)
}

/// Whether an answer is one of the error answers (they all start `Error:`).
pub fn is_error(answer: &[u8]) -> bool {
    answer.starts_with(b"Error:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_aphorism_has_its_answer() {
        assert_eq!(answer(b"Beautiful is better than?"), b"ugly.");
        assert_eq!(answer(b"Now is better than?"), b"never.");
        for (question, reply) in APHORISMS {
            assert_eq!(answer(question), reply);
            assert!(reply.ends_with(b"."));
            assert!(!is_error(reply));
        }
    }

    #[test]
    fn questions_are_compared_byte_for_byte() {
        for question in [
            &b"?"[..],
            b"beautiful is better than?",
            b"Beautiful is better than ?",
            b"Beautiful  is better than?",
            b"Beautiful is better than? ",
        ] {
            assert_eq!(answer(question), UNKNOWN_APHORISM);
        }
        assert!(is_error(UNKNOWN_APHORISM));
    }
}

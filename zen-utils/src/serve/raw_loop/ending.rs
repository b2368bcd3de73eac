//! How a raw loop's connection ends: its last word, sent best effort, then
//! why it ended, as the conversation says. srv-poll sends the word with a
//! non-blocking write, srv-uring with a non-blocking send beside its ring;
//! either way the connection closes next, and a client that does not read
//! cannot hold it open for the word.

use std::time::Instant;

use crate::protocol::conversation::Conversation;
use crate::End;

/// Why the connection is over, if it is, after its last word (if any)
/// went to `send`.
pub fn last_word_then_end(
    conversation: &mut Conversation,
    send: impl FnOnce(&[u8]),
) -> Option<End> {
    if let Some(word) = conversation.last_word() {
        send(word);
    }
    conversation.end()
}

/// The idle deadline passed: how the connection ends. With answers unsent,
/// the client did not read them (an error); otherwise with the last word
/// `Error: idle timeout.`, given to `send`.
pub fn idle_end(conversation: &mut Conversation, now: Instant, send: impl FnOnce(&[u8])) -> End {
    if let Some(end) = conversation.check_idle(now) {
        return end;
    }
    last_word_then_end(conversation, send).unwrap_or(End::IdleTimeout)
}

//! What a raw loop's events and timers name: a client connection, or one
//! attempt of a peer call, each by its slab key and a generation.
//!
//! A slab reuses keys, so a key alone could name a newer connection (or
//! attempt) than the one a timer or an event was for; the generation, a
//! number the loop never gives twice, tells them apart. Whoever takes an
//! event or a due timer checks that the generation still matches, which
//! spares cancelling anything.

/// One client connection of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    /// Its key in the loop's slab of connections.
    pub key: usize,
    /// The loop's count of admitted connections when it was admitted
    /// (see [`Admitter`](super::admitted::Admitter)).
    pub generation: u64,
}

/// One attempt of a peer call: one peer asked, on one outgoing connection.
/// A call asks peer after peer, so the generation tells an attempt that is
/// over (its deadline, its last events) from the one in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttemptId {
    /// Its key in the loop's slab (of calls in srv-poll, of attempts in
    /// srv-uring).
    pub key: usize,
    /// The loop's count of attempts when it began.
    pub generation: u64,
}

//! What is said, with no I/O: bytes in, answers out. Nothing here opens a
//! socket or reads a clock of its own; every server drives these alike.
//!
//! - [`table`] (re-exported here): the aphorism table and the fixed
//!   answers, exact bytes.
//! - [`frame`]: the framing decoder: bytes in, questions out.
//! - [`conversation`]: one conversation with one client: the decoder, the
//!   answers owed and their bound, the idle deadline, the last word.
//! - [`end`]: why a connection ended and what it left unanswered.
//! - [`work`]: `--work wait|cpu|block:DUR`, the work an answer costs.
//! - [`peers`]: servers that ask servers: the table part, the forwarded
//!   question and its history, what a peer's reply means.

pub mod conversation;
pub mod end;
pub mod frame;
pub mod peers;
pub mod table;
pub mod work;

pub use table::*;

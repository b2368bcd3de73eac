//! A performance device: the rare awaits are boxed, so that every
//! connection's task stays small while it waits for a question.
//!
//! An async fn's future is as large as the largest set of values it holds
//! across any one await, and a task holds its future for the whole life of
//! the connection. The work of `--work` (a timer and its registration) and
//! the last word (a timeout around a write) are large and rare: kept
//! inline, they would make every idle connection's task that much larger.
//! Boxed, they cost a pointer in the task, and one allocation each time
//! they run. The size is measured by a test in `connection.rs`.

use std::future::Future;
use std::pin::Pin;

/// `future` on the heap: the caller's future holds a pointer to it instead
/// of the future itself. (Not an async fn: that would hold its argument,
/// the future itself, inline.)
pub(crate) fn boxed<F: Future>(future: F) -> Pin<Box<F>> {
    Box::pin(future)
}

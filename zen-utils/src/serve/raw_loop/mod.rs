//! What the hand-written event loops share (srv-poll's readiness loop,
//! srv-uring's completion loop, and the client's load generator).
//!
//! - [`epoll`]: epoll whose wait is one system call, and a timerfd armed
//!   only when its deadline moves.
//! - [`waker`]: the eventfd another thread wakes a loop's wait with (the
//!   shutdown, `--offload`'s helpers).
//! - [`timers`]: an event loop's timer queue on a binary heap.
//! - [`deadline`]: what srv-poll's and srv-uring's timer queues hold, the
//!   idle scan's period, and the top of a turn (until when it waits, or
//!   that the loop is over).
//! - [`ids`]: a connection's and a peer attempt's names in a loop's slab,
//!   and [`admitted`]: how a loop takes in a connection it accepted.
//! - [`ending`]: a connection's last word, then why it ended.

pub mod admitted;
pub mod deadline;
pub mod ending;
pub mod epoll;
pub mod ids;
pub mod timers;
pub mod waker;

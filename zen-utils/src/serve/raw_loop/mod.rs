//! What the hand-written event loops share (srv-poll's readiness loop,
//! srv-uring's completion loop, and the client's load generator).
//!
//! - [`epoll`]: epoll whose wait is one system call, a timerfd armed only
//!   when its deadline moves, an eventfd waker.
//! - [`timers`]: an event loop's timer queue on a binary heap.

pub mod epoll;
pub mod timers;

//! srv-poll: one thread, non-blocking sockets, a raw readiness loop on the
//! `polling` crate. Not written yet: this crate has no server until its
//! issue is done.

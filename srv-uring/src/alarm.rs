//! The loop's alarm clock: one io_uring `Timeout` operation, armed for the
//! earliest of the timer queue's tasks (and the shutdown's grace), as
//! srv-poll arms its one timerfd.
//!
//! Why not the wait's own timeout (`io_uring_enter` takes one)? It is set
//! up and torn down in the kernel at every wait, and there is always a
//! timer due (the idle scan): measured at one connection, that cost a
//! tenth of the answers. The alarm is submitted again only when the
//! earliest task changes, which is seldom; when it fires, its completion
//! wakes the wait like any other.

use std::io;
use std::time::Instant;

use io_uring::{opcode, types};
use zen_utils::serve::raw_loop::epoll::{nanos, now_ns};

use crate::ring::{Op, Ring};

/// The alarm, and what the kernel holds of it.
pub(crate) struct Alarm {
    /// The deadline the Timeout (or its update) names, on the monotonic
    /// clock. The kernel reads it when the entry is submitted; boxed, so
    /// that it stays put whatever moves the loop.
    deadline: Box<types::Timespec>,
    /// The instant it is armed for, if it is.
    armed_for: Option<Instant>,
    /// Whether the Timeout is in flight (armed, and its completion not yet
    /// reaped).
    in_flight: bool,
}

impl Alarm {
    pub(crate) fn new() -> Self {
        Self {
            deadline: Box::new(types::Timespec::new()),
            armed_for: None,
            in_flight: false,
        }
    }

    /// Arms the alarm for `at`, unless it is armed for it already: one
    /// submission when the earliest task changes, not one per wait. With
    /// no task due, an armed alarm is left alone: it wakes the loop once
    /// for nothing.
    pub(crate) fn arm(&mut self, ring: &mut Ring, at: Option<Instant>) -> io::Result<()> {
        let Some(at) = at else {
            return Ok(());
        };
        if self.armed_for == Some(at) {
            return Ok(());
        }
        // `Instant` reads the monotonic clock, as an absolute Timeout does;
        // the clock is read after the instant, so it never fires early.
        let left = at.saturating_duration_since(Instant::now());
        let ns = now_ns() + nanos(left);
        *self.deadline = types::Timespec::new()
            .sec(ns / 1_000_000_000)
            .nsec((ns % 1_000_000_000) as u32);
        let flags = types::TimeoutFlags::ABS;
        let entry = if self.in_flight {
            // Moves the Timeout in flight; the update's own completion
            // says nothing the loop needs.
            opcode::TimeoutUpdate::new(Op::Alarm.user_data(), &*self.deadline)
                .flags(flags)
                .build()
                .user_data(Op::Cancel.user_data())
        } else {
            opcode::Timeout::new(&*self.deadline)
                .flags(flags)
                .build()
                .user_data(Op::Alarm.user_data())
        };
        // SAFETY: the deadline is boxed and lives as long as the loop,
        // which outlives the ring's operations (see `EventLoop`).
        unsafe { ring.push(entry)? };
        self.in_flight = true;
        self.armed_for = Some(at);
        Ok(())
    }

    /// The Timeout completed: it fired (`-ETIME`), or it was removed.
    pub(crate) fn completed(&mut self) {
        self.in_flight = false;
        self.armed_for = None;
    }

    /// At the very end: removes the Timeout, if it is in flight.
    pub(crate) fn cancel(&mut self, ring: &mut Ring) {
        if self.in_flight {
            let entry = opcode::TimeoutRemove::new(Op::Alarm.user_data())
                .build()
                .user_data(Op::Cancel.user_data());
            // SAFETY: a removal names no memory, only another operation.
            let _ = unsafe { ring.push(entry) };
        }
    }

    /// Whether the kernel still holds the Timeout.
    pub(crate) fn in_flight(&self) -> bool {
        self.in_flight
    }
}

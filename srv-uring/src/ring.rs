//! The ring: one io_uring instance, what every operation in flight is
//! called (its `user_data`), and the one wait of the loop.
//!
//! A readiness loop asks the kernel "which sockets could I read?" and then
//! reads them itself, one system call each. A completion loop hands the
//! kernel the whole operation ("receive into one of these buffers", "send
//! these bytes") by writing an entry into the submission queue, shared
//! memory, no system call; one `io_uring_enter` submits every entry written
//! since the last one and waits for completions, which the kernel writes
//! into the completion queue, shared memory again. The loop reaps them all
//! and writes the next entries: many operations per system call.
//!
//! The price is ownership: from submission to completion the kernel owns
//! the memory an operation names. Every `unsafe` push in this crate says
//! who keeps that memory alive until the completion comes.

use std::io;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};

/// Submission queue entries: a turn of the loop writes at most this many
/// before the queue is submitted early (one more system call, never a
/// lost entry). 50 connections pipelining 16 questions need about 100
/// per turn; a burst of accepts a few more.
const SQ_ENTRIES: u32 = 1024;
/// The completion queue is four times larger: multishot operations post
/// many completions per submission. The kernel keeps any overflow (it has
/// `IORING_FEAT_NODROP`), so this bounds only how many one reap sees.
const CQ_ENTRIES: u32 = 4 * SQ_ENTRIES;

/// The opcodes the loop needs. Probed at start, so that a kernel without
/// one says so in one line instead of failing on the first connection.
const NEEDED: [(u8, &str); 6] = [
    (opcode::AcceptMulti::CODE, "accept"),
    (opcode::RecvMulti::CODE, "recv"),
    (opcode::Send::CODE, "send"),
    (opcode::Read::CODE, "read"),
    (opcode::AsyncCancel::CODE, "async cancel"),
    (opcode::Connect::CODE, "connect"),
];

/// What an operation in flight is, as its `user_data` says: the kind in
/// the top byte, the slab key of whoever owns its memory below. A slab
/// slot is freed only once none of its operations is in flight, so a
/// completion always names the slot's current owner: no generation is
/// needed here (timers, which cannot be cancelled, carry one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// The listener's multishot accept: one completion per connection.
    Accept,
    /// The read of the shutdown eventfd.
    Waker,
    /// The loop's alarm: a Timeout for the earliest timer.
    Alarm,
    /// A connection's multishot receive into a provided buffer.
    Recv(usize),
    /// A connection's send of its answers.
    Send(usize),
    /// A peer call attempt's connect, send or receive (one at a time).
    Peer(usize),
    /// A cancel request: its own completion says only whether it found
    /// its target, whose completion comes anyway.
    Cancel,
}

impl Op {
    pub(crate) fn user_data(self) -> u64 {
        let (kind, key) = match self {
            Self::Accept => (1, 0),
            Self::Waker => (2, 0),
            Self::Recv(key) => (3, key),
            Self::Send(key) => (4, key),
            Self::Peer(key) => (5, key),
            Self::Cancel => (6, 0),
            Self::Alarm => (7, 0),
        };
        kind << 56 | key as u64
    }

    pub(crate) fn of(user_data: u64) -> Self {
        let key = (user_data & ((1 << 56) - 1)) as usize;
        match user_data >> 56 {
            1 => Self::Accept,
            2 => Self::Waker,
            3 => Self::Recv(key),
            4 => Self::Send(key),
            5 => Self::Peer(key),
            7 => Self::Alarm,
            _ => Self::Cancel,
        }
    }
}

/// One reaped completion, copied out of the completion queue so that the
/// loop can submit while it handles it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completion {
    pub(crate) op: Op,
    /// The system call's result: bytes, a descriptor, or `-errno`.
    pub(crate) result: i32,
    pub(crate) flags: u32,
}

impl Completion {
    /// Whether a multishot operation goes on after this completion
    /// (`IORING_CQE_F_MORE`); without it, it is over and may be submitted
    /// again.
    pub(crate) fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// The provided buffer the kernel chose for a receive, if it chose one.
    pub(crate) fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }

    /// The error, if the operation failed.
    pub(crate) fn error(&self) -> Option<io::Error> {
        (self.result < 0).then(|| io::Error::from_raw_os_error(-self.result))
    }
}

/// The io_uring instance of the loop's thread.
pub(crate) struct Ring {
    ring: IoUring,
}

impl Ring {
    /// Sets up the ring. `SINGLE_ISSUER` and `DEFER_TASKRUN` (6.1): only
    /// this thread submits, and the kernel runs completion work only when
    /// this thread enters to wait for it, in one batch, rather than
    /// interrupting it as each packet arrives. Older kernels get a plain
    /// ring.
    pub(crate) fn new() -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_submit_all()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(SQ_ENTRIES)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(CQ_ENTRIES)
                    .build(SQ_ENTRIES)
            })
            .map_err(unavailable)?;
        check_opcodes(&ring)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::other(
                "io_uring: this kernel cannot bound a wait (no IORING_FEAT_EXT_ARG, 5.11)",
            ));
        }
        Ok(Self { ring })
    }

    /// Writes an entry into the submission queue; if the queue is full,
    /// submits what it holds first.
    ///
    /// # Safety
    /// Every buffer, address and descriptor the entry names must stay
    /// valid, and untouched by anyone else, until its completion is reaped.
    pub(crate) unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the caller's promise, passed on.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Asks the kernel to cancel the operation `target`. Its completion
    /// comes anyway (with `-ECANCELED`, or its result if it had finished):
    /// until then the kernel may still be using its memory.
    pub(crate) fn cancel(&mut self, target: Op) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(target.user_data())
            .build()
            .user_data(Op::Cancel.user_data());
        // SAFETY: a cancel names no memory, only another operation.
        unsafe { self.push(entry) }
    }

    /// Submits what the queue holds, without waiting: the loop does this
    /// only before it blocks on purpose (`--work block` and `cpu`), so
    /// that the answers made before go out first.
    pub(crate) fn submit(&mut self) -> io::Result<()> {
        self.ring.submit().map(drop)
    }

    /// The loop's one system call per turn: submits every entry written
    /// since the last, and waits until at least one completion is there
    /// (the alarm's, when a timer is due: see `alarm.rs`), or `timeout`
    /// passes (only the final drain gives one).
    pub(crate) fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let result = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(timeout) => {
                let ts = types::Timespec::from(timeout);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            // The timer is due (ETIME), a signal came (EINTR), or the
            // completion queue is full and must be reaped first (EBUSY):
            // all mean "reap, then run the timers".
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Moves every completion out of the completion queue into `into`.
    pub(crate) fn reap(&mut self, into: &mut Vec<Completion>) {
        into.clear();
        into.extend(self.ring.completion().map(|cqe| Completion {
            op: Op::of(cqe.user_data()),
            result: cqe.result(),
            flags: cqe.flags(),
        }));
    }

    /// The registration interface (the provided buffer ring).
    pub(crate) fn submitter(&self) -> io_uring::Submitter<'_> {
        self.ring.submitter()
    }
}

/// Whether io_uring is there to use: a small ring set up, its opcodes
/// probed. `Err` says why not in one line (the kernel refused it: a
/// seccomp profile, `kernel.io_uring_disabled`, an old kernel).
///
/// The probe runs on a thread of its own, which ends with it: tearing a
/// ring down queues work to the thread that set it up, and that work
/// interrupts the thread's next blocking system call with `EINTR` (a
/// test's blocking read, say).
pub fn available() -> io::Result<()> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let ring = IoUring::new(2).map_err(unavailable)?;
                check_opcodes(&ring)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("io_uring: the probe panicked")))
    })
}

fn check_opcodes(ring: &IoUring) -> io::Result<()> {
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(unavailable)?;
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "io_uring: this kernel lacks {}",
            missing.join(", ")
        )))
    }
}

/// Why io_uring cannot be set up, as one line.
fn unavailable(error: io::Error) -> io::Error {
    let why = match error.raw_os_error() {
        Some(libc::EPERM) => "refused (kernel.io_uring_disabled, or a seccomp profile)",
        Some(libc::ENOSYS) => "not in this kernel, or blocked by a seccomp profile",
        _ => "cannot be set up",
    };
    io::Error::new(
        error.kind(),
        format!("io_uring {why}: {error}; srv-uring needs it (srv-poll does not)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_names_the_operation_and_its_owner() {
        for op in [
            Op::Accept,
            Op::Waker,
            Op::Recv(0),
            Op::Recv(70_000),
            Op::Send(3),
            Op::Peer(1 << 40),
            Op::Cancel,
            Op::Alarm,
        ] {
            assert_eq!(Op::of(op.user_data()), op);
        }
    }
}

//! An async sleep precise to microseconds, for `--work wait:DUR`.
//!
//! tokio's timer wheel ticks in milliseconds and rounds every deadline up,
//! and the reactor's `epoll_wait` rounds its timeout up to a millisecond
//! again: a 10 ms `tokio::time::sleep` lasts 10 to 12 ms, about 15% more
//! on average. That is harmless for timeouts but not for a simulated
//! backend that the threaded servers wait on with a precise
//! `std::thread::sleep`: the comparison would measure tokio's rounding, not
//! the model. So the wait arms a kernel timer (`timerfd`) and awaits its
//! readiness on tokio's reactor: still an async sleep — the task yields and
//! the thread serves other connections — but it ends when it should.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Sleeps for `duration` without holding the thread. Falls back to tokio's
/// own timer if the kernel refuses a timerfd (out of descriptors, say).
pub(crate) async fn sleep(duration: Duration) {
    if duration.is_zero() {
        return;
    }
    match arm(duration) {
        Ok(timer) => {
            // Readable once the timer has fired. An error from the reactor
            // ends the wait early, which is only ever a shorter delay.
            let _ = timer.readable().await;
        }
        Err(_) => tokio::time::sleep(duration).await,
    }
}

/// A one-shot timer that fires after `duration`, registered with the
/// reactor of the runtime that runs the calling task.
fn arm(duration: Duration) -> io::Result<AsyncFd<OwnedFd>> {
    let timer = timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )?;
    let once = Itimerspec {
        it_interval: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: Timespec {
            tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(duration.subsec_nanos()),
        },
    };
    timerfd_settime(&timer, TimerfdTimerFlags::empty(), &once)?;
    // SAFETY: an `OwnedFd` is a valid open descriptor that stays the same
    // and stays open until the `AsyncFd` that owns it is dropped.
    let registered = unsafe { AsyncFd::register_with_interest(timer, Interest::READABLE) };
    registered.map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn sleeps_at_least_its_duration() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let started = Instant::now();
            sleep(Duration::from_micros(2500)).await;
            assert!(started.elapsed() >= Duration::from_micros(2500));
            sleep(Duration::ZERO).await;
        });
    }
}

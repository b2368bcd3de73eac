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
//!
//! Each connection makes its [`AsyncTimerfd`] at its first wait and re-arms it for
//! every wait after: one system call per wait (`timerfd_settime`), where a
//! timer made per wait costs five (create, arm, register with epoll,
//! deregister, close). On a single-threaded runtime those calls are paid
//! one after the other for every connection whose wait ends at once, and
//! each one delays the answers queued behind it.

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A connection's kernel timer, registered with the reactor of the runtime
/// that made it.
pub(crate) struct AsyncTimerfd {
    fd: AsyncFd<OwnedFd>,
}

impl AsyncTimerfd {
    /// A disarmed timer. Fails when the kernel refuses a timerfd (out of
    /// descriptors, say).
    pub(crate) fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: an `OwnedFd` is a valid open descriptor that stays the
        // same and stays open until the `AsyncFd` that owns it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(Self { fd })
    }

    /// Sleeps for `duration` without holding the thread.
    pub(crate) async fn sleep(&self, duration: Duration) -> io::Result<()> {
        if duration.is_zero() {
            return Ok(());
        }
        // Taken before the timer is armed, so it is never later than the
        // moment the timer fires.
        let deadline = Instant::now() + duration;
        timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &once_after(duration))?;
        loop {
            // The reactor watches the timer edge-triggered: each expiry is
            // one readiness event, and arming the timer anew resets its
            // count, so nothing needs reading. A readiness left over from a
            // wait that was abandoned (only the shutdown abandons one) is
            // told apart by the clock: cleared, and waited past.
            let mut ready = self.fd.readable().await?;
            ready.clear_ready();
            if Instant::now() >= deadline {
                return Ok(());
            }
        }
    }
}

/// Sleeps for `duration` on `timer`, made at the first call. Wherever the
/// kernel timer fails (no timerfd to be had, out of descriptors, say; an
/// error arming it or from the reactor) the rest of the wait is done on
/// tokio's own timer: only a less precise wait, never a shorter one.
pub(crate) async fn sleep(timer: &mut Option<Box<AsyncTimerfd>>, duration: Duration) {
    let started = Instant::now();
    if timer.is_none() {
        *timer = AsyncTimerfd::new().ok().map(Box::new);
    }
    if let Some(timer) = timer {
        if timer.sleep(duration).await.is_ok() {
            return;
        }
    }
    tokio::time::sleep(duration.saturating_sub(started.elapsed())).await;
}

/// A one-shot expiry `duration` from now.
fn once_after(duration: Duration) -> Itimerspec {
    Itimerspec {
        it_interval: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: Timespec {
            tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(duration.subsec_nanos()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::{poll_fn, Future};
    use std::task::Poll;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn each_sleep_on_a_reused_timer_lasts_at_least_its_duration() {
        runtime().block_on(async {
            let mut timer = None;
            for micros in [2500, 300, 1000] {
                let duration = Duration::from_micros(micros);
                let started = Instant::now();
                sleep(&mut timer, duration).await;
                assert!(started.elapsed() >= duration);
            }
            assert!(timer.is_some());
            sleep(&mut timer, Duration::ZERO).await;
        });
    }

    #[test]
    fn an_abandoned_wait_does_not_cut_the_next_one_short() {
        runtime().block_on(async {
            let timer = AsyncTimerfd::new().unwrap();
            // Abandoned before its timer fires; the timer then fires with
            // nobody waiting, and the reactor, driven meanwhile, records a
            // readiness that no wait consumed.
            let mut abandoned = Box::pin(timer.sleep(Duration::from_millis(1)));
            poll_fn(|cx| {
                assert!(abandoned.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            drop(abandoned);
            tokio::time::sleep(Duration::from_millis(5)).await;
            let duration = Duration::from_millis(20);
            let started = Instant::now();
            timer.sleep(duration).await.unwrap();
            assert!(started.elapsed() >= duration);
        });
    }
}

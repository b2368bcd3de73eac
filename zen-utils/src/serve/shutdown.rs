//! Graceful shutdown: one trigger, seen by every thread, loop and task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How long connections may still take, after shutdown begins, to answer
/// the questions already received. When it is over, every connection
/// still open is closed, whatever it was doing: a client that stops
/// reading, or `--work wait` longer than the grace, cannot hold the server
/// past it (the protocol wants the exit within a few seconds even if
/// clients stay connected). docs/protocol.md has the whole rule.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often a blocked thread looks up to check for shutdown and for its
/// idle deadline: blocking calls in the threaded servers wait at most this
/// long, so a shutdown reaches a thread stuck in `accept()` or `read()`.
pub const TICK: Duration = Duration::from_millis(50);

type Waker = Box<dyn Fn() + Send + Sync>;

/// A cloneable handle that starts a server's graceful shutdown.
///
/// Blocking servers poll [`is_triggered`](Self::is_triggered) every
/// [`TICK`]; event loops register a waker with
/// [`on_trigger`](Self::on_trigger) so that they wake at once: srv-poll
/// its poller's waker (the `polling` crate's `Poller::notify`, or the raw
/// loop's eventfd), srv-uring its eventfd, srv-async and srv-hybrid a
/// tokio `Notify`.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    triggered: AtomicBool,
    /// When the shutdown began; set before any waker runs.
    triggered_at: OnceLock<Instant>,
    wakers: Mutex<Vec<Waker>>,
}

impl Shutdown {
    /// A shutdown not triggered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the shutdown: sets the flag and runs every waker. Calling it
    /// again does nothing.
    pub fn trigger(&self) {
        let _ = self.inner.triggered_at.set(Instant::now());
        if !self.inner.triggered.swap(true, Ordering::SeqCst) {
            let wakers = self
                .inner
                .wakers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for wake in wakers.iter() {
                wake();
            }
        }
    }

    /// Whether the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::SeqCst)
    }

    /// When the shutdown grace ends ([`SHUTDOWN_GRACE`] after the trigger),
    /// once the shutdown has begun: every connection still open then is
    /// closed, and every wait for `--work` is cut short.
    pub fn grace_deadline(&self) -> Option<Instant> {
        self.inner
            .triggered_at
            .get()
            .map(|began| *began + SHUTDOWN_GRACE)
    }

    /// Whether the shutdown grace is over at `now`.
    pub fn grace_over(&self, now: Instant) -> bool {
        self.grace_deadline()
            .is_some_and(|deadline| now >= deadline)
    }

    /// Runs `wake` when the shutdown starts, or now if it already has.
    pub fn on_trigger(&self, wake: impl Fn() + Send + Sync + 'static) {
        let mut wakers = self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock that `trigger` takes, so `wake` runs exactly once.
        if self.is_triggered() {
            wake();
        } else {
            wakers.push(Box::new(wake));
        }
    }

    /// Triggers this shutdown on SIGINT or SIGTERM, from a thread of its own
    /// (a signal handler may do almost nothing; a thread may do anything).
    pub fn trigger_on_signals(&self) -> std::io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let shutdown = self.clone();
        std::thread::Builder::new()
            .name("signals".to_owned())
            .spawn(move || {
                if signals.forever().next().is_some() {
                    shutdown.trigger();
                }
            })?;
        Ok(())
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn wakers_run_once_whenever_they_are_registered() {
        let shutdown = Shutdown::new();
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&woken);
        shutdown.on_trigger(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert!(!shutdown.is_triggered());
        shutdown.clone().trigger();
        shutdown.trigger();
        assert!(shutdown.is_triggered());
        let counter = Arc::clone(&woken);
        shutdown.on_trigger(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        let deadline = shutdown.grace_deadline().unwrap();
        assert!(!shutdown.grace_over(deadline - Duration::from_millis(1)));
        assert!(shutdown.grace_over(deadline));
        assert_eq!(Shutdown::new().grace_deadline(), None);
    }
}

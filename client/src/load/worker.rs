//! One load thread: an epoll loop over its share of the connections.
//!
//! The hot path, per connection and per batch of answers: one `read` into
//! the thread's buffer, a check of each answer against the bytes expected
//! (no copy), one clock reading, one histogram record per answer, and one
//! `write` of the next questions straight from the pre-built script. No
//! allocation, no lock, no atomic shared with another thread except one
//! relaxed store of the answer count for the progress line.
//! `--reconnect-every` adds one comparison per batch (and, with `-n`,
//! takes a connection's questions from the budget once, as it opens).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::event_loop::{connect, now_ns, Connecting, Interest, Poller, Timerfd};

use super::budget::Budget;
use super::conn::{Conn, Phase, BACKOFF_MAX, BACKOFF_MIN};
use super::tally::{Failure, Tally};
use super::workload::{Script, Verdict};
use crate::servers::Picker;

/// The read buffer, one per thread: big enough for a burst of answers
/// from every connection's pipeline, and reused for all of them.
const READ_BUFFER: usize = 64 * 1024;
/// How often the loop looks at every connection for timeouts, due
/// reconnects and finished closes. The back-off starts at 10 ms, so a
/// reconnect is at most this late.
const SCAN_INTERVAL: u64 = 5_000_000;
/// How long connections get, after the run, to close cleanly: the client
/// shuts its sending side and reads until the server closes, so that the
/// server counts a normal close rather than a reset.
const CLOSE_GRACE: u64 = 1_000_000_000;
/// The most events one wait returns.
const EVENTS: usize = 1024;
/// The most reads one connection gets per readiness event (of up to
/// [`READ_BUFFER`] each). Its sockets are level-triggered, so what is left
/// is reported again by the next wait; a server that floods the client
/// cannot hold the loop, and the deadline, the timeouts and the other
/// connections of the thread are looked at in between.
const READS_PER_EVENT: usize = 4;
/// The poller key of the open loop's timer.
const TIMER_KEY: u64 = u64::MAX;

/// What every thread of one run shares, read-only but for `stop`.
pub(crate) struct Shared {
    pub(crate) workload: Script,
    pub(crate) pipeline: usize,
    /// A question unanswered this long (nanoseconds) fails its connection.
    pub(crate) timeout: u64,
    /// Open loop: the total rate, requests per second.
    pub(crate) rate: Option<f64>,
    /// All connections of the run, for the open loop's schedule.
    pub(crate) connections: usize,
    /// When the run started (monotonic nanoseconds): the schedule's zero.
    pub(crate) start: u64,
    /// When the warmup ends and the measured window opens (see
    /// [`Shared::counts`]).
    pub(crate) measure_start: u64,
    /// `-d`: when the measured window ends.
    pub(crate) end: Option<u64>,
    /// `-n`: the questions of the run, shared by every thread.
    pub(crate) budget: Option<Budget>,
    /// `--reconnect-every N`: each connection asks at most N questions,
    /// then closes, and a new one takes its place.
    pub(crate) reconnect_every: Option<u64>,
    /// `-n` with `--reconnect-every N`, when N questions per connection
    /// are no more than an even share of the budget (N × connections ≤
    /// -n): each connection takes its N questions from the budget at once,
    /// as it opens (its replacement before it connects), so that a run
    /// without failures opens exactly ⌈n / N⌉ connections, each asking N
    /// but the last. A bigger N takes questions as they are asked, as
    /// without the flag: no connection holds more than its share.
    pub(crate) reserve: bool,
    /// Where each new connection goes.
    pub(crate) picker: Picker,
    /// Set by the main thread to end the run early.
    pub(crate) stop: AtomicBool,
}

impl Shared {
    /// Whether a right answer to a question sent at `sent`, received at
    /// `now`, is counted (and its latency recorded).
    ///
    /// With `-d`, every answer received inside the window counts, whenever
    /// its question was asked: a rule on send times would lose the first
    /// latency's worth of the window, and a server that answers in 640 ms
    /// (an event loop blocking 10 ms for each of 64 clients) would look a
    /// third slower than it is in a 2 s window. With `-n`, the N questions
    /// asked after the warmup are the ones counted, whenever answered.
    pub(crate) fn counts(&self, sent: u64, now: u64) -> bool {
        match self.end {
            Some(_) => self.in_window(now),
            None => sent >= self.measure_start,
        }
    }

    /// Whether something that happened at `now` with no question of its
    /// own (a refused connect, a reset, a reconnect) falls in the measured
    /// window, and so is counted: what happens during the warmup is not,
    /// answers and errors alike.
    pub(crate) fn in_window(&self, now: u64) -> bool {
        self.measure_start <= now && self.end.is_none_or(|end| now <= end)
    }

    /// How many questions a new connection may ask: N with
    /// `--reconnect-every N`, no limit without.
    fn quota(&self) -> u64 {
        self.reconnect_every.unwrap_or(u64::MAX)
    }

    /// Whether the run is over for new questions: stopped, or past `-d`.
    fn over(&self, now: u64) -> bool {
        self.stop.load(Ordering::Relaxed) || self.end.is_some_and(|end| now >= end)
    }

    /// Whether a `-n` run has handed out every question (for now).
    fn budget_spent(&self) -> bool {
        self.budget.as_ref().is_some_and(Budget::spent)
    }

    /// When question `k` of connection `slot` is due in the open loop.
    /// The connections take turns: the run's `k * connections + slot`th
    /// question is due that many rate intervals after the start.
    fn due(&self, slot: usize, k: u64) -> u64 {
        let Some(rate) = self.rate else {
            return 0;
        };
        let sequence = k as f64 * self.connections as f64 + slot as f64;
        // The cast saturates, and so must the sum: at a rate of one question
        // a century, the next one is due at the end of time, not in the past.
        self.start.saturating_add((sequence * 1e9 / rate) as u64)
    }
}

/// What a thread publishes while it runs, for the main thread: two
/// relaxed stores per batch of answers, on a cache line of its own.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Progress {
    /// Right answers counted in the measured window.
    pub(crate) right: AtomicU64,
    /// Answers of any kind: a server answering wrong is not stalled.
    pub(crate) heard: AtomicU64,
}

/// What a thread hands back at the end.
pub(crate) struct Outcome {
    pub(crate) tally: Tally,
    /// `(slot, answers)` for each of its connections.
    pub(crate) answers_per_conn: Vec<(usize, u64)>,
}

/// What one readiness event's reads took from a connection.
#[derive(Default)]
struct Batch {
    /// Answers of any kind to questions asked (each frees a place in the
    /// pipeline).
    answered: usize,
    /// Right ones among them.
    right: usize,
    /// `-n`: answers to questions taken from the run's budget.
    from_budget: u64,
}

/// Why a connection's reads ended it: it starts over on a new connection.
enum Broken {
    /// This failure, to be counted.
    By(Failure),
    /// A failure already counted (by the rule of the answer that broke it).
    Counted,
}

/// One thread's loop and everything it owns.
pub(crate) struct Worker {
    shared: Arc<Shared>,
    poller: Poller,
    /// Open loop only.
    timer: Option<Timerfd>,
    conns: Vec<Conn>,
    buf: Box<[u8]>,
    tally: Tally,
    /// Open loop: connections waiting for their next due time, soonest
    /// first. Capacity for every connection, so pushing never allocates.
    schedule: BinaryHeap<Reverse<(u64, usize)>>,
    next_scan: u64,
    /// Answers so far, for the main thread's progress line and stall check.
    progress: Arc<Progress>,
    /// Answers of any kind so far, counted or not.
    heard: u64,
}

impl Worker {
    /// A thread's loop over `conns` (open or failed already); `by_target`:
    /// keep each target's figures.
    pub(crate) fn new(
        shared: Arc<Shared>,
        conns: Vec<Conn>,
        by_target: bool,
        progress: Arc<Progress>,
        series: Option<super::series::Shared>,
    ) -> io::Result<Self> {
        let poller = crate::event_loop::poller(EVENTS)?;
        let timer = match shared.rate {
            Some(_) => {
                let timer = Timerfd::new()?;
                poller.watch(timer.fd(), TIMER_KEY)?;
                Some(timer)
            }
            None => None,
        };
        let schedule = BinaryHeap::with_capacity(conns.len());
        let mut tally = Tally::new(by_target);
        for conn in &conns {
            tally.track(conn.target);
        }
        if let Some(series) = series {
            tally.keep_series(series);
        }
        Ok(Self {
            shared,
            poller,
            timer,
            conns,
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            tally,
            schedule,
            next_scan: 0,
            progress,
            heard: 0,
        })
    }

    /// Runs until the end of the run, then closes every connection.
    pub(crate) fn run(mut self) -> io::Result<Outcome> {
        let now = now_ns();
        for i in 0..self.conns.len() {
            self.conns[i].quota = self.shared.quota();
            if self.conns[i].stream.is_some() {
                let conn = &mut self.conns[i];
                if let Some(stream) = &conn.stream {
                    self.poller.add(stream, i as u64, Interest::READ)?;
                }
                conn.phase = Phase::Open;
                conn.next_due = self.shared.due(conn.slot, 0);
                self.top_up(i, now);
            } else {
                // Its connect failed before the run (the main thread
                // counted that): it tries again after the back-off.
                self.conns[i].phase = Phase::Waiting {
                    until: now + BACKOFF_MIN,
                };
                self.conns[i].next_due = self.shared.due(self.conns[i].slot, 0);
            }
        }
        loop {
            let now = now_ns();
            if self.shared.stop.load(Ordering::Relaxed)
                || self.shared.end.is_some_and(|end| now >= end)
                || self.finished()
            {
                break;
            }
            if let Some(series) = &mut self.tally.series {
                // An interval over is handed to the main thread (the loop
                // wakes at least every scan, well within `--every`'s lag).
                series.turn(now);
            }
            if now >= self.next_scan {
                self.scan(now);
                self.next_scan = now + SCAN_INTERVAL;
            }
            if self.timer.is_some() {
                self.send_due(now);
            }
            let wake = self.next_wake()?;
            self.poller.wait(Some(wake))?;
            for e in 0..self.poller.len() {
                let ready = self.poller.event(e);
                if ready.key == TIMER_KEY {
                    if let Some(timer) = &mut self.timer {
                        timer.fired();
                    }
                    continue;
                }
                let i = ready.key as usize;
                match self.conns[i].phase {
                    Phase::Connecting { .. } => self.on_connected(i),
                    Phase::Open => {
                        if ready.writable && self.conns[i].writing {
                            self.flush(i, now_ns());
                        }
                        if ready.readable && self.conns[i].phase == Phase::Open {
                            self.on_readable(i);
                        }
                    }
                    Phase::Draining { .. } => self.drain(i),
                    Phase::Waiting { .. } | Phase::Done => {}
                }
            }
        }
        self.close_all()?;
        if let Some(series) = &mut self.tally.series {
            series.hand_over();
        }
        let answers_per_conn = self
            .conns
            .iter()
            .map(|conn| (conn.slot, conn.answers))
            .collect();
        Ok(Outcome {
            tally: self.tally,
            answers_per_conn,
        })
    }

    /// `-n`: every question of the run asked and answered, by whichever
    /// thread.
    fn finished(&self) -> bool {
        self.shared.budget.as_ref().is_some_and(Budget::done)
    }

    /// When the loop must wake even if no socket is ready: the next scan,
    /// the end of the run, or (through the precise timer) the next
    /// question due in the open loop.
    fn next_wake(&mut self) -> io::Result<u64> {
        let mut wake = self.next_scan;
        if let Some(end) = self.shared.end {
            wake = wake.min(end);
        }
        // The timer is armed for the next due question even when the scan
        // comes first: epoll's own timeout is rounded up to a millisecond,
        // and a question due just after the scan would be sent that late.
        if let (Some(timer), Some(Reverse((due, _)))) = (&mut self.timer, self.schedule.peek()) {
            timer.arm(*due)?;
        }
        Ok(wake)
    }

    /// Reads the answers that have arrived on connection `i` (at most
    /// [`READS_PER_EVENT`] reads), counts them, then asks as many new
    /// questions as were answered (closed loop) or as are due (open loop).
    /// A failure found on the way is handled after the answers before it
    /// are counted, so that no answer is lost from the books.
    fn on_readable(&mut self, i: usize) {
        let mut batch = Batch::default();
        // The clock is read after each read that brings bytes, and only
        // then: an event costs one clock reading. (0: no read brought any.)
        let mut now = 0;
        let mut failure = None;
        for _ in 0..READS_PER_EVENT {
            let Some(stream) = &self.conns[i].stream else {
                return;
            };
            let n = match (&*stream).read(&mut self.buf) {
                Ok(0) => {
                    failure = Some(Broken::By(Failure::Closed));
                    break;
                }
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    failure = Some(Broken::By(Failure::of(&error)));
                    break;
                }
            };
            // The answers were received now: one clock reading per read,
            // used for every answer in it and for the questions sent next.
            now = now_ns();
            if let Err(broken) = self.take_answers(i, n, now, &mut batch) {
                failure = Some(broken);
                break;
            }
            // A read that did not fill the buffer took everything there
            // was: reading again would only hear "would block".
            if n < self.buf.len() {
                break;
            }
        }
        self.settle(i, &batch);
        let failed_at = || if now == 0 { now_ns() } else { now };
        match failure {
            Some(Broken::By(failure)) => return self.fail(i, failure, failed_at()),
            Some(Broken::Counted) => return self.start_over(i, failed_at()),
            None => {}
        }
        if batch.answered == 0 {
            return;
        }
        if self.timer.is_some() {
            self.schedule(i, now);
        } else {
            self.ask(i, batch.answered, now);
        }
        let conn = &self.conns[i];
        if conn.phase != Phase::Open || conn.inflight.len() > 0 {
            return;
        }
        if conn.quota == 0 {
            self.renew(i, now);
        } else if self.shared.budget_spent() && conn.reserved == 0 {
            self.begin_close(i, now);
        }
    }

    /// Checks and counts the answers in the first `n` bytes of the read
    /// buffer, received on connection `i` at `now`. An error means the
    /// connection can no longer be trusted to frame answers, and must
    /// start over.
    fn take_answers(
        &mut self,
        i: usize,
        n: usize,
        now: u64,
        batch: &mut Batch,
    ) -> Result<(), Broken> {
        let shared = &*self.shared;
        let workload = &shared.workload;
        let conn = &mut self.conns[i];
        let mut rest = &self.buf[..n];
        while !rest.is_empty() {
            let expected = (conn.inflight.len() > 0).then_some(conn.head);
            // No answer is this long: the stream cannot be framed.
            let step = workload
                .take_answer(&mut conn.check, expected, rest)
                .map_err(|_| Broken::By(Failure::WrongAnswer))?;
            rest = &rest[step.consumed..];
            let Some(verdict) = step.verdict else {
                continue;
            };
            let Some((sent, intended)) = conn.inflight.pop() else {
                // The server spoke unasked. Its last word (`Error: idle
                // timeout.`, `Error: server busy.`) may come so, and it
                // closes next; anything else breaks the protocol, and a
                // server that streams answers must not keep the client
                // counting them: either way the connection is done.
                return Err(Broken::By(match verdict {
                    Verdict::ErrorAnswer => Failure::ErrorAnswer,
                    _ => Failure::Unasked,
                }));
            };
            conn.head = (conn.head + 1) % workload.cycle();
            batch.answered += 1;
            if shared.budget.is_some() && sent >= shared.measure_start {
                batch.from_budget += 1;
            }
            let counted = shared.counts(sent, now);
            match verdict {
                Verdict::Right => {
                    batch.right += 1;
                    if counted {
                        let open_loop = shared.rate.is_some();
                        self.tally
                            .answer(conn.target, sent, intended, now, open_loop);
                        conn.answers += 1;
                    }
                }
                // A reply of the wrong length leaves the stream cut in the
                // wrong places: one wrong answer (counted by the rule of
                // every answer), then a new connection.
                Verdict::Wrong if workload.wrong_loses_framing() => {
                    if counted {
                        self.tally.error(Failure::WrongAnswer, conn.target, now);
                    }
                    return Err(Broken::Counted);
                }
                Verdict::Wrong if counted => {
                    self.tally.error(Failure::WrongAnswer, conn.target, now);
                }
                Verdict::ErrorAnswer if counted => {
                    self.tally.error(Failure::ErrorAnswer, conn.target, now);
                }
                Verdict::Wrong | Verdict::ErrorAnswer => {}
            }
        }
        Ok(())
    }

    /// The books after a read: the run's budget, the back-off, and the
    /// progress the main thread watches.
    fn settle(&mut self, i: usize, batch: &Batch) {
        if let Some(budget) = &self.shared.budget {
            budget.answered(batch.from_budget);
        }
        // Only a right answer proves the server is serving: a connection
        // turned away with `Error: server busy.` keeps backing off.
        if batch.right > 0 {
            let conn = &mut self.conns[i];
            conn.backoff = BACKOFF_MIN;
            if conn.home.is_some_and(|(home, _)| home == conn.target) {
                conn.home_backoff = BACKOFF_MIN;
            }
        }
        if batch.answered > 0 {
            self.heard += batch.answered as u64;
            self.progress
                .right
                .store(self.tally.answers, Ordering::Relaxed);
            self.progress.heard.store(self.heard, Ordering::Relaxed);
        }
    }

    /// Fills connection `i`'s pipeline: all of it in the closed loop,
    /// what is due in the open loop.
    fn top_up(&mut self, i: usize, now: u64) {
        if self.timer.is_some() {
            self.schedule(i, now);
        } else {
            let room = self.shared.pipeline - self.conns[i].inflight.len();
            self.ask(i, room, now);
        }
    }

    /// Closed loop: asks up to `count` more questions on connection `i`,
    /// in one write.
    fn ask(&mut self, i: usize, count: usize, now: u64) {
        if self.conns[i].heading_home(now) {
            return;
        }
        let count = self.claim(i, count, now);
        if count == 0 {
            return;
        }
        let conn = &mut self.conns[i];
        for _ in 0..count {
            conn.inflight.push(now, now);
        }
        conn.unsent += count;
        self.flush(i, now);
    }

    /// Open loop: asks every question of connection `i` that is due and
    /// fits in its pipeline, with its due time as its intended send time,
    /// then puts the connection back in the schedule for its next one.
    fn schedule(&mut self, i: usize, now: u64) {
        if self.conns[i].phase != Phase::Open || self.conns[i].heading_home(now) {
            return;
        }
        let mut asked = 0;
        while !self.conns[i].inflight.is_full() && self.conns[i].next_due <= now {
            if self.claim(i, 1, now) == 0 {
                break;
            }
            let conn = &mut self.conns[i];
            conn.inflight.push(now, conn.next_due);
            conn.issued += 1;
            conn.next_due = self.shared.due(conn.slot, conn.issued);
            asked += 1;
        }
        if asked > 0 {
            self.conns[i].unsent += asked;
            self.flush(i, now);
        }
        // A connection at its --reconnect-every quota waits for its
        // answers, then closes: it has nothing more to ask here.
        let conn = &mut self.conns[i];
        if conn.phase == Phase::Open
            && !conn.inflight.is_full()
            && !conn.in_heap
            && conn.quota > 0
            && !(self.shared.budget_spent() && conn.reserved == 0)
        {
            self.schedule.push(Reverse((conn.next_due, i)));
            conn.in_heap = true;
        }
    }

    /// Open loop: serves every connection whose next question is due.
    fn send_due(&mut self, now: u64) {
        while let Some(&Reverse((due, i))) = self.schedule.peek() {
            if due > now {
                break;
            }
            self.schedule.pop();
            self.conns[i].in_heap = false;
            self.schedule(i, now);
        }
    }

    /// Takes up to `count` questions for connection `i` to ask: no more
    /// than its `--reconnect-every` quota leaves, none after the end of a
    /// `-d` run, and with `-n` from the budget (or from what the
    /// connection reserved of it), counting those asked again. Questions
    /// asked during the warmup are not counted, so they are free.
    fn claim(&mut self, i: usize, count: usize, now: u64) -> usize {
        // Past the end, an answer is not followed by a new question: the
        // server is left with no more than the pipeline to answer.
        if self.shared.end.is_some_and(|end| now >= end) {
            return 0;
        }
        let count = count.min(usize::try_from(self.conns[i].quota).unwrap_or(usize::MAX));
        if count == 0 {
            return 0;
        }
        let taken = match &self.shared.budget {
            Some(_) if now >= self.shared.measure_start && self.shared.reserve => {
                if self.conns[i].reserved < count as u64 {
                    self.reserve(i, now);
                }
                let conn = &mut self.conns[i];
                let taken = conn.reserved.min(count as u64);
                conn.reserved -= taken;
                taken as usize
            }
            Some(budget) if now >= self.shared.measure_start => {
                let claim = budget.claim(count);
                self.tally.reask(claim.again, self.conns[i].target, now);
                claim.taken
            }
            _ => count,
        };
        let conn = &mut self.conns[i];
        if conn.quota != u64::MAX {
            conn.quota -= taken as u64;
        }
        taken
    }

    /// `-n` with `--reconnect-every` (when [`Shared::reserve`]): takes from
    /// the budget every question connection `i` may still ask and has not
    /// taken yet, counting those asked again. Not during the warmup, whose
    /// questions are free.
    fn reserve(&mut self, i: usize, now: u64) {
        let shared = &*self.shared;
        let Some(budget) = &shared.budget else { return };
        if !shared.reserve || now < shared.measure_start {
            return;
        }
        let conn = &mut self.conns[i];
        let wanted = conn.quota.saturating_sub(conn.reserved);
        if wanted == 0 {
            return;
        }
        let claim = budget.claim(usize::try_from(wanted).unwrap_or(usize::MAX));
        conn.reserved += claim.taken as u64;
        let target = conn.target;
        self.tally.reask(claim.again, target, now);
    }

    /// Writes connection `i`'s unsent questions: one `write` of one slice.
    /// A short write leaves the rest for when the socket has room.
    fn flush(&mut self, i: usize, now: u64) {
        let workload = &self.shared.workload;
        let conn = &mut self.conns[i];
        if conn.unsent == 0 {
            return;
        }
        let Some(stream) = &conn.stream else { return };
        let first = conn.first_unsent(workload.cycle());
        let bytes = &workload.questions(first, conn.unsent)[conn.unsent_skip..];
        let written = match (&*stream).write(bytes) {
            Ok(n) => n,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                0
            }
            Err(error) => return self.fail(i, Failure::of(&error), now),
        };
        let all_written = written == bytes.len();
        if all_written {
            conn.unsent = 0;
            conn.unsent_skip = 0;
        } else {
            // Rare: the socket buffer is full. Count off the questions
            // that did go out, whole.
            let mut left = written + conn.unsent_skip;
            let mut question = first;
            while left >= workload.question_len(question) {
                left -= workload.question_len(question);
                conn.unsent -= 1;
                question = (question + 1) % workload.cycle();
            }
            conn.unsent_skip = left;
        }
        // Watch for room to write only while something is left to write.
        if conn.writing == all_written {
            let interest = if all_written {
                Interest::READ
            } else {
                Interest::READ_WRITE
            };
            if let Err(error) = self.poller.modify(stream, i as u64, interest) {
                return self.fail(i, Failure::of(&error), now);
            }
            conn.writing = !all_written;
        }
    }

    /// Counts the failure of connection `i` (inside the measured window),
    /// closes it, and schedules a reconnect after the back-off, to another
    /// server if there is one. With `-d`, its questions in flight stay in
    /// its ring: they are asked again, in order, on the new connection, and
    /// keep their first send time. With `-n`, those it took from the run's
    /// budget go back there, for any connection to ask again: a server
    /// that stays down keeps none of them.
    fn fail(&mut self, i: usize, failure: Failure, now: u64) {
        if self.shared.in_window(now) {
            self.tally.error(failure, self.conns[i].target, now);
        }
        // Nobody listens there, or nobody answers: no new connection goes
        // there for a timeout's time, while another server can be picked.
        // (A reset or a close may be one connection's fate only.)
        if matches!(failure, Failure::Refused | Failure::Timeout) {
            let time = std::time::Duration::from_nanos(self.shared.timeout);
            self.shared.picker.pass_over(self.conns[i].target, time);
        }
        self.start_over(i, now);
    }

    /// [`fail`](Self::fail) without counting: closes connection `i` and
    /// schedules its reconnect.
    fn start_over(&mut self, i: usize, now: u64) {
        self.hang_up(i);
        let shared = &*self.shared;
        let conn = &mut self.conns[i];
        conn.avoid = Some(conn.server);
        conn.reopening = false;
        conn.renewing = false;
        conn.phase = if shared.budget_spent() && conn.inflight.len() == 0 {
            Phase::Done
        } else {
            Phase::Waiting {
                until: now + conn.backoff,
            }
        };
        conn.backoff = (conn.backoff * 2).min(BACKOFF_MAX);
    }

    /// Looks at every connection: questions or connects past the timeout,
    /// reconnects that are due, closes that took too long; then, with
    /// `-n`, deals out questions a failed connection gave back.
    fn scan(&mut self, now: u64) {
        for i in 0..self.conns.len() {
            match self.conns[i].phase {
                Phase::Open if self.conns[i].heading_home(now) => self.head_home(i, now),
                Phase::Open if self.timed_out(i, now) => {
                    // The loop itself may have run late (its thread was not
                    // scheduled): answers that arrived meanwhile are read
                    // before the server is called silent.
                    self.on_readable(i);
                    if self.conns[i].phase == Phase::Open && self.timed_out(i, now_ns()) {
                        self.fail(i, Failure::Timeout, now);
                    }
                }
                Phase::Connecting { since } if now.saturating_sub(since) > self.shared.timeout => {
                    self.fail(i, Failure::Timeout, now);
                }
                Phase::Waiting { until } if now >= until => {
                    if self.shared.budget_spent() && self.conns[i].inflight.len() == 0 {
                        self.conns[i].phase = Phase::Done;
                    } else {
                        self.reconnect(i, now);
                    }
                }
                Phase::Draining { since } if now.saturating_sub(since) > CLOSE_GRACE => {
                    self.conns[i].stream = None;
                    self.conns[i].phase = Phase::Done;
                }
                _ => {}
            }
        }
        self.deal_given_back(now);
    }

    /// Whether connection `i`'s oldest question has waited past the
    /// timeout (a question asked again waits from when it was).
    fn timed_out(&self, i: usize, now: u64) -> bool {
        let conn = &self.conns[i];
        conn.inflight
            .oldest_sent()
            .map(|sent| sent.max(conn.resent_at))
            .is_some_and(|since| now.saturating_sub(since) > self.shared.timeout)
    }

    /// `-n`: questions that a failed connection gave back to the budget go
    /// first to this thread's open connections with room, then, for what
    /// is left, to as few closed ones as can take it, reopened (a dead
    /// server keeps none of the budget). Once the budget is spent, an open
    /// connection with nothing in flight closes, as it does after its last
    /// answer.
    fn deal_given_back(&mut self, now: u64) {
        let Some(budget) = &self.shared.budget else {
            return;
        };
        if budget.spent() {
            for i in 0..self.conns.len() {
                let conn = &self.conns[i];
                if conn.phase == Phase::Open && conn.inflight.len() == 0 && conn.reserved == 0 {
                    self.begin_close(i, now);
                }
            }
            return;
        }
        for i in 0..self.conns.len() {
            let conn = &self.conns[i];
            if conn.phase == Phase::Open && !conn.inflight.is_full() {
                self.top_up(i, now);
            }
        }
        // What one reopened connection takes: its pipeline, or with
        // reservations all it may ask.
        let share = match self.shared.reserve {
            true => self.shared.quota(),
            false => self.shared.pipeline as u64,
        };
        let mut left = self.shared.budget.as_ref().map_or(0, Budget::unclaimed);
        for i in 0..self.conns.len() {
            if left == 0 {
                break;
            }
            if self.conns[i].phase == Phase::Done {
                self.conns[i].reopening = true;
                self.reconnect(i, now);
                left = left.saturating_sub(share);
            }
        }
    }

    /// Closes connection `i`. Its questions in flight are asked again:
    /// with `-n` by any connection (those it took from the budget go back
    /// there), with `-d` on its next connection (they stay in its ring).
    fn hang_up(&mut self, i: usize) {
        let shared = &*self.shared;
        let conn = &mut self.conns[i];
        conn.stream = None;
        conn.writing = false;
        conn.check.reset();
        if let Some(budget) = &shared.budget {
            budget.release(conn.inflight.sent_since(shared.measure_start));
            conn.inflight.clear();
            // Taken for it, never asked: anyone's to ask, for the first time.
            budget.unclaim(std::mem::take(&mut conn.reserved));
        }
        conn.unsent = conn.inflight.len();
        conn.unsent_skip = 0;
    }

    /// Connection `i`, away from home past its time, goes home: at once
    /// if every answer has come (it closes cleanly, nothing left unread);
    /// otherwise once they have, or without them if they have not come
    /// within the next home back-off (a server that has not even accepted
    /// it, as srv-single busy with another), to ask them again at home.
    /// No failure, no reconnect.
    fn head_home(&mut self, i: usize, now: u64) {
        if self.conns[i].inflight.len() > 0 {
            // Answers that came since the last read are taken first.
            self.on_readable(i);
        }
        let conn = &self.conns[i];
        let Some(until) = conn.away_until else { return };
        if conn.phase != Phase::Open {
            return; // It failed, or closed at the end of the run.
        }
        if conn.inflight.len() == 0 || now >= until.saturating_add(conn.home_backoff) {
            self.hang_up(i);
            let conn = &mut self.conns[i];
            conn.away_until = None;
            conn.reopening = true;
            conn.phase = Phase::Waiting { until: now };
        } else if self.timed_out(i, now) {
            self.fail(i, Failure::Timeout, now);
        }
    }

    /// Where connection `i` connects next. Another server than the one
    /// that failed it, when there is another: with a registry, picked now;
    /// from a fixed list, for a stay away from home that lasts the home
    /// back-off (then it goes home again). `None`: no server is registered
    /// at the moment.
    fn next_server(&mut self, i: usize, now: u64) -> Option<(usize, SocketAddr)> {
        let picker = &self.shared.picker;
        let conn = &mut self.conns[i];
        let avoid = conn.avoid.take();
        match conn.home {
            // Not after a failure (a --reconnect-every renewal), while
            // away from home: away until its time is up, as it would be
            // had it not closed.
            Some((_, addr)) if avoid.is_none() && conn.away_until.is_some_and(|t| now < t) => {
                picker.pick(Some(addr))
            }
            Some((home, addr)) if avoid != Some(addr) => {
                picker.take(home);
                conn.away_until = None;
                Some((home, addr))
            }
            Some((_, addr)) => {
                conn.away_until = Some(now + conn.home_backoff);
                conn.home_backoff = (conn.home_backoff * 2).min(BACKOFF_MAX);
                picker.pick(Some(addr))
            }
            None => picker.pick(avoid),
        }
    }

    /// Starts connection `i`'s reconnect, to [`next_server`](Self::next_server).
    /// With no server registered at the moment, it waits another back-off.
    fn reconnect(&mut self, i: usize, now: u64) {
        let next = self.next_server(i, now);
        let conn = &mut self.conns[i];
        let Some((target, server)) = next else {
            conn.phase = Phase::Waiting {
                until: now + conn.backoff,
            };
            conn.backoff = (conn.backoff * 2).min(BACKOFF_MAX);
            return;
        };
        self.shared.picker.leave(conn.target);
        (conn.target, conn.server) = (target, server);
        self.tally.track(target);
        let started = connect::start(server).and_then(|started| {
            let (stream, interest) = match &started {
                Connecting::Done(stream) => (stream, Interest::READ),
                Connecting::InProgress(stream) => (stream, Interest::READ_WRITE),
            };
            self.poller.add(stream, i as u64, interest)?;
            Ok(started)
        });
        match started {
            Ok(Connecting::Done(stream)) => {
                self.conns[i].stream = Some(stream);
                self.on_open(i, now);
            }
            Ok(Connecting::InProgress(stream)) => {
                let conn = &mut self.conns[i];
                conn.stream = Some(stream);
                conn.phase = Phase::Connecting { since: now };
            }
            Err(error) => self.fail(i, Failure::of(&error), now),
        }
    }

    /// A connect in progress on connection `i` has finished.
    fn on_connected(&mut self, i: usize) {
        let now = now_ns();
        let Some(stream) = &self.conns[i].stream else {
            return;
        };
        let result = connect::finish(stream)
            .and_then(|()| self.poller.modify(stream, i as u64, Interest::READ));
        match result {
            Ok(()) => self.on_open(i, now),
            Err(error) => self.fail(i, Failure::of(&error), now),
        }
    }

    /// Connection `i` is connected again: it asks its unanswered questions
    /// again (they keep their first send time, so their latency includes
    /// the outage), then fills its pipeline.
    fn on_open(&mut self, i: usize, now: u64) {
        // A connection reopened for questions given back did not fail: it
        // is no reconnect; one in place of a connection that had its
        // --reconnect-every answers is a planned one.
        let reopened = std::mem::take(&mut self.conns[i].reopening);
        let renewed = std::mem::take(&mut self.conns[i].renewing);
        let conn = &mut self.conns[i];
        // Its questions asked again here are asked on it: they count
        // towards its --reconnect-every N.
        conn.quota = match self.shared.reconnect_every {
            Some(every) => every.saturating_sub(conn.inflight.len() as u64),
            None => u64::MAX,
        };
        if self.shared.in_window(now) {
            if renewed {
                self.tally.planned_reconnects += 1;
            } else if !reopened {
                self.tally.reconnects += 1;
            }
            // With -d the questions of the connection before are still in
            // its ring (with -n they went back to the budget, and are
            // counted as they are taken again).
            let (again, target) = (conn.inflight.len() as u64, conn.target);
            self.tally.reask(again, target, now);
        }
        conn.phase = Phase::Open;
        conn.writing = false;
        conn.resent_at = now;
        self.flush(i, now);
        self.top_up(i, now);
    }

    /// `--reconnect-every N`: connection `i` has asked its N questions and
    /// had every answer. It closes (every answer read, so the server sees
    /// a clean close, as from the book's client) and a new connection
    /// opens at once in its place, to the server a new connection would
    /// get: its home in a fixed list, the registry's pick. No failure, no
    /// back-off. None opens once the run is over, nor with `-n` once every
    /// question is taken: with reservations, the new one's questions are
    /// taken before it connects, so that none opens for nothing.
    fn renew(&mut self, i: usize, now: u64) {
        self.hang_up(i);
        let conn = &mut self.conns[i];
        conn.quota = self.shared.quota();
        conn.reopening = false;
        if !self.shared.over(now) {
            self.reserve(i, now);
        }
        let conn = &mut self.conns[i];
        if self.shared.over(now) || (self.shared.budget_spent() && conn.reserved == 0) {
            conn.phase = Phase::Done;
            return;
        }
        conn.renewing = true;
        self.reconnect(i, now);
    }

    /// `-n`: connection `i` has nothing more to ask; it shuts its sending
    /// side and waits for the server to close.
    fn begin_close(&mut self, i: usize, now: u64) {
        let conn = &mut self.conns[i];
        match &conn.stream {
            Some(stream) if stream.shutdown(Direction::Write).is_ok() => {
                conn.phase = Phase::Draining { since: now };
            }
            _ => {
                conn.stream = None;
                conn.phase = Phase::Done;
            }
        }
    }

    /// Reads and discards what a closing connection still receives, until
    /// the server closes it: at most [`READS_PER_EVENT`] reads at a time,
    /// so that a server that floods cannot hold the loop past its grace.
    fn drain(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let Some(stream) = &conn.stream else { return };
        for _ in 0..READS_PER_EVENT {
            match (&*stream).read(&mut self.buf) {
                Ok(n) if n > 0 => continue,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                _ => {
                    conn.stream = None;
                    conn.phase = Phase::Done;
                    return;
                }
            }
        }
    }

    /// The end of the run: every open connection shuts its sending side and
    /// reads until the server closes it, for at most [`CLOSE_GRACE`];
    /// whatever else is left is closed at once.
    fn close_all(&mut self) -> io::Result<()> {
        let now = now_ns();
        for i in 0..self.conns.len() {
            match self.conns[i].phase {
                Phase::Open => self.begin_close(i, now),
                Phase::Draining { .. } => {}
                _ => {
                    self.conns[i].stream = None;
                    self.conns[i].phase = Phase::Done;
                }
            }
        }
        let deadline = now + CLOSE_GRACE;
        while now_ns() < deadline
            && self
                .conns
                .iter()
                .any(|conn| matches!(conn.phase, Phase::Draining { .. }))
        {
            self.poller.wait(Some(deadline))?;
            for e in 0..self.poller.len() {
                match self.poller.event(e).key {
                    // Still armed for a question that will not be asked: a
                    // level-triggered timer not acknowledged would wake
                    // every wait of the grace at once.
                    TIMER_KEY => {
                        if let Some(timer) = &mut self.timer {
                            timer.fired();
                        }
                    }
                    key => self.drain(key as usize),
                }
            }
        }
        for conn in &mut self.conns {
            conn.stream = None;
        }
        Ok(())
    }
}

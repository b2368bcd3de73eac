//! Which server a new connection goes to: one of a fixed list (`--server`,
//! `HOST -p PORT`), or one of those a registry lists at that moment
//! (`--registry`).
//!
//! A pick is random among the servers with the fewest of this client's
//! connections: a uniform draw leaves one of two servers with all four of
//! `-c 4` once in eight runs, and a server that has just joined gets the
//! next connections rather than a share of them. A server that refused a
//! connect or left a question unanswered past the timeout is passed over
//! for a while (see [`Picker::pass_over`]), while another can be picked:
//! a dead server whose znode stays until its session expires costs one
//! refused connect, not one per connection, and a silent one is not handed
//! the questions it timed out on again and again. Picks are made when a
//! connection opens, never per question, so the lock here is off the hot
//! path.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::bail;
use zen_utils::deploy::registry::{RegistryAuth, RegistryUrl, Watcher};
use zen_utils::duration::format_duration;

/// The servers of a run, and how many of its connections each one has.
pub(crate) struct Picker {
    /// `None`: the fixed list in `known` is all there is.
    registry: Option<(RegistryUrl, Watcher)>,
    state: Mutex<State>,
}

struct State {
    /// Every server picked so far (all of a fixed list), in the order first
    /// seen: a server's index here is its target number in the report.
    known: Vec<SocketAddr>,
    /// Connections each known server has now, by target number.
    load: Vec<usize>,
    /// Until when each known server is passed over, by target number.
    passed_over: Vec<Option<Instant>>,
}

impl Picker {
    /// The servers of a fixed list, in its order.
    pub(crate) fn fixed(servers: Vec<SocketAddr>) -> Self {
        let load = vec![0; servers.len()];
        let passed_over = vec![None; servers.len()];
        Self {
            registry: None,
            state: Mutex::new(State {
                known: servers,
                load,
                passed_over,
            }),
        }
    }

    /// The servers registered in `url`: watches it, and waits up to
    /// `patience` for a first server. Fails in one line when none came:
    /// the registry was empty, or could not be read. With `auth`, only
    /// the servers that the same credentials registered are picked.
    pub(crate) fn registry(
        url: &RegistryUrl,
        auth: Option<&RegistryAuth>,
        patience: Duration,
    ) -> anyhow::Result<Self> {
        let warn = Box::new(|what: std::fmt::Arguments<'_>| {
            zen_utils::log_line!("client: warning: {what}");
        });
        let watcher = Watcher::start_with(url.clone(), auth.cloned(), warn)?;
        let servers = watcher.wait_for_servers(patience);
        if servers.addrs.is_empty() {
            let within = format_duration(patience);
            match servers.failure {
                _ if servers.read => bail!("no server registered in {url} within {within}"),
                Some(failure) => bail!("{failure}"),
                None => bail!("cannot reach the registry {url}: no answer within {within}"),
            }
        }
        Ok(Self {
            registry: Some((url.clone(), watcher)),
            state: Mutex::new(State {
                known: Vec::new(),
                load: Vec::new(),
                passed_over: Vec::new(),
            }),
        })
    }

    /// The registry's URL, if the servers come from one.
    pub(crate) fn url(&self) -> Option<&RegistryUrl> {
        self.registry.as_ref().map(|(url, _)| url)
    }

    /// Every server picked so far (all of a fixed list), by target number.
    pub(crate) fn known(&self) -> Vec<SocketAddr> {
        self.lock().known.clone()
    }

    /// How many servers there are to pick from now.
    pub(crate) fn choices(&self) -> usize {
        match &self.registry {
            Some((_, watcher)) => watcher.servers().addrs.len(),
            None => self.lock().known.len(),
        }
    }

    /// Picks a server for a new connection, other than `avoid` and those
    /// passed over when there is another: random among those with the
    /// fewest connections. Counts the connection to it (until
    /// [`leave`](Self::leave)). `None`: no server is registered now.
    pub(crate) fn pick(&self, avoid: Option<SocketAddr>) -> Option<(usize, SocketAddr)> {
        let listed = self.registry.as_ref().map(|(_, w)| w.servers().addrs);
        let mut state = self.lock();
        let candidates = listed.unwrap_or_else(|| state.known.clone());
        let mut from: Vec<usize> = candidates.iter().map(|&addr| state.target(addr)).collect();
        // Each rule keeps what it can, and gives way when it would leave
        // nothing: `avoid` first, then the servers passed over.
        let now = Instant::now();
        narrow(&mut from, |t| Some(state.known[t]) != avoid);
        narrow(&mut from, |t| {
            state.passed_over[t].is_none_or(|until| now >= until)
        });
        let fewest = from.iter().map(|&t| state.load[t]).min()?;
        let least: Vec<usize> = from
            .iter()
            .copied()
            .filter(|&t| state.load[t] == fewest)
            .collect();
        let target = least[fastrand::usize(..least.len())];
        state.load[target] += 1;
        Some((target, state.known[target]))
    }

    /// Passes target `target` over for `time` (it refused a connect, or
    /// left a question unanswered for the timeout), while another server
    /// can be picked.
    pub(crate) fn pass_over(&self, target: usize, time: Duration) {
        self.lock().passed_over[target] = Some(Instant::now() + time);
    }

    /// Counts a connection to target `target`, chosen by the caller (a
    /// fixed list's round robin).
    pub(crate) fn take(&self, target: usize) {
        self.lock().load[target] += 1;
    }

    /// A connection to target `target` has ended.
    pub(crate) fn leave(&self, target: usize) {
        let mut state = self.lock();
        state.load[target] = state.load[target].saturating_sub(1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps the targets in `from` that `keep` keeps, unless that is none.
fn narrow(from: &mut Vec<usize>, keep: impl Fn(usize) -> bool) {
    if from.iter().any(|&t| keep(t)) {
        from.retain(|&t| keep(t));
    }
}

impl State {
    /// `addr`'s target number, given one if it is new.
    fn target(&mut self, addr: SocketAddr) -> usize {
        match self.known.iter().position(|&known| known == addr) {
            Some(target) => target,
            None => {
                self.known.push(addr);
                self.load.push(0);
                self.passed_over.push(None);
                self.known.len() - 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn picks_spread_evenly_and_avoid_the_failed_server() {
        let picker = Picker::fixed(vec![addr(1), addr(2)]);
        let mut got = [0; 2];
        for _ in 0..4 {
            got[picker.pick(None).unwrap().0] += 1;
        }
        assert_eq!(got, [2, 2]);
        for _ in 0..10 {
            let (target, picked) = picker.pick(Some(addr(1))).unwrap();
            assert_eq!(picked, addr(2));
            picker.leave(target);
        }
        // A server passed over is picked only when nothing else is left.
        picker.pass_over(1, Duration::from_secs(60));
        for _ in 0..10 {
            let (target, picked) = picker.pick(None).unwrap();
            assert_eq!(picked, addr(1));
            picker.leave(target);
        }
        assert_eq!(picker.pick(Some(addr(1))).unwrap().1, addr(2));
        // With nothing else, the server to avoid is still a server.
        let alone = Picker::fixed(vec![addr(1)]);
        assert_eq!(alone.pick(Some(addr(1))).unwrap().1, addr(1));
        assert_eq!(Picker::fixed(vec![]).pick(None), None);
    }
}
